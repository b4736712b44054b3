package smart

import (
	"maps"
	"slices"
	"time"

	"github.com/vantage-edge/vantage/internal/loghist"
	"github.com/vantage-edge/vantage/internal/stats"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// state is what an analysis knows besides the requests.
type state struct {
	app, deploy       string
	previous          placement.Decision
	unsupported       bool
	unsupportedDeploy string
	now               time.Time
}

func (in Input) state(deploy string) state {
	return state{app: in.App, deploy: deploy, previous: in.Previous, unsupported: in.Unsupported,
		unsupportedDeploy: in.UnsupportedDeploy, now: in.Now}
}

// dist is a distribution of durations in ms: exact samples (from records), buckets (from aggregates), or both.
type dist struct {
	xs []float64
	h  loghist.Histogram
}

func (d *dist) merge(o dist) {
	d.xs = append(d.xs, o.xs...)
	if len(o.h) > 0 {
		if d.h == nil {
			d.h = loghist.Histogram{}
		}
		d.h.Merge(o.h)
	}
}

func (d *dist) count() int { return len(d.xs) + int(d.h.Count()) }

// median is stats.Median of the samples, read to the bucket (under 1 %) when some are bucketed.
func (d *dist) median() float64 {
	if len(d.h) == 0 {
		return stats.Median(d.xs)
	}
	h := maps.Clone(d.h)
	for _, x := range d.xs {
		h.Add(x)
	}
	return h.Median()
}

// group is the window's requests of one ingress, execution PoP, routed flag and router reason.
type group struct {
	ingress, exec string
	routed        bool
	reason        string
	dur           dist
}

// hostSum is the window's subrequests to one back end.
type hostSum struct {
	n         int                // outside waitUntil
	waitUntil int                // in waitUntil
	minByExec map[string]float64 // smallest duration outside waitUntil by execution PoP
}

// summary is what the analysis reads of the window's requests of one deploy version.
type summary struct {
	requests int
	groups   []group
	hosts    map[string]*hostSum
	// overhead returns the median request time outside the subrequests that count: those outside waitUntil to
	// hosts not in excluded.
	overhead func(excluded map[string]bool) float64
}

func (s *summary) execPoPs() []string {
	set := map[string]bool{}
	for _, g := range s.groups {
		set[g.exec] = true
	}
	return slices.Sorted(maps.Keys(set))
}

func (s *summary) host(name string) *hostSum {
	h := s.hosts[name]
	if h == nil {
		h = &hostSum{minByExec: map[string]float64{}}
		s.hosts[name] = h
	}
	return h
}

// summarizeRecords summarizes records exactly.
func summarizeRecords(recs []storage.Telemetry) *summary {
	s := &summary{requests: len(recs), hosts: map[string]*hostSum{}}
	type key struct {
		ingress, exec string
		routed        bool
		reason        string
	}
	idx := map[key]int{}
	for _, r := range recs {
		k := key{r.Ingress, r.Exec, r.Routed, r.Reason}
		i, ok := idx[k]
		if !ok {
			i = len(s.groups)
			idx[k] = i
			s.groups = append(s.groups, group{ingress: r.Ingress, exec: r.Exec, routed: r.Routed, reason: r.Reason})
		}
		s.groups[i].dur.xs = append(s.groups[i].dur.xs, r.DurationMs)
		for _, sub := range r.Subrequests {
			h := s.host(sub.Host)
			if sub.WaitUntil {
				h.waitUntil++
				continue
			}
			h.n++
			if v, ok := h.minByExec[r.Exec]; !ok || sub.DurationMs < v {
				h.minByExec[r.Exec] = sub.DurationMs
			}
		}
	}
	s.overhead = func(excluded map[string]bool) float64 {
		outside := make([]float64, 0, len(recs))
		for _, r := range recs {
			in := 0.0
			for _, sub := range r.Subrequests {
				if !sub.WaitUntil && !excluded[sub.Host] {
					in += sub.DurationMs
				}
			}
			outside = append(outside, max(r.DurationMs-in, 0))
		}
		return stats.Median(outside)
	}
	return s
}
