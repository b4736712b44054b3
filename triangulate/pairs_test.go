package triangulate

import (
	"fmt"
	"slices"
	"testing"

	"github.com/vantage-edge/vantage/geo"
)

// TestPlannerReuseMatchesFresh checks the pair cache changes no plan: one Planner reused over many targets,
// PoP lists and a PoP that moves plans exactly as a fresh Planner does for each call.
func TestPlannerReuseMatchesFresh(t *testing.T) {
	reused, err := NewPlanner(DefaultPlannerConfig())
	if err != nil {
		t.Fatal(err)
	}
	all := geo.PoPs()
	for _, n := range []int{60, 300, 45} {
		pops := slices.Clone(all[:n])
		world := benchWorld(t, n)
		for round := range 2 {
			if round == 1 {
				// PoPs move (catalogue corrections): their cached latencies must not be used.
				for j := range 10 {
					pops[j].Point, pops[n-1-j].Point = pops[n-1-j].Point, pops[j].Point
				}
			}
			for i, ms := range world {
				var sofar []Measurement
				first := reused.First(pops)
				for _, m := range ms {
					if j := slices.IndexFunc(pops, func(p geo.PoP) bool { return p.Code == m.VP }); j >= 0 && slices.Contains(first, m.VP) {
						m.Point = pops[j].Point
						sofar = append(sofar, m)
					}
				}
				fresh, _ := NewPlanner(DefaultPlannerConfig())
				budget := reused.Budget(n)
				if got, want := reused.Next(pops, sofar, budget), fresh.Next(pops, sofar, budget); !slices.Equal(got, want) {
					t.Fatalf("%d PoPs, round %d, target %d: reused planner chose %v, a fresh one %v", n, round, i, got, want)
				}
			}
		}
	}
}

// TestPairRTTBounded checks a churning list of places (a hostile or ever-changing PoP list) keeps the cache
// within maxPairPoPs places, and that a moved place is recomputed.
func TestPairRTTBounded(t *testing.T) {
	calls := 0
	c := newPairRTT(func(a, b geo.Point) float64 { calls++; return a.Lat - b.Lat })
	for i := range 5 * maxPairPoPs {
		c.reserve(2)
		a := c.index(fmt.Sprintf("P%d", i), geo.Point{Lat: float64(i)})
		b := c.index("FRA", geo.Point{Lat: 50})
		if got, want := c.rtt(a, b), float64(i)-50; got != want {
			t.Fatalf("rtt(P%d, FRA) = %v, want %v", i, got, want)
		}
		if len(c.pts) > maxPairPoPs || len(c.rows) > maxPairPoPs || len(c.idx) > maxPairPoPs {
			t.Fatalf("after %d places the cache holds %d points, %d rows, %d codes; want at most %d",
				i+1, len(c.pts), len(c.rows), len(c.idx), maxPairPoPs)
		}
	}
	c.reserve(2)
	a, b := c.index("A", geo.Point{Lat: 10}), c.index("B", geo.Point{Lat: 1})
	c.rtt(a, b)
	before := calls
	if c.rtt(a, b); calls != before {
		t.Fatalf("a cached pair was recomputed")
	}
	c.index("B", geo.Point{Lat: 4})
	if got := c.rtt(a, b); got != 6 || calls != before+1 {
		t.Fatalf("after B moved: rtt = %v (want 6), %d model calls (want 1)", got, calls-before)
	}
}
