package probed

import (
	"context"
	"github.com/vantage-edge/vantage/internal/testwait"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// slowProber takes its time per probe, returning early when its context ends unless it ignores it.
type slowProber struct {
	take      time.Duration
	ignoreCtx bool
	started   chan string // the job target of every probe started
	mu        sync.Mutex
	ended     []time.Time
}

func (p *slowProber) Probe(ctx context.Context, t prober.Target) prober.Result {
	p.started <- t.Addr
	timer := time.NewTimer(p.take)
	defer timer.Stop()
	if p.ignoreCtx {
		<-timer.C
	} else {
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	p.mu.Lock()
	p.ended = append(p.ended, time.Now())
	p.mu.Unlock()
	return prober.Result{Kind: t.Kind, Target: t.Addr, Success: ctx.Err() == nil}
}

// racingQueue reproduces the reader and the reclaimer both counting the same free slot: its Read blocks until
// the reclaimed job's probe has started, then returns a job that has no slot left.
type racingQueue struct {
	probeStarted chan struct{}
	readReturned chan struct{}
	mu           sync.Mutex
	reads        int
	reclaims     int
}

func (q *racingQueue) Read(ctx context.Context, _ int, _ time.Duration) ([]Job, error) {
	q.mu.Lock()
	q.reads++
	first := q.reads == 1
	q.mu.Unlock()
	if first {
		select {
		case <-q.probeStarted:
			defer close(q.readReturned)
			return []Job{{ID: "read-1", StreamID: "read-1", Target: prober.Target{Kind: placement.ProbeTCP, Addr: "read:1"}}}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (q *racingQueue) Reclaim(context.Context, time.Duration, int) ([]Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reclaims++
	if q.reclaims > 1 {
		return nil, nil
	}
	return []Job{{ID: "reclaimed-1", StreamID: "reclaimed-1", Target: prober.Target{Kind: placement.ProbeTCP, Addr: "reclaimed:1"}}}, nil
}

func (q *racingQueue) Store(context.Context, Job, prober.Result) error { return nil }
func (q *racingQueue) Ack(context.Context, Job) error                  { return nil }
func (q *racingQueue) Heartbeat(context.Context, time.Duration) error  { return nil }

// TestSIGTERMDrainsWithinTimeout: an 8 s probe holds the only slot, a job read meanwhile waits for it, and
// SIGTERM with a 0.5 s drain timeout returns within the drain timeout (asserted generously: plus 2 s), whether
// the probe honours its cancellation or not. Before, the wait for the slot ignored cancellation: 8.2 s.
func TestSIGTERMDrainsWithinTimeout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ignoreCtx bool
	}{{"probe_honours_cancellation", false}, {"probe_ignores_cancellation", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := &slowProber{take: 8 * time.Second, ignoreCtx: tc.ignoreCtx, started: make(chan string, 4)}
			q := &racingQueue{probeStarted: make(chan struct{}), readReturned: make(chan struct{})}
			cfg := fastConfig("FRA", "fra-1")
			cfg.Concurrency, cfg.ReclaimEvery, cfg.DrainTimeout = 1, 10*time.Millisecond, 500*time.Millisecond
			cfg.Logger = testLogger(t)
			d, err := New(cfg, q, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { defer close(done); d.Run(ctx) }()
			select {
			case got := <-p.started:
				if got != "reclaimed:1" {
					t.Fatalf("first probe %s, want the reclaimed job", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the reclaimed job's probe never started")
			}
			close(q.probeStarted)
			<-q.readReturned
			time.Sleep(100 * time.Millisecond) // the reader is now waiting for the slot
			cancel()                           // SIGTERM
			start := time.Now()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return 30 s after SIGTERM")
			}
			if el, limit := time.Since(start), cfg.DrainTimeout+2*time.Second; el > limit {
				t.Errorf("drain took %v, want within the drain timeout %v (asserted < %v)", el, cfg.DrainTimeout, limit)
			}
			select {
			case got := <-p.started:
				t.Errorf("probe of %s started during the drain: the job without a slot must stay pending", got)
			default:
			}
		})
	}
}

// TestProbeBoundedByJobDeadline: a probe that would take 30 s is cut at its job's deadline, 1 s away: the job
// is acknowledged as expired, with no result, and the slot is free again.
func TestProbeBoundedByJobDeadline(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	p := &slowProber{take: 30 * time.Second, started: make(chan string, 4)}
	cfg := fastConfig("FRA", "fra-1")
	cfg.Concurrency = 1
	r := startDaemon(t, st, cfg, p)
	deadline := time.Now().Add(time.Second)
	_, err := st.EnqueueJob(context.Background(), "FRA", storage.Job{Target: "slow.example:80", Kind: placement.ProbeTCP,
		Count: 100, Key: "slow", Round: "adhoc", Deadline: deadline})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 15*time.Second, "the job acknowledged as expired", func() bool {
		return value(r.d.metrics.jobs.WithLabelValues("expired")) == 1 && pending(t, st, "FRA") == 0
	})
	p.mu.Lock()
	ended := p.ended
	p.mu.Unlock()
	if len(ended) != 1 {
		t.Fatalf("%d probes ended, want the one", len(ended))
	}
	if late := ended[0].Sub(deadline); late > 5*time.Second {
		t.Errorf("the probe ran %v past its job's deadline", late)
	}
	if rs, _ := st.LatestResults(context.Background(), "slow"); len(rs) != 0 {
		t.Errorf("results %v stored for a probe cut at its deadline", rs)
	}
	// The slot is free: a next job runs.
	enqueue(t, st, "FRA", 1, "next.example:80", "next", "r", 1)
	testwait.Eventually(t, 10*time.Second, "the next job's probe", func() bool { return len(p.started) == 2 })
}

// TestReclaimerPrunesStaleConsumers: a daemon that stopped long ago (a consumer idle with nothing pending) is
// deleted from the PoP's group by a running daemon's reclaimer. Redis before 7.2 counts idle time from the last
// job delivered, so a live daemon without jobs may be deleted too: harmless, its next job re-creates it.
func TestReclaimerPrunesStaleConsumers(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	ctx := context.Background()
	if _, err := st.EnqueueJob(ctx, "FRA", storage.Job{Target: "x.example:80", Kind: placement.ProbeTCP, Key: "x"}); err != nil {
		t.Fatal(err)
	}
	js, err := st.ReadJobs(ctx, "FRA", "gone-daemon", 1, 0)
	if err != nil || len(js) != 1 {
		t.Fatalf("ReadJobs = %v, %v", js, err)
	}
	if err := st.AckJob(ctx, "FRA", js[0].ID); err != nil {
		t.Fatal(err)
	}
	consumers := func() map[string]bool {
		cs, err := st.Client().XInfoConsumers(ctx, storage.KeyJobs("FRA"), storage.JobGroup).Result()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, c := range cs {
			out[c.Name] = true
		}
		return out
	}
	cfg := fastConfig("FRA", "fra-1")
	cfg.ConsumerIdle = 1200 * time.Millisecond // pruned every 100 ms
	p := &slowProber{take: 0, started: make(chan string, 4)}
	r := startDaemon(t, st, cfg, p)
	testwait.Eventually(t, 15*time.Second, "the stale consumer deleted", func() bool { return !consumers()["gone-daemon"] })
	enqueue(t, st, "FRA", 1, "y.example:80", "y", "r", 1)
	testwait.Eventually(t, 15*time.Second, "fra-1 to run a job after the pruning", func() bool {
		return value(r.d.metrics.jobs.WithLabelValues("success")) == 1 && pending(t, st, "FRA") == 0
	})
}
