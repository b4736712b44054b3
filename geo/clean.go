package geo

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
)

// CleanConfig tunes the rules (*WonderProxy).Clean applies to the raw data set. DefaultCleanConfig gives
// the values the embedded table was built with.
type CleanConfig struct {
	// CountryPlaces maps a country name to known places in it (airports: LoadAirportCountries). When set, a
	// server farther than CountryRadiusKm from every place of its own country has wrong coordinates. Two such
	// servers whose coordinates each fit the other's country have had them swapped, and get them exchanged;
	// any other such server is dropped. Countries absent from the map are not checked. Nil skips the rule.
	CountryPlaces map[string][]Point
	// CountryRadiusKm is the radius of the country check (default 200 km: a city is rarely farther from
	// its country's nearest airport).
	CountryRadiusKm float64
	// MinViolations and MaxViolationShare drop a server whose pairs break the fibre bound (measured min
	// RTT < MinRTTMs(distance)) at least MinViolations times and on more than MaxViolationShare of its
	// measured pairs: its coordinates are wrong (default 5 and 2 %). Servers are dropped worst first and the
	// counts redone, since one misplaced server makes every partner violate once. Violating pairs of
	// the servers kept are dropped one by one.
	MinViolations     int
	MaxViolationShare float64
}

// DefaultCleanConfig returns the default rules, without CountryPlaces.
func DefaultCleanConfig() CleanConfig {
	return CleanConfig{CountryRadiusKm: 200, MinViolations: 5, MaxViolationShare: 0.02}
}

// CleanReport says what (*WonderProxy).Clean did.
type CleanReport struct {
	Unlocated      []int     // IDs in the pings but not the servers file, dropped
	Swapped        [][2]int  // server ID pairs whose coordinates were exchanged
	Dropped        []Dropped // servers dropped, in order
	DroppedPairs   [][2]int  // pairs (a < b) of kept servers dropped for breaking the fibre bound
	Servers, Pairs int       // what the table keeps
}

// Dropped is a server that Clean dropped and why.
type Dropped struct {
	ID     int
	Title  string
	Reason string
}

// String summarises the report on a few lines (for file headers and logs).
func (r CleanReport) String() string {
	s := fmt.Sprintf("kept %d servers and %d pairs; ids %v are in the pings but not the servers file: dropped", r.Servers, r.Pairs, r.Unlocated)
	for _, p := range r.Swapped {
		s += fmt.Sprintf("\nservers %d and %d: coordinates swapped (each fits the other's country only)", p[0], p[1])
	}
	for _, d := range r.Dropped {
		s += fmt.Sprintf("\nserver %d (%s) dropped: %s", d.ID, d.Title, d.Reason)
	}
	s += fmt.Sprintf("\n%d further pairs dropped for breaking the fibre bound: %v", len(r.DroppedPairs), r.DroppedPairs)
	return s
}

// Clean derives the latency table: the symmetric minimum RTT of every measured pair (the smaller of the two
// directions' min), after the rules of cfg (see CleanConfig) have fixed or dropped servers with wrong
// coordinates and dropped pairs that break the speed-of-light-in-fibre bound. Deterministic.
func (w *WonderProxy) Clean(cfg CleanConfig) (*LatencyTable, CleanReport) {
	rep := CleanReport{Unlocated: slices.Clone(w.Unlocated)}
	servers := slices.Clone(w.Servers)
	pos := make(map[int]int, len(servers))
	for i, s := range servers {
		pos[s.ID] = i
	}
	dropped := make(map[int]bool)

	// Rule 1: coordinates must lie in the server's country.
	if cfg.CountryPlaces != nil {
		fits := func(country string, p Point) bool {
			places, ok := cfg.CountryPlaces[country]
			if !ok {
				return true
			}
			for _, q := range places {
				if DistanceKm(p, q) <= cfg.CountryRadiusKm {
					return true
				}
			}
			return false
		}
		var bad []int
		for i, s := range servers {
			if !fits(s.Country, s.Point) {
				bad = append(bad, i)
			}
		}
		swapped := make(map[int]bool)
		for x, i := range bad {
			for _, j := range bad[x+1:] {
				a, b := servers[i], servers[j]
				if !swapped[i] && !swapped[j] && fits(a.Country, b.Point) && fits(b.Country, a.Point) {
					servers[i].Point, servers[j].Point = b.Point, a.Point
					swapped[i], swapped[j] = true, true
					rep.Swapped = append(rep.Swapped, [2]int{a.ID, b.ID})
				}
			}
		}
		for _, i := range bad {
			if !swapped[i] {
				dropped[servers[i].ID] = true
				rep.Dropped = append(rep.Dropped, Dropped{servers[i].ID, servers[i].Title,
					fmt.Sprintf("coordinates %.4f,%.4f are not within %g km of any place in %s", servers[i].Lat, servers[i].Lon, cfg.CountryRadiusKm, servers[i].Country)})
			}
		}
	}

	// Symmetric min over both directions.
	type pair struct{ a, b int } // indexes into servers, a < b
	rtt := make(map[pair]float64)
	for k, p := range w.pings {
		i, j := pos[k[0]], pos[k[1]]
		if i > j {
			i, j = j, i
		}
		if v, ok := rtt[pair{i, j}]; !ok || p.Min < v {
			rtt[pair{i, j}] = p.Min
		}
	}
	violates := func(pr pair, v float64) bool {
		return v < MinRTTMs(DistanceKm(servers[pr.a].Point, servers[pr.b].Point))
	}

	// Rule 2: drop servers that break the bound too often, worst first.
	for {
		measured := make([]int, len(servers))
		viol := make([]int, len(servers))
		for pr, v := range rtt {
			if dropped[servers[pr.a].ID] || dropped[servers[pr.b].ID] {
				continue
			}
			measured[pr.a]++
			measured[pr.b]++
			if violates(pr, v) {
				viol[pr.a]++
				viol[pr.b]++
			}
		}
		worst := -1
		for i := range servers {
			if viol[i] >= cfg.MinViolations && float64(viol[i]) > cfg.MaxViolationShare*float64(measured[i]) &&
				(worst < 0 || viol[i] > viol[worst]) {
				worst = i
			}
		}
		if worst < 0 {
			break
		}
		s := servers[worst]
		dropped[s.ID] = true
		rep.Dropped = append(rep.Dropped, Dropped{s.ID, s.Title,
			fmt.Sprintf("%d of its %d pairs break the fibre bound", viol[worst], measured[worst])})
	}

	var kept []TableServer
	for _, s := range servers {
		if !dropped[s.ID] {
			kept = append(kept, TableServer{ID: s.ID, Name: s.Title, Country: s.Country, Point: s.Point})
		}
	}
	t := newLatencyTable(kept)
	for pr, v := range rtt {
		a, b := servers[pr.a], servers[pr.b]
		if dropped[a.ID] || dropped[b.ID] {
			continue
		}
		if violates(pr, v) {
			rep.DroppedPairs = append(rep.DroppedPairs, [2]int{min(a.ID, b.ID), max(a.ID, b.ID)})
			continue
		}
		t.set(t.idx[a.ID], t.idx[b.ID], v)
	}
	slices.SortFunc(rep.DroppedPairs, func(x, y [2]int) int { return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1])) })
	rep.Servers, rep.Pairs = len(t.Servers), t.Pairs()
	return t, rep
}

// LoadAirportCountries reads the OpenFlights airports.dat (shared/data/airports/openflights-airports.dat:
// CSV without header, country name in column 4, latitude and longitude in columns 7 and 8) into a map from
// country name to airport coordinates, for CleanConfig.CountryPlaces.
func LoadAirportCountries(path string) (map[string][]Point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geo: airports: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	out := make(map[string][]Point)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("geo: airports %s: %w", path, err)
		}
		if len(rec) < 8 {
			line, _ := cr.FieldPos(0)
			return nil, fmt.Errorf("geo: airports %s:%d: %d columns, want at least 8", path, line, len(rec))
		}
		lat, err1 := strconv.ParseFloat(rec[6], 64)
		lon, err2 := strconv.ParseFloat(rec[7], 64)
		p := Point{Lat: lat, Lon: lon}
		if err1 != nil || err2 != nil || !p.Valid() {
			continue // rows without usable coordinates are skipped
		}
		out[rec[3]] = append(out[rec[3]], p)
	}
}
