package geo

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Region is a cloud provider's region, e.g. aws:us-east-1 in Ashburn.
type Region struct {
	ID       string // "provider:code", e.g. "aws:us-east-1"; the key of LookupRegion
	Provider string // lower case: "aws", "gcp", "azure", "oci", "digitalocean", ...
	Code     string // the provider's region code as the provider spells it, e.g. "us-east-1", "westeurope"
	Name     string // display name, e.g. "US East (N. Virginia)"
	City     string // e.g. "Ashburn"
	CC       string // ISO 3166-1 alpha-2, e.g. "US"
	Point           // the data-centre town's coordinates
}

var (
	// ErrUnknownRegion is wrapped (through *RegionError) when a well-formed region ID is not in the
	// catalogue, including when its provider is unknown.
	ErrUnknownRegion = errors.New("geo: unknown region")
	// ErrRegionSyntax is wrapped when a region ID is not of the form provider:code.
	ErrRegionSyntax = errors.New("geo: region is not provider:code")
)

// MaxRegionSuggestions is how many closest IDs a *RegionError suggests at most.
const MaxRegionSuggestions = 3

// providerAliases maps other common provider names to the catalogue's.
var providerAliases = map[string]string{
	"amazon": "aws", "ec2": "aws",
	"google": "gcp", "gce": "gcp",
	"microsoft": "azure",
	"oracle":    "oci",
	"do":        "digitalocean",
	"akamai":    "linode",
}

//go:embed data/cloud-regions.csv
var cloudRegionsCSV []byte

type regionCatalogue struct {
	regions    []Region         // sorted by ID
	byKey      map[string]int   // lower-case provider:code -> index
	byProvider map[string][]int // provider -> indexes
	providers  []string         // sorted
}

var embeddedRegions = sync.OnceValue(func() *regionCatalogue {
	rs, err := loadRegionsCSV(bytes.NewReader(cloudRegionsCSV))
	if err != nil {
		panic(fmt.Sprintf("geo: embedded data/cloud-regions.csv: %v", err))
	}
	c := &regionCatalogue{regions: rs, byKey: make(map[string]int), byProvider: make(map[string][]int)}
	for i, r := range rs {
		c.byKey[strings.ToLower(r.ID)] = i
		if _, ok := c.byProvider[r.Provider]; !ok {
			c.providers = append(c.providers, r.Provider)
		}
		c.byProvider[r.Provider] = append(c.byProvider[r.Provider], i)
	}
	slices.Sort(c.providers)
	return c
})

// Regions returns the embedded cloud-region catalogue (267 regions of 14 providers, derived from the
// cloud-regions data set, see geo/NOTICE), sorted by ID. The slice is a copy.
func Regions() []Region {
	return slices.Clone(embeddedRegions().regions)
}

// Providers returns the providers of the region catalogue, sorted.
func Providers() []string {
	return slices.Clone(embeddedRegions().providers)
}

// RegionError reports a region ID that is not in the catalogue, with the closest valid IDs. Its message is
// exactly `geo: region "aws:us-east1" is not in the catalogue; did you mean "aws:us-east-1"?` (or, for an
// unknown provider, `geo: region "amazn:us-east-1": provider "amazn" is not in the catalogue (providers: aws,
// azure, ...); did you mean "aws:us-east-1"?`). It unwraps to ErrUnknownRegion.
type RegionError struct {
	ID              string   // the value looked up, as given
	UnknownProvider string   // the provider part, when the provider itself is unknown
	Suggestions     []string // closest valid region IDs, best first; may be empty
}

// Error implements error.
func (e *RegionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "geo: region %q", e.ID)
	if e.UnknownProvider != "" {
		fmt.Fprintf(&b, ": provider %q is not in the catalogue (providers: %s)", e.UnknownProvider, strings.Join(Providers(), ", "))
	} else {
		b.WriteString(" is not in the catalogue")
	}
	if len(e.Suggestions) > 0 {
		b.WriteString("; did you mean ")
		for i, s := range e.Suggestions {
			switch {
			case i == 0:
			case i == len(e.Suggestions)-1:
				b.WriteString(" or ")
			default:
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", s)
		}
		b.WriteString("?")
	}
	return b.String()
}

// Unwrap returns ErrUnknownRegion.
func (e *RegionError) Unwrap() error { return ErrUnknownRegion }

// LookupRegion returns the catalogue's region for an ID of the form provider:code, e.g. "aws:us-east-1",
// "gcp:us-east4", "azure:westeurope" (case-insensitive; provider aliases google, amazon, microsoft, oracle
// are accepted). A value that is not provider:code wraps ErrRegionSyntax; an unknown one is a *RegionError
// (wrapping ErrUnknownRegion) that suggests the closest valid IDs by edit distance, same provider first.
func LookupRegion(id string) (Region, error) {
	provider, code, ok := strings.Cut(strings.TrimSpace(id), ":")
	provider = strings.ToLower(strings.TrimSpace(provider))
	code = strings.TrimSpace(code)
	if !ok || provider == "" || code == "" || strings.ContainsAny(code, ": \t") {
		return Region{}, fmt.Errorf("%w: %q (e.g. \"aws:us-east-1\")", ErrRegionSyntax, id)
	}
	if p, ok := providerAliases[provider]; ok {
		provider = p
	}
	c := embeddedRegions()
	if i, ok := c.byKey[provider+":"+strings.ToLower(code)]; ok {
		return c.regions[i], nil
	}
	return Region{}, c.suggest(id, provider, code)
}

// suggest builds the *RegionError for an unknown provider:code.
func (c *regionCatalogue) suggest(id, provider, code string) error {
	e := &RegionError{ID: id}
	lcode := strings.ToLower(code)
	if _, ok := c.byProvider[provider]; ok {
		e.Suggestions = c.closest([]string{provider}, lcode)
		if len(e.Suggestions) == 0 {
			// Nothing close at this provider: the same code elsewhere ("gcp:eastus" -> "azure:eastus").
			e.Suggestions = c.closest(c.providers, lcode)
		}
		return e
	}
	e.UnknownProvider = provider
	var near []string
	best := maxEdits(provider)
	for _, p := range c.providers {
		switch d := editDistance(provider, p); {
		case d < best:
			best, near = d, []string{p}
		case d == best:
			near = append(near, p)
		}
	}
	if len(near) > 0 {
		e.Suggestions = c.closest(near, lcode)
	}
	if len(e.Suggestions) == 0 {
		e.Suggestions = c.closest(c.providers, lcode)
	}
	if len(e.Suggestions) == 0 {
		for _, p := range near {
			e.Suggestions = append(e.Suggestions, p+":")
		}
	}
	return e
}

// closest returns the IDs of the given providers whose code is nearest to code by edit distance (within
// maxEdits), best first, at most MaxRegionSuggestions.
func (c *regionCatalogue) closest(providers []string, code string) []string {
	type cand struct {
		id string
		d  int
	}
	var cands []cand
	limit := maxEdits(code)
	for _, p := range providers {
		for _, i := range c.byProvider[p] {
			r := c.regions[i]
			if d := editDistance(code, strings.ToLower(r.Code)); d <= limit {
				cands = append(cands, cand{r.ID, d})
			}
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.d - b.d })
	var out []string
	for _, c := range cands {
		if len(out) == MaxRegionSuggestions || c.d > cands[0].d {
			break
		}
		out = append(out, c.id)
	}
	return out
}

// maxEdits is the largest edit distance still worth suggesting for s: a third of its length, at least 2.
func maxEdits(s string) int {
	return max(2, len(s)/3)
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// loadRegionsCSV reads geo/data/cloud-regions.csv: provider,code,name,city,cc,lat,lon (# comments).
func loadRegionsCSV(r io.Reader) ([]Region, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = 7
	if _, err := cr.Read(); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var out []Region
	seen := make(map[string]bool)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		lat, err1 := strconv.ParseFloat(rec[5], 64)
		lon, err2 := strconv.ParseFloat(rec[6], 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("region %s:%s: %w", rec[0], rec[1], err)
		}
		reg := Region{
			ID: rec[0] + ":" + rec[1], Provider: rec[0], Code: rec[1], Name: rec[2], City: rec[3], CC: rec[4],
			Point: Point{Lat: lat, Lon: lon},
		}
		key := strings.ToLower(reg.ID)
		if seen[key] || !reg.Point.Valid() || reg.Provider != strings.ToLower(reg.Provider) {
			return nil, fmt.Errorf("region %q: duplicate, bad provider or bad coordinates", reg.ID)
		}
		seen[key] = true
		out = append(out, reg)
	}
	slices.SortFunc(out, func(a, b Region) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
