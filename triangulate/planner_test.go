package triangulate

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vantage-edge/vantage/geo"
)

func TestPlannerConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*PlannerConfig)
	}{
		{"first_zero", func(c *PlannerConfig) { c.First = 0 }},
		{"step_zero", func(c *PlannerConfig) { c.Step = 0 }},
		{"fraction_zero", func(c *PlannerConfig) { c.BudgetFraction = 0 }},
		{"fraction_above_one", func(c *PlannerConfig) { c.BudgetFraction = 1.5 }},
		{"budget_min_zero", func(c *PlannerConfig) { c.BudgetMin = 0 }},
		{"budget_max_negative", func(c *PlannerConfig) { c.BudgetMax = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultPlannerConfig()
			tc.mutate(&cfg)
			if _, err := NewPlanner(cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestPlannerFirstIsSpreadAndDeterministic(t *testing.T) {
	p, err := NewPlanner(DefaultPlannerConfig())
	if err != nil {
		t.Fatal(err)
	}
	catalogue := geo.PoPs()
	first := p.First(catalogue)
	if len(first) != DefaultPlannerConfig().First {
		t.Fatalf("First returned %d PoPs, want %d", len(first), DefaultPlannerConfig().First)
	}
	shuffled := slices.Clone(catalogue)
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if again := p.First(shuffled); !slices.Equal(first, again) {
		t.Fatalf("First depends on the list order: %v vs %v", first, again)
	}
	// Farthest-point sampling: the closest pair of the chosen set is farther apart than for random sets.
	minPair := func(codes []string) float64 {
		m := math.Inf(1)
		for i := range codes {
			for j := i + 1; j < len(codes); j++ {
				m = min(m, geo.DistanceKm(pop(t, codes[i]).Point, pop(t, codes[j]).Point))
			}
		}
		return m
	}
	rng := rand.New(rand.NewPCG(2, 2))
	better := 0
	for range 100 {
		var random []string
		for _, i := range rng.Perm(len(catalogue))[:len(first)] {
			random = append(random, catalogue[i].Code)
		}
		if minPair(first) > minPair(random) {
			better++
		}
	}
	t.Logf("first %v: closest pair %.0f km; beats %d of 100 random sets", first, minPair(first), better)
	if better < 95 || minPair(first) < 2000 {
		t.Fatalf("first set not spread: closest pair %.0f km, beats %d/100 random sets", minPair(first), better)
	}
}

func TestPlannerNextAndBudget(t *testing.T) {
	cfg := DefaultPlannerConfig()
	cfg.Engine.Model = func(a, b geo.Point) float64 { return 0.5 + 2*geo.MinRTTMs(geo.DistanceKm(a, b)) }
	p, err := NewPlanner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	catalogue := geo.PoPs()
	if b := p.Budget(len(catalogue)); b != int(0.15*float64(len(catalogue))) {
		t.Fatalf("Budget(%d) = %d", len(catalogue), b)
	}
	if b := p.Budget(5); b != 5 {
		t.Fatalf("Budget(5) = %d, want all 5 (BudgetMin)", b)
	}
	capped := cfg
	capped.BudgetMax = 20
	if pc, err := NewPlanner(capped); err != nil || pc.Budget(len(catalogue)) != 20 {
		t.Fatalf("BudgetMax 20: err %v", err)
	}
	if got := p.Next(catalogue, nil, 3); len(got) != cfg.First {
		t.Fatalf("Next with no measurements = %v, want First", got)
	}
	if got := p.Next(catalogue, []Measurement{{VP: "FRA", Point: pop(t, "FRA").Point, RTTMs: 3}}, 0); got != nil {
		t.Fatalf("Next with no budget left = %v", got)
	}

	// Phantom targets near catalogue cities: the planner's PoP is close to the best of all PoPs.
	rng := rand.New(rand.NewPCG(3, 3))
	pc := PhantomConfig{Inflation: 1.7, BaseMs: 0.5}
	var regrets []float64
	for range 40 {
		c := catalogue[rng.IntN(len(catalogue))].Point
		target := geo.Point{Lat: c.Lat + rng.Float64() - 0.5, Lon: c.Lon + rng.Float64() - 0.5}
		truth := map[string]float64{}
		best := math.Inf(1)
		for _, q := range catalogue {
			truth[q.Code] = pc.RTTMs(rng, q.Point, target)
			best = min(best, truth[q.Code])
		}
		budget := p.Budget(len(catalogue))
		var ms []Measurement
		probe := func(codes []string) {
			for _, c := range codes {
				if slices.ContainsFunc(ms, func(m Measurement) bool { return m.VP == c }) {
					t.Fatalf("PoP %s planned twice", c)
				}
				ms = append(ms, Measurement{VP: c, Point: pop(t, c).Point, RTTMs: truth[c]})
			}
		}
		probe(p.First(catalogue))
		for len(ms) < budget {
			next := p.Next(catalogue, ms, budget-len(ms))
			if len(next) == 0 {
				break
			}
			if len(next) > cfg.Step {
				t.Fatalf("Next returned %d PoPs, Step is %d", len(next), cfg.Step)
			}
			probe(next)
		}
		if len(ms) > budget {
			t.Fatalf("probed %d, budget %d", len(ms), budget)
		}
		e := newEngine(t, nil)
		r, err := e.Decide(Input{Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		regrets = append(regrets, truth[r.Best.PoP]-best)
	}
	t.Logf("phantom planner regret over 40 targets, %d of %d PoPs: median %.2f ms, p95 %.2f ms", p.Budget(len(catalogue)), len(catalogue), percentile(regrets, .5), percentile(regrets, .95))
	if percentile(regrets, .5) > 0.5 || percentile(regrets, .95) > 3 {
		t.Fatalf("regret median %.2f p95 %.2f", percentile(regrets, .5), percentile(regrets, .95))
	}
}

// TestPlannerOnTheEmulatedWAN is the emulated WAN's case: 26 PoPs (the testbed's default spec) and RTTs from
// the latency model, with a target at each PoP and at a few cloud regions. The planner (default budget: 12 of
// 26) must find the PoP nearest each target. São Paulo (aws:sa-east-1) is the hard one: the spread first
// probes do not include GRU and put the target in a region thousands of km wide (Ashburn at 119 ms, Santiago
// at 156 ms); only the triangle-inequality bound says GRU could be right beside it.
func TestPlannerOnTheEmulatedWAN(t *testing.T) {
	codes := []string{"FRA", "LHR", "AMS", "CDG", "MAD", "WAW", "ARN", "IAD", "ORD", "DFW", "LAX", "SEA", "MIA",
		"GRU", "SCL", "BOG", "JNB", "LOS", "NBO", "NRT", "HKG", "SIN", "BOM", "DXB", "SYD", "AKL"}
	list := pops(t, codes...)
	targets := map[string]geo.Point{}
	for _, c := range codes {
		targets[c] = pop(t, c).Point
	}
	for _, id := range []string{"aws:sa-east-1", "aws:us-east-1", "gcp:asia-northeast1", "aws:eu-central-1", "azure:westeurope"} {
		region, err := geo.LookupRegion(id)
		if err != nil {
			t.Fatal(err)
		}
		targets[id] = region.Point
	}
	model := geo.DefaultModel()
	p, err := NewPlanner(DefaultPlannerConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, nil)
	// A real probe adds a little to the path's RTT (the hosts' stacks, the emulator's scheduling): the plan must
	// find the nearest PoP with that overhead too.
	for _, overheadMs := range []float64{0, 0.5, 1, 2} {
		for name, target := range targets {
			rtt := func(c string) float64 { return model.RTTMs(pop(t, c).Point, target) + overheadMs }
			want := slices.MinFunc(codes, func(a, b string) int { return cmp.Compare(rtt(a), rtt(b)) })
			budget := p.Budget(len(list))
			var ms []Measurement
			probe := func(cs []string) {
				for _, c := range cs {
					ms = append(ms, Measurement{VP: c, Point: pop(t, c).Point, RTTMs: rtt(c)})
				}
			}
			probe(p.First(list))
			for len(ms) < budget {
				next := p.Next(list, ms, budget-len(ms))
				if len(next) == 0 {
					break
				}
				probe(next)
			}
			r, err := e.Decide(Input{Measurements: ms})
			if err != nil {
				t.Fatal(err)
			}
			if r.Best.PoP != want {
				var probed []string
				for _, m := range ms {
					probed = append(probed, fmt.Sprintf("%s %.0f", m.VP, m.RTTMs))
				}
				t.Errorf("%s, overhead %.1f ms: best %s (%.1f ms) from %d probes %v, want %s (%.1f ms)", name, overheadMs, r.Best.PoP, r.Best.RTTMs, len(ms), probed, want, rtt(want))
			}
		}
	}
}

// TestPlannerFirstFromPrior: a prior location starts the first picks at the PoP nearest it, as well spread as
// without one; no prior is First.
func TestPlannerFirstFromPrior(t *testing.T) {
	p, err := NewPlanner(DefaultPlannerConfig())
	if err != nil {
		t.Fatal(err)
	}
	pops := geo.PoPs()
	plain := p.First(pops)
	if got := p.FirstFrom(pops, nil); !slices.Equal(got, plain) {
		t.Errorf("FirstFrom(nil) = %v; want First's %v", got, plain)
	}
	for _, tc := range []struct {
		name  string
		prior geo.Point
		want  string
	}{{"sydney", geo.Point{Lat: -33.87, Lon: 151.21}, "SYD"}, {"frankfurt", geo.Point{Lat: 50.11, Lon: 8.68}, "FRA"}} {
		got := p.FirstFrom(pops, &tc.prior)
		if len(got) != len(plain) || got[0] != tc.want {
			t.Errorf("%s: FirstFrom = %v; want %d picks starting at %s", tc.name, got, len(plain), tc.want)
		}
	}
}
