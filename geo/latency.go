package geo

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"slices"
	"sync"
)

// ModelConfig tunes the latency model. DefaultModelConfig gives the values DefaultModel uses.
type ModelConfig struct {
	// FloorMs is added to every modelled RTT (host stacks, last metre): RTTMs of two distinct nearby points is
	// at least FloorMs + MinRTTMs(distance). Default 0.5 ms (as every zero field of a ModelConfig passed to
	// NewLatencyModel takes its default, a floor of exactly 0 is not possible).
	FloorMs float64
	// Inflation is the path inflation of the fibre fallback (RTT / MinRTTMs(distance)); 0 fits it from the
	// table: the median of (min RTT - FloorMs) / MinRTTMs(d) over the pairs farther apart than InflationMinKm.
	Inflation float64
	// InflationMinKm excludes short pairs, dominated by last-mile delays, from the fit. Default 500 km.
	InflationMinKm float64
	// Neighbours is how many nearest measured cities are interpolated per endpoint (at most 15). Default 6
	// (the held-out median relative error, mean of 5 folds, falls slowly with more: 8.4 %, 7.8 %, 7.7 %,
	// 7.6 % for 1, 4, 6, 8).
	Neighbours int
	// TrustKm and FallbackKm blend the measurements into the fibre fallback: an endpoint within TrustKm of a
	// measured city uses the measurements fully, one beyond FallbackKm of every measured city only the
	// fallback, linearly in between. Defaults 500 and 2500 km (chosen on the held-out error; 300/1500 km
	// and 1000/3000 km are within 0.3 points).
	TrustKm, FallbackKm float64
}

// DefaultModelConfig returns the defaults documented on ModelConfig.
func DefaultModelConfig() ModelConfig {
	return ModelConfig{FloorMs: 0.5, InflationMinKm: 500, Neighbours: 6, TrustKm: 500, FallbackKm: 2500}
}

// LatencyModel models the minimum RTT between any two points on Earth from a table of measured minimum RTTs
// between cities (see doc.go for the method and its measured error). Immutable, safe for concurrent use.
type LatencyModel struct {
	cfg   ModelConfig
	n     int
	pts   []Point
	units [][3]float64 // unit vectors of pts
	lr    []float32    // n*n: log(measured / fallback(distance)), NaN when unmeasured; 0 on the diagonal
	// Nearest-server lookup: the servers that can be among the Neighbours+1 nearest of some point of a
	// gridDeg x gridDeg cell are cand[start[c]:start[c+1]], in index order.
	start []uint32
	cand  []uint16
}

// gridDeg is the cell size of the precomputed nearest-server lookup, in degrees: 2 degree cells (16,200)
// keep about 10 candidates each on the embedded table; building them is most of NewLatencyModel's ~80 ms.
const gridDeg = 2

// gridHalfDiagKm bounds the distance from a cell's centre to any point of the cell (half the diagonal of a
// gridDeg cell at the equator, 157 km, rounded up).
const gridHalfDiagKm = 160

const (
	gridRows = 180 / gridDeg
	gridCols = 360 / gridDeg
)

//go:embed data/wonderproxy-rtt.csv
var wonderProxyRTTCSV []byte

var defaultModel = sync.OnceValue(func() *LatencyModel {
	m, err := NewLatencyModel(EmbeddedLatencyTable(), DefaultModelConfig())
	if err != nil {
		panic(fmt.Sprintf("geo: embedded data/wonderproxy-rtt.csv: %v", err))
	}
	return m
})

// DefaultModel returns the model built once from the embedded WonderProxy-derived table
// (geo/data/wonderproxy-rtt.csv) with DefaultModelConfig.
func DefaultModel() *LatencyModel { return defaultModel() }

// EmbeddedLatencyTable returns a fresh copy of the embedded table.
func EmbeddedLatencyTable() *LatencyTable {
	t, err := ReadLatencyTable(bytes.NewReader(wonderProxyRTTCSV))
	if err != nil {
		panic(fmt.Sprintf("geo: embedded data/wonderproxy-rtt.csv: %v", err))
	}
	return t
}

// PathInflation returns the typical path inflation fitted on the embedded table (DefaultModel's
// Inflation): how much longer than the fibre bound a measured minimum RTT typically is, about 2.
func PathInflation() float64 { return DefaultModel().Inflation() }

// NewLatencyModel builds a model from a table; zero fields of cfg take their defaults.
func NewLatencyModel(t *LatencyTable, cfg ModelConfig) (*LatencyModel, error) {
	def := DefaultModelConfig()
	if cfg.FloorMs == 0 {
		cfg.FloorMs = def.FloorMs
	}
	if cfg.InflationMinKm == 0 {
		cfg.InflationMinKm = def.InflationMinKm
	}
	if cfg.Neighbours == 0 {
		cfg.Neighbours = def.Neighbours
	}
	if cfg.TrustKm == 0 {
		cfg.TrustKm = def.TrustKm
	}
	if cfg.FallbackKm == 0 {
		cfg.FallbackKm = def.FallbackKm
	}
	switch {
	case cfg.FloorMs < 0 || cfg.Inflation < 0 || cfg.Neighbours < 1 || cfg.Neighbours > maxNeighbours || cfg.TrustKm < 0 || cfg.FallbackKm <= cfg.TrustKm:
		return nil, fmt.Errorf("geo: latency model: bad config %+v", cfg)
	case len(t.Servers) < cfg.Neighbours+1 || len(t.Servers) > math.MaxUint16:
		return nil, fmt.Errorf("geo: latency model: %d servers, need %d to %d", len(t.Servers), cfg.Neighbours+1, math.MaxUint16)
	}
	n := len(t.Servers)
	m := &LatencyModel{cfg: cfg, n: n, pts: make([]Point, n), units: make([][3]float64, n), lr: make([]float32, n*n)}
	for i, s := range t.Servers {
		m.pts[i] = s.Point
		m.units[i] = unit(s.Point)
	}
	if cfg.Inflation == 0 {
		var ratios []float64
		for i := range n {
			for j := i + 1; j < n; j++ {
				if v := t.at(i, j); !math.IsNaN(v) {
					if d := DistanceKm(m.pts[i], m.pts[j]); d > cfg.InflationMinKm {
						ratios = append(ratios, (v-cfg.FloorMs)/MinRTTMs(d))
					}
				}
			}
		}
		if len(ratios) == 0 {
			return nil, fmt.Errorf("geo: latency model: no pairs farther than %g km to fit the path inflation", cfg.InflationMinKm)
		}
		slices.Sort(ratios)
		m.cfg.Inflation = ratios[len(ratios)/2]
	}
	m.buildGrid()
	nan := float32(math.NaN())
	for i := range n {
		for j := range n {
			switch v := t.at(i, j); {
			case i == j:
				m.lr[i*n+j] = 0
			case math.IsNaN(v):
				m.lr[i*n+j] = nan
			default:
				m.lr[i*n+j] = float32(math.Log(v / m.fallback(DistanceKm(m.pts[i], m.pts[j]))))
			}
		}
	}
	return m, nil
}

// Config returns the model's configuration, with the fitted Inflation.
func (m *LatencyModel) Config() ModelConfig { return m.cfg }

// Inflation returns the path inflation of the fibre fallback (fitted or configured).
func (m *LatencyModel) Inflation() float64 { return m.cfg.Inflation }

// FallbackRTTMs returns the fibre fallback for a distance in km: FloorMs + Inflation x MinRTTMs(distKm).
func (m *LatencyModel) FallbackRTTMs(distKm float64) float64 { return m.fallback(distKm) }

func (m *LatencyModel) fallback(d float64) float64 {
	return m.cfg.FloorMs + m.cfg.Inflation*MinRTTMs(d)
}

// maxNeighbours bounds ModelConfig.Neighbours so the per-call neighbour lists stay on the stack.
const maxNeighbours = 15

type neighbour struct {
	i      int
	chord2 float64 // squared chord between the unit vectors; smaller is nearer
	km     float64 // great-circle distance
	w      float64 // interpolation weight
}

// buildGrid precomputes the candidate servers of every grid cell: a server can be among the k+1 nearest of
// a point p of the cell only if it is within r + 2h of the centre c, where r is the distance from c to its
// own (k+1)-th nearest server and h bounds dist(p, c) (those k+1 servers are within r + h of p).
func (m *LatencyModel) buildGrid() {
	k := m.cfg.Neighbours + 1
	m.start = make([]uint32, 0, gridRows*gridCols+1)
	c2s := make([]float64, m.n)
	top := make([]float64, 0, k) // the k smallest squared chords, ascending
	for row := range gridRows {
		for col := range gridCols {
			c := unit(Point{Lat: -90 + (float64(row)+0.5)*gridDeg, Lon: -180 + (float64(col)+0.5)*gridDeg})
			top = top[:0]
			for i, v := range m.units {
				c2 := chord2(c, v)
				c2s[i] = c2
				if len(top) == k && c2 >= top[k-1] {
					continue
				}
				if len(top) < k {
					top = append(top, 0)
				}
				j := len(top) - 1
				for ; j > 0 && top[j-1] > c2; j-- {
					top[j] = top[j-1]
				}
				top[j] = c2
			}
			limit := kmToChord2(chordToKm(top[k-1]) + 2*gridHalfDiagKm)
			m.start = append(m.start, uint32(len(m.cand)))
			for i, c2 := range c2s {
				if c2 <= limit {
					m.cand = append(m.cand, uint16(i))
				}
			}
		}
	}
	m.start = append(m.start, uint32(len(m.cand)))
}

// candidates returns the servers that can be among the nearest of p (see buildGrid).
func (m *LatencyModel) candidates(p Point) []uint16 {
	row := min(max(int((p.Lat+90)/gridDeg), 0), gridRows-1)
	col := int((p.Lon + 180) / gridDeg)
	col = ((col % gridCols) + gridCols) % gridCols
	c := row*gridCols + col
	return m.cand[m.start[c]:m.start[c+1]]
}

// kNearest fills out with the len(out) servers among cands nearest to the unit vector u, nearest first
// (ties: lower index first).
func (m *LatencyModel) kNearest(u [3]float64, out []neighbour, cands []uint16) []neighbour {
	k := len(out)
	out = out[:0]
	for _, i16 := range cands {
		i := int(i16)
		c2 := chord2(u, m.units[i])
		if len(out) == k && c2 >= out[k-1].chord2 {
			continue
		}
		if len(out) < k {
			out = append(out, neighbour{})
		}
		j := len(out) - 1
		for ; j > 0 && out[j-1].chord2 > c2; j-- {
			out[j] = out[j-1]
		}
		out[j] = neighbour{i: i, chord2: c2}
	}
	return out
}

// nearest returns the Neighbours nearest servers to p (unit vector u) with their weights, nearest first;
// out has room for Neighbours+1.
func (m *LatencyModel) nearest(p Point, u [3]float64, out []neighbour) []neighbour {
	out = m.kNearest(u, out, m.candidates(p))
	for j := range out {
		out[j].km = chordToKm(out[j].chord2)
	}
	// Modified Shepard weights: ((r - d) / (r d))^2 with r the distance of the (k+1)-th neighbour, so a
	// neighbour's weight falls to zero as it leaves the set (continuity) and grows without bound at its own
	// position (the model reproduces the measurements).
	r := out[len(out)-1].km
	const epsKm = 0.01
	for j := range out[:len(out)-1] {
		x := (r - out[j].km) / (r * (out[j].km + epsKm))
		out[j].w = x * x
	}
	return out[:len(out)-1]
}

// trust is how much an endpoint's nearest measured city at km is trusted (1 within TrustKm, 0 beyond
// FallbackKm).
func (m *LatencyModel) trust(km float64) float64 {
	return min(1, max(0, (m.cfg.FallbackKm-km)/(m.cfg.FallbackKm-m.cfg.TrustKm)))
}

// RTTMs returns the modelled minimum RTT in ms between a and b: symmetric, deterministic, never below
// FloorMs + MinRTTMs(distance) (FloorMs for a == b). Each endpoint is attached to its nearest measured
// cities; the measured RTTs between the two sets, expressed as log ratios to the fibre fallback of their own
// distance, are interpolated with distance weights and applied to the fallback of the endpoints' distance,
// blended into the plain fallback when an endpoint is far from every measured city. The nearest cities come
// from a precomputed grid (about 10 candidates per endpoint): under 1 µs per call, no allocation. A point
// that is not Valid gives NaN.
func (m *LatencyModel) RTTMs(a, b Point) float64 {
	if !a.Valid() || !b.Valid() {
		return math.NaN()
	}
	if b.Lat < a.Lat || (b.Lat == a.Lat && b.Lon < a.Lon) {
		a, b = b, a // one summation order: exactly symmetric
	}
	d := DistanceKm(a, b)
	lower := m.cfg.FloorMs + MinRTTMs(d)
	base := m.fallback(d)
	if d == 0 {
		return m.cfg.FloorMs
	}
	var bufA, bufB [maxNeighbours + 1]neighbour
	k := min(m.cfg.Neighbours, maxNeighbours)
	na := m.nearest(a, unit(a), bufA[:k+1])
	nb := m.nearest(b, unit(b), bufB[:k+1])
	c := m.trust(na[0].km) * m.trust(nb[0].km)
	if c == 0 {
		return max(base, lower)
	}
	var sum, wsum float64
	for _, x := range na {
		row := m.lr[x.i*m.n : (x.i+1)*m.n]
		for _, y := range nb {
			if v := row[y.i]; v == v { // not NaN
				w := x.w * y.w
				sum += w * float64(v)
				wsum += w
			}
		}
	}
	if wsum == 0 || math.IsInf(wsum, 0) || math.IsNaN(sum) {
		return max(base, lower)
	}
	return max(base*math.Exp(c*sum/wsum), lower)
}

// unit returns the unit vector of p.
func unit(p Point) [3]float64 {
	const rad = math.Pi / 180
	lat, lon := p.Lat*rad, p.Lon*rad
	return [3]float64{math.Cos(lat) * math.Cos(lon), math.Cos(lat) * math.Sin(lon), math.Sin(lat)}
}

// chord2 is the squared distance between two unit vectors (precise for nearby points, unlike 1 - dot).
func chord2(u, v [3]float64) float64 {
	x, y, z := u[0]-v[0], u[1]-v[1], u[2]-v[2]
	return x*x + y*y + z*z
}

// chordToKm converts a squared unit chord to km along the great circle.
func chordToKm(c2 float64) float64 {
	return 2 * EarthRadiusKm * math.Asin(min(1, math.Sqrt(c2)/2))
}

// kmToChord2 converts km along the great circle to a squared unit chord (antipodes at most).
func kmToChord2(km float64) float64 {
	c := 2 * math.Sin(min(math.Pi, km/EarthRadiusKm)/2)
	return c * c
}
