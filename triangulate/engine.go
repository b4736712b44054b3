package triangulate

import (
	"fmt"
	"math"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// Engine turns one target's measurements into a Result. It does no I/O and keeps scratch buffers between
// calls, so a decision allocates nothing in the steady state. An Engine is not safe for concurrent use: give
// each goroutine its own (they are cheap) or guard it.
type Engine struct {
	cfg    Config
	cities []geo.PoP
	cityV  []vec3
	cityW  []float64 // each city's weight: the catalogue cities within CityWeightKm of it (a population proxy)

	// scratch, reused by every call
	vps        map[string]*vpEntry // vantage points seen, by id (bounded by maxVPCache)
	gen        uint64              // calls so far: marks the entries seen in this one
	vecs       []vec3              // unit vectors of ms
	ms         []Measurement
	fibre      []disk // speed-of-light disks, indexed like ms
	test       []disk // the disks of the anycast test: fibre, or testBuf when calibrated
	testBuf    []disk
	countBuf   []disk
	saved      []int
	keys       []uint64
	calR       []float64 // calibrated radius per measurement (the fibre radius without a line)
	testR      []float64 // anycast test radius per measurement
	calibrated bool      // whether any measurement has a calibrated line
	cal        []disk    // calibrated disks, sorted by radius
	region     []disk    // the disks of the last successful location (aliases cal)
	sub        []disk
	picked     []int
	conflicts  []int
	excluded   []bool
	trial      []bool
	dropped    []dropped
	feasible   []vec3
	top        []int
	cands      []placement.Candidate
	instances  []Instance
	instV      []vec3 // the instances' points
	unexpl     []bool // iterate: disks no instance explains (or set aside)
	violations []Violation
}

// NewEngine returns an Engine with cfg, or an error wrapping ErrConfig.
func NewEngine(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, vps: map[string]*vpEntry{}}
	e.cities = cfg.Cities
	if e.cities == nil {
		e.cities = geo.PoPs()
	}
	e.cityV = make([]vec3, len(e.cities))
	for i, c := range e.cities {
		e.cityV[i] = toVec(c.Point)
	}
	e.cityW = cityWeights(e.cityV)
	return e, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Decide judges one target: the best PoP (with hysteresis against in.Previous), a confidence, the ranked
// candidates, the verdict (unicast, anycast, replicated or unknown), a location estimate for unicast targets
// and the anycast instances otherwise. Invalid measurements are an error wrapping ErrInvalidMeasurement that
// names each; an empty input is ErrNoMeasurements. The Result aliases the engine's buffers (see Result).
func (e *Engine) Decide(in Input) (Result, error) {
	var r Result
	r.Target = in.Target
	e.region = nil // only a location made by this call counts (an anycast verdict makes none)
	dup, err := e.normalize(in.Measurements)
	if err != nil {
		if in.Target != "" {
			err = fmt.Errorf("target %q: %w", in.Target, err)
		}
		return r, err
	}
	if dup {
		r.Flags |= FlagDuplicateVP
	}
	r.VPs = len(e.ms)
	e.best(&r, in.Previous)
	e.verdict(&r)
	if len(in.DNS) > 0 {
		e.dnsEvidence(&r, in.DNS)
	}
	if in.Prior != nil && r.Verdict == placement.VerdictUnicast && r.HasLoc {
		e.checkPrior(&r, in.Prior)
	}
	switch r.Verdict {
	case placement.VerdictUnicast:
		r.Status = placement.StatusSuccess
	case placement.VerdictAnycast, placement.VerdictReplicated:
		r.Status = placement.StatusUnsupportedApplication
		r.HasLoc, r.Location = false, Location{}
	}
	r.Confidence = e.confidence(&r)
	return r, nil
}

// best fills Best and Candidates from e.ms: the lowest RTT, ties within TieMs broken towards prev and then the
// smallest VP id, then tailscale netcheck's hysteresis against prev.
func (e *Engine) best(r *Result, prev string) {
	bi := 0
	for i := 1; i < len(e.ms); i++ {
		if less(&e.ms[i], &e.ms[bi]) {
			bi = i
		}
	}
	minRTT := e.ms[bi].RTTMs
	prevIdx := -1
	if prev != "" {
		if i, ok := e.lookup(prev); ok {
			prevIdx = i
		}
	}
	// Ties: every VP within TieMs of the minimum is as good as the best; prefer prev, then the smallest id.
	choice, ties := bi, 0
	for i := range e.ms {
		if e.ms[i].RTTMs-minRTT <= e.cfg.TieMs {
			ties++
			if i == prevIdx {
				choice = i
			} else if choice != prevIdx && e.ms[i].VP < e.ms[choice].VP {
				choice = i
			}
		}
	}
	if ties > 1 {
		r.Flags |= FlagTie
	}
	// Hysteresis: keep prev unless the new choice is better by both margins.
	if prevIdx >= 0 && choice != prevIdx {
		old, cur := e.ms[prevIdx].RTTMs, e.ms[choice].RTTMs
		if old-cur < e.cfg.SwitchAbsMs || cur > old*(1-e.cfg.SwitchRel) {
			choice = prevIdx
			r.Flags |= FlagKeptPrevious
		}
	}
	r.Best = placement.Candidate{PoP: e.ms[choice].VP, RTTMs: e.ms[choice].RTTMs}

	// Top-k candidates by (RTT, VP): one pass, inserting into a sorted list of at most k (usually one
	// comparison against its last entry per measurement).
	k := min(e.cfg.MaxCandidates, len(e.ms))
	e.top = e.top[:0]
	for i := range e.ms {
		m := &e.ms[i]
		if len(e.top) == k && !less(m, &e.ms[e.top[k-1]]) {
			continue
		}
		if len(e.top) < k {
			e.top = append(e.top, i)
		}
		j := len(e.top) - 1
		for ; j > 0 && less(m, &e.ms[e.top[j-1]]); j-- {
			e.top[j] = e.top[j-1]
		}
		e.top[j] = i
	}
	e.cands = e.cands[:0]
	for _, i := range e.top {
		e.cands = append(e.cands, placement.Candidate{PoP: e.ms[i].VP, RTTMs: e.ms[i].RTTMs})
	}
	r.Candidates = e.cands
}

// less orders measurements by RTT, then VP id.
func less(a, b *Measurement) bool {
	return a.RTTMs < b.RTTMs || (a.RTTMs == b.RTTMs && a.VP < b.VP)
}

// confidence is coverage x separation x consistency, each in [0, 1]:
//   - coverage: the share of Config.ConfidentVPs vantage points measured;
//   - separation: 0.5 + 0.5 x (gap to the runner-up / hysteresis margin at this RTT), 1 when the target is
//     co-located with the best VP (Config.ColocatedMs);
//   - consistency: 0.7 when a VP was set aside for breaking the speed-of-light bound or calibration missed,
//     0.5 for an unknown verdict.
func (e *Engine) confidence(r *Result) float64 {
	cov := min(1, float64(r.VPs)/float64(e.cfg.ConfidentVPs))
	sep := 1.0
	if r.Best.RTTMs > e.cfg.ColocatedMs {
		second := math.Inf(1)
		for _, c := range r.Candidates {
			if c.PoP != r.Best.PoP && c.RTTMs >= r.Best.RTTMs {
				second = c.RTTMs
				break
			}
		}
		if len(r.Candidates) > 0 && r.Candidates[0].PoP != r.Best.PoP {
			second = r.Best.RTTMs // hysteresis held a PoP that is not the fastest
		}
		margin := max(e.cfg.SwitchAbsMs, e.cfg.SwitchRel*r.Best.RTTMs, 1e-9)
		sep = 0.5 + 0.5*min(1, max(0, second-r.Best.RTTMs)/margin)
	}
	cons := 1.0
	if r.Flags&(FlagSpeedOfLight|FlagCalibrationMiss) != 0 {
		cons = 0.7
	}
	if r.Verdict == placement.VerdictUnknown {
		cons = min(cons, 0.5)
	}
	c := cov * sep * cons
	return math.Round(min(max(c, 0), 1)*1000) / 1000
}

// PriorToleranceKm is how far outside the measured region (beyond the prior's own accuracy radius) a prior may
// lie before it is noted as far off: the region is conservative already, and a database's city-level point is
// good to tens of km.
const PriorToleranceKm = 200

// checkPrior sets FlagPriorFar when prior lies outside the feasible region of the location estimate by more
// than its accuracy and PriorToleranceKm. It only adds a note.
func (e *Engine) checkPrior(r *Result, prior *Prior) {
	if math.IsNaN(prior.Lat) || math.IsNaN(prior.Lon) || e.inRegion(toVec(prior.Point), prior.AccuracyKm+PriorToleranceKm) {
		return
	}
	r.Flags |= FlagPriorFar
	r.PriorOffKm = geo.DistanceKm(prior.Point, r.Location.Point)
	r.PriorSource = prior.Source
	if r.PriorSource == "" {
		r.PriorSource = "the prior"
	}
}
