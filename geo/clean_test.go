package geo

import (
	"slices"
	"testing"

	"github.com/vantage-edge/vantage/internal/shareddata"
)

func cleanShared(t *testing.T) (*LatencyTable, CleanReport) {
	t.Helper()
	wp := loadWP(t)
	places, err := LoadAirportCountries(shareddata.Path(t, "airports", "openflights-airports.dat"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultCleanConfig()
	cfg.CountryPlaces = places
	return wp.Clean(cfg)
}

func TestCleanRules(t *testing.T) {
	tab, rep := cleanShared(t)
	t.Logf("%v", rep)
	if !slices.Equal(rep.Unlocated, []int{292, 293, 294, 295}) {
		t.Errorf("Unlocated = %v", rep.Unlocated)
	}
	// Panama (98) and Guatemala (99) have each other's coordinates in the servers file.
	if !slices.Equal(rep.Swapped, [][2]int{{98, 99}}) {
		t.Errorf("Swapped = %v, want [[98 99]]", rep.Swapped)
	}
	if s, _ := tab.Server(98); DistanceKm(s.Point, Point{8.98, -79.52}) > 100 {
		t.Errorf("Panama (98) at %v after cleaning, want near Panama City", s.Point)
	}
	var dropped []int
	for _, d := range rep.Dropped {
		dropped = append(dropped, d.ID)
	}
	// La Ceiba (220) breaks the bound on 64 pairs; Belfast (204) on 12 once La Ceiba is gone (its RTTs
	// to south-east England are those of a server in London).
	if !slices.Equal(dropped, []int{220, 204}) {
		t.Errorf("Dropped = %+v, want 220 then 204", rep.Dropped)
	}
	if rep.Servers != 244 || len(tab.Servers) != 244 || rep.Pairs != tab.Pairs() {
		t.Errorf("report says %d servers %d pairs; table has %d servers %d pairs", rep.Servers, rep.Pairs, len(tab.Servers), tab.Pairs())
	}
	if len(rep.DroppedPairs) > 20 {
		t.Errorf("%d pairs dropped individually, want a handful", len(rep.DroppedPairs))
	}
	// No pair left breaks the fibre bound.
	for i, a := range tab.Servers {
		for _, b := range tab.Servers[i+1:] {
			if v, ok := tab.RTT(a.ID, b.ID); ok && v < MinRTTMs(DistanceKm(a.Point, b.Point)) {
				t.Fatalf("pair %d-%d: %v ms over %.0f km breaks the bound", a.ID, b.ID, v, DistanceKm(a.Point, b.Point))
			}
		}
	}
	// Symmetric min of the two directions: Joao Pessoa (0) - Melbourne (1).
	wp := loadWP(t)
	ab, _ := wp.MinRTT(0, 1)
	ba, _ := wp.MinRTT(1, 0)
	if v, ok := tab.RTT(1, 0); !ok || v != min(ab, ba) {
		t.Errorf("RTT(1, 0) = %v, %v, want min(%v, %v)", v, ok, ab, ba)
	}
}

func TestCleanWithoutCountryCheck(t *testing.T) {
	_, rep := loadWP(t).Clean(DefaultCleanConfig())
	if len(rep.Swapped) != 0 || len(rep.Dropped) != 2 {
		t.Fatalf("without CountryPlaces: swapped %v, dropped %+v; want no swap and the two bound breakers", rep.Swapped, rep.Dropped)
	}
}

// TestEmbeddedTableIsCurrent checks that geo/data/wonderproxy-rtt.csv is what the generator derives today
// (to 0.01 ms, the file's precision).
func TestEmbeddedTableIsCurrent(t *testing.T) {
	want, _ := cleanShared(t)
	got := EmbeddedLatencyTable()
	if len(got.Servers) != len(want.Servers) || got.Pairs() != want.Pairs() {
		t.Fatalf("embedded table: %d servers %d pairs, generator: %d servers %d pairs: run go generate ./geo",
			len(got.Servers), got.Pairs(), len(want.Servers), want.Pairs())
	}
	for i, s := range want.Servers {
		g := got.Servers[i]
		if g.ID != s.ID || g.Name != s.Name || g.Country != s.Country || DistanceKm(g.Point, s.Point) > 0.02 {
			t.Fatalf("server %+v embedded as %+v: run go generate ./geo", s, g)
		}
		for _, b := range want.Servers[i+1:] {
			w, _ := want.RTT(s.ID, b.ID)
			if v, _ := got.RTT(s.ID, b.ID); v-w > 0.0051 || w-v > 0.0051 {
				t.Fatalf("pair %d-%d: embedded %v, generator %v", s.ID, b.ID, v, w)
			}
		}
	}
}
