package geo

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/internal/shareddata"
)

func TestEmbeddedPoPs(t *testing.T) {
	pops := PoPs()
	if len(pops) != 340 {
		t.Fatalf("PoPs() has %d entries, want 340", len(pops))
	}
	if !slices.IsSortedFunc(pops, func(a, b PoP) int { return strings.Compare(a.Code, b.Code) }) {
		t.Fatal("PoPs() is not sorted by Code")
	}
	pops[0].Code = "XXX"
	if PoPs()[0].Code == "XXX" {
		t.Fatal("PoPs() returned the catalogue itself, not a copy")
	}
	// Coordinates as in shared/data/cloudflare-colos/global-locations.json.
	tests := []struct {
		code string
		want PoP
	}{
		{"FRA", PoP{Code: "FRA", City: "Frankfurt", Country: "Germany", CC: "DE", Region: "Europe", Point: Point{50.0264, 8.54313}}},
		{"syd", PoP{Code: "SYD", City: "Sydney, NSW", Country: "Australia", CC: "AU", Region: "Oceania", Point: Point{-33.9461, 151.177}}},
		{"EWR", PoP{Code: "EWR", City: "Newark, NJ", Country: "United States", CC: "US", Region: "North America", Point: Point{40.692481, -74.168688}}},
	}
	src := loadSharedPoPs(t)
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			got, ok := LookupPoP(tt.code)
			if !ok {
				t.Fatalf("LookupPoP(%q) not found", tt.code)
			}
			if got != tt.want {
				t.Fatalf("LookupPoP(%q) = %+v, want %+v", tt.code, got, tt.want)
			}
			if want := src[got.Code]; got.Point != want.Point || got.Country != want.Country {
				t.Fatalf("LookupPoP(%q) = %+v, source has %+v", tt.code, got, want)
			}
		})
	}
	if p, ok := LookupPoP("FRA"); !ok || math.Abs(p.Lat-50.03) > 0.05 || math.Abs(p.Lon-8.57) > 0.05 {
		t.Fatalf("FRA at %v, want near 50.03,8.57", p.Point)
	}
	if _, ok := LookupPoP("ZZZ"); ok {
		t.Fatal("LookupPoP(ZZZ) found")
	}
}

func loadSharedPoPs(t *testing.T) map[string]PoP {
	t.Helper()
	list, err := LoadPoPsFile(shareddata.Path(t, "cloudflare-colos", "global-locations.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]PoP)
	for _, p := range list {
		m[p.Code] = p
	}
	return m
}

func TestEmbeddedPoPsMatchSource(t *testing.T) {
	src := loadSharedPoPs(t)
	for _, p := range PoPs() {
		if src[p.Code] != p {
			t.Errorf("embedded %+v, source %+v: run go generate ./geo", p, src[p.Code])
		}
	}
}

func TestLoadPoPsFileCloudFront(t *testing.T) {
	for _, name := range []string{"aws-edge-locations.csv", "aws-edge-locations.json"} {
		t.Run(name, func(t *testing.T) {
			pops, err := LoadPoPsFile(shareddata.Path(t, "aws-cloudfront-edge-locations", name))
			if err != nil {
				t.Fatal(err)
			}
			if len(pops) != 107 {
				t.Fatalf("%d PoPs, want 107", len(pops))
			}
			i, ok := slices.BinarySearchFunc(pops, "ATL", func(p PoP, code string) int { return strings.Compare(p.Code, code) })
			if !ok {
				t.Fatal("ATL missing")
			}
			want := PoP{Code: "ATL", City: "Atlanta", Country: "United States", CC: "US",
				Region: "United States, Mexico, & Canada", Point: Point{33.6367, -84.428101}}
			if pops[i] != want {
				t.Fatalf("ATL = %+v, want %+v", pops[i], want)
			}
		})
	}
}

func TestLoadPoPsErrors(t *testing.T) {
	tests := []struct {
		name, file, content, wantErr string
	}{
		{"no coordinates", "a.json", `[{"iata":"AMS","city":"Amsterdam"}]`, `PoP "AMS" has no coordinates`},
		{"bad code", "a.json", `{"AM1":{"latitude":1,"longitude":2}}`, `code "AM1" is not a 3-letter IATA code`},
		{"duplicate", "a.json", `[{"iata":"AMS","lat":1,"lon":2},{"iata":"ams","lat":1,"lon":2}]`, `PoP "AMS" listed twice`},
		{"out of range", "a.csv", "code,lat,lon\nAMS,91,0\n", `PoP "AMS": coordinates 91,0 out of range`},
		{"csv without lat", "a.csv", "code,lon\nAMS,0\n", `has no lat column`},
		{"csv bad number", "a.csv", "code,lat,lon\nAMS,x,0\n", `line 2: PoP "AMS": coordinates`},
		{"not json", "a.json", `hello`, `want a JSON array or object`},
		{"empty", "a.json", `[]`, `no PoPs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.file)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPoPsFile(path)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) || !errors.Is(err, ErrPoPList) {
				t.Fatalf("err = %v, want ErrPoPList naming %s and containing %q", err, path, tt.wantErr)
			}
		})
	}
	if _, err := LoadPoPsFile("/nonexistent/pops.json"); err == nil || !strings.Contains(err.Error(), "/nonexistent/pops.json") {
		t.Fatalf("missing file: err = %v", err)
	}
}
