package router

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// memSource is a Source whose decisions and fleet the test sets; Reload and RefreshFleet read it as they would
// Redis.
type memSource struct {
	mu    sync.Mutex
	ds    []placement.Decision
	fleet []storage.PoPState
}

func (m *memSource) set(ds []placement.Decision, fleet []storage.PoPState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ds, m.fleet = ds, fleet
}

func (m *memSource) ScanDecisions(ctx context.Context, fn func(placement.Decision) error) error {
	m.mu.Lock()
	ds := m.ds
	m.mu.Unlock()
	for _, d := range ds {
		if err := fn(d); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (m *memSource) WatchDecisions(ctx context.Context, _ func(string)) error {
	<-ctx.Done()
	return ctx.Err()
}

func (m *memSource) Fleet(context.Context) ([]storage.PoPState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fleet, nil
}

// popNames returns the current table's codes, sorted.
func popNames(r *Router) []string { return slices.Sorted(slices.Values(r.view.Load().pops.names)) }

// bogus returns n decisions whose best PoP is one of n distinct codes prefix-0 ... prefix-(n-1).
func bogus(prefix string, n int) []placement.Decision {
	ds := make([]placement.Decision, n)
	for i := range ds {
		pop := fmt.Sprintf("%s-%d", prefix, i)
		ds[i] = dec(fmt.Sprintf("%s-app-%d", prefix, i), pop, pop+":5")
	}
	return ds
}

func mustReload(t *testing.T, r *Router) {
	t.Helper()
	if err := r.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
}

// TestReloadForgetsRetiredPoPs: PoP codes that only retired decisions named leave the table at the next
// reload; the snapshot's, the fleet's and the configured ones stay, and the fleet view follows the new table.
func TestReloadForgetsRetiredPoPs(t *testing.T) {
	src := &memSource{}
	r := newTestRouter(t, src, func(c *Config) { c.PoPs = []string{"EWR"}; c.BaselineFraction = 0 })
	live := []placement.Decision{dec("api", "LHR", "LHR:10", "FRA:12")}
	fleet := pops("LHR-", "FRA", "AMS") // LHR down: api fails over to FRA
	src.set(append(slices.Clone(live), bogus("BOGUS", 100)...), fleet)
	if err := r.RefreshFleet(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustReload(t, r)
	if got := r.Info().PoPs; got != 104 {
		t.Fatalf("after loading 100 bogus PoPs: %d PoPs, want 104 (EWR, LHR, FRA, AMS and the 100)", got)
	}
	if got := r.Route("BOGUS-app-7", "EWR", "x", KindFetch); got.Reason != ReasonUnavailable {
		t.Fatalf("bogus app: %+v, want unavailable (its decision is live, its PoP not in the fleet)", got)
	}

	src.set(live, fleet)
	mustReload(t, r)
	if got, want := popNames(r), []string{"AMS", "EWR", "FRA", "LHR"}; !slices.Equal(got, want) {
		t.Errorf("after the bogus decisions are gone: PoPs %v, want %v", got, want)
	}
	if got := r.Info().PoPs; got != 4 {
		t.Errorf("Info().PoPs = %d, want 4", got)
	}
	if got := r.Route("api", "EWR", "x", KindFetch); got != (Result{"FRA", "remote-FRA", ReasonFailover, true}) {
		t.Errorf("api after the reload: %+v, want failover to FRA (the fleet view rebuilt for the new table)", got)
	}
	if got := r.Route("api", "FRA", "x", KindFetch); got.Header != "local-FRA" {
		t.Errorf("ingress FRA: header %q, want local-FRA", got.Header)
	}
	if got := r.Route("BOGUS-app-7", "EWR", "x", KindFetch); got.Routed || got.Reason != ReasonNoDecision {
		t.Errorf("retired app: %+v, want local, no decision", got)
	}

	// The fleet drops AMS: the next reload forgets it too; LHR comes back up.
	src.set(live, pops("LHR", "FRA"))
	if err := r.RefreshFleet(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustReload(t, r)
	if got, want := popNames(r), []string{"EWR", "FRA", "LHR"}; !slices.Equal(got, want) {
		t.Errorf("after AMS left the fleet: PoPs %v, want %v", got, want)
	}
	if got := r.Route("api", "EWR", "x", KindFetch); got != (Result{"LHR", "remote-LHR", ReasonRemote, true}) {
		t.Errorf("api with LHR up: %+v, want LHR", got)
	}
}

// TestPoPChurnCannotExhaustTable: rounds of MaxPoPs-10 distinct codes, each round's gone at the next reload,
// never fill the table: a new real PoP is interned afterwards, from a decision and from the fleet.
func TestPoPChurnCannotExhaustTable(t *testing.T) {
	src := &memSource{}
	r := newTestRouter(t, src, func(c *Config) { c.PoPs = []string{"EWR"}; c.BaselineFraction = 0 })
	for round := range 3 {
		prefix := fmt.Sprintf("R%d", round)
		src.set(bogus(prefix, MaxPoPs-10), nil)
		mustReload(t, r)
		if got := r.Info().PoPs; got != MaxPoPs-9 {
			t.Fatalf("round %d: %d PoPs, want %d (the round's codes and EWR)", round, got, MaxPoPs-9)
		}
		last := fmt.Sprintf("%s-%d", prefix, MaxPoPs-11)
		if got := r.Route(fmt.Sprintf("%s-app-%d", prefix, MaxPoPs-11), "EWR", "x", KindFetch); got.ExecPoP != last {
			t.Fatalf("round %d: last app %+v, want %s (its PoP interned)", round, got, last)
		}
	}
	src.set([]placement.Decision{dec("api", "NEWPOP", "NEWPOP:5")}, pops("NEWPOP", "FLEETPOP"))
	if err := r.RefreshFleet(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustReload(t, r)
	if got, want := popNames(r), []string{"EWR", "FLEETPOP", "NEWPOP"}; !slices.Equal(got, want) {
		t.Errorf("after the churn: PoPs %v, want %v", got, want)
	}
	if got := r.Route("api", "EWR", "x", KindFetch); got != (Result{"NEWPOP", "remote-NEWPOP", ReasonRemote, true}) {
		t.Errorf("new real PoP after the churn: %+v, want NEWPOP", got)
	}
}

// TestRouteConsistentAcrossTableSwaps: Route, reloads alternating between snapshots whose tables index LHR
// differently, and fleet refreshes run concurrently; every answer names the decision's PoP with its own header
// (a snapshot read with another table's indexes, or a fleet view of another table, would not).
func TestRouteConsistentAcrossTableSwaps(t *testing.T) {
	src := &memSource{}
	r := newTestRouter(t, src, func(c *Config) { c.PoPs = []string{"EWR"}; c.BaselineFraction = 0 })
	api := dec("api", "LHR", "LHR:10")
	sets := [][]placement.Decision{
		append(bogus("A", 50), api),
		append(bogus("B", 7), api),
	}
	fleet := [][]storage.PoPState{pops("LHR", "EWR", "F1"), pops("F2", "F3", "LHR")}
	src.set(sets[0], fleet[0])
	mustReload(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bad atomic.Value
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				got := r.Route("api", "EWR", "x", KindFetch)
				if got != (Result{"LHR", "remote-LHR", ReasonRemote, true}) {
					bad.CompareAndSwap(nil, got)
				}
				if got := r.Route("none", "EWR", "x", KindFetch); got.Header != "local-EWR" {
					bad.CompareAndSwap(nil, got)
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			src.set(sets[i%2], fleet[i/3%2])
			if err := r.RefreshFleet(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("RefreshFleet: %v", err)
			}
		}
	})
	for i := range 200 {
		src.set(sets[i%2], fleet[i%2])
		mustReload(t, r)
	}
	cancel()
	wg.Wait()
	if got := bad.Load(); got != nil {
		t.Errorf("Route during table swaps: %+v, want LHR (remote-LHR) and local-EWR", got)
	}
}
