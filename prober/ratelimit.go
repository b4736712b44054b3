package prober

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/ratelimit"
)

// Limiter is a go.uber.org/ratelimit leaky bucket whose wait honours a context.
//
// ratelimit.Limiter.Take blocks until the caller's slot. Here the limiter runs on a clock whose Sleep does
// nothing, so Take only reserves the next slot and returns its time; Wait then sleeps until that time on the
// Engine's Clock, or returns ctx.Err() at once when ctx ends first. A cancelled wait still consumes its slot,
// so cancellations never let the rate be exceeded. No goroutine is started.
type Limiter struct {
	l     ratelimit.Limiter
	clock Clock
}

// GlobalSlackFraction is the slack of the Engine's global limiter as a fraction of a second of its rate:
// after a stall (a descheduled process, a GC pause) the limiter lets up to rate/10 probes catch up, so the
// average rate holds (BenchmarkLimitedTCPProbes: within 1%). Without slack every stall longer than the
// queue of reserved slots loses those slots for good. Per-target politeness limiters have no slack: a target
// never sees a burst.
const GlobalSlackFraction = 10

// NewLimiter returns a Limiter of rate events per second that lets up to slack missed slots catch up after
// idle time or stalls (0: strict spacing). Rate 0 returns nil, which never waits.
func NewLimiter(rate, slack int, clock Clock) *Limiter {
	if rate <= 0 {
		return nil
	}
	if clock == nil {
		clock = RealClock{}
	}
	opt := ratelimit.WithoutSlack
	if slack > 0 {
		opt = ratelimit.WithSlack(slack)
	}
	return &Limiter{l: ratelimit.New(rate, ratelimit.WithClock(reserveClock{clock}), opt), clock: clock}
}

// Wait blocks until the next slot or until ctx is done. A nil Limiter returns at once.
func (l *Limiter) Wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	slot := l.l.Take()
	d := slot.Sub(l.clock.Now())
	if d <= 0 {
		return nil
	}
	t := l.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// reserveClock is the ratelimit.Clock of a Limiter: real time, but Sleep returns at once (Wait sleeps).
type reserveClock struct{ c Clock }

func (r reserveClock) Now() time.Time      { return r.c.Now() }
func (r reserveClock) Sleep(time.Duration) {}

// limits holds the Engine's global limiter and the bounded map of per-target-IP limiters.
type limits struct {
	global *Limiter
	rate   int // per target; 0: unlimited
	max    int
	idle   time.Duration
	clock  Clock

	mu        sync.Mutex
	perTarget map[netip.Addr]*targetLimiter
}

type targetLimiter struct {
	l    *Limiter
	last time.Time // last use, for eviction; guarded by limits.mu
}

func newLimits(global, perTarget, max int, idle time.Duration, clock Clock) *limits {
	return &limits{
		global:    NewLimiter(global, global/GlobalSlackFraction, clock),
		rate:      perTarget,
		max:       max,
		idle:      idle,
		clock:     clock,
		perTarget: make(map[netip.Addr]*targetLimiter),
	}
}

// wait takes one slot from the per-target limiter of ip (politeness first: a probe stuck behind a busy target
// does not hold a global slot) and one from the global limiter.
func (ls *limits) wait(ctx context.Context, ip netip.Addr) error {
	if err := ls.target(ip).Wait(ctx); err != nil {
		return err
	}
	return ls.global.Wait(ctx)
}

// target returns ip's limiter (nil when per-target limiting is off), creating it and evicting idle ones.
func (ls *limits) target(ip netip.Addr) *Limiter {
	if ls.rate <= 0 {
		return nil
	}
	now := ls.clock.Now()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if t, ok := ls.perTarget[ip]; ok {
		t.last = now
		return t.l
	}
	if len(ls.perTarget) >= ls.max {
		ls.evictLocked(now)
	}
	t := &targetLimiter{l: NewLimiter(ls.rate, 0, ls.clock), last: now}
	ls.perTarget[ip] = t
	return t.l
}

// evictLocked drops limiters idle for longer than idle; if none is, it drops the least recently used one so
// the map stays bounded. ls.mu is held.
func (ls *limits) evictLocked(now time.Time) {
	var oldest netip.Addr
	var oldestT time.Time
	for ip, t := range ls.perTarget {
		if now.Sub(t.last) > ls.idle {
			delete(ls.perTarget, ip)
			continue
		}
		if !oldest.IsValid() || t.last.Before(oldestT) {
			oldest, oldestT = ip, t.last
		}
	}
	if len(ls.perTarget) >= ls.max && oldest.IsValid() {
		delete(ls.perTarget, oldest)
	}
}

// targets returns the number of per-target limiters kept.
func (ls *limits) targets() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.perTarget)
}
