package scheduler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
)

// TestDispatchKickRetryUrgent walks one target through the heap's reasons to recheck: at once when added
// during the term, at once when its target changes, RetryMin after a failure, an interval after a success,
// and at once when Redis lost its data.
func TestDispatchKickRetryUrgent(t *testing.T) {
	h := newHarness()
	var fail atomic.Bool
	cfg := Config{RecheckInterval: time.Minute, InitialSpread: 10 * time.Second, Jitter: -1, LeaseTTL: 3 * time.Second}
	s, _ := h.start(t, "s1", cfg, func(context.Context, Target) error {
		if fail.Load() {
			return errors.New("no PoP up")
		}
		return nil
	})
	testwait.Eventually(t, 10*time.Second, "shards led", func() bool { return len(s.Shards().Led) == DefaultShards })
	h.settle(t)
	const app = "x"
	// advance moves the fake clock by d in steps and returns the checks of app meanwhile.
	advance := func(d time.Duration) int {
		before := h.log.count(app)
		for end := h.clock.Now().Add(d); h.clock.Now().Before(end); {
			h.settle(t)
			h.clock.Advance(min(250*time.Millisecond, end.Sub(h.clock.Now())))
		}
		h.settle(t)
		return h.log.count(app) - before
	}
	steps := []struct {
		name   string
		do     func()
		wait   time.Duration
		checks int
	}{
		{"added_during_the_term_at_once", func() { s.AddTarget("api", testTargets(app)[0]) }, 0, 1},
		{"idle_before_the_interval", nil, 59 * time.Second, 0},
		{"after_the_interval", nil, time.Second, 1},
		{"changed_target_at_once", func() {
			tg := testTargets(app)[0]
			tg.Target = "moved.example:5432"
			s.SetTargets("api", []Target{tg})
		}, 0, 1},
		{"failing_recheck_kicked", func() { fail.Store(true); s.AddTarget("api", testTargets(app)[0]) }, 0, 1},
		{"no_retry_before_RetryMin", func() { fail.Store(false) }, RetryMin - time.Second, 0},
		{"retry_at_RetryMin", nil, time.Second, 1},
		{"then_an_interval", nil, 59 * time.Second, 0},
		{"redis_lost_its_data_at_once", s.dataLost, 0, 1},
	}
	h.clock.Advance(time.Second) // into the term: a target added now is new, not loaded at start-up
	want := 0
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		want += st.checks
		if st.wait == 0 { // at once: no time passes
			testwait.Eventually(t, 10*time.Second, st.name, func() bool { return h.log.count(app) >= want })
			h.settle(t)
			if got := h.log.count(app); got != want {
				t.Fatalf("%s: %d checks in all, want %d", st.name, got, want)
			}
			continue
		}
		if got := advance(st.wait); got != st.checks {
			t.Fatalf("%s: %d checks in %v, want %d", st.name, got, st.wait, st.checks)
		}
	}
}

// orderDeleter records DeleteDecision calls into a shared event log.
type orderDeleter struct {
	mu     *sync.Mutex
	events *[]string
}

func (d orderDeleter) DeleteDecision(_ context.Context, app string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	*d.events = append(*d.events, "deleted "+app)
	return nil
}

// TestDispatchRemovedTargetCancelledBeforeDelete: removing a target cancels its recheck in flight, and its
// decision is deleted only once that recheck stopped (else the recheck would write it again).
func TestDispatchRemovedTargetCancelledBeforeDelete(t *testing.T) {
	h := newHarness()
	var mu sync.Mutex
	var events []string
	started := make(chan struct{})
	cfg := Config{RecheckInterval: time.Minute, InitialSpread: time.Nanosecond, LeaseTTL: 3 * time.Second}
	s, _ := h.start(t, "s1", cfg, func(ctx context.Context, tg Target) error {
		close(started)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // a recheck winding down (its last Redis call)
		mu.Lock()
		events = append(events, "recheck stopped "+tg.App+": "+ctx.Err().Error())
		mu.Unlock()
		return ctx.Err()
	})
	s.decisions = orderDeleter{&mu, &events}
	s.SetTargets("api", testTargets("gone"))
	<-started
	if !s.RemoveTarget("api", "gone") {
		t.Fatal("RemoveTarget refused")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"recheck stopped gone: context canceled", "deleted gone"}
	if len(events) != 2 || events[0] != want[0] || events[1] != want[1] {
		t.Errorf("events %q, want %q", events, want)
	}
	if _, ok := s.Target("gone"); ok {
		t.Error("removed target still held")
	}
}
