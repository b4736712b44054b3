package triangulate

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/vantage-edge/vantage/geo"
)

// bruteBestline solves the CBG programme by trying every line through two points, and every line through one
// point with the fibre slope or zero intercept: the optimum of a 2-variable LP is at such a vertex.
func bruteBestline(pts []Pair) (Line, float64) {
	m0 := FibreLine().SlopeMsPerKm
	var use []Pair
	for _, p := range pts {
		if !violatesFibre(p.DistanceKm, p.RTTMs, 0) {
			use = append(use, p)
		}
	}
	obj := func(l Line) float64 {
		s := 0.0
		for _, p := range use {
			r := p.RTTMs - l.SlopeMsPerKm*p.DistanceKm - l.InterceptMs
			if r < -1e-9 {
				return math.Inf(1)
			}
			s += r
		}
		return s
	}
	best, bestObj := Line{}, math.Inf(1)
	try := func(l Line) {
		if l.SlopeMsPerKm < m0-1e-12 || l.InterceptMs < -1e-9 {
			return
		}
		if o := obj(l); o < bestObj {
			best, bestObj = l, o
		}
	}
	for i, a := range use {
		try(Line{m0, a.RTTMs - m0*a.DistanceKm})
		if a.DistanceKm > 0 {
			try(Line{a.RTTMs / a.DistanceKm, 0})
		}
		for _, b := range use[i+1:] {
			if b.DistanceKm != a.DistanceKm {
				m := (b.RTTMs - a.RTTMs) / (b.DistanceKm - a.DistanceKm)
				try(Line{m, a.RTTMs - m*a.DistanceKm})
			}
		}
	}
	return best, bestObj
}

func TestFitBestlineMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for trial := range 200 {
		n := 3 + rng.IntN(40)
		pts := make([]Pair, n)
		for i := range pts {
			d := rng.Float64() * 8000
			pts[i] = Pair{DistanceKm: d, RTTMs: geo.MinRTTMs(d)*(1+rng.Float64()*2) + rng.Float64()*5}
		}
		if trial%10 == 0 { // a speed-of-light violation must be ignored
			pts = append(pts, Pair{DistanceKm: 5000, RTTMs: 10})
		}
		want, wantObj := bruteBestline(pts)
		got, used := FitBestline(append([]Pair(nil), pts...))
		gotObj := 0.0
		for _, p := range pts {
			if violatesFibre(p.DistanceKm, p.RTTMs, 0) {
				continue
			}
			r := p.RTTMs - got.SlopeMsPerKm*p.DistanceKm - got.InterceptMs
			if r < -1e-6 {
				t.Fatalf("trial %d: point %+v below the line %+v", trial, p, got)
			}
			gotObj += r
		}
		if used != n || math.Abs(gotObj-wantObj) > 1e-6*max(1, wantObj) {
			t.Fatalf("trial %d: FitBestline %+v (objective %v, %d used), brute force %+v (objective %v)", trial, got, gotObj, used, want, wantObj)
		}
	}
}

func TestFitOriginLine(t *testing.T) {
	pts := []Pair{{DistanceKm: 1000, RTTMs: 25}, {DistanceKm: 2000, RTTMs: 30}, {DistanceKm: 100, RTTMs: 0.5}} // the last is too fast: ignored
	l, n := FitOriginLine(pts)
	if n != 2 || math.Abs(l.SlopeMsPerKm-0.015) > 1e-12 || l.InterceptMs != 0 {
		t.Fatalf("FitOriginLine = %+v, %d", l, n)
	}
	if r := l.RadiusKm(15); math.Abs(r-1000) > 1e-9 {
		t.Fatalf("RadiusKm(15) = %v, want 1000", r)
	}
	if r := (Line{}).RadiusKm(10); r != geo.MaxDistanceKm(10) {
		t.Fatalf("zero line radius %v, want the fibre bound", r)
	}
}

// TestFitCalibrationFindsTheMislocatedVP builds a phantom mesh where one VP lies about its location.
func TestFitCalibrationFindsTheMislocatedVP(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	world := RandomPoPs(rng, 30)
	liar := world[7].Code
	claimed := map[string]geo.Point{}
	for _, p := range world {
		claimed[p.Code] = p.Point
	}
	claimed[liar] = geo.Point{Lat: -world[7].Lat, Lon: world[7].Lon + 150 - 360*math.Floor((world[7].Lon+150+180)/360)}
	pc := PhantomConfig{Inflation: 1.3, BaseMs: 0.3}
	truth := map[string]geo.Point{}
	listed := make([]geo.PoP, len(world))
	for i, p := range world {
		truth[p.Code] = p.Point
		listed[i] = geo.PoP{Code: p.Code, Point: claimed[p.Code]}
	}
	pairs := MeshPairs(listed, func(src, dst string) (float64, bool) {
		return pc.RTTMs(rng, truth[src], truth[dst]), src != "P000" || dst != "P001" // one pair unmeasured
	})
	if len(pairs) != len(world)*(len(world)-1)-1 {
		t.Fatalf("MeshPairs returned %d pairs", len(pairs))
	}
	cal, err := FitCalibration(pairs, DefaultCalibrationConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(cal.Suspects) != 1 || cal.Suspects[0].VP != liar || !cal.Suspect(liar) {
		t.Fatalf("suspects %+v, want only %s", cal.Suspects, liar)
	}
	if _, ok := cal.PerVP[liar]; ok || len(cal.PerVP) != len(world)-1 {
		t.Fatalf("%d lines, liar has one: %v", len(cal.PerVP), ok)
	}
	for vp, l := range cal.PerVP {
		if l.SlopeMsPerKm < FibreLine().SlopeMsPerKm || l.InterceptMs < 0 {
			t.Fatalf("VP %s: line %+v faster than light", vp, l)
		}
	}
	if _, err := FitCalibration(pairs, CalibrationConfig{MinPairs: 1, SuspectViolations: 1}); err == nil {
		t.Fatal("MinPairs 1 accepted")
	}
	// A calibrated engine sets the liar aside on every target it conflicts on, and never trusts it.
	cfg := DefaultConfig()
	cfg.Calibration = cal
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		target := world[i].Point
		var ms []Measurement
		for _, v := range world {
			if v.Code != world[i].Code {
				ms = append(ms, Measurement{VP: v.Code, Point: claimed[v.Code], RTTMs: pc.RTTMs(rng, v.Point, target)})
			}
		}
		r, err := e.Decide(Input{Target: strconv.Itoa(i), Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Verdict) != "unicast" || !r.HasLoc {
			t.Errorf("target %d: %v %v", i, r.Verdict, r.Flags)
		} else if d := geo.DistanceKm(r.Location.Point, target); d > r.Location.RadiusKm+100 {
			t.Errorf("target %d: truth %.0f km from the estimate, radius %.0f", i, d, r.Location.RadiusKm)
		}
		for _, v := range r.Violations {
			if v.VP != liar {
				t.Errorf("target %d: %s reported, only %s lies", i, v.VP, liar)
			}
		}
	}
}
