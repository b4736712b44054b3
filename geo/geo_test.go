package geo

import (
	"math"
	"testing"
)

func TestDistanceKm(t *testing.T) {
	tests := []struct {
		name   string
		a, b   Point
		wantKm float64
		tolKm  float64
	}{
		{"same point", Point{50.03, 8.57}, Point{50.03, 8.57}, 0, 1e-9},
		{"quarter meridian", Point{0, 0}, Point{90, 0}, math.Pi / 2 * EarthRadiusKm, 1e-6},
		{"antipodes", Point{0, 0}, Point{0, 180}, math.Pi * EarthRadiusKm, 1e-6},
		{"across the date line", Point{0, 179.5}, Point{0, -179.5}, math.Pi / 180 * EarthRadiusKm, 1e-6},
		// Known city pairs (airport coordinates), against published great-circle distances; those are on the
		// WGS 84 ellipsoid (LHR-JFK 5555 km), the sphere differs by up to 0.5 %.
		{"London LHR - New York JFK", Point{51.4700, -0.4543}, Point{40.6413, -73.7781}, 5555, 28},
		{"Frankfurt FRA - Sydney SYD", Point{50.0379, 8.5622}, Point{-33.9399, 151.1753}, 16500, 30},
		{"Paris CDG - Frankfurt FRA", Point{49.0097, 2.5479}, Point{50.0379, 8.5622}, 448, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DistanceKm(tt.a, tt.b)
			if math.Abs(got-tt.wantKm) > tt.tolKm {
				t.Fatalf("DistanceKm(%v, %v) = %.3f km, want %.3f ± %g", tt.a, tt.b, got, tt.wantKm, tt.tolKm)
			}
			if back := DistanceKm(tt.b, tt.a); back != got {
				t.Fatalf("not symmetric: %v vs %v", got, back)
			}
		})
	}
}

func TestFibreBounds(t *testing.T) {
	if math.Abs(FibreKmPerMs-99.93) > 0.01 {
		t.Fatalf("FibreKmPerMs = %v, want ~99.93", FibreKmPerMs)
	}
	tests := []struct {
		name   string
		rttMs  float64
		wantKm float64
	}{
		{"zero", 0, 0},
		{"negative clamps", -5, 0},
		{"1 ms is ~100 km", 1, 99.93},
		{"London-New York 70 ms", 70, 6995.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MaxDistanceKm(tt.rttMs); math.Abs(got-tt.wantKm) > 0.1 {
				t.Fatalf("MaxDistanceKm(%v) = %v, want %v", tt.rttMs, got, tt.wantKm)
			}
			if tt.rttMs > 0 {
				if back := MinRTTMs(MaxDistanceKm(tt.rttMs)); math.Abs(back-tt.rttMs) > 1e-9 {
					t.Fatalf("MinRTTMs(MaxDistanceKm(%v)) = %v", tt.rttMs, back)
				}
			}
		})
	}
	if got := MinRTTMs(-1); got != 0 {
		t.Fatalf("MinRTTMs(-1) = %v, want 0", got)
	}
}

func TestPointValid(t *testing.T) {
	for _, p := range []Point{{91, 0}, {0, 181}, {math.NaN(), 0}, {-90.5, 0}} {
		if p.Valid() {
			t.Errorf("%v is valid", p)
		}
	}
	if !(Point{-90, 180}).Valid() {
		t.Error("pole on the date line is invalid")
	}
}
