package scheduler

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
)

// idleTargetCost starts a scheduler leading every shard with n targets queued for a recheck an hour away, and
// returns the heap bytes and goroutines it holds per target: the targets' own strings, their state, the
// targets map and the heap of due times.
func idleTargetCost(tb testing.TB, n int) (bytesPerTarget, goroutinesPerTarget float64) {
	tb.Helper()
	h := newHarness()
	cfg := Config{Name: "mem", RecheckInterval: time.Hour, InitialSpread: time.Hour, LeaseTTL: 3 * time.Second,
		Clock: h.clock, Logger: quietLogger()}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	s := newScheduler(cfg, h.leaser, nil)
	s.check = func(context.Context, *Term, Target) (placement.Decision, error) {
		return placement.Decision{}, fmt.Errorf("no recheck is due within the hour")
	}
	ts := make([]Target, n)
	for i := range ts {
		app := fmt.Sprintf("app-%07d", i)
		ts[i] = Target{App: app, Mode: placement.ModeHost, Target: app + ".example:5432"}
	}
	s.SetTargets("api", ts)
	ts = nil
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testwait.Eventually(tb, 30*time.Second, "every target queued", func() bool {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		return len(s.queue) == n
	})
	runtime.GC()
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), float64(g1-g0) / float64(n)
}

// TestIdleTargetMemory: an idle target costs at most 1 KiB and no goroutine of its own (issue 19).
func TestIdleTargetMemory(t *testing.T) {
	const n = 20_000
	bytes, gs := idleTargetCost(t, n)
	t.Logf("%d idle targets: %.0f bytes/target, %.5f goroutines/target", n, bytes, gs)
	if bytes > 1024 {
		t.Errorf("%.0f bytes per idle target, want at most 1 KiB", bytes)
	}
	if gs*n > 10 {
		t.Errorf("%.0f goroutines for %d idle targets, want a few for the scheduler, none per target", gs*n, n)
	}
}

// BenchmarkIdleTargetMemory reports the heap held per idle target at 100,000 targets (bench/FLEET.md):
//
//	go test ./scheduler -run '^$' -bench IdleTargetMemory -benchtime 1x
func BenchmarkIdleTargetMemory(b *testing.B) {
	var bytes, gs float64
	for range b.N {
		bytes, gs = idleTargetCost(b, 100_000)
	}
	b.ReportMetric(bytes, "bytes/target")
	b.ReportMetric(gs, "goroutines/target")
}

// BenchmarkDispatch measures the heap's own cost per recheck: 10,000 targets due at once on the real clock,
// each recheck a no-op that returns at once, so what is timed is the push, the pop, the semaphore and the
// recheck's goroutine (bench/FLEET.md).
//
//	go test ./scheduler -run '^$' -bench Dispatch -benchtime 20x
func BenchmarkDispatch(b *testing.B) {
	const n = 10_000
	ts := make([]Target, n)
	for i := range ts {
		app := fmt.Sprintf("app-%07d", i)
		ts[i] = Target{App: app, Mode: placement.ModeHost, Target: app + ".example:5432"}
	}
	for range b.N {
		b.StopTimer()
		h := newHarness()
		s := newScheduler(Config{Name: "bench", RecheckInterval: time.Hour, InitialSpread: time.Nanosecond, LeaseTTL: time.Minute,
			Logger: quietLogger()}, h.leaser, nil)
		var checks atomic.Int64
		s.check = func(context.Context, *Term, Target) (placement.Decision, error) {
			checks.Add(1)
			return placement.Decision{}, nil
		}
		s.SetTargets("api", ts)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		go func() { s.Run(ctx); close(done) }()
		for checks.Load() < n {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		cancel()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/recheck")
}
