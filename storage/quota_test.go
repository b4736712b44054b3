package storage

import (
	"sync"
	"testing"
	"time"
)

func init() {
	areas = append(areas, area{"quota", testQuota})
}

// testQuota: two Stores on one Redis (two schedulers) share one bucket per name; the bucket refills at its rate
// on the callers' clock and never past its burst.
func testQuota(t *testing.T, open func(*testing.T, Options) *Store) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	a := open(t, Options{Now: clock})
	b := open(t, Options{Now: clock})
	ctx := testCtx(t)
	const perMinute, burst = 6, 2 // one every 10 s after a burst of two
	take := func(s *Store, name string) (bool, time.Duration) {
		t.Helper()
		ok, wait, err := s.TakeQuota(ctx, "adhoc", name, perMinute, burst)
		if err != nil {
			t.Fatalf("TakeQuota(%s): %v", name, err)
		}
		return ok, wait
	}
	for i, step := range []struct {
		name    string
		store   *Store
		advance time.Duration
		who     string
		ok      bool
		wait    time.Duration
	}{
		{"burst_1_on_a", a, 0, "ops", true, 0},
		{"burst_2_on_b", b, 0, "ops", true, 0},
		{"empty_on_a", a, 0, "ops", false, 10 * time.Second},
		{"empty_on_b", b, 4 * time.Second, "ops", false, 6 * time.Second},
		{"other_name_has_its_own", b, 0, "ci", true, 0},
		{"refilled_one", a, 6 * time.Second, "ops", true, 0},
		{"then_empty", b, 0, "ops", false, 10 * time.Second},
		{"idle_refills_to_burst_only", a, time.Hour, "ops", true, 0},
		{"idle_2", b, 0, "ops", true, 0},
		{"idle_3_refused", a, 0, "ops", false, 10 * time.Second},
		{"braces_in_name", a, 0, "{x} y", true, 0},
	} {
		advance(step.advance)
		ok, wait := take(step.store, step.who)
		if ok != step.ok || wait != step.wait {
			t.Errorf("step %d %s: ok %v wait %v, want %v %v", i, step.name, ok, wait, step.ok, step.wait)
		}
	}
	if _, _, err := a.TakeQuota(ctx, "adhoc", "ops", 0, 1); err == nil {
		t.Error("TakeQuota with rate 0: no error")
	}
	if ttl := a.Client().PTTL(ctx, KeyQuota("adhoc", "ops")).Val(); ttl <= 0 || ttl > 21*time.Second {
		t.Errorf("bucket TTL %v: want until full again (20 s) plus a second", ttl)
	}
}

func TestKeyQuota(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"ops", "vantage:{quota:adhoc:ops}"},
		{"{x}", "vantage:{quota:adhoc:x:7b787d}"},
		{"x:7b", "vantage:{quota:adhoc:x:783a3762}"}, // cannot collide with an escaped name
	} {
		if got := KeyQuota("adhoc", tc.name); got != tc.want {
			t.Errorf("KeyQuota(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
