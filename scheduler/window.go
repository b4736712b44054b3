package scheduler

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

// windowed returns rs with each successful PoP's MinMs lowered to the minimum over the PoP's recent results
// (newest first) within the window: at most rounds of them, none older than span before now. A PoP whose latest
// result failed is left failed: a PoP that cannot reach the target now is not placed on an old RTT. The PoPs
// whose RTT came from an earlier round are returned, sorted.
func windowed(rs map[string]storage.Result, recent map[string][]storage.Sample, now time.Time, rounds int, span time.Duration) (map[string]storage.Result, []storage.WindowedPoPRT) {
	out := make(map[string]storage.Result, len(rs))
	var from []storage.WindowedPoPRT
	for _, pop := range slices.Sorted(maps.Keys(rs)) {
		r := rs[pop]
		if succeeded(r) {
			best, at := r.MinMs, r.At
			for i, smp := range recent[pop] {
				if i >= rounds {
					break
				}
				if smp.OK && now.Sub(smp.At) <= span && smp.MinMs < best {
					best, at = smp.MinMs, smp.At
				}
			}
			if best < r.MinMs {
				from = append(from, storage.WindowedPoPRT{PoP: pop, LatestMs: r.MinMs, UsedMs: best, UsedAt: at})
				r.MinMs = best
			}
		}
		out[pop] = r
	}
	return out, from
}

// explain writes why dec is what it is (storage.Explanation) beside it. A failure is logged: the decision
// stands without its explanation.
func (s *Scheduler) explain(ctx context.Context, cal *triangulate.Calibration, dec placement.Decision, r *triangulate.Result,
	rs map[string]storage.Result, fromHistory []storage.WindowedPoPRT) {
	e := s.explanation(cal, dec, r, rs, fromHistory)
	err := s.deps.backend.PutExplanation(ctx, e, s.cfg.DecisionTTL)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("scheduler: writing the decision's explanation", "app", dec.App, "err", err)
	}
	s.countExplanation(len(fromHistory), err)
}

// countExplanation counts an explanation written (err nil) or not, and the PoPs whose RTT came from history.
func (s *Scheduler) countExplanation(fromHistory int, err error) {
	if s.metrics != nil {
		s.metrics.windowed.Add(float64(fromHistory))
		if err != nil {
			s.metrics.explanations.WithLabelValues("failed").Inc()
		} else {
			s.metrics.explanations.WithLabelValues("written").Inc()
		}
	}
}

// explanation says why dec is what it is.
func (s *Scheduler) explanation(cal *triangulate.Calibration, dec placement.Decision, r *triangulate.Result,
	rs map[string]storage.Result, fromHistory []storage.WindowedPoPRT) storage.Explanation {
	e := storage.Explanation{App: dec.App, ComputedAt: dec.ComputedAt, Verdict: string(dec.Verdict), BestPoP: dec.BestPoP,
		Notes: r.Notes(), Calibration: describeCalibration(cal),
		Window: storage.ExplainWindow{Rounds: s.cfg.HistoryRounds, Seconds: s.cfg.HistoryWindow.Seconds(), FromHistory: fromHistory}}
	for _, w := range fromHistory {
		e.Notes = append(e.Notes, fmt.Sprintf("PoP %s: %.1f ms from its result of %s (latest %.1f ms)",
			w.PoP, w.UsedMs, w.UsedAt.Format(time.RFC3339), w.LatestMs))
	}
	if r.Flags.Has(triangulate.FlagSpeedOfLight) {
		for _, v := range r.Violations {
			e.SetAside = append(e.SetAside, storage.SetAside{PoP: v.VP,
				Reason: fmt.Sprintf("its disk misses %d others' (speed of light): mislocated or a bad measurement", v.Conflicts)})
		}
	}
	for _, pop := range slices.Sorted(maps.Keys(rs)) {
		res := rs[pop]
		switch {
		case !succeeded(res):
			why := res.Class
			if res.Error != "" {
				why += ": " + res.Error
			}
			e.SetAside = append(e.SetAside, storage.SetAside{PoP: pop, Reason: "probe failed: " + why})
		case cal.Suspect(pop):
			e.SetAside = append(e.SetAside, storage.SetAside{PoP: pop,
				Reason: "the calibration found its listed location inconsistent with its RTTs (mislocated)"})
		}
		if id := chaosID(res); id != "" {
			if e.Chaos == nil {
				e.Chaos = map[string]string{}
			}
			e.Chaos[pop] = id
		}
	}
	if r.Verdict == placement.VerdictAnycast {
		for _, in := range r.Instances {
			e.Instances = append(e.Instances, storage.ExplainInstance{City: in.City, PoP: in.PoP,
				Lat: in.Point.Lat, Lon: in.Point.Lon, RadiusKm: in.RadiusKm})
		}
	}
	return e
}

// describeCalibration summarises the calibration of the engine's disks.
func describeCalibration(c *triangulate.Calibration) storage.ExplainCalibration {
	if c == nil {
		return storage.ExplainCalibration{Kind: "fibre"}
	}
	ec := storage.ExplainCalibration{Kind: "calibrated", PoPs: len(c.PerVP)}
	for _, sus := range c.Suspects {
		ec.Suspects = append(ec.Suspects, sus.VP)
	}
	return ec
}
