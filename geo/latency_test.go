package geo

import (
	"math"
	"strings"
	"testing"
)

func popPoint(t testing.TB, code string) Point {
	t.Helper()
	p, ok := LookupPoP(code)
	if !ok {
		t.Fatalf("PoP %s missing", code)
	}
	return p.Point
}

func TestDefaultModelRealPairs(t *testing.T) {
	m := DefaultModel()
	tests := []struct {
		a, b         string
		minMs, maxMs float64
	}{
		{"FRA", "LHR", 10, 20},
		{"SYD", "FRA", 250, 300},
		{"EWR", "LHR", 65, 80},
		{"LAX", "EWR", 55, 80},
	}
	for _, tt := range tests {
		t.Run(tt.a+"-"+tt.b, func(t *testing.T) {
			got := m.RTTMs(popPoint(t, tt.a), popPoint(t, tt.b))
			if got < tt.minMs || got > tt.maxMs {
				t.Fatalf("RTTMs(%s, %s) = %.1f ms, want %g-%g", tt.a, tt.b, got, tt.minMs, tt.maxMs)
			}
		})
	}
}

func TestPathInflation(t *testing.T) {
	if got := PathInflation(); got < 1.5 || got > 2.5 {
		t.Fatalf("PathInflation() = %v, want about 2", got)
	}
}

func TestRTTNearbyPoints(t *testing.T) {
	m := DefaultModel()
	fra := popPoint(t, "FRA")
	near := Point{Lat: fra.Lat + 0.09, Lon: fra.Lon} // 10 km north
	got := m.RTTMs(fra, near)
	if got <= 0.5 || got > 1.5 {
		t.Fatalf("RTTMs(FRA, 10 km away) = %v ms, want ~1 ms (> floor 0.5)", got)
	}
	if self := m.RTTMs(fra, fra); self != m.Config().FloorMs {
		t.Fatalf("RTTMs(FRA, FRA) = %v, want the floor %v", self, m.Config().FloorMs)
	}
	if math.IsNaN(got) {
		t.Fatal("NaN")
	}
}

// samplePoints returns deterministic points: all PoPs, regions and a grid over the globe incl. the poles
// and oceans.
func samplePoints() []Point {
	var pts []Point
	for _, p := range PoPs() {
		pts = append(pts, p.Point)
	}
	for _, r := range Regions() {
		pts = append(pts, r.Point)
	}
	for lat := -90.0; lat <= 90; lat += 15 {
		for lon := -180.0; lon < 180; lon += 20 {
			pts = append(pts, Point{lat, lon})
		}
	}
	return pts
}

func TestRTTMsProperties(t *testing.T) {
	m := DefaultModel()
	pts := samplePoints()
	floor := m.Config().FloorMs
	n := 0
	for i, a := range pts {
		for j := i; j < len(pts); j += 7 { // a deterministic subset of the pairs
			b := pts[j]
			ab, ba := m.RTTMs(a, b), m.RTTMs(b, a)
			d := DistanceKm(a, b)
			switch {
			case ab != ba:
				t.Fatalf("asymmetric: RTTMs(%v, %v) = %v, reverse %v", a, b, ab, ba)
			case math.IsNaN(ab) || math.IsInf(ab, 0):
				t.Fatalf("RTTMs(%v, %v) = %v", a, b, ab)
			case ab < floor+MinRTTMs(d)-1e-9:
				t.Fatalf("RTTMs(%v, %v) = %v below the bound %v + %v for %.0f km", a, b, ab, floor, MinRTTMs(d), d)
			case ab > 10*m.FallbackRTTMs(d)+50:
				t.Fatalf("RTTMs(%v, %v) = %v, implausibly above the fallback %v", a, b, ab, m.FallbackRTTMs(d))
			case m.RTTMs(a, b) != ab:
				t.Fatalf("RTTMs(%v, %v) not deterministic", a, b)
			}
			n++
		}
	}
	t.Logf("checked %d pairs", n)
}

// TestRTTMsSmooth walks a point away from a PoP and from a second PoP towards a third in 1 km steps: the
// model must not jump (it interpolates neighbours with weights that fall to zero as they leave the set).
func TestRTTMsSmooth(t *testing.T) {
	m := DefaultModel()
	tests := []struct {
		name         string
		anchor, from string
		to           string
		maxStepMs    float64
	}{
		{"FRA to AMS, seen from LHR", "LHR", "FRA", "AMS", 0.5},
		{"EWR to ORD, seen from SFO", "SFO", "EWR", "ORD", 0.5},
		{"SIN to KUL, seen from SYD", "SYD", "SIN", "KUL", 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			anchor, from, to := popPoint(t, tt.anchor), popPoint(t, tt.from), popPoint(t, tt.to)
			steps := int(DistanceKm(from, to))
			prev := m.RTTMs(anchor, from)
			for s := 1; s <= steps; s++ {
				f := float64(s) / float64(steps)
				p := Point{from.Lat + f*(to.Lat-from.Lat), from.Lon + f*(to.Lon-from.Lon)}
				cur := m.RTTMs(anchor, p)
				if math.Abs(cur-prev) > tt.maxStepMs {
					t.Fatalf("step %d/%d at %v: %.2f -> %.2f ms", s, steps, p, prev, cur)
				}
				prev = cur
			}
		})
	}
}

func TestRTTMsFallback(t *testing.T) {
	m := DefaultModel()
	// Mid-Pacific and Antarctica are beyond FallbackKm from every measured city: plain fallback.
	for _, p := range [][2]Point{{{-10, -140}, {-60, 100}}, {{-85, 0}, {-80, 120}}} {
		d := DistanceKm(p[0], p[1])
		if got, want := m.RTTMs(p[0], p[1]), m.FallbackRTTMs(d); math.Abs(got-want) > 1e-9 {
			t.Errorf("RTTMs(%v, %v) = %v, want the fallback %v", p[0], p[1], got, want)
		}
	}
}

func TestRTTMsReproducesMeasurements(t *testing.T) {
	tab := EmbeddedLatencyTable()
	m, err := NewLatencyModel(tab, DefaultModelConfig())
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i, a := range tab.Servers {
		for _, b := range tab.Servers[i+1:] {
			v, ok := tab.RTT(a.ID, b.ID)
			if !ok || DistanceKm(a.Point, b.Point) < 1 {
				continue
			}
			got := m.RTTMs(a.Point, b.Point)
			// The floor lifts the few sub-ms pairs (San Jose-Fremont, 22 km: 0.44 ms measured, 0.72 ms floor).
			v = max(v, m.Config().FloorMs+MinRTTMs(DistanceKm(a.Point, b.Point)))
			worst = max(worst, math.Abs(got-v)/v)
		}
	}
	// At a measured city's own coordinates its weight dominates (1e4 x others): measured pairs come back
	// within a fraction of a percent.
	if worst > 0.01 {
		t.Fatalf("worst relative error on the measured pairs themselves = %.4f, want < 1 %%", worst)
	}
}

func TestNewLatencyModelErrors(t *testing.T) {
	tab := EmbeddedLatencyTable()
	tests := []struct {
		name string
		tab  *LatencyTable
		cfg  ModelConfig
	}{
		{"negative floor", tab, ModelConfig{FloorMs: -1}},
		{"too many neighbours", tab, ModelConfig{Neighbours: 16}},
		{"fallback inside trust", tab, ModelConfig{TrustKm: 500, FallbackKm: 400}},
		{"too few servers", tab.Without(serverIDs(tab)[3:]...), ModelConfig{}},
		{"no long pairs", tab, ModelConfig{InflationMinKm: 30000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewLatencyModel(tt.tab, tt.cfg); err == nil || !strings.HasPrefix(err.Error(), "geo: latency model: ") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func serverIDs(t *LatencyTable) []int {
	var ids []int
	for _, s := range t.Servers {
		ids = append(ids, s.ID)
	}
	return ids
}

func BenchmarkRTTMs(b *testing.B) {
	m := DefaultModel()
	pops := PoPs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.RTTMs(pops[i%len(pops)].Point, pops[(i*7+3)%len(pops)].Point)
	}
}

func BenchmarkRTTMsAllPoPPairs(b *testing.B) {
	m := DefaultModel()
	pops := PoPs()
	for b.Loop() {
		for i := range pops {
			for j := i + 1; j < len(pops); j++ {
				m.RTTMs(pops[i].Point, pops[j].Point)
			}
		}
	}
	b.ReportMetric(float64(len(pops)*(len(pops)-1)/2), "pairs/op")
}

func BenchmarkNewLatencyModel(b *testing.B) {
	tab := EmbeddedLatencyTable()
	for b.Loop() {
		if _, err := NewLatencyModel(tab, DefaultModelConfig()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNearestGridMatchesBruteForce checks the precomputed nearest-server lookup against a scan of every
// server, on a dense deterministic sweep including the poles, the date line and cell edges.
func TestNearestGridMatchesBruteForce(t *testing.T) {
	m := DefaultModel()
	all := make([]uint16, m.n)
	for i := range all {
		all[i] = uint16(i)
	}
	k := m.cfg.Neighbours + 1
	var pts []Point
	for lat := -90.0; lat <= 90; lat += 1.7 {
		for lon := -180.0; lon <= 180; lon += 2.3 {
			pts = append(pts, Point{lat, lon})
		}
	}
	for lat := -90.0; lat <= 90; lat += gridDeg {
		for lon := -180.0; lon <= 180; lon += gridDeg {
			pts = append(pts, Point{lat, lon}, Point{math.Min(90, lat+1e-9), lon - 1e-9})
		}
	}
	for _, s := range EmbeddedLatencyTable().Servers {
		pts = append(pts, s.Point, Point{s.Lat + 0.3, s.Lon - 0.4})
	}
	buf1, buf2 := make([]neighbour, k), make([]neighbour, k)
	for _, p := range pts {
		u := unit(p)
		got := m.kNearest(u, buf1, m.candidates(p))
		want := m.kNearest(u, buf2, all)
		for j := range want {
			if got[j].i != want[j].i {
				t.Fatalf("at %v: grid neighbours %v, scan %v", p, got, want)
			}
		}
	}
	t.Logf("%d points", len(pts))
}

func TestRTTMsInvalidPoints(t *testing.T) {
	m := DefaultModel()
	fra := popPoint(t, "FRA")
	for _, p := range []Point{{math.NaN(), 0}, {0, 200}, {-91, 0}} {
		if got := m.RTTMs(fra, p); !math.IsNaN(got) {
			t.Errorf("RTTMs(FRA, %v) = %v, want NaN", p, got)
		}
		if got := m.RTTMs(p, fra); !math.IsNaN(got) {
			t.Errorf("RTTMs(%v, FRA) = %v, want NaN", p, got)
		}
	}
}
