package geo

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/internal/shareddata"
)

func TestRegionsCatalogue(t *testing.T) {
	rs := Regions()
	if len(rs) != 267 {
		t.Fatalf("Regions() has %d entries, want 267", len(rs))
	}
	if !slices.IsSortedFunc(rs, func(a, b Region) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatal("Regions() not sorted by ID")
	}
	count := map[string]int{}
	for _, r := range rs {
		count[r.Provider]++
	}
	for p, want := range map[string]int{"aws": 38, "gcp": 42, "azure": 72, "oci": 53} {
		if count[p] != want {
			t.Errorf("%s has %d regions, want %d", p, count[p], want)
		}
	}
	if got := len(Providers()); got != 14 {
		t.Errorf("Providers() has %d, want 14", got)
	}
}

func TestLookupRegion(t *testing.T) {
	tests := []struct {
		id   string
		want Region
	}{
		{"aws:us-east-1", Region{ID: "aws:us-east-1", Provider: "aws", Code: "us-east-1", Name: "US East (N. Virginia)", City: "Ashburn", CC: "US", Point: Point{39.0438, -77.4874}}},
		{"gcp:us-east4", Region{ID: "gcp:us-east4", Provider: "gcp", Code: "us-east4", Name: "Northern Virginia", City: "Ashburn", CC: "US", Point: Point{39.0438, -77.4874}}},
		{"azure:westeurope", Region{ID: "azure:westeurope", Provider: "azure", Code: "westeurope", Name: "West Europe", City: "Amsterdam", CC: "NL", Point: Point{52.3667, 4.9}}},
		{" AWS:US-EAST-1 ", Region{ID: "aws:us-east-1", Provider: "aws", Code: "us-east-1", Name: "US East (N. Virginia)", City: "Ashburn", CC: "US", Point: Point{39.0438, -77.4874}}},
		{"google:us-east4", Region{ID: "gcp:us-east4", Provider: "gcp", Code: "us-east4", Name: "Northern Virginia", City: "Ashburn", CC: "US", Point: Point{39.0438, -77.4874}}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := LookupRegion(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("LookupRegion(%q) = %+v, want %+v", tt.id, got, tt.want)
			}
		})
	}
}

func TestLookupRegionErrors(t *testing.T) {
	providers := "aws, azure, coreweave, crusoe, digitalocean, gcp, hetzner, lambda, linode, oci, ovh, paperspace, scaleway, vultr"
	tests := []struct {
		name, id string
		wantIs   error
		wantText string
	}{
		{"missing dash", "aws:us-east1", ErrUnknownRegion,
			`geo: region "aws:us-east1" is not in the catalogue; did you mean "aws:us-east-1"?`},
		{"gcp style with aws dash", "gcp:us-east-4", ErrUnknownRegion,
			`geo: region "gcp:us-east-4" is not in the catalogue; did you mean "gcp:us-east4"?`},
		{"two equally close", "aws:eu-west", ErrUnknownRegion,
			`geo: region "aws:eu-west" is not in the catalogue; did you mean "aws:eu-west-1", "aws:eu-west-2" or "aws:eu-west-3"?`},
		{"other provider's code", "gcp:westeurope", ErrUnknownRegion,
			`geo: region "gcp:westeurope" is not in the catalogue; did you mean "azure:westeurope"?`},
		{"nothing close", "aws:mars-north-9", ErrUnknownRegion,
			`geo: region "aws:mars-north-9" is not in the catalogue`},
		{"misspelt provider", "asw:us-east-1", ErrUnknownRegion,
			`geo: region "asw:us-east-1": provider "asw" is not in the catalogue (providers: ` + providers + `); did you mean "aws:us-east-1"?`},
		{"unknown provider, known code", "ibm:westeurope", ErrUnknownRegion,
			`geo: region "ibm:westeurope": provider "ibm" is not in the catalogue (providers: ` + providers + `); did you mean "azure:westeurope"?`},
		{"no provider", "us-east-1", ErrRegionSyntax,
			`geo: region is not provider:code: "us-east-1" (e.g. "aws:us-east-1")`},
		{"empty code", "aws:", ErrRegionSyntax,
			`geo: region is not provider:code: "aws:" (e.g. "aws:us-east-1")`},
		{"two colons", "aws:us:east", ErrRegionSyntax,
			`geo: region is not provider:code: "aws:us:east" (e.g. "aws:us-east-1")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LookupRegion(tt.id)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("LookupRegion(%q) err = %v, want %v", tt.id, err, tt.wantIs)
			}
			if err.Error() != tt.wantText {
				t.Fatalf("LookupRegion(%q) error text\n got %s\nwant %s", tt.id, err, tt.wantText)
			}
		})
	}
	var re *RegionError
	if _, err := LookupRegion("aws:us-east1"); !errors.As(err, &re) || !slices.Equal(re.Suggestions, []string{"aws:us-east-1"}) {
		t.Fatalf("RegionError suggestions = %+v", re)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "", 3}, {"us-east1", "us-east-1", 1}, {"kitten", "sitting", 3}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestEmbeddedRegionsMatchSource checks geo/data/cloud-regions.csv against the source JSON (run
// go generate ./geo when it fails).
func TestEmbeddedRegionsMatchSource(t *testing.T) {
	raw, err := os.ReadFile(shareddata.Path(t, "cloud-regions", "cloud-regions-2026.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Regions []struct {
			Provider, RegionCode, DisplayName string
			Location                          struct {
				City, CountryCode   string
				Latitude, Longitude float64
			}
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Regions) != len(Regions()) {
		t.Fatalf("source has %d regions, catalogue %d", len(doc.Regions), len(Regions()))
	}
	for _, s := range doc.Regions {
		r, err := LookupRegion(s.Provider + ":" + s.RegionCode)
		if err != nil {
			t.Fatal(err)
		}
		want := Region{ID: s.Provider + ":" + s.RegionCode, Provider: s.Provider, Code: s.RegionCode, Name: s.DisplayName,
			City: s.Location.City, CC: s.Location.CountryCode, Point: Point{s.Location.Latitude, s.Location.Longitude}}
		if r != want {
			t.Errorf("catalogue %+v, source %+v", r, want)
		}
	}
}

// TestRegionsAgainstSecondSource cross-checks the catalogue's coordinates with the 2022 dgl/cloud-regions
// lists (geocoded from the location names, coarser: state centroids for some AWS regions).
func TestRegionsAgainstSecondSource(t *testing.T) {
	providers := map[string]string{"aws": "aws", "gcp": "gcp", "azure": "azure", "oracle": "oci", "linode": "linode", "vultr": "vultr"}
	var dists []float64
	missing := 0
	for file, provider := range providers {
		f, err := os.Open(shareddata.Path(t, "cloud-regions", "dgl-cloud-regions", file+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs[1:] {
			lat, err1 := strconv.ParseFloat(rec[2], 64)
			lon, err2 := strconv.ParseFloat(rec[3], 64)
			if err1 != nil || err2 != nil {
				continue // a few 2022 rows have no coordinates (aws eu-south-2 "EU () - ???")
			}
			r, err := LookupRegion(provider + ":" + rec[0])
			if err != nil {
				missing++ // renamed or retired since 2022
				continue
			}
			d := DistanceKm(r.Point, Point{lat, lon})
			dists = append(dists, d)
			if d > 500 {
				t.Logf("%s: catalogue %s (%v) and dgl %q (%v,%v) are %.0f km apart", r.ID, r.City, r.Point, rec[1], lat, lon, d)
			}
		}
	}
	slices.Sort(dists)
	med := dists[len(dists)/2]
	t.Logf("%d regions in both, %d only in the 2022 lists; median distance %.0f km, p90 %.0f km", len(dists), missing, med, dists[len(dists)*9/10])
	if len(dists) < 150 || med > 100 {
		t.Fatalf("%d regions matched, median distance %.0f km: the catalogues disagree", len(dists), med)
	}
}
