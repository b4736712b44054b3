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

var loadWorld = sync.OnceValues(func() (*wpWorld, error) { return nil, nil })

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

// calibrationWithout fits the per-VP bestlines with target j held out of everything (leave-one-out).
func (w *wpWorld) calibrationWithout(j int, cc CalibrationConfig) *Calibration {
	code := w.pops[j].Code
	var viol []Pair
	for i := range w.ids {
		if i == j {
			continue
		}
		for _, p := range w.byDist[i] {
			if p.Peer != code && violatesFibre(p.DistanceKm, p.RTTMs, cc.ToleranceKm) {
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
		if i == j || suspect[w.pops[i].Code] {
			continue
		}
		buf = buf[:0]
		for _, p := range w.byDist[i] {
			if p.Peer != code && !suspect[p.Peer] {
				buf = append(buf, p)
			}
		}
		if l, n := FitBestline(buf); n >= cc.MinPairs {
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

func TestWonderProxyExplore(t *testing.T) {
	w := wpLoad(t)
	t.Logf("%d servers", len(w.ids))
	sus := FindMislocated(w.allPairs(-1), 3, 0)
	t.Logf("suspects: %+v", sus)

	plainCfg := DefaultConfig()
	plainCfg.AnycastMarginKm = 0
	plain, _ := NewEngine(plainCfg)
	var errPlain, errCal, radPlain, radCal []float64
	verdicts := map[placement.Verdict]int{}
	inside := 0
	for j := range w.ids {
		ms := w.measurements(j, nil)
		cfg := DefaultConfig()
		cfg.Calibration = w.calibrationWithout(j, DefaultCalibrationConfig())
		e, _ := NewEngine(cfg)
		r, err := e.Decide(Input{Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		verdicts[r.Verdict]++
		if r.Verdict != placement.VerdictUnicast {
			t.Logf("target %s %s: %v flags %v viol %v inst %d", w.pops[j].Code, w.pops[j].City, r.Verdict, r.Flags, r.Violations, len(r.Instances))
		} else if r.Flags.Has(FlagSpeedOfLight) {
			t.Logf("target %s %s: unicast, violations %v", w.pops[j].Code, w.pops[j].City, r.Violations)
		}
		rp, _ := plain.Decide(Input{Measurements: ms})
		if wpBadTruth[w.ids[j]] || !r.HasLoc || !rp.HasLoc {
			continue
		}
		ec := geo.DistanceKm(r.Location.Point, w.pops[j].Point)
		ep := geo.DistanceKm(rp.Location.Point, w.pops[j].Point)
		if ec <= r.Location.RadiusKm {
			inside++
		}
		errCal = append(errCal, ec)
		errPlain = append(errPlain, ep)
		radCal = append(radCal, r.Location.RadiusKm)
		radPlain = append(radPlain, rp.Location.RadiusKm)
	}
	t.Logf("verdicts %v", verdicts)
	t.Logf("plain CBG: median error %.0f km, p90 %.0f, median radius %.0f", percentile(errPlain, .5), percentile(errPlain, .9), percentile(radPlain, .5))
	t.Logf("calibrated: median error %.0f km, p90 %.0f, median radius %.0f, inside %d/%d", percentile(errCal, .5), percentile(errCal, .9), percentile(radCal, .5), inside, len(errCal))
	_ = rand.New
}
