package demo

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/testbed"
)

// Nearest is the emulator's truth for one host of a spec: the PoP with the lowest RTT to it in the latency
// model the testbed sets its delays from (geo.DefaultModel()), and the runner-up, so that a caller can say
// how clear-cut "nearest" is.
type Nearest struct {
	PoP    string
	RTTMs  float64 // the model's RTT from PoP to the host
	Next   string  // the second nearest PoP
	NextMs float64
}

// NearestPoP returns the PoP of spec nearest the host named host by the model's RTT between their coordinates
// (the emulator's delays are half of it each way, with no jitter unless a test sets some). PoPs at the same
// model RTT are ordered as the spec lists them: the first is the nearest.
func NearestPoP(spec *testbed.Spec, host string) (Nearest, error) {
	i := slices.IndexFunc(spec.Hosts, func(h testbed.HostSpec) bool { return h.Name == host })
	if i < 0 {
		return Nearest{}, fmt.Errorf("demo: spec %s has no host %q", spec.Name, host)
	}
	at, err := spec.Hosts[i].Location.Point()
	if err != nil {
		return Nearest{}, fmt.Errorf("demo: host %q: %w", host, err)
	}
	type pop struct {
		code string
		ms   float64
	}
	pops := make([]pop, 0, len(spec.PoPs))
	for _, c := range spec.PoPs {
		p, ok := geo.LookupPoP(c)
		if !ok {
			return Nearest{}, fmt.Errorf("demo: spec %s: PoP %q is not in the catalogue", spec.Name, c)
		}
		pops = append(pops, pop{c, geo.DefaultModel().RTTMs(p.Point, at)})
	}
	if len(pops) == 0 {
		return Nearest{}, fmt.Errorf("demo: spec %s has no PoPs", spec.Name)
	}
	slices.SortStableFunc(pops, func(a, b pop) int { return cmp.Compare(a.ms, b.ms) })
	n := Nearest{PoP: pops[0].code, RTTMs: pops[0].ms}
	if len(pops) > 1 {
		n.Next, n.NextMs = pops[1].code, pops[1].ms
	}
	return n, nil
}
