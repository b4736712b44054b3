package triangulate

import (
	"errors"
	"fmt"
	"math"

	"github.com/vantage-edge/vantage/geo"
)

// Measurement is one vantage point's minimum RTT to the target. Vantage points need not be PoPs of the
// catalogue: any probe with a known location will do.
type Measurement struct {
	VP    string    // vantage point id (a PoP code, a probe name, a server id); the best PoP is reported by it
	Point geo.Point // the vantage point's location
	RTTMs float64   // minimum RTT to the target, in ms (>= 0, <= Config.MaxRTTMs)
}

// DNSAnswer is what the target's name resolved to from one vantage point, and what the answering server
// said its name was. Either part may be empty.
type DNSAnswer struct {
	VP       string   // vantage point id
	Addrs    []string // A/AAAA answer set; order and duplicates do not matter
	ServerID string   // CHAOS TXT id.server (or hostname.bind) answer of the target address, "" if none
}

// Input is everything the engine knows about one target.
type Input struct {
	Target       string        // the target's name, for messages and the Result; may be empty
	Measurements []Measurement // one per vantage point; duplicates are merged keeping the minimum RTT
	DNS          []DNSAnswer   // optional DNS evidence (hostname targets)
	Previous     string        // optional: the VP id chosen last time, for hysteresis
}

// ErrInvalidMeasurement is wrapped by every error about a measurement the engine refuses (negative, NaN,
// infinite or absurdly large RTT, bad coordinates, empty VP id).
var ErrInvalidMeasurement = errors.New("triangulate: invalid measurement")

// ErrNoMeasurements is returned for a target without a single measurement.
var ErrNoMeasurements = errors.New("triangulate: no measurements")

// ValidateMeasurement reports why m is unusable under cfg, naming the field and its value, or nil.
func ValidateMeasurement(cfg *Config, m Measurement) error {
	switch {
	case m.VP == "":
		return fmt.Errorf("%w: vp is empty (rtt_ms %v)", ErrInvalidMeasurement, m.RTTMs)
	case math.IsNaN(m.RTTMs) || math.IsInf(m.RTTMs, 0):
		return fmt.Errorf("%w: vp %q: rtt_ms = %v is not a finite number", ErrInvalidMeasurement, m.VP, m.RTTMs)
	case m.RTTMs < 0:
		return fmt.Errorf("%w: vp %q: rtt_ms = %v is negative", ErrInvalidMeasurement, m.VP, m.RTTMs)
	case m.RTTMs > cfg.MaxRTTMs:
		return fmt.Errorf("%w: vp %q: rtt_ms = %v is above the %v ms limit", ErrInvalidMeasurement, m.VP, m.RTTMs, cfg.MaxRTTMs)
	case !m.Point.Valid():
		return fmt.Errorf("%w: vp %q: location (%v, %v) is not a valid lat/lon", ErrInvalidMeasurement, m.VP, m.Point.Lat, m.Point.Lon)
	}
	return nil
}

// normalize validates in.Measurements into e.ms, merging duplicate VPs (minimum RTT wins, its location with
// it). It reports whether any duplicate was merged.
func (e *Engine) normalize(in []Measurement) (dup bool, err error) {
	if len(in) == 0 {
		return false, ErrNoMeasurements
	}
	e.ms = e.ms[:0]
	clear(e.seen)
	var errs []error
	for _, m := range in {
		if verr := ValidateMeasurement(&e.cfg, m); verr != nil {
			errs = append(errs, verr)
			continue
		}
		if i, ok := e.seen[m.VP]; ok {
			dup = true
			if m.RTTMs < e.ms[i].RTTMs {
				e.ms[i] = m
			}
			continue
		}
		e.seen[m.VP] = len(e.ms)
		e.ms = append(e.ms, m)
	}
	if len(errs) > 0 {
		return dup, errors.Join(errs...)
	}
	return dup, nil
}
