package geo

import (
	"errors"
	"slices"
	"strings"
	"testing"
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
			`geo: region "us-east-1": want provider:code, e.g. "aws:us-east-1": geo: region is not provider:code`},
		{"empty code", "aws:", ErrRegionSyntax,
			`geo: region "aws:": want provider:code, e.g. "aws:us-east-1": geo: region is not provider:code`},
		{"two colons", "aws:us:east", ErrRegionSyntax,
			`geo: region "aws:us:east": want provider:code, e.g. "aws:us-east-1": geo: region is not provider:code`},
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
