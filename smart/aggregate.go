package smart

import (
	"maps"
	"slices"
	"time"

	"github.com/vantage-edge/vantage/internal/loghist"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// AggregateInput is one application's aggregated telemetry (storage.TelemetryWindow: counts and duration
// histograms per deploy x ingress x execution PoP x routed x reason, subrequest counts and minima per back end)
// and state: what Input is for records.
type AggregateInput struct {
	App string
	// Deploy is the application's current deploy version; empty: the deploy version of the cell with the newest
	// request. Only cells of this version are analysed.
	Deploy string
	// Windows are the application's aggregation windows (storage.TelemetryAggWindow long); those that do not
	// overlap (Now-Window, Now] are ignored, and those that do count whole.
	Windows []storage.TelemetryWindow
	// Previous, Unsupported, UnsupportedDeploy and Now are as in Input.
	Previous          placement.Decision
	Unsupported       bool
	UnsupportedDeploy string
	Now               time.Time
}

// AnalyzeAggregates is Analyze on aggregated telemetry; it is pure too. It reaches the decisions Analyze reaches
// on the records the windows were folded from (TestAggregatesDecideLikeRecords), with two approximations:
// medians are read from loghist buckets (within 1 %), and the median time outside counted subrequests is that
// outside every subrequest not in waitUntil plus the mean time per request in subrequests to back ends that do
// not count (analytics, anycast, replicated): exact when those take the same time in every request.
func AnalyzeAggregates(cfg Config, in AggregateInput, lk Lookups) Analysis {
	from := in.Now.Add(-cfg.Window)
	var ws []storage.TelemetryWindow
	for _, w := range in.Windows {
		if (in.App == "" || w.App == in.App) && w.Start.Add(storage.TelemetryAggWindow).After(from) && !w.Start.After(in.Now) {
			ws = append(ws, w)
		}
	}
	deploy := in.Deploy
	if deploy == "" {
		var last time.Time
		for _, w := range ws {
			for _, c := range w.Cells {
				if !c.Last.Before(last) {
					deploy, last = c.Deploy, c.Last
				}
			}
		}
	}
	st := state{app: in.App, deploy: deploy, previous: in.Previous, unsupported: in.Unsupported,
		unsupportedDeploy: in.UnsupportedDeploy, now: in.Now}
	return analyze(cfg, st, summarizeWindows(ws, deploy), lk)
}

// summarizeWindows summarizes the cells of deploy in ws.
func summarizeWindows(ws []storage.TelemetryWindow, deploy string) *summary {
	s := &summary{hosts: map[string]*hostSum{}}
	type key struct {
		ingress, exec string
		routed        bool
		reason        string
	}
	idx := map[key]int{}
	outside := loghist.Histogram{}
	sums := map[string]float64{} // ms in subrequests outside waitUntil, by host
	for _, w := range ws {
		for _, c := range w.Cells {
			if c.Deploy != deploy {
				continue
			}
			k := key{c.Ingress, c.Exec, c.Routed, c.Reason}
			i, ok := idx[k]
			if !ok {
				i = len(s.groups)
				idx[k] = i
				s.groups = append(s.groups, group{ingress: c.Ingress, exec: c.Exec, routed: c.Routed, reason: c.Reason})
			}
			s.groups[i].dur.merge(dist{h: c.Durations})
			s.requests += int(c.Count)
			outside.Merge(c.Outside)
		}
		for _, h := range w.Hosts {
			if h.Deploy != deploy {
				continue
			}
			hs := s.host(h.Host)
			hs.waitUntil += int(h.WaitUntil)
			if h.Count == 0 {
				continue
			}
			hs.n += int(h.Count)
			sums[h.Host] += h.SumMs
			if v, ok := hs.minByExec[h.Exec]; !ok || h.MinMs < v {
				hs.minByExec[h.Exec] = h.MinMs
			}
		}
	}
	s.overhead = func(excluded map[string]bool) float64 {
		m := outside.Median()
		if s.requests == 0 {
			return m
		}
		for _, h := range slices.Sorted(maps.Keys(excluded)) { // one order: the same input, the same output
			m += sums[h] / float64(s.requests)
		}
		return m
	}
	return s
}
