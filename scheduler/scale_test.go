package scheduler

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober/simulate"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var (
	scaleRun     = flag.Bool("scale", false, "run TestScale (100,000 targets over 300 PoPs; minutes)")
	scaleTargets = flag.Int("scale.targets", 100_000, "TestScale: targets")
	scalePoPs    = flag.Int("scale.pops", 300, "TestScale: PoPs up in the fleet")
	scaleSpread  = flag.Duration("scale.spread", 5*time.Minute, "TestScale: spread of the first rechecks (5m: steady state; 1ns: all due at once, for peak decisions/s)")
	scaleWindow  = flag.Duration("scale.window", time.Minute, "TestScale: measurement window")
	scaleHeap    = flag.String("scale.heapprofile", "", "TestScale: write a heap profile here at the end of the window")
)

// responderEnv names the Redis address a re-executed test binary answers jobs on (TestScaleResponder).
const responderEnv = "VANTAGE_SCALE_RESPONDER"

// TestScaleResponder is not a test: TestScale runs the test binary again with it, in its own process, to stand
// in for the 300 PoPs' daemons. It answers every job with the latency model's RTT between the PoP and the
// target's (hashed) location, through the same storage call a daemon makes (PutResultBatch), so that the
// scheduler's CPU can be measured apart from the fleet's.
func TestScaleResponder(t *testing.T) {
	addr := os.Getenv(responderEnv)
	if addr == "" {
		t.Skip("helper process of TestScale")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{addr}, PoolSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	pops := geo.PoPs()[:*scalePoPs]
	model := geo.DefaultModel()
	const workers = 8
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for {
				idle := true
				for i := w; i < len(pops); i += workers {
					p := pops[i]
					jobs, err := st.ReadJobs(ctx, p.Code, "responder", 200, 0)
					if err != nil {
						if ctx.Err() != nil {
							return
						}
						continue
					}
					// One PutResultBatch per read, as a daemon's writer does: results stored, announced on the
					// scheduler's results stream, entries acknowledged (a read returns whole entries).
					brs := make([]storage.BatchResult, 0, len(jobs))
					for i, j := range jobs {
						idle = false
						rtt := model.RTTMs(p.Point, simulate.TargetPoint(j.Key))
						br := storage.BatchResult{Result: &storage.Result{Target: j.Key, PoP: p.Code, Kind: j.Kind, MinMs: rtt, MedianMs: rtt,
							Samples: 3, At: time.Now(), JobID: j.ID, Round: j.Round}, Reply: j.Reply}
						if i == len(jobs)-1 || jobs[i+1].Entry != j.Entry {
							br.Ack = j.Entry
						}
						brs = append(brs, br)
					}
					if len(brs) > 0 {
						st.PutResultBatch(ctx, p.Code, brs)
					}
				}
				if idle {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

func counter(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		m.Write(&d)
		sum += d.GetCounter().GetValue()
	}
	return sum
}

// TestScale measures the scheduler holding 100,000 targets over 300 PoPs on a real redis-server: memory,
// CPU and rechecks/decisions per second. Run it with
//
//	go test ./scheduler -run TestScale -scale -v -timeout 30m
//
// (see bench/FLEET.md for the figures and variants).
func TestScale(t *testing.T) {
	if !*scaleRun {
		t.Skip("scale test: run with -scale (see bench/FLEET.md)")
	}
	srv := redistest.Start(t)
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, PoolSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pops := geo.PoPs()[:*scalePoPs]
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() { // the fleet's heartbeats, as 300 daemons would send them
		for {
			for _, p := range pops {
				st.PutHeartbeat(hbCtx, storage.Heartbeat{PoP: p.Code, DaemonID: "bench-" + p.Code}, 5*time.Second)
			}
			select {
			case <-hbCtx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()
	resp := exec.Command(os.Args[0], "-test.run=^TestScaleResponder$", fmt.Sprintf("-scale.pops=%d", *scalePoPs))
	resp.Env = append(os.Environ(), responderEnv+"="+srv.Addr())
	resp.Stdout, resp.Stderr = os.Stderr, os.Stderr
	if err := resp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { resp.Process.Kill(); resp.Wait() }()

	runtime.GC()
	rss0 := rssBytes()
	m := NewMetrics(nil)
	s, err := New(Config{Name: "bench", RecheckInterval: 5 * time.Minute, InitialSpread: *scaleSpread,
		ResultTimeout: 10 * time.Second, Logger: quietLogger()}, StoreBackend{st}, m)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]Target, *scaleTargets)
	for i := range ts {
		ts[i] = Target{App: fmt.Sprintf("app-%06d", i), Mode: placement.ModeHost, Target: fmt.Sprintf("h%06d.bench.example:5432", i)}
	}
	t0 := time.Now()
	s.SetTargets("bench", ts)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	testwait.Eventually(t, 30*time.Second, "the lease", func() bool { ok, _ := s.Leading(); return ok })
	t.Logf("%d targets, %d PoPs up; loops started and leading in %v", *scaleTargets, len(pops), time.Since(t0).Round(time.Millisecond))
	time.Sleep(10 * time.Second) // warm-up
	c0, d0, r0, w0 := cpuTime(), counter(m.decisions), counter(m.checks), time.Now()
	time.Sleep(*scaleWindow)
	c1, d1, r1, w1 := cpuTime(), counter(m.decisions), counter(m.checks), time.Now()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if *scaleHeap != "" {
		if f, err := os.Create(*scaleHeap); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	el := w1.Sub(w0).Seconds()
	t.Logf("window %.0f s: %.1f rechecks/s, %.1f decisions written/s, scheduler CPU %.2f cores (responder and redis-server excluded), %.2f ms CPU per recheck",
		el, (r1-r0)/el, (d1-d0)/el, (c1-c0).Seconds()/el, (c1-c0).Seconds()*1000/max(1, r1-r0))
	t.Logf("memory: RSS %.0f MiB (%.0f MiB before the targets), live heap %.0f MiB after GC, stacks %.0f MiB, %d goroutines; %.1f KiB RSS per target",
		float64(rssBytes())/(1<<20), float64(rss0)/(1<<20), float64(ms.HeapAlloc)/(1<<20), float64(ms.StackInuse)/(1<<20), runtime.NumGoroutine(),
		float64(rssBytes()-rss0)/1024/float64(*scaleTargets))
	t.Logf("needed for a 5-minute recheck of every target: %.1f rechecks/s", float64(*scaleTargets)/300)
}

// BenchmarkDecisionWrite measures the end of a recheck once its results are in: the engine on 45 PoPs'
// measurements (the planner's budget for 300 PoPs) and PutDecision on a real redis-server, in parallel
// (b.SetParallelism × GOMAXPROCS goroutines, as rechecks run). decisions/s is b.N / elapsed.
//
//	go test ./scheduler -run '^$' -bench DecisionWrite -benchtime 20000x
func BenchmarkDecisionWrite(b *testing.B) {
	srv := redistest.Start(b)
	st, err := storage.Open(context.Background(), storage.Options{Addrs: []string{srv.Addr()}, PoolSize: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	pops := geo.PoPs()[:300]
	model := geo.DefaultModel()
	s, err := New(Config{Name: "bench", Logger: quietLogger()}, StoreBackend{st}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var seq atomicCounter
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.next()
			app := fmt.Sprintf("app-%06d", i%100_000)
			tp := simulate.TargetPoint(app)
			ms := make(map[string]storage.Result, 45)
			for j := 0; j < 45; j++ {
				p := pops[(int(i)*7+j*13)%len(pops)]
				rtt := model.RTTMs(p.Point, tp)
				ms[p.Code] = storage.Result{PoP: p.Code, MinMs: rtt, Samples: 3}
			}
			w := s.deps.pool.Get()
			r, err := w.engine.Decide(triangulateInput(app, ms, s.deps.pops))
			dec := placement.Decision{App: app, Mode: placement.ModeHost, Target: app + ":5432", BestPoP: r.Best.PoP,
				Candidates: append([]placement.Candidate(nil), r.Candidates...), Verdict: r.Verdict, Status: r.Status,
				Confidence: r.Confidence, ComputedAt: time.Now()}
			s.deps.pool.Put(w)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := st.PutDecision(context.Background(), dec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
}

type atomicCounter struct {
	mu sync.Mutex
	n  int64
}

func (c *atomicCounter) next() int64 { c.mu.Lock(); defer c.mu.Unlock(); c.n++; return c.n }
