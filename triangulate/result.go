package triangulate

import (
	"fmt"
	"strings"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// Flags are facts about a decision worth logging or showing; Result.Notes spells them out.
type Flags uint32

// The flags.
const (
	FlagKeptPrevious    Flags = 1 << iota // hysteresis kept Input.Previous over a slightly better PoP
	FlagTie                               // several PoPs were within Config.TieMs of the best
	FlagDuplicateVP                       // duplicate vantage points were merged (minimum RTT kept)
	FlagTooFew                            // fewer than Config.MinVPs vantage points: verdict unknown
	FlagSpeedOfLight                      // a vantage point broke the speed-of-light bound (see Violations)
	FlagInconsistent                      // the disks have no common point even without the worst VP
	FlagCalibrationMiss                   // calibrated disks had no common point; location uses the fibre bound
	FlagDNSReplicated                     // vantage points got disjoint A/AAAA answer sets
	FlagDNSAnycast                        // vantage points got different CHAOS id.server answers
	FlagEstimated                         // best PoP from the latency model, not from measurements
	FlagPriorMismatch                     // region mode: the measured location excludes the region's coordinates
	FlagPriorFar                          // Input.Prior lies far outside the measured region (see PriorOffKm)
)

var flagNames = []string{
	"kept-previous", "tie", "duplicate-vp", "too-few", "speed-of-light", "inconsistent",
	"calibration-miss", "dns-replicated", "dns-anycast", "estimated", "prior-mismatch", "prior-far",
}

// Has reports whether all of g are set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

// String lists the set flags, comma-separated, e.g. "tie,speed-of-light".
func (f Flags) String() string {
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// Location is a location estimate: the centre of the feasible region and the radius, in km, of the
// smallest disk about it that holds the region.
type Location struct {
	geo.Point
	RadiusKm float64
}

// Instance is one anycast instance: a location inside the disk of the vantage point that sees it.
type Instance struct {
	VP       string    // the vantage point whose (smallest) disk bounds the instance
	Point    geo.Point // where the instance is placed: the city, else the VP itself
	City     string    // the Config.Cities entry's City the instance is placed in, "" if none is inside the disk
	PoP      string    // that entry's Code
	RadiusKm float64   // the bounding disk's radius, km
}

// Violation is a vantage point whose disk contradicts the others': a mislocated VP or a bad measurement.
type Violation struct {
	VP        string
	Conflicts int // number of vantage points whose disks it misses
}

// Result is the engine's answer for one target. The slices alias the Engine's buffers and are valid until
// its next call: Clone before keeping a Result.
type Result struct {
	Target     string
	Verdict    placement.Verdict
	Status     placement.Status      // StatusSuccess (unicast), StatusUnsupportedApplication (anycast, replicated), StatusNone (unknown)
	Best       placement.Candidate   // the chosen PoP (after hysteresis) and its RTT, ms
	Candidates []placement.Candidate // ranked by RTT, best first, at most Config.MaxCandidates; Best may be behind Candidates[0] when hysteresis held
	Confidence float64               // in [0, 1]
	Location   Location              // zero when no estimate (anycast, replicated)
	HasLoc     bool                  // whether Location holds an estimate
	Instances  []Instance            // anycast instances, when Verdict is anycast
	Violations []Violation           // vantage points left out for breaking the speed-of-light bound
	Flags      Flags
	VPs        int // distinct valid vantage points
	// PriorOffKm is how far Input.Prior lies from the location estimate's centre, km, when FlagPriorFar is set;
	// PriorSource is its Source.
	PriorOffKm  float64
	PriorSource string
}

// Clone returns a deep copy of r that does not alias the engine.
func (r Result) Clone() Result {
	r.Candidates = append([]placement.Candidate(nil), r.Candidates...)
	r.Instances = append([]Instance(nil), r.Instances...)
	r.Violations = append([]Violation(nil), r.Violations...)
	return r
}

// Apply copies the engine's part of a placement decision into d: BestPoP (empty when the verdict is not
// placeable: the application runs where requests enter), a copy of Candidates, Verdict, Status, Estimated and
// Confidence. The scheduler's fields (App, Mode, Target, Version, times) are left alone.
func (r *Result) Apply(d *placement.Decision) {
	d.BestPoP = ""
	if r.Verdict.Placeable() {
		d.BestPoP = r.Best.PoP
	}
	d.Candidates = append(d.Candidates[:0:0], r.Candidates...)
	d.Verdict = r.Verdict
	d.Status = r.Status
	d.Estimated = r.Flags.Has(FlagEstimated)
	d.Confidence = r.Confidence
}

// Notes returns human-readable notes on the flags, e.g. why a VP was distrusted.
func (r *Result) Notes() []string {
	var out []string
	add := func(f Flags, s string, args ...any) {
		if r.Flags.Has(f) {
			out = append(out, fmt.Sprintf(s, args...))
		}
	}
	add(FlagKeptPrevious, "kept previous PoP %s: the new best was not better by the hysteresis margins", r.Best.PoP)
	add(FlagTie, "several PoPs tied within the tie tolerance; chose %s deterministically", r.Best.PoP)
	add(FlagDuplicateVP, "duplicate vantage points merged, keeping the minimum RTT")
	add(FlagTooFew, "only %d vantage points: too few to judge unicast/anycast", r.VPs)
	for _, v := range r.Violations {
		if r.Flags.Has(FlagSpeedOfLight) {
			out = append(out, fmt.Sprintf("vantage point %s breaks the speed-of-light bound against %d others (mislocated VP or bad measurement): ignored", v.VP, v.Conflicts))
		}
	}
	add(FlagInconsistent, "the speed-of-light disks have no common point: measurements too noisy to judge")
	add(FlagCalibrationMiss, "calibrated disks had no common point; location from the plain fibre bound")
	add(FlagDNSReplicated, "vantage points received disjoint A/AAAA answer sets: replicated (geo-DNS)")
	add(FlagDNSAnycast, "vantage points received different CHAOS id.server answers: anycast")
	add(FlagEstimated, "best PoP chosen from the latency model, not measured")
	add(FlagPriorMismatch, "the measured location excludes the configured region's coordinates: check the region hint")
	add(FlagPriorFar, "%s places the target %.0f km from the measured location (radius %.0f km): the database is likely wrong for it; the measurements decide",
		r.PriorSource, r.PriorOffKm, r.Location.RadiusKm)
	return out
}
