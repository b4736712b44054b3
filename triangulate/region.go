package triangulate

import (
	"fmt"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// DecideRegion chooses the best PoP for a cloud region (placement mode region = "aws:us-east-1"). The
// region's coordinates are the prior location. With measurements to the region's endpoint in in, it is Decide
// on them, flagged FlagPriorMismatch when the measured region excludes the region's coordinates (by more than
// Config.AnycastMarginKm). Without, every PoP of pops is scored by the latency model (Config.Model) from the region, the best
// is chosen with the same tie-break and hysteresis rules, and the Result is flagged FlagEstimated (for
// placement.Decision.Estimated) with the region as its location.
func (e *Engine) DecideRegion(region geo.Point, pops []geo.PoP, in Input) (Result, error) {
	if len(in.Measurements) > 0 {
		r, err := e.Decide(in)
		if err == nil && r.HasLoc && region.Valid() &&
			geo.DistanceKm(region, r.Location.Point) > r.Location.RadiusKm+e.cfg.AnycastMarginKm {
			r.Flags |= FlagPriorMismatch
		}
		return r, err
	}
	var r Result
	r.Target = in.Target
	if !region.Valid() {
		return r, fmt.Errorf("%w: region location (%v, %v) is not a valid lat/lon", ErrInvalidMeasurement, region.Lat, region.Lon)
	}
	if len(pops) == 0 {
		return r, fmt.Errorf("target %q: %w: no measurements and no PoPs to model", in.Target, ErrNoMeasurements)
	}
	model := e.model()
	e.begin(len(pops))
	for _, p := range pops {
		rtt := model(p.Point, region)
		ent, seen := e.slot(p.Code)
		if seen {
			if rtt < e.ms[ent.idx].RTTMs {
				e.ms[ent.idx].RTTMs = rtt
			}
			continue
		}
		ent.gen, ent.idx = e.gen, len(e.ms)
		e.ms = append(e.ms, Measurement{VP: p.Code, Point: p.Point, RTTMs: rtt})
	}
	r.VPs = len(e.ms)
	e.best(&r, in.Previous)
	r.Flags |= FlagEstimated
	r.Verdict = placement.VerdictUnicast
	r.Status = placement.StatusSuccess
	r.Location, r.HasLoc = Location{Point: region}, true
	// A model is not a measurement: the confidence is at most EstimatedConfidence.
	r.Confidence = e.confidence(&r) * EstimatedConfidence
	return r, nil
}

// EstimatedConfidence scales the confidence of a decision taken from the latency model alone: the model's
// median error on WonderProxy pairs is a few ms, about the gap between neighbouring PoPs.
const EstimatedConfidence = 0.6

func (e *Engine) model() func(a, b geo.Point) float64 {
	if e.cfg.Model != nil {
		return e.cfg.Model
	}
	return geo.DefaultModel().RTTMs
}
