package triangulate

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/shareddata"
	"github.com/vantage-edge/vantage/placement"
)

// The WonderProxy matrix as a ground truth (shared/data/wonderproxy-pings-2020): 246 servers in 246 cities,
// min RTT of every directed pair. Each server in turn is the target; the others are the vantage points/PoPs.
// The raw coordinates are used as published, flaws included (220 La Ceiba mislocated, 98/99 swapped): the
// engine has to cope with them as VPs. Their own locations are not ground truth, so they are left out of the
// location error statistics.

// wpBadTruth are the servers whose published coordinates are wrong (see SOURCE.md).
var wpBadTruth = map[int]bool{220: true, 98: true, 99: true}

type wpWorld struct {
	wp   *geo.WonderProxy
	ids  []int
	pops []geo.PoP // one per server, Code = decimal id
	vec  []vec3
	rtt  [][]float64 // rtt[i][j]: min RTT from server i (VP) to server j (target), NaN if unmeasured
	// byDist[i]: the calibration pairs of VP i (to every other server j), sorted by distance.
	byDist [][]Pair
}

func wpLoad(tb testing.TB) *wpWorld {
	tb.Helper()
	w, err := wpOnce(shareddata.Path(tb, "wonderproxy-pings-2020"))
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

var (
	wpMu    sync.Mutex
	wpCache *wpWorld
)

func wpOnce(dir string) (*wpWorld, error) {
	wpMu.Lock()
	defer wpMu.Unlock()
	if wpCache != nil {
		return wpCache, nil
	}
	wp, err := geo.LoadWonderProxy(dir)
	if err != nil {
		return nil, err
	}
	w := &wpWorld{wp: wp}
	for _, s := range wp.Servers {
		w.ids = append(w.ids, s.ID)
		w.pops = append(w.pops, geo.PoP{Code: strconv.Itoa(s.ID), City: s.Title, Country: s.Country, Point: s.Point})
		w.vec = append(w.vec, toVec(s.Point))
	}
	n := len(w.ids)
	w.rtt = make([][]float64, n)
	w.byDist = make([][]Pair, n)
	for i := range n {
		w.rtt[i] = make([]float64, n)
		for j := range n {
			w.rtt[i][j] = math.NaN()
			if i == j {
				continue
			}
			if v, ok := wp.MinRTT(w.ids[i], w.ids[j]); ok {
				w.rtt[i][j] = v
				w.byDist[i] = append(w.byDist[i], Pair{VP: w.pops[i].Code, Peer: w.pops[j].Code,
					DistanceKm: geo.DistanceKm(w.pops[i].Point, w.pops[j].Point), RTTMs: v})
			}
		}
		FitBestline(w.byDist[i]) // sorts by distance once; leave-one-out fits then sort sorted data
	}
	wpCache = w
	return w, nil
}

// measurements returns the measurements of target j from every other server (except those in skip).
func (w *wpWorld) measurements(j int, skip func(i int) bool) []Measurement {
	var ms []Measurement
	for i := range w.ids {
		if i == j || (skip != nil && skip(i)) || math.IsNaN(w.rtt[i][j]) {
			continue
		}
		ms = append(ms, Measurement{VP: w.pops[i].Code, Point: w.pops[i].Point, RTTMs: w.rtt[i][j]})
	}
	return ms
}

// allPairs returns every calibration pair not involving server index skip (-1: none).
func (w *wpWorld) allPairs(skip int) []Pair {
	var out []Pair
	code := ""
	if skip >= 0 {
		code = w.pops[skip].Code
	}
	for i := range w.ids {
		if i == skip {
			continue
		}
		for _, p := range w.byDist[i] {
			if p.Peer != code {
				out = append(out, p)
			}
		}
	}
	return out
}

// calibrationWithout fits the per-VP bestlines with target j held out of everything (leave-one-out): the
// mesh is built only from the other servers.
func (w *wpWorld) calibrationWithout(j int, cc CalibrationConfig) *Calibration {
	if j < 0 {
		return w.calibrationWithoutSet(nil, cc)
	}
	return w.calibrationWithoutSet([]int{j}, cc)
}

// calibrationWithoutSet fits the per-VP lines with every server of out (indices) held out of everything: the
// mesh of an anycast target's world, whose instances are those servers.
func (w *wpWorld) calibrationWithoutSet(out []int, cc CalibrationConfig) *Calibration {
	held := map[string]bool{}
	for _, j := range out {
		held[w.pops[j].Code] = true
	}
	var viol []Pair
	for i := range w.ids {
		if held[w.pops[i].Code] {
			continue
		}
		for _, p := range w.byDist[i] {
			if !held[p.Peer] && violatesFibre(p.DistanceKm, p.RTTMs, cc.ToleranceKm) {
				viol = append(viol, p)
			}
		}
	}
	c := &Calibration{PerVP: map[string]Line{}, Suspects: FindMislocated(viol, cc.SuspectViolations, cc.ToleranceKm)}
	suspect := map[string]bool{}
	for _, s := range c.Suspects {
		suspect[s.VP] = true
	}
	buf := make([]Pair, 0, len(w.ids))
	for i := range w.ids {
		if held[w.pops[i].Code] || suspect[w.pops[i].Code] {
			continue
		}
		buf = buf[:0]
		for _, p := range w.byDist[i] {
			if !held[p.Peer] && !suspect[p.Peer] {
				buf = append(buf, p)
			}
		}
		if l, n := cc.fit(buf); n >= cc.MinPairs {
			c.PerVP[w.pops[i].Code] = l
		}
	}
	return c
}

func percentile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// distanceModel is the planner's latency model in these tests: geo.DefaultModel is fitted on this very matrix
// and would leak the held-out target's RTTs, so the planner ranks by the fibre bound inflated by the typical
// path inflation instead.
func distanceModel(a, b geo.Point) float64 {
	return 0.5 + geo.MinRTTMs(geo.DistanceKm(a, b))*2
}

func TestWonderProxyPlacementRegret(t *testing.T) {
	w := wpLoad(t)
	var regrets, probedShare []float64
	worst, worstAt := 0.0, ""
	for j := range w.ids {
		bestTrue := math.Inf(1)
		var pops []geo.PoP
		for i := range w.ids {
			if i != j {
				pops = append(pops, w.pops[i])
				if v := w.rtt[i][j]; v < bestTrue {
					bestTrue = v
				}
			}
		}
		cfg := DefaultPlannerConfig()
		cfg.Engine.Calibration = w.calibrationWithout(j, DefaultCalibrationConfig())
		cfg.Engine.Model = distanceModel
		p, err := NewPlanner(cfg)
		if err != nil {
			t.Fatal(err)
		}
		budget := p.Budget(len(pops))
		used := 0
		var ms []Measurement
		probe := func(codes []string) {
			for _, c := range codes {
				used++
				i := idxOf(w, c)
				if v := w.rtt[i][j]; !math.IsNaN(v) {
					ms = append(ms, Measurement{VP: c, Point: w.pops[i].Point, RTTMs: v})
				}
			}
		}
		probe(p.First(pops))
		for used < budget {
			next := p.Next(pops, ms, budget-used)
			if len(next) == 0 {
				break
			}
			probe(next)
		}
		if used > budget {
			t.Fatalf("target %s: probed %d PoPs, budget %d", w.pops[j].Code, used, budget)
		}
		e, _ := NewEngine(cfg.Engine)
		r, err := e.Decide(Input{Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		regret := w.rtt[idxOf(w, r.Best.PoP)][j] - bestTrue
		regrets = append(regrets, regret)
		probedShare = append(probedShare, float64(used)/float64(len(pops)))
		if regret > worst {
			worst, worstAt = regret, w.pops[j].City
		}
		if regret > 20 && testing.Verbose() {
			bi := 0
			for i := range w.ids {
				if i != j && w.rtt[i][j] == bestTrue {
					bi = i
				}
			}
			probed := false
			for _, m := range ms {
				probed = probed || m.VP == w.pops[bi].Code
			}
			t.Logf("regret %.1f: target %s %s; chose %s %s (%.1f ms); best %s %s (%.1f ms, %.0f km from target, probed %v); estimate %v r=%.0f (err %.0f km), probes %d, flags %v",
				regret, w.pops[j].Code, w.pops[j].City, r.Best.PoP, w.pops[idxOf(w, r.Best.PoP)].City, r.Best.RTTMs,
				w.pops[bi].Code, w.pops[bi].City, bestTrue, geo.DistanceKm(w.pops[bi].Point, w.pops[j].Point), probed,
				r.Location.Point, r.Location.RadiusKm, geo.DistanceKm(r.Location.Point, w.pops[j].Point), used, r.Flags)
		}
	}
	med, p95 := percentile(regrets, .5), percentile(regrets, .95)
	t.Logf("placement regret over %d WonderProxy targets, planner budget %.0f%% of %d PoPs: median %.2f ms, p90 %.2f ms, p95 %.2f ms, max %.1f ms (%s); PoPs probed: median %.1f%%, max %.1f%%",
		len(regrets), DefaultPlannerConfig().BudgetFraction*100, len(w.ids)-1, med, percentile(regrets, .9), p95, worst, worstAt,
		percentile(probedShare, .5)*100, percentile(probedShare, 1)*100)
	if med > 1 || p95 > 5 {
		t.Errorf("regret median %.2f ms (want <= 1), p95 %.2f ms (want <= 5)", med, p95)
	}
}

func idxOf(w *wpWorld, code string) int {
	id, _ := strconv.Atoi(code)
	return slices.Index(w.ids, id)
}

// TestWonderProxyAnycastDetection measures the production configuration (ProductionConfig) on synthetic anycast
// targets (2-6 WonderProxy servers answering as one address: each VP sees its nearest) and on every server as a
// unicast target. The calibration of every target's world is fitted on a mesh without the target's servers.
func TestWonderProxyAnycastDetection(t *testing.T) {
	w := wpLoad(t)
	rng := rand.New(rand.NewPCG(20200719, 5))
	const targets = 600
	tp, countOK, countOKOnePass, countOKNoOutliers, countOKNoPrune := 0, 0, 0, 0, 0
	undetectedPairs := 0   // targets of two instances judged unicast: one site reported, within +-1 if read so
	var countOKHalf [2]int // by target number: even, odd
	byK := map[int][2]int{}
	for ti := range targets {
		k := 2 + rng.IntN(5)
		inst := rng.Perm(len(w.ids))[:k]
		var ms []Measurement
		for i := range w.ids {
			if slices.Contains(inst, i) {
				continue
			}
			best := math.Inf(1)
			for _, j := range inst {
				if v := w.rtt[i][j]; v < best {
					best = v
				}
			}
			if !math.IsInf(best, 1) {
				ms = append(ms, Measurement{VP: w.pops[i].Code, Point: w.pops[i].Point, RTTMs: best})
			}
		}
		cfg := ProductionConfig(w.calibrationWithoutSet(inst, DefaultCalibrationConfig()))
		e, err := NewEngine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.Decide(Input{Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		c := byK[k]
		c[1]++
		if r.Verdict == placement.VerdictAnycast {
			tp++
			c[0]++
			if d := len(r.Instances) - k; d >= -1 && d <= 1 {
				countOK++
				countOKHalf[ti%2]++
			}
		} else if k == 2 && r.Verdict == placement.VerdictUnicast {
			undetectedPairs++
		}
		byK[k] = c
		// The count without some of the production configuration's steps, for comparison.
		countWithin1 := func(cfg Config) bool {
			e, _ := NewEngine(cfg)
			r, err := e.Decide(Input{Measurements: ms})
			if err != nil {
				t.Fatal(err)
			}
			d := len(r.Instances) - k
			return r.Verdict == placement.VerdictAnycast && d >= -1 && d <= 1
		}
		// iGreedy's single pass.
		cfg.IterateInstances = false
		if countWithin1(cfg) {
			countOKOnePass++
		}
		// Iterating, but with the verdict's outliers kept out of the count (before CountOutliers).
		cfg.IterateInstances, cfg.CountOutliers = true, false
		if countWithin1(cfg) {
			countOKNoOutliers++
		}
		// Everything but the pruning of the iteration's redundant instances (before PruneInstances).
		cfg.CountOutliers, cfg.PruneInstances = true, false
		if countWithin1(cfg) {
			countOKNoPrune++
		}
	}
	fp := 0
	for j := range w.ids {
		ej, _ := NewEngine(ProductionConfig(w.calibrationWithout(j, DefaultCalibrationConfig())))
		r, err := ej.Decide(Input{Measurements: w.measurements(j, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict == placement.VerdictAnycast {
			fp++
			t.Logf("false positive: %s %s (%v)", w.pops[j].Code, w.pops[j].City, r.Notes())
		}
	}
	tpr := float64(tp) / targets
	fpr := float64(fp) / float64(len(w.ids))
	t.Logf("anycast: production configuration, mesh without the target's servers: %d synthetic targets (2-6 WonderProxy cities each): true-positive rate %.3f; per instance count k: %v (detected, total)", targets, tpr, byK)
	t.Logf("anycast: instance count within +-1: %.1f%% of the targets (%d of %d; even-numbered targets %d, odd %d; %.1f%% of the detected); iGreedy's single pass: %.1f%%; without CountOutliers: %.1f%%; without PruneInstances: %.1f%% (%d)",
		100*float64(countOK)/targets, countOK, targets, countOKHalf[0], countOKHalf[1], 100*float64(countOK)/float64(max(tp, 1)),
		100*float64(countOKOnePass)/targets, 100*float64(countOKNoOutliers)/targets, 100*float64(countOKNoPrune)/targets, countOKNoPrune)
	t.Logf("anycast: not counted above: %d targets of 2 instances judged unicast (one site reported); read as a count of 1, the figure would be %.1f%% (%d)",
		undetectedPairs, 100*float64(countOK+undetectedPairs)/targets, countOK+undetectedPairs)
	t.Logf("unicast: %d WonderProxy servers (leave-one-out): false-positive rate %.3f (%d)", len(w.ids), fpr, fp)
	// The goals are TPR >= 0.95, FPR <= 0.01 and counts within +-1 for 90 % of the targets; the count bound
	// below is what the engine holds today (bench/ENGINE.md), so that a regression fails.
	if tpr < 0.95 || fpr > 0.01 {
		t.Errorf("anycast TPR %.3f (want >= 0.95), FPR %.3f (want <= 0.01)", tpr, fpr)
	}
	if float64(countOK) < 0.876*targets {
		t.Errorf("instance count within +-1 for only %d of %d targets", countOK, targets)
	}
	if countOK <= countOKNoOutliers {
		t.Errorf("counting with the verdict's outliers finds the instance count within +-1 for %d targets, without them %d: no gain", countOK, countOKNoOutliers)
	}
	if countOK <= countOKNoPrune {
		t.Errorf("pruning the iteration's redundant instances finds the instance count within +-1 for %d targets, without it %d: no gain", countOK, countOKNoPrune)
	}
	if countOK <= countOKOnePass {
		t.Errorf("iterating finds the instance count within +-1 for %d targets, the single pass for %d: no gain", countOK, countOKOnePass)
	}
}

func TestWonderProxyGeolocation(t *testing.T) {
	w := wpLoad(t)
	plainCfg := DefaultConfig()
	plainCfg.AnycastMarginKm = 0 // plain CBG: the bare 2/3 c disks, nothing widened
	plainCfg.CalibrationSlackKm = 0
	plain, err := NewEngine(plainCfg)
	if err != nil {
		t.Fatal(err)
	}
	var errPlain, errCal, radPlain, radCal []float64
	var halfPlain, halfCal [2][]float64 // by server id: even, odd (CalibrationScale was chosen on the even ids)
	inside := 0
	for j := range w.ids {
		if wpBadTruth[w.ids[j]] {
			continue
		}
		ms := w.measurements(j, nil)
		e, err := NewEngine(ProductionConfig(w.calibrationWithout(j, DefaultCalibrationConfig())))
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.Decide(Input{Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		rp, err := plain.Decide(Input{Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		if !r.HasLoc || !rp.HasLoc {
			t.Logf("target %s %s not scored: calibrated %v %v, plain %v %v", w.pops[j].Code, w.pops[j].City, r.Verdict, r.Flags, rp.Verdict, rp.Flags)
			continue
		}
		ec := geo.DistanceKm(r.Location.Point, w.pops[j].Point)
		if ec <= r.Location.RadiusKm {
			inside++
		}
		errCal = append(errCal, ec)
		errPlain = append(errPlain, geo.DistanceKm(rp.Location.Point, w.pops[j].Point))
		halfCal[w.ids[j]%2] = append(halfCal[w.ids[j]%2], ec)
		halfPlain[w.ids[j]%2] = append(halfPlain[w.ids[j]%2], errPlain[len(errPlain)-1])
		radCal = append(radCal, r.Location.RadiusKm)
		radPlain = append(radPlain, rp.Location.RadiusKm)
	}
	mp, mc := percentile(errPlain, .5), percentile(errCal, .5)
	t.Logf("geolocation, leave-one-out over %d WonderProxy servers (220, 98, 99 have wrong published coordinates: not scored)", len(errCal))
	t.Logf("  plain CBG (2/3 c disks):           median error %4.0f km, p75 %4.0f, p90 %4.0f; median region radius %4.0f km", mp, percentile(errPlain, .75), percentile(errPlain, .9), percentile(radPlain, .5))
	t.Logf("  production (ProductionConfig, per-VP lines from a mesh without the target): median error %4.0f km (%.0f%% below plain CBG), p75 %4.0f, p90 %4.0f; median region radius %4.0f km; truth inside the region for %d/%d",
		mc, 100*(1-mc/mp), percentile(errCal, .75), percentile(errCal, .9), percentile(radCal, .5), inside, len(errCal))
	for h, name := range []string{"even", "odd"} {
		t.Logf("  %s server ids (%d): plain CBG median %4.0f km, production %4.0f km (%.0f%% below)", name, len(halfCal[h]),
			percentile(halfPlain[h], .5), percentile(halfCal[h], .5), 100*(1-percentile(halfCal[h], .5)/percentile(halfPlain[h], .5)))
	}
	if float64(len(errCal)) < 0.95*float64(len(w.ids)-3) {
		t.Errorf("both located only %d of %d targets", len(errCal), len(w.ids)-3)
	}
	if !(mc < mp) {
		t.Errorf("calibrated median error %.0f km is not better than plain CBG's %.0f km", mc, mp)
	}
	// The goal is 25 % below plain CBG (issue 16); the bound below is what the engine holds today
	// (bench/ENGINE.md), so that a regression fails.
	if mc > 0.76*mp {
		t.Errorf("calibrated median error %.0f km is only %.0f%% below plain CBG's %.0f km, want >= 24%%", mc, 100*(1-mc/mp), mp)
	}
}

// La Ceiba (server 220) is listed in Honduras but answers Europe and North America far faster than light in
// fibre allows from there. The mesh calibration must find it, and the engine must not trust it, with or
// without a calibration.
func TestWonderProxyLaCeibaViolatesSpeedOfLight(t *testing.T) {
	w := wpLoad(t)
	sus := FindMislocated(w.allPairs(-1), DefaultCalibrationConfig().SuspectViolations, 0)
	t.Logf("mesh suspects: %+v", sus)
	if len(sus) == 0 || sus[0].VP != "220" || sus[0].Violations < 100 {
		t.Fatalf("FindMislocated = %+v, want server 220 first with > 100 violations", sus)
	}
	// Without a calibration the engine only knows what one target's vector says: with MaxOutliers = 1 it
	// copes with one mislocated VP, so that case leaves out Belfast (204), the second server FindMislocated
	// reports, to make 220 the single flawed VP. The calibrated engine knows both suspects and sees them all.
	for _, tc := range []struct {
		name string
		cal  bool
		skip int
	}{{"no_calibration_220_only", false, 204}, {"calibrated_all_vps", true, -1}} {
		t.Run(tc.name, func(t *testing.T) {
			flagged, conflicting, anycast := 0, 0, 0
			for j := range w.ids {
				if w.ids[j] == 220 {
					continue
				}
				cfg := DefaultConfig()
				if tc.cal {
					cfg.Calibration = w.calibrationWithout(j, DefaultCalibrationConfig())
				}
				e, err := NewEngine(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if w.ids[j] == tc.skip {
					continue
				}
				skip := func(i int) bool { return w.ids[i] == tc.skip }
				ms := w.measurements(j, skip)
				r, err := e.Decide(Input{Measurements: ms})
				if err != nil {
					t.Fatal(err)
				}
				// Does 220's disk miss the disk of a VP close to the target (the evidence)?
				var m220 Measurement
				for _, m := range ms {
					if m.VP == "220" {
						m220 = m
					}
				}
				d220 := makeDisk(0, toVec(m220.Point), geo.MaxDistanceKm(m220.RTTMs)).withMargin(cfg.AnycastMarginKm)
				misses := false
				for _, m := range ms {
					d := makeDisk(0, toVec(m.Point), geo.MaxDistanceKm(m.RTTMs)).withMargin(cfg.AnycastMarginKm)
					misses = misses || disjoint(&d220, &d)
				}
				if !misses {
					continue
				}
				conflicting++
				if r.Verdict == placement.VerdictAnycast {
					// Then 220 must not be the cause: the verdict stands without it.
					anycast++
					r2, err := e.Decide(Input{Measurements: w.measurements(j, func(i int) bool { return w.ids[i] == 220 || skip(i) })})
					if err != nil {
						t.Fatal(err)
					}
					if r2.Verdict != placement.VerdictAnycast {
						t.Errorf("target %s %s: anycast only because of VP 220 (%v)", w.pops[j].Code, w.pops[j].City, r.Notes())
					}
					continue
				}
				for _, v := range r.Violations {
					if v.VP == "220" && r.Flags.Has(FlagSpeedOfLight) {
						flagged++
						break
					}
				}
			}
			t.Logf("%s: 220's disk misses another VP's by > %.0f km for %d targets; judged unicast with 220 reported as a speed-of-light violation: %d; anycast for another reason: %d",
				tc.name, DefaultConfig().AnycastMarginKm, conflicting, flagged, anycast)
			if conflicting < 30 || flagged+anycast != conflicting || anycast > 2 {
				t.Errorf("220 flagged for %d of %d conflicting targets (anycast verdicts %d)", flagged, conflicting, anycast)
			}
		})
	}
	// 220 as the target: its measured location is far from the published one, which lies outside the region.
	j := idxOf(w, "220")
	cfg := DefaultConfig()
	cfg.Calibration = w.calibrationWithout(j, DefaultCalibrationConfig())
	e, _ := NewEngine(cfg)
	r, err := e.Decide(Input{Measurements: w.measurements(j, nil)})
	if err != nil {
		t.Fatal(err)
	}
	off := geo.DistanceKm(r.Location.Point, w.pops[j].Point)
	t.Logf("target 220: %v, located at %.2f,%.2f (radius %.0f km), %.0f km from the published La Ceiba coordinates; best VP %s (%s)",
		r.Verdict, r.Location.Lat, r.Location.Lon, r.Location.RadiusKm, off, r.Best.PoP, w.pops[idxOf(w, r.Best.PoP)].City)
	if !r.HasLoc || off <= r.Location.RadiusKm {
		t.Errorf("target 220: the published location is inside the estimated region (%.0f km <= %.0f km)", off, r.Location.RadiusKm)
	}
}
