package geo

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// PoP is a point of presence, named by the IATA code of its airport.
type PoP struct {
	Code    string // IATA code, upper case, e.g. "FRA"
	City    string // e.g. "Frankfurt"
	Country string // country name, e.g. "Germany"
	CC      string // ISO 3166-1 alpha-2, e.g. "DE"
	Region  string // continent-ish region from the source, e.g. "Europe"
	Point          // coordinates (of the airport, in the Cloudflare and CloudFront lists)
}

// ErrPoPList is wrapped by every error about a malformed PoP list.
var ErrPoPList = errors.New("geo: bad PoP list")

//go:embed data/pops-cloudflare.csv
var cloudflarePoPsCSV []byte

var embeddedPoPs = sync.OnceValue(func() []PoP {
	pops, err := loadPoPsCSV(bytes.NewReader(cloudflarePoPsCSV))
	if err != nil {
		panic(fmt.Sprintf("geo: embedded data/pops-cloudflare.csv: %v", err))
	}
	return pops
})

var embeddedPoPIndex = sync.OnceValue(func() map[string]int {
	idx := make(map[string]int)
	for i, p := range embeddedPoPs() {
		idx[p.Code] = i
	}
	return idx
})

// PoPs returns the embedded Cloudflare PoP catalogue (340 PoPs, derived from the cloudflare-colos data set's
// global-locations.json, see geo/NOTICE), sorted by Code. The slice is a copy the caller may modify.
func PoPs() []PoP {
	return slices.Clone(embeddedPoPs())
}

// LookupPoP returns the PoP of the embedded catalogue with the IATA code (case-insensitive).
func LookupPoP(code string) (PoP, bool) {
	i, ok := embeddedPoPIndex()[strings.ToUpper(strings.TrimSpace(code))]
	if !ok {
		return PoP{}, false
	}
	return embeddedPoPs()[i], true
}

// LoadPoPs reads a PoP list in JSON: an array of objects as in the Cloudflare global-locations.json
// ({iata, city, country, cca2, region, lat, lon}), or an object keyed by IATA code as in the CloudFront
// aws-edge-locations.json ({city, country, countryCode, latitude, longitude, pricingRegion}) and
// DC-Colos.json. Every entry needs a 3-letter code and valid coordinates; codes must be unique. The result is
// sorted by Code.
func LoadPoPs(r io.Reader) ([]PoP, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: reading: %w", ErrPoPList, err)
	}
	return loadPoPsJSON(data)
}

// LoadPoPsFile reads a PoP list from path: a .csv file with a header naming the columns (code or iata or colo,
// city, country, cca2 or country_code, region or pricing_region, lat or latitude, lon or longitude; lines
// starting with # are comments), as the CloudFront aws-edge-locations.csv and geo/data/pops-cloudflare.csv;
// any other file is read as JSON by LoadPoPs. Errors name the path.
func LoadPoPsFile(path string) ([]PoP, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geo: PoP list: %w", err)
	}
	defer f.Close()
	var pops []PoP
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		pops, err = loadPoPsCSV(f)
	} else {
		pops, err = LoadPoPs(f)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return pops, nil
}

// popJSON accepts the field names of the Cloudflare and CloudFront lists (encoding/json matches names
// case-insensitively).
type popJSON struct {
	IATA          string   `json:"iata"`
	Code          string   `json:"code"`
	Colo          string   `json:"colo"`
	City          string   `json:"city"`
	Country       string   `json:"country"`
	CCA2          string   `json:"cca2"`
	CountryCode   string   `json:"countryCode"`
	Region        string   `json:"region"`
	PricingRegion string   `json:"pricingRegion"`
	Lat           *float64 `json:"lat"`
	Lon           *float64 `json:"lon"`
	Latitude      *float64 `json:"latitude"`
	Longitude     *float64 `json:"longitude"`
}

func (j popJSON) pop(key string) (PoP, error) {
	code := firstNonEmpty(j.IATA, j.Code, j.Colo, key)
	lat, lon := j.Lat, j.Lon
	if lat == nil {
		lat = j.Latitude
	}
	if lon == nil {
		lon = j.Longitude
	}
	if lat == nil || lon == nil {
		return PoP{}, fmt.Errorf("%w: PoP %q has no coordinates", ErrPoPList, code)
	}
	return newPoP(code, j.City, j.Country, firstNonEmpty(j.CCA2, j.CountryCode), firstNonEmpty(j.Region, j.PricingRegion), *lat, *lon)
}

func loadPoPsJSON(data []byte) ([]PoP, error) {
	data = bytes.TrimSpace(data)
	var pops []PoP
	switch {
	case len(data) > 0 && data[0] == '[':
		var list []popJSON
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPoPList, err)
		}
		for _, j := range list {
			p, err := j.pop("")
			if err != nil {
				return nil, err
			}
			pops = append(pops, p)
		}
	case len(data) > 0 && data[0] == '{':
		var m map[string]popJSON
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPoPList, err)
		}
		for k, j := range m {
			p, err := j.pop(k)
			if err != nil {
				return nil, err
			}
			pops = append(pops, p)
		}
	default:
		return nil, fmt.Errorf("%w: want a JSON array or object", ErrPoPList)
	}
	return finishPoPs(pops)
}

// popColumns maps accepted CSV header names to PoP fields.
var popColumns = map[string]string{
	"code": "code", "iata": "code", "colo": "code",
	"city": "city", "country": "country",
	"cc": "cc", "cca2": "cc", "country_code": "cc", "countrycode": "cc",
	"region": "region", "pricing_region": "region",
	"lat": "lat", "latitude": "lat",
	"lon": "lon", "lng": "lon", "longitude": "lon",
}

func loadPoPsCSV(r io.Reader) ([]PoP, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrPoPList, err)
	}
	col := make(map[string]int)
	for i, h := range header {
		if f, ok := popColumns[strings.ToLower(strings.TrimSpace(h))]; ok {
			if _, dup := col[f]; !dup {
				col[f] = i
			}
		}
	}
	for _, need := range []string{"code", "lat", "lon"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("%w: header %q has no %s column", ErrPoPList, strings.Join(header, ","), need)
		}
	}
	field := func(rec []string, f string) string {
		if i, ok := col[f]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var pops []PoP
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPoPList, err)
		}
		code := field(rec, "code")
		lat, err1 := strconv.ParseFloat(field(rec, "lat"), 64)
		lon, err2 := strconv.ParseFloat(field(rec, "lon"), 64)
		if err := errors.Join(err1, err2); err != nil {
			line, _ := cr.FieldPos(0)
			return nil, fmt.Errorf("%w: line %d: PoP %q: coordinates: %w", ErrPoPList, line, code, err)
		}
		p, err := newPoP(code, field(rec, "city"), field(rec, "country"), field(rec, "cc"), field(rec, "region"), lat, lon)
		if err != nil {
			return nil, err
		}
		pops = append(pops, p)
	}
	return finishPoPs(pops)
}

func newPoP(code, city, country, cc, region string, lat, lon float64) (PoP, error) {
	p := PoP{
		Code:    strings.ToUpper(strings.TrimSpace(code)),
		City:    city,
		Country: country,
		CC:      strings.ToUpper(cc),
		Region:  region,
		Point:   Point{Lat: lat, Lon: lon},
	}
	if !validIATA(p.Code) {
		return PoP{}, fmt.Errorf("%w: code %q is not a 3-letter IATA code", ErrPoPList, code)
	}
	if !p.Point.Valid() {
		return PoP{}, fmt.Errorf("%w: PoP %q: coordinates %v,%v out of range", ErrPoPList, p.Code, lat, lon)
	}
	return p, nil
}

func finishPoPs(pops []PoP) ([]PoP, error) {
	if len(pops) == 0 {
		return nil, fmt.Errorf("%w: no PoPs", ErrPoPList)
	}
	slices.SortFunc(pops, func(a, b PoP) int { return strings.Compare(a.Code, b.Code) })
	for i := 1; i < len(pops); i++ {
		if pops[i].Code == pops[i-1].Code {
			return nil, fmt.Errorf("%w: PoP %q listed twice", ErrPoPList, pops[i].Code)
		}
	}
	return pops, nil
}

func validIATA(code string) bool {
	if len(code) != 3 {
		return false
	}
	for _, c := range code {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
