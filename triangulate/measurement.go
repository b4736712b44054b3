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
	// Prior is optional: where a database (GeoIP) says the target is. It never decides anything: a prior far
	// outside the measured region becomes a note (FlagPriorFar), and the Planner probes near it first.
	Prior *Prior
}

// Prior is a target's location according to a database: a hint, never the verdict (GeoIP databases are often
// wrong for servers, and an anycast address has no one location).
type Prior struct {
	geo.Point
	AccuracyKm float64 // the database's accuracy radius, km (0: unknown)
	Source     string  // what says so, e.g. "GeoIP"
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

// vpEntry is what the engine remembers about a vantage point id across calls: the call that last saw it
// (for duplicate detection without clearing a map per call), its index in e.ms in that call, and its
// location's unit vector (vantage points rarely move: two sines and cosines per VP are a tenth of a decision).
type vpEntry struct {
	gen  uint64
	idx  int
	p    geo.Point
	v    vec3
	hasV bool
}

// maxVPCache bounds the vantage point memory: PoPs and probes are a few thousand at most; a stream of
// ever-new ids only costs a reset now and then.
const maxVPCache = 1 << 14

// begin starts a call over up to n vantage points: a new generation and no measurements. A full cache is
// reset here, before the call, never during it: the call's own entries detect its duplicates.
func (e *Engine) begin(n int) {
	if len(e.vps)+n > maxVPCache {
		clear(e.vps)
	}
	e.gen++
	e.ms = e.ms[:0]
}

// slot returns the entry of vp, creating it, and whether vp was already seen in this call (e.gen).
func (e *Engine) slot(vp string) (*vpEntry, bool) {
	ent := e.vps[vp]
	if ent == nil {
		ent = &vpEntry{}
		e.vps[vp] = ent
	}
	return ent, ent.gen == e.gen
}

// vecOf returns the unit vector of p, cached in ent.
func (ent *vpEntry) vecOf(p geo.Point) vec3 {
	if !ent.hasV || ent.p != p {
		ent.p, ent.v, ent.hasV = p, toVec(p), true
	}
	return ent.v
}

// lookup returns the index in e.ms of vp in the current call.
func (e *Engine) lookup(vp string) (int, bool) {
	if ent := e.vps[vp]; ent != nil && ent.gen == e.gen {
		return ent.idx, true
	}
	return 0, false
}

// normalize validates in into e.ms (and their unit vectors into e.vecs), merging duplicate VPs (minimum RTT
// wins, its location with it). It reports whether any duplicate was merged.
func (e *Engine) normalize(in []Measurement) (dup bool, err error) {
	if len(in) == 0 {
		return false, ErrNoMeasurements
	}
	e.begin(len(in))
	e.vecs = e.vecs[:0]
	var errs []error
	for _, m := range in {
		if verr := ValidateMeasurement(&e.cfg, m); verr != nil {
			errs = append(errs, verr)
			continue
		}
		ent, seen := e.slot(m.VP)
		if seen {
			dup = true
			if m.RTTMs < e.ms[ent.idx].RTTMs {
				e.ms[ent.idx] = m
				e.vecs[ent.idx] = ent.vecOf(m.Point)
			}
			continue
		}
		ent.gen, ent.idx = e.gen, len(e.ms)
		e.ms = append(e.ms, m)
		e.vecs = append(e.vecs, ent.vecOf(m.Point))
	}
	if len(errs) > 0 {
		return dup, errors.Join(errs...)
	}
	return dup, nil
}
