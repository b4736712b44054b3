package geo

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// TableServer is one measured city of a LatencyTable.
type TableServer struct {
	ID      int    // WonderProxy server ID
	Name    string // city, e.g. "Frankfurt"
	Country string // country name
	Point
}

// LatencyTable is a symmetric matrix of minimum RTTs between measured cities: the input of the latency
// model. The embedded one (geo/data/wonderproxy-rtt.csv) is derived from the WonderProxy data set by
// (*WonderProxy).Clean. Immutable once built.
type LatencyTable struct {
	// Servers are the measured cities, sorted by ID.
	Servers []TableServer

	idx map[int]int
	rtt []float64 // n*n, symmetric, NaN when unmeasured and on the diagonal
}

func newLatencyTable(servers []TableServer) *LatencyTable {
	slices.SortFunc(servers, func(a, b TableServer) int { return cmp.Compare(a.ID, b.ID) })
	n := len(servers)
	t := &LatencyTable{Servers: servers, idx: make(map[int]int, n), rtt: make([]float64, n*n)}
	for i, s := range servers {
		t.idx[s.ID] = i
	}
	for i := range t.rtt {
		t.rtt[i] = math.NaN()
	}
	return t
}

func (t *LatencyTable) set(i, j int, ms float64) {
	t.rtt[i*len(t.Servers)+j] = ms
	t.rtt[j*len(t.Servers)+i] = ms
}

func (t *LatencyTable) at(i, j int) float64 { return t.rtt[i*len(t.Servers)+j] }

// RTT returns the symmetric minimum RTT in ms between the servers with IDs a and b; false if unmeasured.
func (t *LatencyTable) RTT(a, b int) (float64, bool) {
	i, ok1 := t.idx[a]
	j, ok2 := t.idx[b]
	if !ok1 || !ok2 {
		return 0, false
	}
	v := t.at(i, j)
	return v, !math.IsNaN(v)
}

// Server returns the server with the ID.
func (t *LatencyTable) Server(id int) (TableServer, bool) {
	i, ok := t.idx[id]
	if !ok {
		return TableServer{}, false
	}
	return t.Servers[i], true
}

// Pairs returns the number of measured unordered pairs.
func (t *LatencyTable) Pairs() int {
	n, c := len(t.Servers), 0
	for i := range n {
		for j := i + 1; j < n; j++ {
			if !math.IsNaN(t.at(i, j)) {
				c++
			}
		}
	}
	return c
}

// Without returns a copy of t without the servers with the given IDs (for held-out evaluations).
func (t *LatencyTable) Without(ids ...int) *LatencyTable {
	drop := make(map[int]bool, len(ids))
	for _, id := range ids {
		drop[id] = true
	}
	var keep []TableServer
	for _, s := range t.Servers {
		if !drop[s.ID] {
			keep = append(keep, s)
		}
	}
	out := newLatencyTable(keep)
	for i, a := range out.Servers {
		for j := i + 1; j < len(out.Servers); j++ {
			if v, ok := t.RTT(a.ID, out.Servers[j].ID); ok {
				out.set(i, j, v)
			}
		}
	}
	return out
}

// WriteCSV writes t in the format ReadLatencyTable reads, each line of header prefixed by "# ":
//
//	s,<id>,<lat>,<lon>,<name>,<country>   one per server
//	r,<id a>,<id b>,<min RTT ms>          one per measured pair, a < b, RTT rounded to 0.01 ms
func (t *LatencyTable) WriteCSV(w io.Writer, header string) error {
	bw := bufio.NewWriter(w)
	for line := range strings.Lines(header) {
		fmt.Fprintf(bw, "# %s\n", strings.TrimRight(line, "\n"))
	}
	cw := csv.NewWriter(bw)
	for _, s := range t.Servers {
		cw.Write([]string{"s", strconv.Itoa(s.ID), ftoa(s.Lat, 4), ftoa(s.Lon, 4), s.Name, s.Country})
	}
	for i, a := range t.Servers {
		for j := i + 1; j < len(t.Servers); j++ {
			if v := t.at(i, j); !math.IsNaN(v) {
				cw.Write([]string{"r", strconv.Itoa(a.ID), strconv.Itoa(t.Servers[j].ID), ftoa(v, 2)})
			}
		}
	}
	cw.Flush()
	return errors.Join(cw.Error(), bw.Flush())
}

func ftoa(v float64, prec int) string {
	p := math.Pow(10, float64(prec))
	return strconv.FormatFloat(math.Round(v*p)/p, 'f', -1, 64)
}

// ReadLatencyTable reads a table written by WriteCSV (lines starting with # are comments). RTTs must be
// positive and finite, servers unique and pairs between listed servers.
func ReadLatencyTable(r io.Reader) (*LatencyTable, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	var servers []TableServer
	type pair struct {
		a, b int
		ms   float64
		line int
	}
	var pairs []pair
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("geo: latency table: %w", err)
		}
		line, _ := cr.FieldPos(0)
		bad := func(err error) error { return fmt.Errorf("geo: latency table: line %d: %w", line, err) }
		switch {
		case rec[0] == "s" && len(rec) == 6:
			id, err := strconv.Atoi(rec[1])
			lat, err1 := strconv.ParseFloat(rec[2], 64)
			lon, err2 := strconv.ParseFloat(rec[3], 64)
			p := Point{Lat: lat, Lon: lon}
			if err := errors.Join(err, err1, err2); err != nil || !p.Valid() {
				return nil, bad(fmt.Errorf("server %q: bad id or coordinates", strings.Join(rec, ",")))
			}
			servers = append(servers, TableServer{ID: id, Name: rec[4], Country: rec[5], Point: p})
		case rec[0] == "r" && len(rec) == 4:
			a, err := strconv.Atoi(rec[1])
			b, err1 := strconv.Atoi(rec[2])
			ms, err2 := strconv.ParseFloat(rec[3], 64)
			if err := errors.Join(err, err1, err2); err != nil || !(ms > 0) || math.IsInf(ms, 0) || a == b {
				return nil, bad(fmt.Errorf("pair %q: bad ids or RTT", strings.Join(rec, ",")))
			}
			pairs = append(pairs, pair{a, b, ms, line})
		default:
			return nil, bad(fmt.Errorf("record %q: want s,id,lat,lon,name,country or r,a,b,ms", strings.Join(rec, ",")))
		}
	}
	t := newLatencyTable(servers)
	if len(t.idx) != len(servers) {
		return nil, fmt.Errorf("geo: latency table: duplicate server IDs")
	}
	for _, p := range pairs {
		i, ok1 := t.idx[p.a]
		j, ok2 := t.idx[p.b]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("geo: latency table: line %d: pair %d,%d names an unlisted server", p.line, p.a, p.b)
		}
		t.set(i, j, p.ms)
	}
	return t, nil
}

// ReadLatencyTableFile reads a latency table from path (see ReadLatencyTable).
func ReadLatencyTableFile(path string) (*LatencyTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geo: latency table: %w", err)
	}
	defer f.Close()
	t, err := ReadLatencyTable(f)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return t, nil
}
