package triangulate

import (
	"math"

	"github.com/vantage-edge/vantage/geo"
)

// maxPairPoPs bounds the places a pairRTT keeps (a PoP list and the probes' VPs): beyond it the cache starts
// over, so a hostile or churning list costs recomputation, never unbounded memory (1,024 places: at most 8 MiB).
const maxPairPoPs = 1024

// pairRTT memoises the latency model between PoPs, and their unit vectors: the Planner needs the model RTT
// from every candidate PoP to every probe in every round, and the PoPs rarely change, while the model (a
// neighbour interpolation over the embedded table) costs about 0.25 us a pair. Places are known by code and
// point: a code seen at a new point forgets what was computed for it. Not safe for concurrent use.
type pairRTT struct {
	model func(a, b geo.Point) float64
	idx   map[string]int
	pts   []geo.Point
	vecs  []vec3
	rows  [][]float64 // rows[i][j]: model(pts[i], pts[j]), NaN until asked; a row grows as places are added
}

func newPairRTT(model func(a, b geo.Point) float64) *pairRTT {
	return &pairRTT{model: model, idx: map[string]int{}}
}

// reserve makes room for n more places, starting over when they might not fit, so that the indices index
// returns stay valid until the next reserve.
func (c *pairRTT) reserve(n int) {
	if len(c.pts)+n <= maxPairPoPs {
		return
	}
	clear(c.idx)
	c.pts, c.vecs, c.rows = c.pts[:0], c.vecs[:0], c.rows[:0]
}

// index returns the place's index, adding it (or forgetting its old latencies when it moved).
func (c *pairRTT) index(code string, pt geo.Point) int {
	if i, ok := c.idx[code]; ok {
		if c.pts[i] != pt {
			c.pts[i], c.vecs[i] = pt, toVec(pt)
			for j := range c.rows[i] {
				c.rows[i][j] = math.NaN()
			}
			for _, r := range c.rows {
				if i < len(r) {
					r[i] = math.NaN()
				}
			}
		}
		return i
	}
	i := len(c.pts)
	c.idx[code] = i
	c.pts, c.vecs, c.rows = append(c.pts, pt), append(c.vecs, toVec(pt)), append(c.rows, nil)
	return i
}

// rtt returns the model RTT from place i to place j.
func (c *pairRTT) rtt(i, j int) float64 {
	r := c.rows[i]
	if j >= len(r) {
		n := len(r)
		r = append(r, make([]float64, len(c.pts)-n)...)
		for k := n; k < len(r); k++ {
			r[k] = math.NaN()
		}
		c.rows[i] = r
	}
	v := r[j]
	if math.IsNaN(v) {
		v = c.model(c.pts[i], c.pts[j])
		r[j] = v
	}
	return v
}
