package storage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage/redistest"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// decision returns a successful decision for app placing it at best, with candidates ranked as given (10 ms
// apart).
func decision(app, best string, ranked ...string) placement.Decision {
	d := placement.Decision{
		App: app, Mode: placement.ModeHost, Target: "db." + app + ".example:5432", BestPoP: best,
		Verdict: placement.VerdictUnicast, Status: placement.StatusSuccess, Confidence: 0.9,
		ComputedAt: t0, NextRecheck: t0.Add(time.Hour),
	}
	for i, p := range ranked {
		d.Candidates = append(d.Candidates, placement.Candidate{PoP: p, RTTMs: float64(10*i) + 1.25})
	}
	return d
}

func init() {
	areas = append(areas,
		area{"decisions", testDecisions},
		area{"scan_decisions", testScanDecisions},
		area{"watch_decisions", testWatchDecisions},
		area{"fenced_decisions", testFencedDecisions},
	)
}

// testFencedDecisions runs fencedSteps through both write paths, PutDecisionFenced and PutDecisionBatch (its
// script on one node, one call per decision on a Cluster): a write is refused only under an older token of the
// lease of the app's fence (or of a bare legacy fence); a write under another lease takes the app over; unfenced
// writes leave the fence; a delete forgets it.
func testFencedDecisions(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	paths := []struct {
		name string
		put  func(ctx context.Context, d placement.Decision, f Fence) error
	}{
		{"single", func(ctx context.Context, d placement.Decision, f Fence) error {
			_, err := s.PutDecisionFenced(ctx, d, f)
			return err
		}},
		{"batch", func(ctx context.Context, d placement.Decision, f Fence) error {
			out, err := s.PutDecisionBatch(ctx, []DecisionWrite{{Decision: d, Fence: f,
				Explanation: &Explanation{App: d.App, BestPoP: d.BestPoP}, ExplainTTL: time.Hour}})
			if err != nil {
				return err
			}
			if e, ok, eerr := s.Explanation(ctx, d.App); eerr != nil || ok != (out[0].Err == nil) || ok && e.BestPoP != d.BestPoP {
				t.Errorf("explanation of %s after a write under %+v (err %v): %+v, %v, %v; want one only when written",
					d.App, f, out[0].Err, e, ok, eerr)
			}
			s.DeleteExplanation(ctx, d.App)
			return out[0].Err
		}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) { fencedSteps(t, s, "fenced-"+p.name, p.put) })
	}
}

// fencedSteps writes app's decision step by step through put and checks, after each, the error, the decision
// stored and the fence stored.
func fencedSteps(t *testing.T, s *Store, app string, put func(context.Context, placement.Decision, Fence) error) {
	ctx := testCtx(t)
	const shard, fleet = "vantage-shard-003", "vantage"
	fences := KeyDecisionFences(DecisionBucket(app))
	steps := []struct {
		name      string
		legacy    string // when set, stored as the app's fence first: a bare token, as older binaries wrote it
		best      string
		fence     Fence
		wantErr   bool
		wantStore string // best PoP stored after the step
		wantFence string // the app's fence after the step
	}{
		{"first_holder", "", "LHR", Fence{shard, 2}, false, "LHR", "2:" + shard},
		{"same_holder_again", "", "AMS", Fence{shard, 2}, false, "AMS", "2:" + shard},
		{"same_lease_older_token_paused_past_its_lease", "", "FRA", Fence{shard, 1}, true, "AMS", "2:" + shard},
		{"same_lease_newer_holder", "", "CDG", Fence{shard, 3}, false, "CDG", "3:" + shard},
		{"the_paused_holder_once_more", "", "FRA", Fence{shard, 2}, true, "CDG", "3:" + shard},
		// The bug of issue 19: tokens of different leases are not comparable. The app moved to the fleet
		// lease (smart mode) whose token is older than the shard's: written, and the fleet lease owns it now.
		{"other_lease_older_token_takes_the_app_over", "", "MAD", Fence{fleet, 1}, false, "MAD", "1:" + fleet},
		{"other_lease_newer_token", "", "BCN", Fence{fleet, 4}, false, "BCN", "4:" + fleet},
		{"other_lease_its_paused_holder", "", "FRA", Fence{fleet, 1}, true, "BCN", "4:" + fleet},
		// Back to the shard: its fence was replaced, so even a token older than the shard's last (2 < 3) writes;
		// from then on the shard's older tokens are refused again.
		{"first_lease_back_with_an_older_token", "", "OSL", Fence{shard, 2}, false, "OSL", "2:" + shard},
		{"first_lease_older_token_than_its_new_fence", "", "FRA", Fence{shard, 1}, true, "OSL", "2:" + shard},
		{"unfenced_writer_leaves_the_fence", "", "VIE", Fence{}, false, "VIE", "2:" + shard},
		{"older_token_after_an_unfenced_write", "", "FRA", Fence{shard, 1}, true, "VIE", "2:" + shard},
		// Fences of older binaries: a bare token, compared with any lease's token as before, then replaced.
		{"legacy_newer_refused", "9", "FRA", Fence{shard, 5}, true, "VIE", "9"},
		{"legacy_newer_refused_for_any_lease", "9", "FRA", Fence{fleet, 8}, true, "VIE", "9"},
		{"legacy_same_token_replaced", "9", "ZRH", Fence{fleet, 9}, false, "ZRH", "9:" + fleet},
		{"legacy_older_replaced", "9", "WAW", Fence{shard, 10}, false, "WAW", "10:" + shard},
		{"after_the_legacy_fence_the_lease_rules", "", "FRA", Fence{fleet, 1}, false, "FRA", "1:" + fleet},
	}
	for _, st := range steps {
		if st.legacy != "" {
			if err := s.Client().HSet(ctx, fences, app, st.legacy).Err(); err != nil {
				t.Fatal(err)
			}
		}
		err := put(ctx, decision(app, st.best, st.best), st.fence)
		if st.wantErr != (err != nil) || err != nil && !errors.Is(err, ErrFenced) {
			t.Fatalf("%s: fence %+v: err %v, want fenced=%v", st.name, st.fence, err, st.wantErr)
		}
		want := fmt.Sprintf(`%q under fencing token %d of lease %q`, app, st.fence.Token, st.fence.Lease)
		if err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not say %s", st.name, err, want)
		}
		d, ok, err := s.Decision(ctx, app)
		if err != nil || !ok || d.BestPoP != st.wantStore {
			t.Fatalf("%s: stored %q (ok %v, err %v), want %q", st.name, d.BestPoP, ok, err, st.wantStore)
		}
		if f, err := s.Client().HGet(ctx, fences, app).Result(); err != nil || f != st.wantFence {
			t.Errorf("%s: fence %q (err %v), want %q", st.name, f, err, st.wantFence)
		}
	}
	for _, bad := range []Fence{{shard, -1}, {"", 5}, {shard, 0}, {"a{b}", 5}} {
		if err := put(ctx, decision(app, "LHR"), bad); err == nil || errors.Is(err, ErrFenced) {
			t.Errorf("fence %+v: err %v, want it refused as invalid", bad, err)
		}
	}
	if err := s.DeleteDecision(ctx, app); err != nil {
		t.Fatal(err)
	}
	if err := put(ctx, decision(app, "LHR", "LHR"), Fence{fleet, 1}); err != nil {
		t.Errorf("after a delete, token 1: %v", err)
	}
}

func testDecisions(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	rtt := func(d placement.Decision, ms float64) placement.Decision {
		d.Candidates = append([]placement.Candidate(nil), d.Candidates...)
		d.Candidates[0].RTTMs = ms
		return d
	}
	later := func(d placement.Decision) placement.Decision {
		d.ComputedAt, d.NextRecheck = d.ComputedAt.Add(time.Minute), d.NextRecheck.Add(time.Minute)
		return d
	}
	status := func(d placement.Decision, st placement.Status) placement.Decision { d.Status = st; return d }
	verdict := func(d placement.Decision, v placement.Verdict) placement.Decision { d.Verdict = v; return d }
	base := decision("shop", "LHR", "LHR", "AMS", "FRA")
	// Each step stores a decision for the same app; the steps run in order.
	steps := []struct {
		name        string
		d           placement.Decision
		wantChanged bool
		wantVersion int64
	}{
		{"first_store", base, true, 1},
		{"same_again", base, false, 1},
		{"only_rtt_and_times_change", later(rtt(base, 3.5)), false, 1},
		{"candidate_order_changes", decision("shop", "LHR", "LHR", "FRA", "AMS"), true, 2},
		{"best_pop_changes", decision("shop", "AMS", "AMS", "LHR", "FRA"), true, 3},
		{"status_changes", status(decision("shop", "AMS", "AMS", "LHR", "FRA"), placement.StatusNoValidHosts), true, 4},
		{"verdict_changes", verdict(status(decision("shop", "AMS", "AMS", "LHR", "FRA"), placement.StatusNoValidHosts), placement.VerdictAnycast), true, 5},
		{"input_version_ignored", func() placement.Decision {
			d := verdict(status(decision("shop", "AMS", "AMS", "LHR", "FRA"), placement.StatusNoValidHosts), placement.VerdictAnycast)
			d.Version = 99
			return d
		}(), false, 5},
	}
	for _, st := range steps {
		changed, err := s.PutDecision(ctx, st.d)
		if err != nil {
			t.Fatalf("%s: PutDecision: %v", st.name, err)
		}
		if changed != st.wantChanged {
			t.Errorf("%s: changed = %v; want %v", st.name, changed, st.wantChanged)
		}
		got, ok, err := s.Decision(ctx, "shop")
		if err != nil || !ok {
			t.Fatalf("%s: Decision = %v, %v", st.name, ok, err)
		}
		want := st.d
		want.Version = st.wantVersion
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Decision =\n %+v\nwant\n %+v", st.name, got, want)
		}
	}

	// Estimated, zero times, no candidates: all round-trip.
	bare := placement.Decision{App: "bare", Mode: placement.ModeSmart, Estimated: true}
	if _, err := s.PutDecision(ctx, bare); err != nil {
		t.Fatal(err)
	}
	bare.Version = 1
	if got, _, _ := s.Decision(ctx, "bare"); !reflect.DeepEqual(got, bare) {
		t.Errorf("bare decision = %+v; want %+v", got, bare)
	}

	if _, ok, err := s.Decision(ctx, "missing"); ok || err != nil {
		t.Errorf("Decision(missing) = %v, %v; want false, nil", ok, err)
	}
	if err := s.DeleteDecision(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Decision(ctx, "shop"); ok {
		t.Error("decision still there after DeleteDecision")
	}
	// After a delete the history of versions starts again.
	if _, err := s.PutDecision(ctx, base); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Decision(ctx, "shop"); got.Version != 1 {
		t.Errorf("version after delete and put = %d; want 1", got.Version)
	}

	for _, bad := range []string{"", "a{b}", "sp ace"} {
		if _, err := s.PutDecision(ctx, placement.Decision{App: bad}); err == nil {
			t.Errorf("PutDecision(app %q) succeeded; want an error", bad)
		}
	}
	if _, err := s.PutDecision(ctx, placement.Decision{App: "x", Mode: "nearest"}); err == nil {
		t.Error("PutDecision with mode nearest succeeded; want an error")
	}
	huge := decision("huge", "LHR")
	huge.Candidates = make([]placement.Candidate, maxCandidates+1)
	if _, err := s.PutDecision(ctx, huge); err == nil || !strings.Contains(err.Error(), `"huge": 4097 candidates`) {
		t.Errorf("PutDecision with %d candidates: %v; want an error naming the app and the count", len(huge.Candidates), err)
	}

	// PutDecisions: a batch across buckets (and cluster nodes) with per-decision outcomes.
	batch := []placement.Decision{decision("b1", "NRT", "NRT"), decision("b2", "SIN", "SIN"), base}
	res, err := s.PutDecisions(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []PutResult{{true, 1}, {true, 1}, {false, 1}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("PutDecisions = %+v; want %+v", res, want)
	}
}

func testScanDecisions(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	const n = 2000
	batch := make([]placement.Decision, 0, n)
	for i := range n {
		batch = append(batch, decision(fmt.Sprintf("app-%05d", i), "LHR", "LHR", "CDG"))
	}
	if _, err := s.PutDecisions(ctx, batch); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	err := s.ScanDecisions(ctx, func(d placement.Decision) error {
		seen[d.App]++
		if d.BestPoP != "LHR" || len(d.Candidates) != 2 || d.Version != 1 {
			return fmt.Errorf("bad decision %+v", d)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ScanDecisions: %v", err)
	}
	if len(seen) != n {
		t.Fatalf("ScanDecisions saw %d apps; want %d", len(seen), n)
	}
	for app, c := range seen {
		if c != 1 {
			t.Errorf("%s seen %d times", app, c)
		}
	}
	// A corrupt value: Decision fails naming it; ScanDecisions skips it and reads the others, counting it once
	// however many scans meet it.
	key := KeyDecisions(DecisionBucket("corrupt"))
	if err := s.Client().HSet(ctx, key, "corrupt", "7|abc|\x01\x05sh").Err(); err != nil {
		t.Fatal(err)
	}
	wantErr := `storage: decision "corrupt": corrupt value`
	if _, _, err := s.Decision(ctx, "corrupt"); err == nil || err.Error() != wantErr {
		t.Errorf("Decision(corrupt) error = %v; want %q", err, wantErr)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Metrics())
	for scan := range 2 {
		got := 0
		if err := s.ScanDecisions(ctx, func(placement.Decision) error { got++; return nil }); err != nil || got != n {
			t.Errorf("scan %d over a corrupt value = %d decisions, %v; want the %d good ones", scan, got, err, n)
		}
	}
	if v := gather(t, reg)["vantage_storage_corrupt_values_total{kind=decision}"]; v != 1 {
		t.Errorf("corrupt_values_total{kind=decision} = %v after two scans; want 1", v)
	}
	if err := s.Client().HDel(ctx, key, "corrupt").Err(); err != nil {
		t.Fatal(err)
	}
	// fn's error stops the scan and is returned as is.
	stop := fmt.Errorf("stop")
	calls := 0
	if err := s.ScanDecisions(ctx, func(placement.Decision) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("ScanDecisions with a failing fn = %v after %d calls; want stop after 1", err, calls)
	}
}

// TestScanDecisionsLarge scans buckets past Redis's compact (listpack) hash size, so they are real hash tables.
func TestScanDecisionsLarge(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	s, err := Open(ctx, Options{Addrs: []string{srv.Addr()}, Logger: testLogger(t), ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 64 * 300
	batch := make([]placement.Decision, 0, n)
	for i := range n {
		batch = append(batch, decision(fmt.Sprintf("c-%06d", i), "LHR", "LHR"))
	}
	if _, err := s.PutDecisions(ctx, batch); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool, n)
	if err := s.ScanDecisions(ctx, func(d placement.Decision) error { seen[d.App] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("ScanDecisions saw %d apps; want %d", len(seen), n)
	}
}

// recorder collects WatchDecisions notifications.
type recorder struct {
	mu  sync.Mutex
	got []string
	ch  chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1)} }

func (r *recorder) fn(app string) {
	r.mu.Lock()
	r.got = append(r.got, app)
	r.mu.Unlock()
	select { // wake a waiter; one pending wake-up is enough
	case r.ch <- struct{}{}:
	default:
	}
}

// waitFor waits until app has been notified (beyond what was already consumed) or fails after d.
func (r *recorder) waitFor(t *testing.T, app string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		for i, a := range r.got {
			if a == app {
				r.got = append(r.got[:i:i], r.got[i+1:]...)
				r.mu.Unlock()
				return
			}
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no notification for %q within %v; got %q", app, d, r.got)
		}
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

func startWatch(t *testing.T, s *Store) *recorder {
	t.Helper()
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.WatchDecisions(ctx, r.fn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("WatchDecisions returned %v; want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("WatchDecisions did not return within 10 s of cancel")
		}
	})
	r.waitFor(t, Resync, 10*time.Second)
	return r
}

func testWatchDecisions(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	s.pingInterval = 100 * time.Millisecond
	ctx := testCtx(t)
	r := startWatch(t, s)
	// Idle for several ping intervals: the pings keep the subscription, no spurious Resync.
	time.Sleep(600 * time.Millisecond)
	if extra := r.take(); len(extra) != 0 {
		t.Errorf("idle watch notified %q; want nothing", extra)
	}
	// A second store (another process) writes.
	w := open(t, Options{})
	steps := []struct {
		name   string
		do     func() error
		notify string // "" : no notification expected
	}{
		{"new", func() error { _, err := w.PutDecision(ctx, decision("w1", "LHR", "LHR")); return err }, "w1"},
		{"unchanged", func() error { _, err := w.PutDecision(ctx, decision("w1", "LHR", "LHR")); return err }, ""},
		{"changed", func() error { _, err := w.PutDecision(ctx, decision("w1", "FRA", "FRA")); return err }, "w1"},
		{"other_bucket", func() error { _, err := w.PutDecision(ctx, decision("w2-zzz", "FRA", "FRA")); return err }, "w2-zzz"},
		{"deleted", func() error { return w.DeleteDecision(ctx, "w1") }, "w1"},
		{"delete_missing", func() error { return w.DeleteDecision(ctx, "w1") }, ""},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// A marker write after each step: everything published before it has arrived once it has.
		marker := "marker-" + st.name
		if _, err := w.PutDecision(ctx, decision(marker, "SIN", "SIN")); err != nil {
			t.Fatal(err)
		}
		if st.notify != "" {
			r.waitFor(t, st.notify, 10*time.Second)
		}
		r.waitFor(t, marker, 10*time.Second)
		if extra := r.take(); len(extra) != 0 {
			t.Errorf("%s: unexpected notifications %q", st.name, extra)
		}
	}
}

// TestOutage stops a real redis-server for ~2 s: calls fail with errors (not hangs) meanwhile, and afterwards
// the same Store works again and WatchDecisions delivers again, without help.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	s, err := Open(ctx, Options{Addrs: []string{srv.Addr()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := startWatch(t, s)
	if _, err := s.PutDecision(ctx, decision("before", "LHR", "LHR")); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "before", 10*time.Second)
	if n := s.Metrics().Resubscriptions(ChannelDecisions); n != 0 {
		t.Errorf("%d resubscriptions before the outage; want 0", n)
	}

	srv.Stop(t)
	start := time.Now()
	if _, err := s.PutDecision(ctx, decision("during", "LHR", "LHR")); err == nil {
		t.Error("PutDecision while Redis is down succeeded")
	}
	if _, _, err := s.Decision(ctx, "before"); err == nil {
		t.Error("Decision while Redis is down succeeded")
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("two calls while Redis is down took %v; want errors within the 2 s timeouts", took)
	}
	time.Sleep(2*time.Second - time.Since(start))
	srv.Restart(t) // empty: persistence is off

	// The store recovers by itself: retry until a put works (go-redis redials), well within 10 s.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.PutDecision(ctx, decision("after", "FRA", "FRA"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PutDecision still failing 10 s after the restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The watcher resubscribed: it reports Resync, then new changes.
	r.waitFor(t, Resync, 15*time.Second)
	if _, err := s.PutDecision(ctx, decision("after2", "FRA", "FRA")); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "after2", 10*time.Second)
	// One subscription again, whatever the attempts while Redis was down (~5 in 2 s of backoff from 100 ms);
	// a second would be another interruption, not impossible on a busy machine.
	if n := s.Metrics().Resubscriptions(ChannelDecisions); n < 1 || n > 2 {
		t.Errorf("vantage_storage_watch_resubscriptions_total{channel=%q} = %d after one outage; want 1 (the failed attempts are not resubscriptions)", ChannelDecisions, n)
	}
	if d, ok, err := s.Decision(ctx, "after"); err != nil || !ok || d.BestPoP != "FRA" {
		t.Errorf("Decision(after) = %+v, %v, %v", d, ok, err)
	}
}

func init() { areas = append(areas, area{"scan_decision_buckets", testScanDecisionBuckets}) }

// testScanDecisionBuckets: a scan of some buckets returns exactly the decisions of those buckets; an empty list
// none, nil all; a bucket out of range is refused by number.
func testScanDecisionBuckets(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	var ds []placement.Decision
	for i := range 300 {
		ds = append(ds, decision(fmt.Sprintf("scan-%03d", i), "LHR", "LHR"))
	}
	if _, err := s.PutDecisions(ctx, ds); err != nil {
		t.Fatal(err)
	}
	scan := func(buckets []int) (map[string]bool, error) {
		got := map[string]bool{}
		err := s.ScanDecisionBuckets(ctx, buckets, func(d placement.Decision) error {
			if got[d.App] {
				t.Errorf("%s seen twice", d.App)
			}
			got[d.App] = true
			return nil
		})
		return got, err
	}
	for _, buckets := range [][]int{{7}, {0, 31, 63}, {}, nil} {
		got, err := scan(buckets)
		if err != nil {
			t.Fatalf("buckets %v: %v", buckets, err)
		}
		n := 0
		for _, d := range ds {
			if buckets == nil || slices.Contains(buckets, DecisionBucket(d.App)) {
				n++
				if !got[d.App] {
					t.Errorf("buckets %v: %s (bucket %d) missing", buckets, d.App, DecisionBucket(d.App))
				}
			}
		}
		if len(got) != n {
			t.Errorf("buckets %v: %d decisions, want %d", buckets, len(got), n)
		}
	}
	if _, err := scan([]int{3, 64}); err == nil || !strings.Contains(err.Error(), "bucket 64") {
		t.Errorf("bucket 64: %v, want an error naming it", err)
	}
}
