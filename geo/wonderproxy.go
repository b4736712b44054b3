package geo

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// WonderProxy data set file names inside its directory (shared/data/wonderproxy-pings-2020).
const (
	WPServersFile = "servers-2020-07-19.csv"
	WPPingsFile   = "pings-2020-07-19-2020-07-20-grouped.csv"
)

// WPServer is one WonderProxy server of the 2020 ping data set.
type WPServer struct {
	ID        int    // servers.id, the key of the ping file
	Name      string // e.g. "Frankfurt"
	Title     string // display name, e.g. "Frankfurt"
	Country   string // country name, e.g. "Germany"
	Continent int    // 1 N/C America, 2 S America, 3 Europe and Asia, 4 Oceania, 5 Africa
	Point            // coordinates as published (a few are wrong: see (*WonderProxy).Clean)
}

// WPPing is the aggregate of one directed pair of the ping file, in ms.
type WPPing struct {
	Min, Avg, Max, Mdev float64
}

// WonderProxy is the raw WonderProxy "day in the life of the internet" data set (2020-07-19/20): servers
// with coordinates and the directed server-to-server ping aggregates. It is read from shared/data for tests,
// benchmarks and the generator of the embedded latency table; the product ships only the derived table.
type WonderProxy struct {
	// Servers are the servers with coordinates, in file order (246).
	Servers []WPServer
	// Unlocated are the IDs that appear in the ping file but not in the servers file (292-295), sorted;
	// their rows are not kept.
	Unlocated []int

	byID  map[int]int
	pings map[[2]int]WPPing // directed (src, dst), self pairs excluded
}

// LoadWonderProxy reads the data set from dir (the wonderproxy-pings-2020 folder: WPServersFile and
// WPPingsFile). Errors name the file and line.
func LoadWonderProxy(dir string) (*WonderProxy, error) {
	w := &WonderProxy{byID: make(map[int]int), pings: make(map[[2]int]WPPing)}
	if err := w.readServers(filepath.Join(dir, WPServersFile)); err != nil {
		return nil, err
	}
	if err := w.readPings(filepath.Join(dir, WPPingsFile)); err != nil {
		return nil, err
	}
	return w, nil
}

// readCSV opens path and calls row for every record after the header, checking the header's width.
func readCSV(path string, columns int, row func(rec []string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("geo: wonderproxy: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = columns
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil {
		return fmt.Errorf("geo: wonderproxy: %s: header: %w", path, err)
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("geo: wonderproxy: %s: %w", path, err)
		}
		if err := row(rec); err != nil {
			line, _ := cr.FieldPos(0)
			return fmt.Errorf("geo: wonderproxy: %s:%d: %w", path, line, err)
		}
	}
}

func (w *WonderProxy) readServers(path string) error {
	// id,name,title,location,state,country,state_abbv,continent,latitude,longitude
	return readCSV(path, 10, func(rec []string) error {
		id, err := strconv.Atoi(rec[0])
		if err != nil {
			return fmt.Errorf("id %q: %w", rec[0], err)
		}
		cont, err := strconv.Atoi(rec[7])
		if err != nil {
			return fmt.Errorf("server %d: continent %q: %w", id, rec[7], err)
		}
		lat, err1 := strconv.ParseFloat(rec[8], 64)
		lon, err2 := strconv.ParseFloat(rec[9], 64)
		p := Point{Lat: lat, Lon: lon}
		if err := errors.Join(err1, err2); err != nil || !p.Valid() {
			return fmt.Errorf("server %d: bad coordinates %q,%q", id, rec[8], rec[9])
		}
		if _, dup := w.byID[id]; dup {
			return fmt.Errorf("server %d listed twice", id)
		}
		w.byID[id] = len(w.Servers)
		w.Servers = append(w.Servers, WPServer{ID: id, Name: rec[1], Title: rec[2], Country: rec[5], Continent: cont, Point: p})
		return nil
	})
}

func (w *WonderProxy) readPings(path string) error {
	unlocated := make(map[int]bool)
	// source,destination,min,avg,max,mdev
	err := readCSV(path, 6, func(rec []string) error {
		var v [6]float64
		for i := range v {
			f, err := strconv.ParseFloat(rec[i], 64)
			if err != nil {
				return fmt.Errorf("column %d: %w", i+1, err)
			}
			v[i] = f
		}
		src, dst := int(v[0]), int(v[1])
		if src == dst {
			return nil
		}
		ok := true
		for _, id := range []int{src, dst} {
			if _, known := w.byID[id]; !known {
				if !unlocated[id] {
					unlocated[id] = true
					w.Unlocated = append(w.Unlocated, id)
				}
				ok = false
			}
		}
		if !ok {
			return nil
		}
		if v[2] < 0 || v[2] > v[3] || v[3] > v[4] {
			return fmt.Errorf("pair %d->%d: min/avg/max %v/%v/%v out of order", src, dst, v[2], v[3], v[4])
		}
		w.pings[[2]int{src, dst}] = WPPing{Min: v[2], Avg: v[3], Max: v[4], Mdev: v[5]}
		return nil
	})
	slices.Sort(w.Unlocated)
	return err
}

// Server returns the server with the ID.
func (w *WonderProxy) Server(id int) (WPServer, bool) {
	i, ok := w.byID[id]
	if !ok {
		return WPServer{}, false
	}
	return w.Servers[i], true
}

// MinRTT returns the directed minimum RTT in ms from server src to server dst; false if the pair was not
// measured (or src == dst, or either is unknown).
func (w *WonderProxy) MinRTT(src, dst int) (float64, bool) {
	p, ok := w.pings[[2]int{src, dst}]
	return p.Min, ok
}

// Ping returns the directed ping aggregate from src to dst; false if unmeasured.
func (w *WonderProxy) Ping(src, dst int) (WPPing, bool) {
	p, ok := w.pings[[2]int{src, dst}]
	return p, ok
}

// Pairs returns the number of measured directed pairs between located servers (self pairs excluded).
func (w *WonderProxy) Pairs() int { return len(w.pings) }
