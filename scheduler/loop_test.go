package scheduler

import (
	"context"
	"errors"
	"github.com/vantage-edge/vantage/internal/testwait"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// memLeaser is in-memory leases with SET NX PX semantics on the fake clock, one per name: the real ones live
// in Redis (storage), whose expiry runs on the wall clock, which these loop tests do not control.
type memLeaser struct {
	clock  *fakeClock
	mu     sync.Mutex
	leases map[string]*memLease
	dead   map[string]bool // holders whose calls fail, as if their process died
}

type memLease struct {
	owner string
	token int64
	until time.Time
}

var errDead = errors.New("holder is dead")

// leaseLocked returns lease name, made on first use. The caller holds l.mu.
func (l *memLeaser) leaseLocked(name string) *memLease {
	if l.leases == nil {
		l.leases = map[string]*memLease{}
	}
	x, ok := l.leases[name]
	if !ok {
		x = &memLease{}
		l.leases[name] = x
	}
	return x
}

func (l *memLeaser) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead[nameOf(holder)] {
		return 0, false, errDead
	}
	x := l.leaseLocked(name)
	now := l.clock.Now()
	if x.owner != "" && now.Before(x.until) {
		return 0, false, nil
	}
	x.token++
	x.owner, x.until = holder, now.Add(ttl)
	return x.token, true, nil
}

func (l *memLeaser) RenewLease(_ context.Context, name, holder string, token int64, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead[nameOf(holder)] {
		return false, errDead
	}
	x := l.leaseLocked(name)
	now := l.clock.Now()
	if x.owner != holder || x.token != token || !now.Before(x.until) {
		return false, nil
	}
	x.until = now.Add(ttl)
	return true, nil
}

func (l *memLeaser) ReleaseLease(_ context.Context, name, holder string, token int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead[nameOf(holder)] {
		return errDead
	}
	if x := l.leaseLocked(name); x.owner == holder && x.token == token {
		x.owner = ""
	}
	return nil
}

// holder returns the holder and token of the fleet-wide lease.
func (l *memLeaser) holder() (string, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	x := l.leaseLocked(DefaultLeaseName)
	return x.owner, x.token
}

// nameOf returns the scheduler name a lease holder was made from (leaseHolder).
func nameOf(holder string) string {
	name, _, _ := strings.Cut(holder, "~")
	return name
}

// kill makes every call of scheduler name's holder fail.
func (l *memLeaser) kill(holder string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead == nil {
		l.dead = map[string]bool{}
	}
	l.dead[holder] = true
}

// checkLog records every recheck's start on the fake clock.
type checkLog struct {
	mu       sync.Mutex
	at       map[string][]time.Time
	by       map[string][]string // app -> scheduler names
	inFlight map[string]int
	maxPar   int // max rechecks of one app in flight at once, across schedulers
	maxAll   int
	all      int
}

func newCheckLog() *checkLog {
	return &checkLog{at: map[string][]time.Time{}, by: map[string][]string{}, inFlight: map[string]int{}}
}

func (l *checkLog) count(app string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at[app])
}

func (l *checkLog) fn(clock Clock, name string, body func(ctx context.Context, t Target) error) checkFunc {
	return func(ctx context.Context, term *Term, t Target) (placement.Decision, error) {
		l.mu.Lock()
		l.at[t.App] = append(l.at[t.App], clock.Now())
		l.by[t.App] = append(l.by[t.App], name)
		l.inFlight[t.App]++
		l.all++
		l.maxPar = max(l.maxPar, l.inFlight[t.App])
		l.maxAll = max(l.maxAll, l.all)
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.inFlight[t.App]--
			l.all--
			l.mu.Unlock()
		}()
		var err error
		if body != nil {
			err = body(ctx, t)
		}
		return placement.Decision{App: t.App}, err
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type loopHarness struct {
	clock  *fakeClock
	leaser *memLeaser
	log    *checkLog
	mu     sync.Mutex
	scheds []*Scheduler
}

// track adds s to the schedulers settle waits for.
func (h *loopHarness) track(s *Scheduler) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scheds = append(h.scheds, s)
}

func newHarness() *loopHarness {
	c := newFakeClock()
	return &loopHarness{clock: c, leaser: &memLeaser{clock: c}, log: newCheckLog()}
}

func (h *loopHarness) start(t *testing.T, name string, cfg Config, body func(context.Context, Target) error) (*Scheduler, context.CancelFunc) {
	t.Helper()
	cfg.Name = name
	cfg.Clock = h.clock
	cfg.Logger = quietLogger()
	s := newScheduler(cfg, h.leaser, NewMetrics(nil))
	s.check = h.log.fn(h.clock, name, body)
	h.track(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, cancel
}

func testTargets(apps ...string) []Target {
	var ts []Target
	for _, a := range apps {
		ts = append(ts, Target{App: a, Mode: placement.ModeHost, Target: a + ".example:5432"})
	}
	return ts
}

// settle waits until every scheduler is parked: no recheck running, its dispatcher waiting, and its timers (the
// lease loop's, the shard manager's, the dispatcher's when it waits for a due target) pending on the fake clock.
func (h *loopHarness) settle(t *testing.T) {
	t.Helper()
	testwait.Eventually(t, 10*time.Second, "schedulers to park on timers", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		want := 0
		for _, s := range h.scheds {
			ok, armed := s.quiet()
			if !ok {
				return false
			}
			want += 2
			if armed {
				want++
			}
		}
		return h.clock.pending() >= want
	})
}

func TestLoopFirstCheckAtHashOffsetThenEveryInterval(t *testing.T) {
	h := newHarness()
	cfg := Config{RecheckInterval: time.Minute, InitialSpread: 10 * time.Second, Jitter: -1, LeaseTTL: 3 * time.Second}
	apps := []string{"alpha", "bravo", "charlie", "delta"}
	s, _ := h.start(t, "s1", cfg, nil)
	s.SetTargets("test", testTargets(apps...))
	testwait.Eventually(t, 10*time.Second, "lease", func() bool { ok, _ := s.Leading(); return ok })
	start := h.clock.Now()
	step := 500 * time.Millisecond
	for h.clock.Now().Sub(start) < 70*time.Second {
		h.settle(t)
		h.clock.Advance(step)
	}
	h.settle(t)
	for _, app := range apps {
		h.log.mu.Lock()
		at := h.log.at[app]
		h.log.mu.Unlock()
		if len(at) != 2 {
			t.Fatalf("app %s checked %d times in 70 s, want 2 (first at its offset, then one interval later): %v", app, len(at), at)
		}
		first := at[0].Sub(start)
		want := offset(app, 10*time.Second)
		if first < want || first > want+step {
			t.Errorf("app %s first check at +%v, want its hash offset +%v", app, first, want)
		}
		if gap := at[1].Sub(at[0]); gap < time.Minute || gap > time.Minute+step {
			t.Errorf("app %s rechecked after %v, want 1m", app, gap)
		}
	}
}

// TestLoopTargetAddedWhileLeadingIsCheckedAtOnce: a target registered while the scheduler leads (a new
// application) is checked at once, not at its offset in the initial spread.
func TestLoopTargetAddedWhileLeadingIsCheckedAtOnce(t *testing.T) {
	h := newHarness()
	cfg := Config{RecheckInterval: time.Minute, InitialSpread: 30 * time.Second, Jitter: -1, LeaseTTL: 3 * time.Second}
	s, _ := h.start(t, "s1", cfg, nil)
	testwait.Eventually(t, 10*time.Second, "lease", func() bool { ok, _ := s.Leading(); return ok })
	for range 10 { // five seconds into the term, in steps the lease renews within
		h.settle(t)
		h.clock.Advance(500 * time.Millisecond)
	}
	h.settle(t)
	app := "late-app"
	if offset(app, 30*time.Second) < 2*time.Second {
		t.Fatalf("pick another app name: %s's offset is %v", app, offset(app, 30*time.Second))
	}
	added := h.clock.Now()
	s.AddTarget("api", testTargets(app)[0])
	testwait.Eventually(t, 10*time.Second, "the new target's first check", func() bool {
		h.log.mu.Lock()
		defer h.log.mu.Unlock()
		return len(h.log.at[app]) == 1
	})
	h.log.mu.Lock()
	at := h.log.at[app][0]
	h.log.mu.Unlock()
	if !at.Equal(added) {
		t.Errorf("first check at +%v after AddTarget, want at once", at.Sub(added))
	}
}

func TestLoopSemaphoreBoundsConcurrency(t *testing.T) {
	h := newHarness()
	release := make(chan struct{})
	cfg := Config{RecheckInterval: time.Hour, InitialSpread: time.Nanosecond, Concurrency: 2, LeaseTTL: 3 * time.Second}
	s, _ := h.start(t, "s1", cfg, func(ctx context.Context, _ Target) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	apps := []string{"a", "b", "c", "d", "e"}
	s.SetTargets("test", testTargets(apps...))
	testwait.Eventually(t, 10*time.Second, "two checks in flight", func() bool {
		h.log.mu.Lock()
		defer h.log.mu.Unlock()
		return h.log.all == 2
	})
	time.Sleep(50 * time.Millisecond) // a third would have started by now if the semaphore leaked
	close(release)
	testwait.Eventually(t, 10*time.Second, "every app checked", func() bool {
		for _, a := range apps {
			if h.log.count(a) == 0 {
				return false
			}
		}
		return true
	})
	h.log.mu.Lock()
	defer h.log.mu.Unlock()
	if h.log.maxAll != 2 {
		t.Errorf("max rechecks in flight = %d, want the semaphore's 2", h.log.maxAll)
	}
}

func TestLoopPanicBecomesFailedCheck(t *testing.T) {
	h := newHarness()
	cfg := Config{RecheckInterval: time.Minute, InitialSpread: time.Nanosecond, Jitter: -1, LeaseTTL: 3 * time.Second}
	var n atomic.Int32
	s, _ := h.start(t, "s1", cfg, func(context.Context, Target) error {
		if n.Add(1) == 1 {
			panic("boom")
		}
		return nil
	})
	s.SetTargets("test", testTargets("app"))
	testwait.Eventually(t, 10*time.Second, "first check", func() bool { st, _ := s.Target("app"); return st.Checks == 1 })
	st, _ := s.Target("app")
	if st.LastError == "" || !contains(st.LastError, "panicked: boom") {
		t.Fatalf("last error %q, want the panic", st.LastError)
	}
	for i := 0; i < 120; i++ {
		h.settle(t)
		h.clock.Advance(500 * time.Millisecond)
	}
	testwait.Eventually(t, 10*time.Second, "second check after the panic", func() bool { st, _ := s.Target("app"); return st.Checks == 2 })
	if st, _ := s.Target("app"); st.LastError != "" {
		t.Errorf("last error %q after a good check", st.LastError)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestLoopStoredRecheckTimeIsHonouredOnTakeover(t *testing.T) {
	h := newHarness()
	cfg := Config{RecheckInterval: time.Minute, InitialSpread: time.Nanosecond, Jitter: -1, LeaseTTL: 3 * time.Second,
		Clock: h.clock, Name: "s1", Logger: quietLogger()}
	s := newScheduler(cfg, h.leaser, nil)
	s.check = h.log.fn(h.clock, "s1", nil)
	h.track(s)
	base := h.clock.Now()
	s.dueScan = func(context.Context, []bool) (map[string]time.Time, error) {
		return map[string]time.Time{"later": base.Add(20 * time.Second)}, nil
	}
	s.SetTargets("test", testTargets("later", "new"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.Eventually(t, 10*time.Second, "the new app checked at once", func() bool { return h.log.count("new") == 1 })
	for i := 0; i < 19; i++ {
		h.settle(t)
		h.clock.Advance(time.Second)
	}
	h.settle(t)
	if n := h.log.count("later"); n != 0 {
		t.Fatalf("app checked %d times before its stored next recheck", n)
	}
	h.clock.Advance(time.Second)
	testwait.Eventually(t, 10*time.Second, "the app checked at its stored recheck time", func() bool { return h.log.count("later") == 1 })
}

func TestLeaseTakeoverWithinOneLeasePeriod(t *testing.T) {
	h := newHarness()
	ttl := 3 * time.Second
	cfg := Config{RecheckInterval: 2 * time.Second, InitialSpread: time.Second, Jitter: -1, LeaseTTL: ttl}
	busy := func(ctx context.Context, _ Target) error {
		// A recheck that takes a while on the fake clock's terms: it ends only when the term ends or after
		// a real moment, so a lost lease must cancel it.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
			return nil
		}
	}
	apps := []string{"a", "b", "c"}
	s1, _ := h.start(t, "s1", cfg, busy)
	s1.SetTargets("test", testTargets(apps...))
	testwait.Eventually(t, 10*time.Second, "s1 leads", func() bool { ok, _ := s1.Leading(); return ok })
	s2, _ := h.start(t, "s2", cfg, busy)
	s2.SetTargets("test", testTargets(apps...))
	for i := 0; i < 20; i++ { // 10 s: s1 keeps the lease and checks everything, s2 never checks
		h.settle(t) // s1 leads every shard and the fleet-wide lease; s2 polls
		h.clock.Advance(500 * time.Millisecond)
	}
	if ok, _ := s2.Leading(); ok {
		t.Fatal("s2 leads while s1 renews")
	}
	h.log.mu.Lock()
	for _, a := range apps {
		for _, by := range h.log.by[a] {
			if by != "s1" {
				t.Errorf("app %s checked by %s while s1 held the lease", a, by)
			}
		}
	}
	h.log.mu.Unlock()

	h.leaser.kill("s1") // s1's process dies: it stops renewing and never releases
	died := h.clock.Now()
	var took time.Duration
	for took == 0 {
		h.clock.Advance(100 * time.Millisecond)
		h.settle(t)
		if ok, _ := s2.Leading(); ok {
			took = h.clock.Now().Sub(died)
		}
		if h.clock.Now().Sub(died) > 3*ttl {
			t.Fatalf("s2 did not take over within %v", 3*ttl)
		}
	}
	if took > ttl+ttl/3 {
		t.Errorf("takeover after %v, want within one lease period (%v) plus one acquire attempt", took, ttl)
	}
	if ok, _ := s1.Leading(); ok {
		t.Error("s1 still believes it leads after s2 took over")
	}
	owner, tok := h.leaser.holder()
	if !strings.HasPrefix(owner, "s2~") || tok != 2 {
		t.Errorf("lease held by %s token %d, want s2 with token 2", owner, tok)
	}
	for i := 0; i < 10; i++ {
		h.settle(t)
		h.clock.Advance(500 * time.Millisecond)
	}
	h.log.mu.Lock()
	defer h.log.mu.Unlock()
	for _, a := range apps {
		if by := h.log.by[a]; by[len(by)-1] != "s2" {
			t.Errorf("app %s last checked by %s after the takeover, want s2", a, by[len(by)-1])
		}
	}
	if h.log.maxPar > 1 {
		t.Errorf("an app was checked %d times in parallel", h.log.maxPar)
	}
	if led := s2.Shards().Led; len(led) != DefaultShards {
		t.Errorf("s2 leads %d shards after the takeover, want all %d", len(led), DefaultShards)
	}
}

func TestStabiliseKeepsOrderWithinTheMargins(t *testing.T) {
	c := func(pop string, rtt float64) placement.Candidate { return placement.Candidate{PoP: pop, RTTMs: rtt} }
	for _, tc := range []struct {
		name       string
		cands      []placement.Candidate
		prev       []placement.Candidate
		wantOrders string
	}{
		{"noise_between_near_equal_keeps_previous", []placement.Candidate{c("B", 0.10), c("A", 0.12), c("C", 0.15)},
			[]placement.Candidate{c("A", 0.1), c("B", 0.1), c("C", 0.1)}, "ABC"},
		{"real_change_reorders", []placement.Candidate{c("B", 10), c("A", 30)},
			[]placement.Candidate{c("A", 10), c("B", 30)}, "BA"},
		{"new_pop_goes_after_known_equals", []placement.Candidate{c("N", 20.0), c("A", 20.5)},
			[]placement.Candidate{c("A", 20)}, "AN"},
		{"no_previous", []placement.Candidate{c("B", 1), c("A", 1)}, nil, "BA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stabilise(tc.cands, tc.prev, 1, 0.1)
			got := ""
			for _, x := range tc.cands {
				got += x.PoP
			}
			if got != tc.wantOrders {
				t.Errorf("order %s, want %s", got, tc.wantOrders)
			}
		})
	}
}
