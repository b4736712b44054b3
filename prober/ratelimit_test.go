package prober

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"go.uber.org/ratelimit"
)

func TestLimiterZeroIsUnlimited(t *testing.T) {
	l := NewLimiter(0, 0, nil)
	if l != nil {
		t.Fatalf("NewLimiter(0) = %v, want nil", l)
	}
	start := time.Now()
	for range 1000 {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("1000 unlimited waits took %v", el)
	}
}

// TestLimiterRateLoose checks that the limiter never runs faster than its rate. There is no upper bound: on a
// busy machine a wait may take any time; BenchmarkLimitedTCPProbes holds the rate itself to 1%.
func TestLimiterRateLoose(t *testing.T) {
	const rate, n, workers = 200, 100, 4
	l := NewLimiter(rate, 0, nil)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for range n / workers {
				if err := l.Wait(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	want := time.Duration(n-1) * time.Second / rate // the first slot is free
	if el < want*9/10 {
		t.Errorf("%d waits at %d/s took %v, want at least %v", n, rate, el, want*9/10)
	}
}

func TestLimiterHonoursContext(t *testing.T) {
	// One slot a minute: a Wait that ignored ctx would block for a minute, far past the 10 s allowed below.
	l := &Limiter{l: ratelimit.New(1, ratelimit.Per(time.Minute), ratelimit.WithClock(reserveClock{RealClock{}}), ratelimit.WithoutSlack), clock: RealClock{}}
	if err := l.Wait(context.Background()); err != nil { // the first slot is now
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("cancelled Wait returned after %v, want about 50ms (the next slot is a minute away)", el)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := l.Wait(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled ctx = %v", err)
	}
}

func TestLimiterFakeClock(t *testing.T) {
	clk := newFakeClock()
	l := NewLimiter(10, 0, clk) // one slot per 100ms
	ctx := context.Background()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx) }()
	testwait.Eventually(t, 10*time.Second, "the second Wait's timer", func() bool { return clk.pending() == 1 })
	select {
	case err := <-done:
		t.Fatalf("second Wait returned %v before the clock moved", err)
	default:
	}
	clk.Advance(100 * time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second Wait not released by the fake clock within 10s")
	}
}

// TestWaitCancelStopsTimer: a Wait or a pause between samples that ends with its ctx stops its timer, so an
// abandoned wait leaves nothing behind on the Clock.
func TestWaitCancelStopsTimer(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	for _, tc := range []struct {
		name string
		wait func(ctx context.Context, clk *fakeClock) error
	}{
		{"limiter", func(ctx context.Context, clk *fakeClock) error {
			l := NewLimiter(10, 0, clk)
			if err := l.Wait(context.Background()); err != nil { // the first slot is free
				return err
			}
			return l.Wait(ctx)
		}},
		{"pause", func(ctx context.Context, clk *fakeClock) error {
			e := newEngine(t, func(c *Config) { c.Clock = clk; c.Interval = time.Second })
			r := e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 2})
			if len(r.Samples) != 1 {
				return fmt.Errorf("%d samples, want the one before the cancelled pause", len(r.Samples))
			}
			return ctx.Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tc.wait(ctx, clk) }()
			testwait.Eventually(t, 10*time.Second, "the wait's timer", func() bool { return clk.pending() == 1 })
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("wait = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("wait not ended by its ctx within 10s")
			}
			if n := clk.pending(); n != 0 {
				t.Errorf("%d timers pending after the cancelled wait, want 0 (stopped)", n)
			}
		})
	}
}

func TestPerTargetEviction(t *testing.T) {
	clk := newFakeClock()
	ls := newLimits(0, 5, 2, time.Minute, clk)
	a, b, c, d := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4")
	la := ls.target(a)
	ls.target(b)
	if ls.target(a) != la {
		t.Fatal("a second lookup of a returned a new limiter")
	}
	clk.Advance(2 * time.Minute)
	ls.target(c) // a and b are idle: both go
	if n := ls.targets(); n != 1 {
		t.Fatalf("%d limiters after idle eviction, want 1", n)
	}
	clk.Advance(time.Second)
	ls.target(d) // c, d
	clk.Advance(time.Second)
	ls.target(d)
	ls.target(a) // full, none idle: the least recently used (c) goes
	if n := ls.targets(); n != 2 {
		t.Fatalf("%d limiters, want the bound 2", n)
	}
	ls.mu.Lock()
	_, hasC := ls.perTarget[c]
	_, hasD := ls.perTarget[d]
	ls.mu.Unlock()
	if hasC || !hasD {
		t.Errorf("after LRU eviction: has c %v, has d %v; want c evicted, d kept", hasC, hasD)
	}
	if off := newLimits(0, 0, 2, time.Minute, clk); off.target(a) != nil || off.targets() != 0 {
		t.Error("per-target rate 0 kept a limiter")
	}
}

// TestPerTargetPoliteness: probes to one IP are spaced by the per-target rate; probes to another IP are not
// held up by them.
func TestPerTargetPoliteness(t *testing.T) {
	a1 := listenTCP(t, "127.0.0.1:0", nil)
	a2 := listenTCP(t, "127.0.0.2:0", nil)
	e := newEngine(t, func(c *Config) { c.TargetRate = 10 })
	ctx := context.Background()
	start := time.Now()
	for range 4 {
		if r := e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: a1.addr(), Count: 1}); !r.Success {
			t.Fatal(r.Err)
		}
	}
	if el := time.Since(start); el < 270*time.Millisecond {
		t.Errorf("4 probes to one IP at 10/s took %v, want >= 300ms (minus slack)", el)
	}

	// With a fake clock: a probe to a1 blocks on politeness while one to a2 goes through.
	clk := newFakeClock()
	e = newEngine(t, func(c *Config) { c.TargetRate = 10; c.Clock = clk; c.Interval = -1 })
	if r := e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: a1.addr(), Count: 1}); !r.Success {
		t.Fatal(r.Err)
	}
	blocked := make(chan Result, 1)
	go func() { blocked <- e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: a1.addr(), Count: 1}) }()
	if r := e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: a2.addr(), Count: 1}); !r.Success {
		t.Fatal(r.Err)
	}
	select {
	case r := <-blocked:
		t.Fatalf("second probe to %s went through before the clock moved: %+v", a1.addr(), r)
	default:
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		clk.Advance(100 * time.Millisecond)
		select {
		case r := <-blocked:
			if !r.Success {
				t.Fatal(r.Err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the blocked probe was not released within 10s")
		}
	}
}

// TestLimiterSlack: after a stall, a limiter with slack lets a bounded number of missed slots through at once;
// a strict one lets one through.
func TestLimiterSlack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		slack int
		want  int
	}{{"strict", 0, 1}, {"slack_5", 5, 6}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			l := NewLimiter(10, tc.slack, clk)
			ctx := context.Background()
			if err := l.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(10 * time.Second) // a long stall
			immediate := 0
			for range 20 {
				if slot := l.l.Take(); slot.After(clk.Now()) { // reserve only: is the slot already due?
					break
				}
				immediate++
			}
			if immediate != tc.want {
				t.Errorf("%d slots granted at once after the stall, want %d", immediate, tc.want)
			}
		})
	}
}
