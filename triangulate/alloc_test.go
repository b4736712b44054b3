//go:build !race

package triangulate

import (
	"testing"
)

// TestDecideDoesNotAllocate checks the steady state: once an Engine's buffers have grown, a decision
// allocates nothing (the race detector's instrumentation allocates, hence the build tag).
func TestDecideDoesNotAllocate(t *testing.T) {
	world := benchWorld(t, 300)
	e := newEngine(t, nil)
	for _, ms := range world {
		if _, err := e.Decide(Input{Measurements: ms, Previous: "FRA"}); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := e.Decide(Input{Measurements: world[i%len(world)], Previous: "FRA"}); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs > 0 {
		t.Fatalf("Decide allocates %v times per call", allocs)
	}
}
