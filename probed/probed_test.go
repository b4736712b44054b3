package probed

import (
	"context"
	"fmt"
	"github.com/vantage-edge/vantage/internal/testwait"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Logf("%s", p); return len(p), nil }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func openStore(t *testing.T, addr string) *storage.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{addr}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newEngine(t *testing.T) *prober.Engine {
	t.Helper()
	cfg := prober.DefaultConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Interval = 50 * time.Millisecond
	e, err := prober.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan struct{}
}

// stop cancels the daemon (SIGTERM) and waits for its drain.
func (r *running) stop() { r.cancel(); <-r.done }

func startDaemon(t *testing.T, st *storage.Store, cfg Config, p Prober) *running {
	t.Helper()
	cfg.Logger = testLogger(t).With("daemon", cfg.DaemonID)
	q := &StoreQueue{DB: st, PoP: cfg.PoP, DaemonID: cfg.DaemonID}
	d, err := New(cfg, q, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); d.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func fastConfig(pop, id string) Config {
	return Config{PoP: pop, DaemonID: id, Heartbeat: 200 * time.Millisecond, ReadBlock: 200 * time.Millisecond,
		ReclaimIdle: time.Second, ReclaimEvery: 200 * time.Millisecond, BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond, DrainTimeout: 5 * time.Second}
}

func enqueue(t *testing.T, st *storage.Store, pop string, n int, target, key, round string, count int) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, err := st.EnqueueJob(context.Background(), pop, storage.Job{Target: target, Kind: placement.ProbeTCP,
			Count: count, Round: fmt.Sprintf("%s-%d", round, i), Key: fmt.Sprintf("%s-%d", key, i)})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// resultsOf returns how many of keys key-0..key-(n-1) have a result from pop.
func resultsOf(t *testing.T, st *storage.Store, pop, key string, n int) int {
	t.Helper()
	got := 0
	for i := 0; i < n; i++ {
		rs, err := st.LatestResults(context.Background(), fmt.Sprintf("%s-%d", key, i))
		if err != nil {
			return 0
		}
		if r, ok := rs[pop]; ok && r.Class == "" && r.Samples > 0 {
			got++
		}
	}
	return got
}

func pending(t *testing.T, st *storage.Store, pop string) int64 {
	t.Helper()
	n, err := st.PendingJobs(context.Background(), pop)
	if err != nil {
		return -1
	}
	return n
}

func TestDaemonRunsJobsStoresThenAcks(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	target := testnet.Listen(t)
	r := startDaemon(t, st, fastConfig("FRA", "fra-1"), newEngine(t))
	enqueue(t, st, "FRA", 5, target, "k", "r", 2)
	testwait.Eventually(t, 10*time.Second, "5 results", func() bool { return resultsOf(t, st, "FRA", "k", 5) == 5 })
	testwait.Eventually(t, 5*time.Second, "every job acknowledged", func() bool { return pending(t, st, "FRA") == 0 })
	rs, _ := st.LatestResults(context.Background(), "k-0")
	if got := rs["FRA"]; got.Round != "r-0" || got.Kind != placement.ProbeTCP || got.MinMs <= 0 || got.Samples != 2 || got.Class != "" {
		t.Errorf("stored result %+v: want round r-0, kind tcp, 2 samples, a positive min RTT", got)
	}
	fleet, err := st.Fleet(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(fleet) != 1 || fleet[0].PoP != "FRA" || !fleet[0].Up {
		t.Errorf("fleet %+v: want FRA up from the daemon's heartbeats", fleet)
	}
	if !r.d.Ready() {
		t.Error("daemon not ready with Redis up")
	}
}

// gatedProber holds every probe until released, so tests can have jobs in flight.
type gatedProber struct {
	p       Prober
	mu      sync.Mutex
	started int
	gate    chan struct{}
}

func (g *gatedProber) Probe(ctx context.Context, t prober.Target) prober.Result {
	g.mu.Lock()
	g.started++
	g.mu.Unlock()
	select {
	case <-g.gate:
	case <-ctx.Done():
	}
	return g.p.Probe(ctx, t)
}

func (g *gatedProber) count() int { g.mu.Lock(); defer g.mu.Unlock(); return g.started }

func TestDaemonKilledWithJobsInFlightOthersReclaim(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	target := testnet.Listen(t)
	stuck := &gatedProber{p: newEngine(t), gate: make(chan struct{})}
	cfg := fastConfig("FRA", "fra-1")
	cfg.DrainTimeout = 50 * time.Millisecond // dies before its probes finish
	d1 := startDaemon(t, st, cfg, stuck)
	enqueue(t, st, "FRA", 4, target, "k", "r", 1)
	testwait.Eventually(t, 10*time.Second, "4 probes in flight on fra-1", func() bool { return stuck.count() == 4 })
	d1.stop()
	if n := resultsOf(t, st, "FRA", "k", 4); n != 0 {
		t.Fatalf("%d results stored by a daemon whose probes never finished", n)
	}
	if p := pending(t, st, "FRA"); p != 4 {
		t.Fatalf("%d jobs pending after fra-1 died, want its 4", p)
	}
	start := time.Now()
	d2 := startDaemon(t, st, fastConfig("FRA", "fra-2"), newEngine(t))
	testwait.Eventually(t, 10*time.Second, "fra-2 to re-claim and complete every job", func() bool {
		return resultsOf(t, st, "FRA", "k", 4) == 4 && pending(t, st, "FRA") == 0
	})
	t.Logf("re-claimed and completed in %v", time.Since(start))
	if got := value(d2.d.metrics.reclaimed); got != 4 {
		t.Errorf("re-claimed %v jobs, want 4", got)
	}
	if got := value(d1.d.metrics.jobs.WithLabelValues("abandoned")); got != 4 {
		t.Errorf("fra-1 abandoned %v jobs, want 4", got)
	}
}

func TestDaemonDrainFinishesInFlightJobs(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	target := testnet.Listen(t)
	gated := &gatedProber{p: newEngine(t), gate: make(chan struct{})}
	d := startDaemon(t, st, fastConfig("FRA", "fra-1"), gated)
	enqueue(t, st, "FRA", 3, target, "k", "r", 1)
	testwait.Eventually(t, 10*time.Second, "3 probes in flight", func() bool { return gated.count() == 3 })
	d.cancel() // SIGTERM
	time.Sleep(100 * time.Millisecond)
	close(gated.gate) // the probes finish within the drain timeout
	<-d.done
	if n := resultsOf(t, st, "FRA", "k", 3); n != 3 {
		t.Errorf("%d of 3 in-flight results stored by the drain", n)
	}
	if p := pending(t, st, "FRA"); p != 0 {
		t.Errorf("%d jobs left pending after a clean drain", p)
	}
}

func TestDaemonSurvivesRedisOutageWithoutLosingResults(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	target := testnet.Listen(t)
	gated := &gatedProber{p: newEngine(t), gate: make(chan struct{})}
	d := startDaemon(t, st, fastConfig("FRA", "fra-1"), gated)
	enqueue(t, st, "FRA", 3, target, "k", "r", 1)
	testwait.Eventually(t, 10*time.Second, "3 probes in flight", func() bool { return gated.count() == 3 })
	srv.Stop(t)
	close(gated.gate) // measured while Redis is away
	testwait.Eventually(t, 10*time.Second, "3 results buffered", func() bool { return d.d.out.len() == 3 })
	testwait.Eventually(t, 10*time.Second, "the daemon to notice", func() bool { return !d.d.Ready() })
	time.Sleep(time.Second)
	srv.Restart(t)
	testwait.Eventually(t, 15*time.Second, "buffered results to arrive after the restart", func() bool {
		return resultsOf(t, st, "FRA", "k", 3) == 3
	})
	// New work after the restart (the stream and group are gone with the data: the daemon recreates them).
	enqueue(t, st, "FRA", 2, target, "after", "a", 1)
	testwait.Eventually(t, 15*time.Second, "jobs enqueued after the restart to complete", func() bool {
		return resultsOf(t, st, "FRA", "after", 2) == 2
	})
	if got := value(d.d.metrics.dropped); got != 0 {
		t.Errorf("%v results dropped with a buffer far from full", got)
	}
	if !d.d.Ready() {
		t.Error("daemon not ready after Redis came back")
	}
}

func TestOutboxDropsOldestWhenFull(t *testing.T) {
	m := NewMetrics(nil)
	o := newOutbox(2, m)
	for i := 0; i < 3; i++ {
		o.push(result{job: Job{ID: fmt.Sprint(i), StreamID: fmt.Sprint(i)}})
	}
	if got := value(m.dropped); got != 1 {
		t.Fatalf("dropped %v, want 1", got)
	}
	r, ok := o.peek(context.Background())
	if !ok || r.job.ID != "1" {
		t.Fatalf("oldest kept is %q, want 1 (0 was dropped)", r.job.ID)
	}
	o.pop(r)
	o.close()
	r, _ = o.peek(context.Background())
	o.pop(r)
	if _, ok := o.peek(context.Background()); ok {
		t.Fatal("peek on a closed empty outbox returned a result")
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestDaemonAcksExpiredJobsWithoutProbing(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	gated := &gatedProber{p: newEngine(t), gate: make(chan struct{})}
	close(gated.gate)
	r := startDaemon(t, st, fastConfig("FRA", "fra-1"), gated)
	_, err := st.EnqueueJob(context.Background(), "FRA", storage.Job{Target: testnet.Listen(t), Kind: placement.ProbeTCP,
		Key: "late", Round: "r", Deadline: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "the expired job acknowledged", func() bool {
		return value(r.d.metrics.jobs.WithLabelValues("expired")) == 1 && pending(t, st, "FRA") == 0
	})
	if gated.count() != 0 {
		t.Errorf("%d probes run for a job past its deadline", gated.count())
	}
	if rs, _ := st.LatestResults(context.Background(), "late"); len(rs) != 0 {
		t.Errorf("results %v stored for an expired job", rs)
	}
}
