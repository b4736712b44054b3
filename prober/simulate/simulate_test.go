package simulate

import (
	"context"
	"errors"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
)

// stepClock is a prober.Clock whose timers fire at once and move its time to their deadline: a wait of the
// rate limiter costs no wall time, and the clock's advance counts the waits.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *stepClock) NewTimer(d time.Duration) prober.Timer {
	c.mu.Lock()
	if d > 0 {
		c.now = c.now.Add(d)
	}
	at := c.now
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- at
	return firedTimer(ch)
}

type firedTimer chan time.Time

func (t firedTimer) C() <-chan time.Time { return t }
func (t firedTimer) Stop() bool          { return false }

func pop(t *testing.T, code string) geo.PoP {
	t.Helper()
	p, ok := geo.LookupPoP(code)
	if !ok {
		t.Fatalf("PoP %s not in the catalogue", code)
	}
	return p
}

func newProber(t *testing.T, cfg Config) *Prober {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProbeDeterministic: a PoP/target pair always gets the same answer (no jitter: the model's RTT to the
// target's hashed location; with jitter and a seed: the same sequence on every run), and the result is
// marked simulated.
func TestProbeDeterministic(t *testing.T) {
	fra := pop(t, "FRA")
	tgt := prober.Target{Kind: placement.ProbeTCP, Addr: "db.example.com:5432"}
	want := geo.DefaultModel().RTTMs(fra.Point, TargetPoint("db.example.com"))
	for _, tc := range []struct {
		name   string
		jitter float64
	}{{"no_jitter", -1}, {"jitter_5ms", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			a := newProber(t, Config{From: fra, JitterMs: tc.jitter, Seed: 7})
			b := newProber(t, Config{From: fra, JitterMs: tc.jitter, Seed: 7})
			for i := range 20 {
				ra, rb := a.Probe(context.Background(), tgt), b.Probe(context.Background(), tgt)
				if !ra.Success || !ra.Simulated || ra.Class != "" || len(ra.Samples) != prober.DefaultCount {
					t.Fatalf("probe %d: %+v", i, ra)
				}
				if !slicesEqual(ra.Samples, rb.Samples) {
					t.Fatalf("probe %d: two probers of one seed differ: %v vs %v", i, ra.Samples, rb.Samples)
				}
				for _, s := range ra.Samples {
					if ms := s.Ms(); ms < want-1e-6 || ms > want+max(tc.jitter, 0)+1e-6 {
						t.Fatalf("probe %d: sample %v ms outside [%v, %v+%v]", i, ms, want, want, max(tc.jitter, 0))
					}
				}
				if tc.jitter < 0 && math.Abs(ra.Min.Ms()-want) > 1e-6 {
					t.Fatalf("probe %d: min %v ms, want the model's %v ms", i, ra.Min.Ms(), want)
				}
			}
		})
	}
	// The same host at one place whatever the kind or port.
	p := newProber(t, Config{From: fra})
	for _, addr := range []string{"db.example.com:443", "https://DB.example.com/health", "db.example.com"} {
		if got := p.RTTMs(addr); got != want {
			t.Errorf("RTTMs(%q) = %v, want %v (db.example.com:5432's)", addr, got, want)
		}
	}
	// Farther PoPs see the far target farther: the model, not a constant.
	if syd := newProber(t, Config{From: pop(t, "SYD")}); syd.RTTMs("h1.example") == p.RTTMs("h1.example") {
		t.Error("SYD and FRA see h1.example at the same RTT")
	}
}

func slicesEqual(a, b []prober.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRateLimitCounted: at Rate r, n probes advance the limiter's clock by (n-1)/r: counted on a clock that
// moves only when the limiter waits, not timed.
func TestRateLimitCounted(t *testing.T) {
	for _, rate := range []int{1, 50, 1000} {
		clk := &stepClock{now: time.Unix(1e9, 0)}
		p := newProber(t, Config{From: pop(t, "FRA"), Rate: rate, Clock: clk})
		t0 := clk.Now()
		const n = 101
		for i := range n {
			p.Probe(context.Background(), prober.Target{Kind: placement.ProbeTCP, Addr: "h.example:1"})
			// No probe is answered before its slot: probe i is at t0 + i/rate or later.
			if got, min := clk.Now().Sub(t0), time.Duration(i)*time.Second/time.Duration(rate); got < min {
				t.Fatalf("rate %d: probe %d answered at +%v, before its slot +%v", rate, i, got, min)
			}
		}
		if got, want := clk.Now().Sub(t0), time.Duration(n-1)*time.Second/time.Duration(rate); got != want {
			t.Errorf("rate %d: %d probes took %v of the limiter's clock, want %v", rate, n, got, want)
		}
	}
	t.Run("cancelled_wait", func(t *testing.T) {
		p := newProber(t, Config{From: pop(t, "FRA"), Rate: 1})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := p.Probe(ctx, prober.Target{Kind: placement.ProbeTCP, Addr: "h.example:1"})
		if r.Success || !errors.Is(r.Err, context.Canceled) || !r.Simulated {
			t.Errorf("cancelled probe: %+v", r)
		}
	})
}

// TestFailFraction: about FailFraction of the probes are timeouts, each marked simulated.
func TestFailFraction(t *testing.T) {
	p := newProber(t, Config{From: pop(t, "FRA"), FailFraction: 0.25, Seed: 3})
	fails := 0
	const n = 4000
	for range n {
		r := p.Probe(context.Background(), prober.Target{Kind: placement.ProbeICMP, Addr: "192.0.2.1"})
		if !r.Success {
			fails++
			if r.Class != prober.ClassTimeout || !errors.Is(r.Err, prober.ErrTimeout) || !strings.Contains(r.Error, Marker) || r.Loss != 1 {
				t.Fatalf("failure: %+v", r)
			}
		}
	}
	if f := float64(fails) / n; f < 0.22 || f > 0.28 {
		t.Errorf("failed fraction %.3f, want about 0.25", f)
	}
}

func TestConfigInvalid(t *testing.T) {
	fra := pop(t, "FRA")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no_pop", Config{}, `PoP "": no location`},
		{"negative_rate", Config{From: fra, Rate: -1}, "rate -1: want >= 0"},
		{"fail_over_1", Config{From: fra, FailFraction: 1.5}, "failure fraction 1.5: want 0..1"},
		{"fail_nan", Config{From: fra, FailFraction: math.NaN()}, "failure fraction NaN: want 0..1"},
		{"count", Config{From: fra, Count: prober.MaxCount + 1}, "count 101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := LookupPoPs([]string{"FRA", "XXX"}); !errors.Is(err, errNoPoP) {
		t.Errorf("LookupPoPs(XXX): %v", err)
	}
	if _, err := LookupPoPs([]string{"FRA", "fra"}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("LookupPoPs(FRA, fra): %v", err)
	}
}

// TestProbeNeverDials runs probes of every kind, to names that do not resolve, from a network namespace with
// no interface up: a prober that dialled or resolved would fail there; the simulated one answers from the
// model.
func TestProbeNeverDials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace (unshare CLONE_NEWNET)")
	}
	p := newProber(t, Config{From: pop(t, "NRT"), JitterMs: -1})
	targets := []prober.Target{
		{Kind: placement.ProbeTCP, Addr: "db.invalid:5432"},
		{Kind: placement.ProbeHTTP, Addr: "https://api.invalid/health"},
		{Kind: placement.ProbeICMP, Addr: "198.51.100.7"},
		{Kind: placement.ProbeDNS, Addr: "ns.invalid"},
	}
	results := make([]prober.Result, len(targets))
	errc := make(chan error, 1)
	go func() {
		// The thread is left in the namespace and never unlocked: it exits with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		for i, tg := range targets {
			results[i] = p.Probe(context.Background(), tg)
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("unshare: %v", err)
	}
	for i, r := range results {
		want := p.RTTMs(targets[i].Addr)
		if !r.Success || !r.Simulated || math.Abs(r.Min.Ms()-want) > 1e-6 || r.IP.IsValid() || len(r.Resolved) > 0 {
			t.Errorf("%s %s from an empty namespace: %+v, want the model's %v ms", targets[i].Kind, targets[i].Addr, r, want)
		}
	}
}
