package triangulate

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/vantage-edge/vantage/geo"
)

// Line is a CBG bestline (Gueye et al., "Constraint-based geolocation of Internet hosts", IEEE/ACM ToN 2006):
// RTT = SlopeMsPerKm x distance + InterceptMs, the lower envelope of a vantage point's (distance, RTT)
// pairs. A measured RTT then bounds the distance to (RTT - InterceptMs) / SlopeMsPerKm. The zero Line means
// "no calibration": the plain fibre bound.
type Line struct {
	SlopeMsPerKm float64 // >= FibreLine().SlopeMsPerKm: no path is faster than light in fibre
	InterceptMs  float64 // >= 0: the fixed cost (last mile, serialisation, host) of every RTT
}

// FibreLine returns the speed-of-light-in-fibre baseline: slope 1/geo.FibreKmPerMs, intercept 0.
func FibreLine() Line { return Line{SlopeMsPerKm: 1 / geo.FibreKmPerMs} }

// IsZero reports whether l is the zero Line.
func (l Line) IsZero() bool { return l == Line{} }

// RadiusKm returns the largest distance in km compatible with rttMs under l (0 when rttMs is below the
// intercept). The zero Line is the fibre bound.
func (l Line) RadiusKm(rttMs float64) float64 {
	if l.SlopeMsPerKm <= 0 {
		return geo.MaxDistanceKm(rttMs)
	}
	return max(rttMs-l.InterceptMs, 0) / l.SlopeMsPerKm
}

// Pair is one calibration observation: the RTT between vantage point VP and a peer at a known distance.
type Pair struct {
	VP, Peer   string
	DistanceKm float64
	RTTMs      float64
}

// MeshPairs returns the calibration pairs of a mesh of sites measuring each other (PoPs probing PoPs): one
// Pair per ordered (src, dst) for which rtt reports a value, with VP = src's code, Peer = dst's code and their
// great-circle distance. Feed it to FitCalibration.
func MeshPairs(sites []geo.PoP, rtt func(src, dst string) (float64, bool)) []Pair {
	var out []Pair
	for _, a := range sites {
		for _, b := range sites {
			if a.Code == b.Code {
				continue
			}
			if v, ok := rtt(a.Code, b.Code); ok {
				out = append(out, Pair{VP: a.Code, Peer: b.Code, DistanceKm: geo.DistanceKm(a.Point, b.Point), RTTMs: v})
			}
		}
	}
	return out
}

// violatesFibre reports whether an RTT is faster than light in fibre over the distance, with a tolerance of
// geolocation error (tolKm of the distance may be coordinate error).
func violatesFibre(distKm, rttMs, tolKm float64) bool {
	return geo.MaxDistanceKm(rttMs)+tolKm < distKm
}

// FitBestline fits the CBG bestline to pts (distance km, RTT ms), solving the CBG linear programme exactly:
// minimise the summed vertical distance of the points above the line, subject to every point lying on or above
// it, slope >= the fibre baseline and intercept >= 0. Points that are themselves faster than light in fibre
// (a mislocated peer) are ignored. It sorts pts in place and reports the number of points used; with fewer than
// two usable points it returns FibreLine().
func FitBestline(pts []Pair) (Line, int) {
	m0 := FibreLine().SlopeMsPerKm
	slices.SortFunc(pts, func(a, b Pair) int {
		return cmp.Or(cmp.Compare(a.DistanceKm, b.DistanceKm), cmp.Compare(a.RTTMs, b.RTTMs))
	})
	// Lower convex hull (Andrew's monotone chain) of the usable points, and the sums of the objective.
	var hull [64]Pair
	h := hull[:0]
	var sumD float64
	n := 0
	mMax := math.Inf(1)
	for _, p := range pts {
		if p.DistanceKm < 0 || p.RTTMs < 0 || violatesFibre(p.DistanceKm, p.RTTMs, 0) {
			continue
		}
		n++
		sumD += p.DistanceKm
		if p.DistanceKm > 0 {
			mMax = min(mMax, p.RTTMs/p.DistanceKm)
		}
		if len(h) > 0 && h[len(h)-1].DistanceKm == p.DistanceKm {
			continue // same distance, larger RTT (sorted): not on the lower hull
		}
		for len(h) >= 2 {
			a, b := h[len(h)-2], h[len(h)-1]
			// Drop b if it is not strictly below the segment a-p.
			if (b.DistanceKm-a.DistanceKm)*(p.RTTMs-a.RTTMs)-(b.RTTMs-a.RTTMs)*(p.DistanceKm-a.DistanceKm) <= 0 {
				h = h[:len(h)-1]
				continue
			}
			break
		}
		h = append(h, p)
	}
	if n < 2 || math.IsInf(mMax, 1) {
		return FibreLine(), n
	}
	mMax = max(mMax, m0)
	// g(m) = m*sumD + n*b(m), with b(m) = min over hull vertices of rtt - m*d, is concave and piecewise linear:
	// its maximum is at m0, at mMax, or at the slope of a hull edge in between.
	eval := func(m float64) (float64, float64) {
		b := math.Inf(1)
		for _, v := range h {
			b = min(b, v.RTTMs-m*v.DistanceKm)
		}
		b = max(b, 0)
		return m*sumD + float64(n)*b, b
	}
	bestM := m0
	bestG, bestB := eval(m0)
	try := func(m float64) {
		if m < m0 || m > mMax {
			return
		}
		if g, b := eval(m); g > bestG {
			bestM, bestG, bestB = m, g, b
		}
	}
	try(mMax)
	for i := 1; i < len(h); i++ {
		try((h[i].RTTMs - h[i-1].RTTMs) / (h[i].DistanceKm - h[i-1].DistanceKm))
	}
	return Line{SlopeMsPerKm: bestM, InterceptMs: bestB}, n
}

// FitOriginLine fits the steepest line through the origin that stays below every point: slope = the smallest
// RTT per km among pts (never below the fibre baseline), intercept 0. It trusts no fixed cost, so it is more
// conservative than FitBestline for short RTTs, where a bestline fitted on far pairs shrinks disks too much.
// Points faster than light in fibre are ignored. It reports the number of points used.
func FitOriginLine(pts []Pair) (Line, int) {
	m := math.Inf(1)
	n := 0
	for _, p := range pts {
		if p.DistanceKm <= 0 || p.RTTMs < 0 || violatesFibre(p.DistanceKm, p.RTTMs, 0) {
			continue
		}
		n++
		m = min(m, p.RTTMs/p.DistanceKm)
	}
	if n == 0 {
		return FibreLine(), 0
	}
	return Line{SlopeMsPerKm: max(m, FibreLine().SlopeMsPerKm)}, n
}

// Calibration maps vantage points to their bestlines. It is immutable once built and safe for concurrent use.
type Calibration struct {
	// Global is the line for vantage points without one of their own; the zero Line is the fibre bound.
	Global Line
	// PerVP holds each calibrated vantage point's own bestline.
	PerVP map[string]Line
	// Suspects are the vantage points whose listed location is inconsistent with their own RTTs (see
	// FindMislocated); they get no line of their own.
	Suspects []Suspect
}

// Line returns vp's bestline, the Global one when vp has none, the fibre bound when c is nil.
func (c *Calibration) Line(vp string) Line {
	if c == nil {
		return Line{}
	}
	if l, ok := c.PerVP[vp]; ok {
		return l
	}
	return c.Global
}

// Suspect reports whether vp is one of c's Suspects (false for a nil c).
func (c *Calibration) Suspect(vp string) bool {
	if c == nil {
		return false
	}
	for i := range c.Suspects {
		if c.Suspects[i].VP == vp {
			return true
		}
	}
	return false
}

// CalibrationConfig tunes FitCalibration.
type CalibrationConfig struct {
	// MinPairs is the least number of usable pairs a vantage point needs for a line of its own (CBG used
	// the other landmarks of a ~40-landmark set). Default 10.
	MinPairs int
	// SuspectViolations is how many pairs faster than light in fibre make a vantage point a suspect. Default 5:
	// one bad pair is more likely a bad peer; a VP bad against many peers is mislocated itself.
	SuspectViolations int
	// ToleranceKm is the coordinate error allowed before a pair counts as a violation. Default 0.
	ToleranceKm float64
	// Global, when true, also fits one line over every pair for vantage points without their own. The
	// lower envelope of thousands of pairs is within noise of the fibre bound, so it is off by default.
	Global bool
	// Origin, when true (the default), fits lines through the origin (FitOriginLine) instead of CBG
	// bestlines. On the WonderProxy matrix (leave-one-out) bestlines exclude the true location for 40 % of
	// the disks under 5 ms of RTT (their intercept is fitted on far pairs), lines through the origin for 9 %;
	// the location error is the same, the anycast test's false verdicts far fewer.
	Origin bool
}

// DefaultCalibrationConfig returns the defaults documented on CalibrationConfig.
func DefaultCalibrationConfig() CalibrationConfig {
	return CalibrationConfig{MinPairs: 10, SuspectViolations: 5, Origin: true}
}

// Suspect is a vantage point whose location contradicts its RTTs.
type Suspect struct {
	VP         string
	Violations int     // pairs faster than light in fibre involving VP
	WorstKm    float64 // the largest amount by which a pair's distance exceeds the fibre bound
}

// FindMislocated returns the vantage points whose listed location contradicts their RTTs, worst first. A pair
// faster than light in fibre over the listed distance (beyond toleranceKm) counts against both of its ends;
// the VP with the most violations, if at least minViolations, is a suspect, its pairs are set aside and the
// counts are redone (as geo's table cleaning does), so the correct peers of a VP listed in the wrong place
// (WonderProxy's La Ceiba, id 220) are not blamed for its violations.
func FindMislocated(pairs []Pair, minViolations int, toleranceKm float64) []Suspect {
	var viol []Pair
	for _, p := range pairs {
		if violatesFibre(p.DistanceKm, p.RTTMs, toleranceKm) {
			viol = append(viol, p)
		}
	}
	flagged := map[string]bool{}
	var out []Suspect
	for {
		count := map[string]*Suspect{}
		add := func(vp string, excess float64) {
			s := count[vp]
			if s == nil {
				s = &Suspect{VP: vp}
				count[vp] = s
			}
			s.Violations++
			s.WorstKm = max(s.WorstKm, excess)
		}
		for _, p := range viol {
			if flagged[p.VP] || flagged[p.Peer] {
				continue
			}
			excess := p.DistanceKm - geo.MaxDistanceKm(p.RTTMs)
			add(p.VP, excess)
			if p.Peer != "" && p.Peer != p.VP {
				add(p.Peer, excess)
			}
		}
		var worst *Suspect
		for _, s := range count {
			if worst == nil || s.Violations > worst.Violations || s.Violations == worst.Violations && s.VP < worst.VP {
				worst = s
			}
		}
		if worst == nil || worst.Violations < max(minViolations, 1) {
			return out
		}
		flagged[worst.VP] = true
		out = append(out, *worst)
	}
}

// FitCalibration fits a bestline per vantage point from inter-VP pairs (the PoP mesh probing itself, or the
// WonderProxy matrix). Pairs are grouped by their VP field: pass both directions to calibrate both ends.
// Suspects (FindMislocated) get no line; pairs with a suspect peer are left out of everyone's fit.
func FitCalibration(pairs []Pair, cc CalibrationConfig) (*Calibration, error) {
	if cc.MinPairs < 2 {
		return nil, fmt.Errorf("%w: CalibrationConfig.MinPairs = %d, want >= 2", ErrConfig, cc.MinPairs)
	}
	if cc.SuspectViolations < 1 {
		return nil, fmt.Errorf("%w: CalibrationConfig.SuspectViolations = %d, want >= 1", ErrConfig, cc.SuspectViolations)
	}
	c := &Calibration{PerVP: map[string]Line{}}
	c.Suspects = FindMislocated(pairs, cc.SuspectViolations, cc.ToleranceKm)
	suspect := map[string]bool{}
	for _, s := range c.Suspects {
		suspect[s.VP] = true
	}
	byVP := map[string][]Pair{}
	var all []Pair
	for _, p := range pairs {
		if suspect[p.VP] || suspect[p.Peer] {
			continue
		}
		if math.IsNaN(p.RTTMs) || math.IsNaN(p.DistanceKm) {
			return nil, fmt.Errorf("%w: pair %s-%s: rtt_ms %v, distance_km %v", ErrInvalidMeasurement, p.VP, p.Peer, p.RTTMs, p.DistanceKm)
		}
		byVP[p.VP] = append(byVP[p.VP], p)
		if cc.Global {
			all = append(all, p)
		}
	}
	for vp, pts := range byVP {
		if l, n := cc.fit(pts); n >= cc.MinPairs {
			c.PerVP[vp] = l
		}
	}
	if cc.Global && len(all) >= cc.MinPairs {
		c.Global, _ = cc.fit(all)
	}
	return c, nil
}

func (cc CalibrationConfig) fit(pts []Pair) (Line, int) {
	if cc.Origin {
		return FitOriginLine(pts)
	}
	return FitBestline(pts)
}
