package triangulate

import (
	"fmt"
	"math"
	"slices"

	"github.com/vantage-edge/vantage/geo"
)

// PlannerConfig tunes a Planner.
type PlannerConfig struct {
	// First is how many well-spread PoPs to probe first (farthest-point sampling). Eight cover every
	// continent of a global catalogue, so the first disks already bound the target to a region. Default 8.
	First int
	// Step is how many PoPs each Next call adds. Default 4.
	Step int
	// BudgetFraction is the share of the PoP list a target may be probed from in all (First included),
	// BudgetMin the least number whatever the share and BudgetMax, if > 0, the most. Budget(n) = min(n,
	// max(BudgetMin, floor(BudgetFraction x n)), BudgetMax). Defaults 0.15, 16 and 0 (no cap). BudgetMin
	// leaves two Steps after First: with one, a small fleet's last step alternates exploit and explore picks
	// and can miss the nearest PoP once real measurements carry a fraction of a ms of overhead (a Frankfurt
	// database placed at Paris on the 26-PoP emulated WAN; TestPlannerOnTheEmulatedWAN's overhead cases).
	BudgetFraction float64
	BudgetMin      int
	BudgetMax      int
	// Engine is the engine configuration used to locate the target between steps (calibration included).
	// Zero value: DefaultConfig().
	Engine Config
	// RegionScale and RegionSlackKm, when RegionScale > 0, replace Engine's CalibrationScale and
	// CalibrationSlackKm for the region the planner searches between steps. The planner's rules (the bound
	// pick, boundMinGainMs) were set on disks of the calibrated line + 50 km; the location estimate's wider
	// disks (Config.CalibrationScale 1.1) put more far PoPs in the region and raise the p95 placement regret on
	// WonderProxy from 0.22 to 2.14 ms (bench/ENGINE.md). Defaults 1 and 50: the planner's region as it was
	// tuned; the decision's reported location uses Engine's own values.
	RegionScale   float64
	RegionSlackKm float64
}

// DefaultPlannerConfig returns the defaults documented on PlannerConfig.
func DefaultPlannerConfig() PlannerConfig {
	return PlannerConfig{First: 8, Step: 4, BudgetFraction: 0.15, BudgetMin: 16, Engine: DefaultConfig(), RegionScale: 1, RegionSlackKm: 50}
}

// Planner decides which PoPs should probe a target: a well-spread set first, then PoPs near the location
// estimate, far from everything probed, or (when the probes' RTTs allow a much closer one) lowest by the
// triangle-inequality bound, so a target is placed well while probing a small share of all PoPs. It is deterministic (same
// inputs, same plan) and not safe for concurrent use (it keeps an Engine and buffers).
type Planner struct {
	cfg    PlannerConfig
	engine *Engine
	model  func(a, b geo.Point) float64

	pairs   *pairRTT
	vecs    []vec3
	idx     []int // the measurements' indices in pairs
	minDist []float64
	probed  map[string]bool
	scored  []scoredPoP
	out     []string
}

type scoredPoP struct {
	i     int     // index in the PoP list
	pi    int     // index in Planner.pairs
	score float64 // modelled RTT from the location estimate
	bound float64 // triangle-inequality lower bound on its RTT: max over probes of RTT - model(PoP, VP)
}

// NewPlanner returns a Planner, or an error wrapping ErrConfig naming the bad field.
func NewPlanner(cfg PlannerConfig) (*Planner, error) {
	if cfg.Engine.GridN == 0 {
		cfg.Engine = DefaultConfig()
	}
	switch {
	case cfg.First < 1:
		return nil, fmt.Errorf("%w: PlannerConfig.First = %d, want >= 1", ErrConfig, cfg.First)
	case cfg.Step < 1:
		return nil, fmt.Errorf("%w: PlannerConfig.Step = %d, want >= 1", ErrConfig, cfg.Step)
	case !(cfg.BudgetFraction > 0 && cfg.BudgetFraction <= 1):
		return nil, fmt.Errorf("%w: PlannerConfig.BudgetFraction = %v, want in (0, 1]", ErrConfig, cfg.BudgetFraction)
	case cfg.BudgetMin < 1:
		return nil, fmt.Errorf("%w: PlannerConfig.BudgetMin = %d, want >= 1", ErrConfig, cfg.BudgetMin)
	case cfg.BudgetMax < 0:
		return nil, fmt.Errorf("%w: PlannerConfig.BudgetMax = %d, want >= 0", ErrConfig, cfg.BudgetMax)
	}
	if cfg.RegionScale > 0 {
		cfg.Engine.CalibrationScale, cfg.Engine.CalibrationSlackKm = cfg.RegionScale, cfg.RegionSlackKm
	}
	e, err := NewEngine(cfg.Engine)
	if err != nil {
		return nil, err
	}
	m := e.model()
	return &Planner{cfg: cfg, engine: e, model: m, pairs: newPairRTT(m), probed: map[string]bool{}}, nil
}

// Budget returns how many PoPs of a list of n a target may be probed from in all.
func (p *Planner) Budget(n int) int {
	b := min(n, max(p.cfg.BudgetMin, int(p.cfg.BudgetFraction*float64(n))))
	if p.cfg.BudgetMax > 0 {
		b = min(b, p.cfg.BudgetMax)
	}
	return b
}

// First returns the PoP codes to probe a new target from first: PlannerConfig.First PoPs (at most the budget)
// chosen by farthest-point sampling, starting from the PoP nearest the centre of mass of the list, ties
// broken by code. The result is a fresh slice.
func (p *Planner) First(pops []geo.PoP) []string { return p.FirstFrom(pops, nil) }

// FirstFrom is First with a prior location of the target (a GeoIP answer; nil: none): the sampling starts from
// the PoP nearest the prior, so the first disk is likely small, and spreads from there as First does. A wrong
// prior costs nothing but the order: the PoPs are as well spread.
func (p *Planner) FirstFrom(pops []geo.PoP, prior *geo.Point) []string {
	k := min(p.cfg.First, p.Budget(len(pops)), len(pops))
	if k == 0 {
		return nil
	}
	p.vecs = p.vecs[:0]
	var sum vec3
	for _, q := range pops {
		v := toVec(q.Point)
		p.vecs = append(p.vecs, v)
		sum = sum.add(v)
	}
	centre := sum.unit()
	if prior != nil && !math.IsNaN(prior.Lat) && !math.IsNaN(prior.Lon) {
		centre = toVec(*prior)
	}
	start := 0
	for i := range pops {
		if d, b := p.vecs[i].dot(centre), p.vecs[start].dot(centre); d > b || d == b && pops[i].Code < pops[start].Code {
			start = i
		}
	}
	p.minDist = slices.Grow(p.minDist[:0], len(pops))[:len(pops)]
	for i := range p.minDist {
		p.minDist[i] = math.Inf(1)
	}
	out := make([]string, 0, k)
	next := start
	for len(out) < k {
		out = append(out, pops[next].Code)
		// Dot products stand in for distances: larger dot, nearer.
		far := -1
		for i := range pops {
			d := 1 - p.vecs[i].dot(p.vecs[next]) // monotone in distance
			p.minDist[i] = min(p.minDist[i], d)
			if far < 0 || p.minDist[i] > p.minDist[far] || p.minDist[i] == p.minDist[far] && pops[i].Code < pops[far].Code {
				far = i
			}
		}
		if p.minDist[far] <= 0 {
			break // every PoP left is at an already chosen place
		}
		next = far
	}
	return out
}

// boundMinGainMs is the least RTT a bound pick must promise to save over the best so far (see Next).
const boundMinGainMs = 20

// minBound returns the lowest triangle-inequality bound of the scored PoPs not taken.
func (p *Planner) minBound(taken []bool) float64 {
	b := math.Inf(1)
	for j, c := range p.scored {
		if !taken[j] {
			b = min(b, c.bound)
		}
	}
	return b
}

// nearestEstimate returns the index in p.scored of the PoP not taken, with a bound under maxBound, whose
// modelled RTT from the estimate is lowest (ties: the lower code), or -1.
func (p *Planner) nearestEstimate(pops []geo.PoP, taken []bool, maxBound float64) int {
	pick := -1
	for j, c := range p.scored {
		if !taken[j] && c.bound < maxBound && (pick < 0 || c.score < p.scored[pick].score ||
			c.score == p.scored[pick].score && pops[c.i].Code < pops[p.scored[pick].i].Code) {
			pick = j
		}
	}
	return pick
}

// Next returns up to min(PlannerConfig.Step, budgetLeft) more PoP codes to probe, given the measurements so
// far (their VP ids are PoP codes of pops), or nil when none is worth probing (or the measurements are
// invalid: see ValidateMeasurement). A PoP is worth probing when it
// could still beat the best RTT measured: it lies in the target's feasible region (the intersection of the
// disks), or near enough to it that the speed-of-light bound does not rule it out. Picks alternate between
// exploiting (the lowest modelled RTT, Config.Model, from the location estimate) and exploring (the feasible
// PoP farthest from every PoP probed so far, which splits the region fastest), ties by code. With no
// measurements it is First. The result is a fresh slice.
func (p *Planner) Next(pops []geo.PoP, sofar []Measurement, budgetLeft int) []string {
	if budgetLeft <= 0 {
		return nil
	}
	if len(sofar) == 0 {
		return p.First(pops)
	}
	clear(p.probed)
	for _, m := range sofar {
		p.probed[m.VP] = true
	}
	e := p.engine
	r, err := e.Decide(Input{Measurements: sofar})
	if err != nil {
		return nil
	}
	bestRTT := r.Best.RTTMs
	bestPt := sofar[0].Point
	for _, m := range sofar {
		if m.VP == r.Best.PoP {
			bestPt = m.Point
		}
	}
	centre, radius := bestPt, geo.MaxDistanceKm(bestRTT)
	if r.HasLoc {
		centre, radius = r.Location.Point, r.Location.RadiusKm
	}
	cv := toVec(centre)

	// Candidates: PoPs not probed that could still beat the best; their distance to the nearest probed PoP.
	// The model RTTs between PoPs, and their vectors, come from p.pairs: they are the same every round.
	p.pairs.reserve(len(pops) + len(sofar))
	p.idx = p.idx[:0]
	p.vecs = p.vecs[:0]
	for _, m := range sofar {
		i := p.pairs.index(m.VP, m.Point)
		p.idx = append(p.idx, i)
		p.vecs = append(p.vecs, p.pairs.vecs[i])
	}
	p.scored = p.scored[:0]
	p.minDist = p.minDist[:0]
	var inRegion []bool
	for i, q := range pops {
		if p.probed[q.Code] {
			continue
		}
		qi := p.pairs.index(q.Code, q.Point)
		qv := p.pairs.vecs[qi]
		in := e.inRegion(qv, 0)
		if !in && geo.MinRTTMs(distKm(qv, cv)-radius) >= bestRTT {
			continue // cannot beat the best, wherever the target is in its region
		}
		nearest := math.Inf(1)
		for _, v := range p.vecs {
			nearest = min(nearest, 1-qv.dot(v))
		}
		bound := 0.0 // an RTT is never negative, whatever the model says
		for k, m := range sofar {
			bound = max(bound, m.RTTMs-p.pairs.rtt(qi, p.idx[k]))
		}
		p.scored = append(p.scored, scoredPoP{i: i, pi: qi, score: p.model(q.Point, centre), bound: bound})
		p.minDist = append(p.minDist, nearest)
		inRegion = append(inRegion, in)
	}
	if len(p.scored) == 0 {
		return nil
	}
	k := min(p.cfg.Step, budgetLeft, len(p.scored))
	out := make([]string, 0, k)
	taken := make([]bool, len(p.scored))
	for len(out) < k {
		pick := -1
		kind := len(out) % 2 // 0 exploit, 1 explore
		// The last pick of a step goes to the triangle-inequality bound when it says some PoP could be four
		// times closer than the best so far, and at least boundMinGainMs closer: when every probe so far is
		// far, the location estimate, made of wide disks, can be far off too (a target in São Paulo seen
		// first from Ashburn at 119 ms and Santiago at 156 ms). Near targets are left to exploit/explore:
		// there the bound, low for any PoP far from every probe, would displace a better pick (Frankfurt,
		// first seen from London at 14 ms). TestPlannerOnTheEmulatedWAN and the WonderProxy regret test
		// (p95 0.99 ms before, 0.22 ms with it) set these thresholds.
		if len(out) == k-1 && k > 1 {
			if b := p.minBound(taken); b < bestRTT/4 && bestRTT-b >= boundMinGainMs {
				kind = 2
			}
		}
		switch kind {
		case 0:
			// Exploit: the lowest modelled RTT from the estimate.
			pick = p.nearestEstimate(pops, taken, math.Inf(1))
		case 2:
			// Bound: among the PoPs whose triangle-inequality bound is under a quarter of the best RTT (a PoP
			// as far from a probe as that probe's RTT could be right beside the target, whatever the location
			// estimate says), the one nearest the estimate.
			pick = p.nearestEstimate(pops, taken, bestRTT/4)
		default:
			// Explore: the feasible PoP farthest from everything probed (in-region first).
			for j, c := range p.scored {
				if taken[j] {
					continue
				}
				if pick < 0 || inRegion[j] && !inRegion[pick] ||
					inRegion[j] == inRegion[pick] && (p.minDist[j] > p.minDist[pick] ||
						p.minDist[j] == p.minDist[pick] && pops[c.i].Code < pops[p.scored[pick].i].Code) {
					pick = j
				}
			}
		}
		taken[pick] = true
		out = append(out, pops[p.scored[pick].i].Code)
		// What was just picked counts as probed for the exploration distances.
		pv := p.pairs.vecs[p.scored[pick].pi]
		for j, c := range p.scored {
			p.minDist[j] = min(p.minDist[j], 1-p.pairs.vecs[c.pi].dot(pv))
		}
	}
	return out
}
