package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// Intervals of the fleet tests: seconds, not minutes.
const (
	testRecheck   = 2 * time.Second
	testLease     = time.Second
	testHeartbeat = 200 * time.Millisecond
	testReclaim   = 500 * time.Millisecond
)

type tLog struct {
	t  *testing.T
	mu *sync.Mutex
	on *bool
}

func (w tLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.on {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

// testLogger logs to t until the test ends (goroutines may log after).
func testLogger(t *testing.T) *slog.Logger {
	mu, on := &sync.Mutex{}, true
	t.Cleanup(func() { mu.Lock(); on = false; mu.Unlock() })
	return slog.New(slog.NewTextHandler(tLog{t, mu, &on}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// fleetEnv is a Redis (single node or cluster) with probe daemons and schedulers on loopback.
type fleetEnv struct {
	t        *testing.T
	addrs    []string
	log      *slog.Logger
	schedCfg func(*Config) // adjusts the schedulers' config; may be nil
}

func (f *fleetEnv) open() *storage.Store {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: f.addrs, Logger: f.log})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { st.Close() })
	return st
}

// loopbackSource returns 127.0.0.n as a probe source address. Linux routes all of 127.0.0.0/8 to lo, so any
// of its addresses can be bound, though lo lists only 127.0.0.1: the prober is told so through its
// InterfaceAddrs seam.
func loopbackSource(n int) (netip.Addr, func() ([]net.Addr, error)) {
	a := netip.AddrFrom4([4]byte{127, 0, 0, byte(n)})
	return a, func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}, nil
	}
}

func loopbackProber(t *testing.T, source int) *prober.Engine {
	t.Helper()
	cfg := prober.DefaultConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Interval = 20 * time.Millisecond
	cfg.Timeout = time.Second
	if source > 0 {
		a, ifaddrs := loopbackSource(source)
		cfg.Sources, cfg.InterfaceAddrs = []netip.Addr{a}, ifaddrs
	}
	e, err := prober.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// daemon is one running probe daemon.
type daemon struct {
	id     string
	d      *probed.Daemon
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// stop drains the daemon like SIGTERM would.
func (d *daemon) stop() { d.once.Do(func() { d.cancel(); <-d.done }) }

func (f *fleetEnv) startDaemon(pop, id string, p probed.Prober, drain time.Duration) *daemon {
	f.t.Helper()
	st := f.open()
	cfg := probed.Config{PoP: pop, DaemonID: id, Heartbeat: testHeartbeat, ReadBlock: 200 * time.Millisecond,
		ReclaimIdle: testReclaim, ReclaimEvery: 100 * time.Millisecond, BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond, DrainTimeout: drain, Logger: f.log}
	d, err := probed.New(cfg, &probed.StoreQueue{DB: st, PoP: pop, DaemonID: id}, p, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	dm := &daemon{id: id, d: d, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(dm.done); d.Run(ctx) }()
	f.t.Cleanup(dm.stop)
	return dm
}

// sched is one running scheduler.
type sched struct {
	s      *Scheduler
	store  *storage.Store
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (s *sched) stop() { s.once.Do(func() { s.cancel(); <-s.done }) }

// kill makes the scheduler vanish without releasing its lease: its Redis connection dies first, as when
// its machine goes away, then it stops.
func (s *sched) kill() {
	s.store.Close()
	s.stop()
}

func (f *fleetEnv) startScheduler(name string, targets []Target) *sched {
	f.t.Helper()
	st := f.open()
	cfg := Config{Name: name, RecheckInterval: testRecheck, LeaseTTL: testLease, InitialSpread: 200 * time.Millisecond,
		ResultTimeout: 1500 * time.Millisecond, ResultPoll: 50 * time.Millisecond, Logger: f.log}
	if f.schedCfg != nil {
		f.schedCfg(&cfg)
	}
	s, err := New(cfg, StoreBackend{st}, NewMetrics(nil))
	if err != nil {
		f.t.Fatal(err)
	}
	s.SetTargets("test", targets)
	ctx, cancel := context.WithCancel(context.Background())
	sc := &sched{s: s, store: st, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(sc.done); s.Run(ctx) }()
	f.t.Cleanup(sc.stop)
	return sc
}

// gate holds probes until opened; the probes then run for real.
type gate struct {
	p       probed.Prober
	mu      sync.Mutex
	held    int // probes that were held
	inGate  int // probes held now
	open    bool
	release chan struct{}
}

func newGate(p probed.Prober) *gate { return &gate{p: p, release: make(chan struct{})} }

func (g *gate) Probe(ctx context.Context, t prober.Target) prober.Result {
	g.mu.Lock()
	open := g.open
	if !open {
		g.held++
	}
	ch := g.release
	g.mu.Unlock()
	if !open {
		g.mu.Lock()
		g.inGate++
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		g.mu.Lock()
		g.inGate--
		g.mu.Unlock()
	}
	return g.p.Probe(ctx, t)
}

func (g *gate) holding() int { g.mu.Lock(); defer g.mu.Unlock(); return g.inGate }

func (g *gate) heldCount() int { g.mu.Lock(); defer g.mu.Unlock(); return g.held }

func (g *gate) openGate() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		g.open = true
		close(g.release)
	}
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func decision(t *testing.T, st *storage.Store, app string) (placement.Decision, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, ok, err := st.Decision(ctx, app)
	if err != nil {
		return placement.Decision{}, false
	}
	return d, ok
}

func leader(scheds ...*sched) *sched {
	for _, s := range scheds {
		if ok, _ := s.s.Leading(); ok {
			return s
		}
	}
	return nil
}

func candidatePoPs(d placement.Decision) map[string]int {
	out := map[string]int{}
	for _, c := range d.Candidates {
		out[c.PoP]++
	}
	return out
}

// TestFleet runs the fleet on loopback against a single redis-server and a 3-master Redis Cluster.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("fleet integration test: skipped with -short")
	}
	t.Run("single", func(t *testing.T) {
		srv := redistest.Start(t)
		testFleet(t, []string{srv.Addr()}, func() { srv.Stop(t) }, func() { srv.Restart(t) })
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		testFleet(t, c.Addrs(), func() {
			for _, n := range c.Nodes {
				n.Stop(t)
			}
		}, func() {
			for _, n := range c.Nodes {
				n.Restart(t)
			}
		})
	})
}

// testFleet: four PoPs (FRA with two daemons), two schedulers, a host target and a region target on
// loopback. On loopback every PoP reaches the target in microseconds, which only an anycast address could
// do from four continents: the engine's verdict is anycast, the region target falls back to the latency
// model. What is checked is the mechanics: decisions written from every PoP's result, re-claims, lease
// takeover, Redis outage.
func testFleet(t *testing.T, addrs []string, stopRedis, restartRedis func()) {
	f := &fleetEnv{t: t, addrs: addrs, log: testLogger(t)}
	obs := f.open()
	host := testnet.Listen(t)
	endpoint := testnet.Listen(t)
	targets := []Target{
		{App: "shop", Mode: placement.ModeHost, Target: host},
		{App: "eu-app", Mode: placement.ModeRegion, Target: "aws:eu-central-1", Endpoint: endpoint},
	}
	pops := []string{"FRA", "IAD", "SIN", "SYD"}
	fraGate := newGate(loopbackProber(t, 2))
	fra1 := f.startDaemon("FRA", "fra-1", fraGate, time.Millisecond) // dies with its probes in flight
	f.startDaemon("FRA", "fra-2", loopbackProber(t, 3), 5*time.Second)
	for i, pop := range pops[1:] {
		f.startDaemon(pop, "d-"+pop, loopbackProber(t, 4+i), 5*time.Second)
	}
	s1 := f.startScheduler("s1", targets)
	s2 := f.startScheduler("s2", targets)

	// 1. Decisions for both targets, with every PoP's result exactly once.
	waitUntil(t, "decisions naming every PoP", 20*time.Second, func() bool {
		d, ok := decision(t, obs, "shop")
		if !ok || len(d.Candidates) != len(pops) {
			return false
		}
		r, ok := decision(t, obs, "eu-app")
		return ok && r.BestPoP != ""
	})
	d, _ := decision(t, obs, "shop")
	for _, p := range pops {
		if n := candidatePoPs(d)[p]; n != 1 {
			t.Errorf("host decision lists PoP %s %d times, want once: %+v", p, n, d.Candidates)
		}
	}
	if d.Verdict != placement.VerdictAnycast || d.BestPoP != "" {
		t.Errorf("loopback host target: verdict %q best %q, want anycast and not placed (microseconds from four continents)", d.Verdict, d.BestPoP)
	}
	// Rechecks of the same target with noise only (microseconds between PoPs) do not change the decision.
	waitUntil(t, "a recheck of the host target", 2*testRecheck+2*time.Second, func() bool {
		d2, ok := decision(t, obs, "shop")
		return ok && d2.ComputedAt.After(d.ComputedAt)
	})
	if d2, _ := decision(t, obs, "shop"); d2.Version != d.Version {
		t.Errorf("host decision went from version %d to %d on noise alone: %v -> %v", d.Version, d2.Version, d.Candidates, d2.Candidates)
	}
	r, _ := decision(t, obs, "eu-app")
	if r.BestPoP != "FRA" || !r.Estimated {
		t.Errorf("region aws:eu-central-1 whose endpoint looks anycast: best %q estimated %v, want FRA from the latency model", r.BestPoP, r.Estimated)
	}

	// 2. Kill fra-1 with jobs in flight: fra-2 re-claims them before the next recheck is due.
	// fra-1's own pending entries in FRA's consumer group: jobs delivered to it and not acknowledged.
	fra1PEL := func() []redis.XPendingExt {
		ps, _ := obs.Client().XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: storage.KeyJobs("FRA"), Group: storage.JobGroup, Start: "-", End: "+", Count: 100, Consumer: "fra-1"}).Result()
		return ps
	}
	fra1Pending := func() int64 { return int64(len(fra1PEL())) }
	// Kill it while one of its jobs is young: fra-2 may take over a job only after testReclaim of idleness.
	waitUntil(t, "fra-1 to hold a fresh job of its own", 20*time.Second, func() bool {
		if fraGate.holding() == 0 {
			return false
		}
		for _, p := range fra1PEL() {
			if p.Idle < testReclaim/3 {
				return true
			}
		}
		return false
	})
	held := fra1Pending()
	killed := time.Now()
	fra1.stop() // drain timeout 1 ms: its probes are abandoned unacknowledged, as if it had been killed
	if n := fra1Pending(); n == 0 {
		t.Fatalf("no job of fra-1 pending right after it died (had %d): the kill test tests nothing", held)
	}
	took := waitUntil(t, "fra-1's jobs re-claimed and completed", testRecheck, func() bool {
		n, err := obs.PendingJobs(context.Background(), "FRA")
		return err == nil && n == 0 && fra1Pending() == 0
	})
	t.Logf("fra-1 killed with %d jobs of its own pending; re-claimed and completed by fra-2 %v later (recheck interval %v)", held, took, testRecheck)
	waitUntil(t, "a decision after the kill with FRA once", 2*testRecheck+time.Second, func() bool {
		d, ok := decision(t, obs, "shop")
		return ok && d.ComputedAt.After(killed) && candidatePoPs(d)["FRA"] == 1 && len(d.Candidates) == len(pops)
	})

	// 3. Kill the leader: the other takes over within one lease period.
	var lead, standby *sched
	waitUntil(t, "a leader", 5*time.Second, func() bool { lead = leader(s1, s2); return lead != nil })
	standby = s1
	if lead == s1 {
		standby = s2
	}
	_, oldToken := lead.s.Leading()
	lease, leased, err := obs.LeaseInfo(context.Background(), DefaultLeaseName)
	if err != nil || !leased {
		t.Fatalf("lease info: %+v %v %v", lease, leased, err)
	}
	killedAt := time.Now()
	lead.kill()
	takeover := waitUntil(t, "the standby to lead", 5*testLease, func() bool { ok, _ := standby.s.Leading(); return ok })
	_, newToken := standby.s.Leading()
	t.Logf("takeover %v after the leader died (lease %v, %v of it left at the kill), token %d -> %d",
		takeover, testLease, lease.TTL, oldToken, newToken)
	// The lease expires in Redis lease.TTL after the kill; the standby polls every ttl/10. The slack absorbs
	// scheduling on a loaded machine under -race.
	if limit := lease.TTL + testLease/10 + 300*time.Millisecond; takeover > limit {
		t.Errorf("takeover took %v, want within the lease's remaining %v plus one standby poll (%v)", takeover, lease.TTL, limit)
	}
	if newToken <= oldToken {
		t.Errorf("fencing token %d after takeover, want more than %d", newToken, oldToken)
	}
	waitUntil(t, "the new leader to recheck", 2*testRecheck+2*time.Second, func() bool {
		d, ok := decision(t, obs, "shop")
		return ok && d.ComputedAt.After(killedAt)
	})

	if stopRedis == nil {
		return
	}
	// 4. Redis away for 10 s: daemons buffer what they measured, everything recovers by itself.
	sinGate := newGate(loopbackProber(t, 9))
	f.startDaemon("SIN", "d-SIN-2", sinGate, 5*time.Second)
	waitUntil(t, "a SIN job in flight on d-SIN-2", 20*time.Second, func() bool { return sinGate.heldCount() > 0 })
	stopRedis()
	down := time.Now()
	sinGate.openGate() // measured while Redis is away
	time.Sleep(10 * time.Second)
	restartRedis()
	back := time.Now()
	waitUntil(t, "results measured during the outage to arrive", 10*time.Second, func() bool {
		for _, key := range []string{TargetKey(placement.ProbeTCP, host), TargetKey(placement.ProbeTCP, endpoint)} {
			rs, err := obs.History(context.Background(), key, 100)
			if err != nil {
				continue
			}
			for _, r := range rs {
				if r.PoP == "SIN" && r.Samples > 0 && r.At.After(down) && r.At.Before(back) {
					return true
				}
			}
		}
		return false
	})
	waitUntil(t, "decisions rewritten after the outage (Redis lost its data)", 20*time.Second, func() bool {
		d, ok := decision(t, obs, "shop")
		r, ok2 := decision(t, obs, "eu-app")
		return ok && ok2 && d.ComputedAt.After(back) && len(d.Candidates) == len(pops) && r.BestPoP == "FRA"
	})
	if ok, _ := standby.s.Leading(); !ok {
		t.Error("the surviving scheduler does not lead after the outage")
	}
	_ = fmt.Sprint
}
