package geo

import (
	"math"
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
