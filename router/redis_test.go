package router

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// startStore starts a real redis-server and opens a Store on it with a short dial timeout (outage tests) and
// the given read timeout.
func startStore(t testing.TB, readTimeout time.Duration) (*redistest.Server, *storage.Store) {
	t.Helper()
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, Logger: testLogger(t),
		DialTimeout: 300 * time.Millisecond, ReadTimeout: readTimeout, WriteTimeout: readTimeout})
	if err != nil {
		t.Fatalf("storage.Open(%s): %v", srv.Addr(), err)
	}
	t.Cleanup(func() { st.Close() })
	return srv, st
}

// runRouter runs r until the test ends.
func runRouter(t testing.TB, r *Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func put(t testing.TB, st *storage.Store, ds ...placement.Decision) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a busy 2-core machine, -race
	defer cancel()
	if _, err := st.PutDecisions(ctx, ds); err != nil {
		t.Fatalf("PutDecisions: %v", err)
	}
}

// heartbeat sends pop's heartbeats every interval until stop is called; stop returns the time of the last one.
func heartbeat(t testing.TB, st *storage.Store, pop string, interval time.Duration) (stop func() time.Time) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		last time.Time
		wg   sync.WaitGroup
	)
	send := func() {
		at := time.Now()
		if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: pop, DaemonID: pop + "-1", At: at}, interval); err == nil {
			mu.Lock()
			last = at
			mu.Unlock()
		}
	}
	send()
	wg.Go(func() {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				send()
			}
		}
	})
	stopped := false
	stop = func() time.Time {
		if !stopped {
			cancel()
			wg.Wait()
			stopped = true
		}
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestRunFollowsChanges(t *testing.T) {
	_, st := startStore(t, 2*time.Second)
	put(t, st, dec("api", "LHR", "LHR:10", "FRA:12"))
	reg := prometheus.NewPedanticRegistry()
	r := newTestRouter(t, st, func(c *Config) {
		c.RecheckInterval = time.Hour // only notifications can bring changes in time
		c.MaxAge = 2 * time.Hour
		c.Debounce = 200 * time.Millisecond
		c.MinReloadGap = 0
		c.BaselineFraction = 0
		c.Registerer = reg
	})
	runRouter(t, r)
	testwait.Eventually(t, 10*time.Second, "first snapshot", r.Ready)
	if got := r.Route("api", "EWR", "x", KindFetch); got.ExecPoP != "LHR" {
		t.Fatalf("initial route %+v, want LHR", got)
	}
	// Let the watch's initial resync settle, then count reloads caused by a burst of 50 changes.
	time.Sleep(500 * time.Millisecond)
	before := gather(t, reg, "vantage_router_reloads_total")["success"]
	var burst []placement.Decision
	for i := range 50 {
		best := []string{"FRA", "AMS"}[i%2]
		burst = append(burst, dec("api", best, best+":5", "LHR:10"))
	}
	burst = append(burst, dec("api", "CDG", "CDG:5"))
	put(t, st, burst...)
	took := testwait.Eventually(t, 10*time.Second, "the last change reaches Route", func() bool {
		return r.Route("api", "EWR", "x", KindFetch).ExecPoP == "CDG"
	})
	time.Sleep(500 * time.Millisecond) // any reload still queued by the burst
	reloads := gather(t, reg, "vantage_router_reloads_total")["success"] - before
	t.Logf("a burst of 51 changes: seen after %v, %v reloads", took, reloads)
	if reloads < 1 || reloads > 3 {
		t.Errorf("a burst of 51 changes caused %v reloads, want 1 to 3 (debounced)", reloads)
	}
	if n := gather(t, reg, "vantage_router_snapshot_applications")[""]; n != 1 {
		t.Errorf("snapshot_applications = %v, want 1", n)
	}
}

// TestFailoverOnHeartbeatLoss: a PoP that stops heartbeating is avoided within one heartbeat timeout (plus one
// fleet refresh), and not before it times out.
func TestFailoverOnHeartbeatLoss(t *testing.T) {
	const interval = 200 * time.Millisecond
	const timeout = storage.DownAfterIntervals * interval
	_, st := startStore(t, 2*time.Second)
	put(t, st, dec("api", "LHR", "LHR:10", "FRA:14", "AMS:40"))
	stopLHR := heartbeat(t, st, "LHR", interval)
	heartbeat(t, st, "FRA", time.Second) // slower: a late heartbeat on a busy machine must not take FRA down too
	heartbeat(t, st, "EWR", time.Second)
	r := newTestRouter(t, st, func(c *Config) {
		c.FleetInterval = 50 * time.Millisecond
		c.BaselineFraction = 0
	})
	runRouter(t, r)
	testwait.Eventually(t, 10*time.Second, "routes to LHR with a fleet view", func() bool {
		fv := r.view.Load().fleet
		return fv != nil && fv.known && r.Route("api", "EWR", "x", KindFetch).ExecPoP == "LHR"
	})
	last := stopLHR()
	var got Result
	testwait.Eventually(t, timeout+5*time.Second, "failover away from LHR", func() bool {
		got = r.Route("api", "EWR", "x", KindFetch)
		return got.ExecPoP != "LHR"
	})
	after := time.Since(last)
	t.Logf("LHR's last heartbeat %v ago when avoided (timeout %v, fleet refresh %v): %+v", after, timeout,
		r.cfg.FleetInterval, got)
	if got != (Result{"FRA", "remote-FRA", ReasonFailover, true}) {
		t.Errorf("after LHR stopped: %+v, want failover to FRA", got)
	}
	// Within one heartbeat timeout plus one fleet refresh; the slack is for a busy machine.
	if limit := timeout + r.cfg.FleetInterval + 400*time.Millisecond; after > limit {
		t.Errorf("LHR avoided %v after its last heartbeat, want within %v", after, limit)
	}
	if after < timeout-interval/2 {
		t.Errorf("LHR avoided %v after its last heartbeat, before the %v timeout", after, timeout)
	}
	// It comes back when it heartbeats again.
	heartbeat(t, st, "LHR", interval)
	testwait.Eventually(t, 5*time.Second, "LHR back", func() bool { return r.Route("api", "EWR", "x", KindFetch).ExecPoP == "LHR" })
}

func TestDrainedPoPAvoided(t *testing.T) {
	_, st := startStore(t, 2*time.Second)
	put(t, st, dec("api", "LHR", "LHR:10", "FRA:14"))
	for _, p := range []string{"LHR", "FRA", "EWR"} {
		heartbeat(t, st, p, time.Second)
	}
	r := newTestRouter(t, st, func(c *Config) {
		c.FleetInterval = 50 * time.Millisecond
		c.BaselineFraction = 0
	})
	runRouter(t, r)
	testwait.Eventually(t, 10*time.Second, "routes to LHR", func() bool { return r.Route("api", "EWR", "x", KindFetch).ExecPoP == "LHR" })
	ctx := context.Background()
	if err := st.SetDrained(ctx, "LHR", true); err != nil {
		t.Fatal(err)
	}
	took := testwait.Eventually(t, 5*time.Second, "drained LHR avoided", func() bool {
		return r.Route("api", "EWR", "x", KindFetch) == Result{"FRA", "remote-FRA", ReasonFailover, true}
	})
	t.Logf("drain seen after %v", took)
	if err := st.SetDrained(ctx, "LHR", false); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 5*time.Second, "undrained LHR used again", func() bool {
		return r.Route("api", "EWR", "x", KindFetch) == Result{"LHR", "remote-LHR", ReasonRemote, true}
	})
}

// TestStaleWhenRedisDown: with Redis stopped past MaxAge, Route runs locally with the stale reason (and the
// metric says so); when Redis is back, it recovers.
func TestStaleWhenRedisDown(t *testing.T) {
	const maxAge = time.Second
	srv, st := startStore(t, 2*time.Second)
	put(t, st, dec("api", "LHR", "LHR:10"))
	reg := prometheus.NewPedanticRegistry()
	r := newTestRouter(t, st, func(c *Config) {
		c.RecheckInterval = maxAge / 2 // reloads keep the router fresh while Redis is up
		c.FleetInterval = 50 * time.Millisecond
		c.RetryInterval = 100 * time.Millisecond
		c.MaxAge = maxAge
		c.BaselineFraction = 0
		c.Registerer = reg
	})
	runRouter(t, r)
	testwait.Eventually(t, 10*time.Second, "first snapshot", r.Ready)
	srv.Stop(t)
	// The snapshot outlives the outage for MaxAge.
	if got := r.Route("api", "EWR", "x", KindFetch); time.Since(r.Info().LastContact) < maxAge-100*time.Millisecond && got.Reason != ReasonRemote {
		t.Errorf("just after Redis stopped: %+v, want remote-LHR from the kept snapshot", got)
	}
	var got Result
	took := testwait.Eventually(t, maxAge+10*time.Second, "stale", func() bool {
		got = r.Route("api", "EWR", "x", KindFetch)
		return got.Reason == ReasonStale
	})
	t.Logf("stale %v after Redis stopped (max age %v)", took, maxAge)
	if want := (Result{"EWR", "local-EWR", ReasonStale, false}); got != want {
		t.Errorf("stale route %+v, want %+v", got, want)
	}
	// Stale counts from the last contact, the last reload before the stop (fleet refreshes do not count): the
	// router keeps it in whole milliseconds, and so does Info.
	if since := time.Since(r.Info().LastContact); since < maxAge {
		t.Errorf("stale %v after the last contact with Redis, before the max age %v", since, maxAge)
	}
	if v := gather(t, reg, "vantage_router_stale")[""]; v != 1 {
		t.Errorf("vantage_router_stale = %v, want 1", v)
	}
	if v := gather(t, reg, "vantage_router_routes_total")["stale"]; v < 1 {
		t.Errorf(`routes_total{reason="stale"} = %v, want >= 1`, v)
	}

	restarted := time.Now()
	srv.Restart(t) // an empty Redis (no persistence): the scheduler writes the decision again
	// The client's pool may still answer with its last dial error for a moment (go-redis retries dials in
	// the background after a run of failures): the writer retries, as the scheduler does.
	testwait.Eventually(t, 15*time.Second, "decision written again", func() bool {
		_, err := st.PutDecisions(context.Background(), []placement.Decision{dec("api", "LHR", "LHR:10")})
		return err == nil
	})
	testwait.Eventually(t, 15*time.Second, "recovered", func() bool {
		return r.Route("api", "EWR", "x", KindFetch) == Result{"LHR", "remote-LHR", ReasonRemote, true}
	})
	t.Logf("recovered %v after the restart began", time.Since(restarted))
	if v := gather(t, reg, "vantage_router_stale")[""]; v != 0 {
		t.Errorf("vantage_router_stale = %v after recovery, want 0", v)
	}
}

// TestReloadFromRedis loads 100,000 decisions through storage.ScanDecisions (the 1,000,000 figure is
// BenchmarkReload1M's) and checks that every one is routable.
func TestReloadFromRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100,000 decisions into redis-server; skipped with -short")
	}
	const n = 100_000
	_, st := startStore(t, 30*time.Second) // 5,000 decisions a pipeline beside a heavy build took over 2 s
	fill(t, st, n)
	r := newTestRouter(t, st, func(c *Config) { c.BaselineFraction = 0 })
	start := time.Now()
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("reloaded %d decisions in %v", n, time.Since(start))
	if got := r.Info().Apps; got != n {
		t.Fatalf("snapshot holds %d apps, want %d", got, n)
	}
	for i := 0; i < n; i += 997 {
		want := fillPoPs[i%len(fillPoPs)]
		if got := r.Route(fillApp(i), "EWR", "x", KindFetch); got.ExecPoP != want {
			t.Fatalf("%s: %+v, want %s", fillApp(i), got, want)
		}
	}
}

var fillPoPs = []string{"LHR", "FRA", "AMS", "CDG", "IAD", "SJC", "NRT", "SIN", "SYD", "GRU"}

func fillApp(i int) string { return fmt.Sprintf("app-%07d.workers.example", i) }

// fillDecision is decision i of the synthetic fleet: a host-mode app with four candidates.
func fillDecision(i int) placement.Decision {
	p := fillPoPs
	k := i % len(p)
	return dec(fillApp(i), p[k], p[k]+":10", p[(k+1)%len(p)]+":14", p[(k+2)%len(p)]+":19", p[(k+3)%len(p)]+":60")
}

// fill stores decisions 0..n-1 in batches.
func fill(tb testing.TB, st *storage.Store, n int) {
	tb.Helper()
	const batch = 5000
	ds := make([]placement.Decision, 0, batch)
	for i := 0; i < n; i++ {
		ds = append(ds, fillDecision(i))
		if len(ds) == batch || i == n-1 {
			put(tb, st, ds...)
			ds = ds[:0]
		}
	}
}

// TestCorruptDecisionSkipped: a garbage value in a decision bucket, beside good decisions (one in the same
// bucket), does not stop the scan: a newly started router becomes ready on its first scan and serves the good
// decisions; the value is counted once, however many reloads meet it.
func TestCorruptDecisionSkipped(t *testing.T) {
	_, st := startStore(t, 2*time.Second)
	put(t, st, dec("api", "LHR", "LHR:10"), dec("shop", "FRA", "FRA:10"))
	ctx := context.Background()
	key := storage.KeyDecisions(storage.DecisionBucket("api"))
	if err := st.Client().HSet(ctx, key, "garbage", "not a decision").Err(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(st.Metrics())
	r := newTestRouter(t, st, func(c *Config) {
		c.RecheckInterval = 100 * time.Millisecond // several reloads meet the garbage
		c.BaselineFraction = 0
		c.Registerer = reg
	})
	runRouter(t, r)
	testwait.Eventually(t, 10*time.Second, "first snapshot despite the corrupt value", r.Ready)
	for app, want := range map[string]string{"api": "LHR", "shop": "FRA"} {
		if got := r.Route(app, "EWR", "x", KindFetch); got.ExecPoP != want || got.Reason != ReasonRemote {
			t.Errorf("%s: %+v, want remote %s", app, got, want)
		}
	}
	testwait.Eventually(t, 10*time.Second, "three more reloads", func() bool {
		return gather(t, reg, "vantage_router_reloads_total")["success"] >= 4
	})
	if v := gather(t, reg, "vantage_storage_corrupt_values_total")["decision"]; v != 1 {
		t.Errorf(`corrupt_values_total{kind="decision"} = %v after several reloads, want 1`, v)
	}
	if r.Info().Stale {
		t.Error("router stale while its scans succeed")
	}
}

// TestStaleWhenScansFail: the staleness clock moves on decision scans only. With Redis up (the fleet refreshes
// succeed) but every scan failing, the router goes stale after MaxAge instead of serving an old snapshot forever.
func TestStaleWhenScansFail(t *testing.T) {
	const maxAge = time.Second
	_, st := startStore(t, 2*time.Second)
	put(t, st, dec("api", "LHR", "LHR:10"))
	defer heartbeat(t, st, "LHR", 100*time.Millisecond)()
	reg := prometheus.NewPedanticRegistry()
	r := newTestRouter(t, st, func(c *Config) {
		c.RecheckInterval = maxAge / 4
		c.RetryInterval = maxAge / 4
		c.FleetInterval = 50 * time.Millisecond
		c.MaxAge = maxAge
		c.BaselineFraction = 0
		c.Registerer = reg
	})
	runRouter(t, r)
	testwait.Eventually(t, 10*time.Second, "first snapshot", r.Ready)
	if got := r.Route("api", "EWR", "x", KindFetch); got.Reason != ReasonRemote {
		t.Fatalf("before the failure: %+v, want remote", got)
	}
	// A bucket that is not a hash: HVALS fails with WRONGTYPE, so every scan fails while Redis is reachable.
	bad := storage.KeyDecisions((storage.DecisionBucket("api") + 1) % storage.DecisionBuckets)
	if err := st.Client().Set(context.Background(), bad, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	took := testwait.Eventually(t, maxAge+10*time.Second, "stale", func() bool {
		return r.Route("api", "EWR", "x", KindFetch).Reason == ReasonStale
	})
	t.Logf("stale %v after scans began to fail (max age %v)", took, maxAge)
	if v := gather(t, reg, "vantage_router_fleet_refreshes_total")["success"]; v < 5 {
		t.Errorf("fleet refreshes succeeded %v times, want many: the test must show that they do not keep the router fresh", v)
	}
	if err := st.Client().Del(context.Background(), bad).Err(); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "fresh again", func() bool {
		return r.Route("api", "EWR", "x", KindFetch).Reason == ReasonRemote
	})
}
