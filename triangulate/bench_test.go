package triangulate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
)

// benchWorld returns 64 phantom targets measured from the first n PoPs of the embedded catalogue.
func benchWorld(tb testing.TB, n int) [][]Measurement {
	tb.Helper()
	pops := geo.PoPs()
	if len(pops) < n {
		tb.Fatalf("catalogue has %d PoPs, want %d", len(pops), n)
	}
	pops = pops[:n]
	rng := rand.New(rand.NewPCG(1, 2))
	pc := DefaultPhantomConfig()
	out := make([][]Measurement, 64)
	for i := range out {
		// Targets near a random PoP (a back end in a data centre city), slightly offset.
		c := pops[rng.IntN(len(pops))].Point
		target := geo.Point{Lat: c.Lat + rng.Float64() - 0.5, Lon: c.Lon + rng.Float64() - 0.5}
		out[i] = GenerateUnicast(rng, pc, pops, target)
	}
	return out
}

// BenchmarkDecide measures full placement decisions (validation, best PoP with hysteresis and candidates,
// anycast test, CBG location, confidence) for RTT vectors of 300 PoPs, on every core (-cpu sets them).
func BenchmarkDecide(b *testing.B) {
	world := benchWorld(b, 300)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		e, err := NewEngine(DefaultConfig())
		if err != nil {
			b.Error(err)
			return
		}
		i := 0
		for pb.Next() {
			in := Input{Measurements: world[i%len(world)], Previous: "FRA"}
			if _, err := e.Decide(in); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	// The machine is shared: wall-clock rates fall when other processes hold the cores. CPU time per
	// decision is what the engine costs; decisions/cpu-s x cores is the rate on idle cores.
	if cpu := cpuTime(b) - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "decisions/cpu-s")
	}
}

// cpuTime returns the user+system CPU time of the process so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPlannerNext measures one planning round of a recheck: n PoPs up, the first eight probed (the
// Planner's First set) and the next Step chosen, as the scheduler asks between probe rounds.
func BenchmarkPlannerNext(b *testing.B) {
	for _, n := range []int{60, 300} {
		b.Run(fmt.Sprintf("pops=%d", n), func(b *testing.B) {
			pops := geo.PoPs()[:n]
			p, err := NewPlanner(DefaultPlannerConfig())
			if err != nil {
				b.Fatal(err)
			}
			world := benchWorld(b, n)
			rounds := make([][]Measurement, len(world))
			for i, ms := range world {
				first := p.First(pops)
				for _, m := range ms {
					if slices.Contains(first, m.VP) {
						rounds[i] = append(rounds[i], m)
					}
				}
			}
			budget := p.Budget(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.Next(pops, rounds[i%len(rounds)], budget)
			}
		})
	}
}
