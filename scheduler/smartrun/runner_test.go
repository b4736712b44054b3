package smartrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vantage-edge/vantage/internal/syncbuf"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/smart/smarttest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

func openStore(t *testing.T) *storage.Store {
	t.Helper()
	return openStoreLogged(t, nil)
}

// openStoreLogged is openStore with the Store's warnings to log (nil: discarded).
func openStoreLogged(t *testing.T, log *slog.Logger) *storage.Store {
	t.Helper()
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// runInBackground runs r until the test ends, then stops it and waits for Run to return.
func runInBackground(t *testing.T, ctx context.Context, r *Runner) {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRunnerRedis drives the runner on a real redis-server through a deploy's life: insufficient telemetry,
// success, found slower when placed (marked, local), still unsupported, and analysed again after a new deploy.
func TestRunnerRedis(t *testing.T) {
	st := openStore(t)
	ctx := testCtx(t)
	clock := time.Now().UTC().Truncate(time.Second)
	reg := prometheus.NewRegistry()
	r, err := NewRunner(smart.DefaultConfig(), st, Sources{}, RunnerOptions{Now: func() time.Time { return clock }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range []storage.App{{Name: "shop", Mode: placement.ModeSmart}, {Name: "blog", Mode: placement.ModeHost, Target: "db:5432"}} {
		if err := st.PutApp(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	add := func(g *smarttest.Gen) {
		t.Helper()
		for i := range g.Recs {
			g.Recs[i].At = clock.Add(g.Recs[i].At.Sub(now)) // gen writes at fixed times; move them to clock
		}
		if err := st.AddTelemetry(ctx, g.Recs); err != nil {
			t.Fatal(err)
		}
	}
	step := func(name string, wantStatus placement.Status, wantBest string) placement.Decision {
		t.Helper()
		as, err := r.RunOnce(ctx)
		if err != nil || len(as) != 1 {
			t.Fatalf("%s: RunOnce = %d analyses, %v; want 1 (only shop is smart)", name, len(as), err)
		}
		d, ok, err := st.Decision(ctx, "shop")
		if err != nil || !ok || d.Status != wantStatus || d.BestPoP != wantBest || d.Mode != placement.ModeSmart {
			t.Fatalf("%s: stored decision %+v (%v, %v), want status %q best %q", name, d, ok, err, wantStatus, wantBest)
		}
		return d
	}

	if d, ok, err := st.Decision(ctx, "shop"); err != nil || ok {
		t.Fatalf("decision before any analysis: %+v, %v, %v; want none (status absent)", d, ok, err)
	}
	add(newGen(t).Add(5, "SYD", "SYD", 6))
	step("few_requests", placement.StatusInsufficientInvocations, "")

	add(newGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6))
	d := step("sydney_to_frankfurt", placement.StatusSuccess, "FRA")
	if d.Version != 2 {
		t.Errorf("version %d after two different decisions, want 2", d.Version)
	}

	clock = clock.Add(time.Minute)
	add(newGen(t).Add(10, "SYD", "FRA", 6).Edit(10, func(r *storage.Telemetry) { r.DurationMs = 3000 }))
	step("slower_when_placed", placement.StatusUnsupportedApplication, "")
	if v, ok, err := st.UnsupportedDeploy(ctx, "shop"); err != nil || !ok || v != "v1" {
		t.Fatalf("UnsupportedDeploy = %q, %v, %v; want v1 marked", v, ok, err)
	}

	clock = clock.Add(time.Minute)
	add(newGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6))
	step("same_deploy_stays_unsupported", placement.StatusUnsupportedApplication, "")

	if err := st.PutApp(ctx, storage.App{Name: "shop", Mode: placement.ModeSmart, DeployVersion: "v2"}); err != nil {
		t.Fatal(err)
	}
	step("new_deploy_without_telemetry", placement.StatusInsufficientInvocations, "")
	add(newGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Edit(35, func(r *storage.Telemetry) { r.Deploy = "v2" }))
	step("new_deploy_analysed", placement.StatusSuccess, "FRA")

	var m dto.Metric
	if err := r.runs.WithLabelValues("UNSUPPORTED_APPLICATION").Write(&m); err != nil || m.GetCounter().GetValue() != 2 {
		got := m.GetCounter().GetValue()
		t.Errorf("vantage_smart_analyses_total{status=UNSUPPORTED_APPLICATION} = %v, want 2", got)
	}
}

// TestRunLoop checks that Run analyses at once and on every tick, and returns when ctx ends.
func TestRunLoop(t *testing.T) {
	st := openStore(t)
	ctx := testCtx(t)
	if err := st.PutApp(ctx, storage.App{Name: "shop", Mode: placement.ModeSmart}); err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	stopped := make(chan struct{})
	var clock atomic.Pointer[time.Time] // extra rounds (the registry's resync) read the same time
	t1 := time.Now().UTC().Truncate(time.Millisecond)
	clock.Store(&t1)
	r, err := NewRunner(smart.DefaultConfig(), st, Sources{}, RunnerOptions{
		Now:  func() time.Time { return *clock.Load() },
		Tick: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() { close(stopped) } },
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	for i, want := range []time.Time{t1, t1.Add(time.Minute), t1.Add(2 * time.Minute)} {
		if i > 0 {
			clock.Store(&want)
			ticks <- want
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, ok, err := st.Decision(ctx, "shop")
			if err != nil {
				t.Fatal(err)
			}
			if ok && d.ComputedAt.Equal(want) {
				if exp := want.Add(DecisionTTLIntervals * smart.DefaultConfig().Interval); !d.ExpiresAt.Equal(exp) {
					t.Errorf("round %d: decision expires at %v, want %v (%d intervals after it was computed)", i, d.ExpiresAt, exp, DecisionTTLIntervals)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: decision computed at %v, want %v", i, d.ComputedAt, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	select {
	case <-stopped:
	default:
		t.Error("Run returned without stopping its ticker")
	}
}

// TestFleetSources reads fleet results stored as the probe daemons store them, and judges them with the engine.
func TestFleetSources(t *testing.T) {
	st := openStore(t)
	ctx := testCtx(t)
	put := func(key, pop string, ms float64) {
		t.Helper()
		if _, err := st.PutResult(ctx, storage.Result{Target: key, PoP: pop, Kind: placement.ProbeTCP, MinMs: ms, MedianMs: ms, Samples: 3, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	// db in Frankfurt: RTTs consistent with one place.
	for pop, ms := range map[string]float64{"FRA": 1, "LHR": 14, "IAD": 97, "SIN": 151, "SYD": 275} {
		put("tcp:db:5432", pop, ms)
	}
	// An anycast address: 1 ms from four PoPs on four continents.
	for _, pop := range []string{"FRA", "IAD", "SIN", "SYD"} {
		put("tcp:any:5432", pop, 1)
	}
	src := FleetSources(st, nil) // DefaultTargetKey: "tcp:db:5432"
	tests := []struct {
		host    string
		want    placement.Verdict
		ok      bool
		wantPoP int
	}{
		{"db:5432", placement.VerdictUnicast, true, 5},
		{"any:5432", placement.VerdictAnycast, true, 4},
		{"unprobed:443", "", false, 0},
		{"api.example.com", "", false, 0}, // would be "http:api.example.com"
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			v, ok, err := src.Verdict(ctx, tt.host)
			if err != nil || ok != tt.ok || v != tt.want {
				t.Errorf("Verdict = %q, %v, %v; want %q, %v", v, ok, err, tt.want, tt.ok)
			}
			m, err := src.HostRTTs(ctx, tt.host)
			if err != nil || len(m) != tt.wantPoP {
				t.Errorf("HostRTTs = %v, %v; want %d PoPs", m, err, tt.wantPoP)
			}
		})
	}
}

func TestIngestHandler(t *testing.T) {
	st := openStore(t)
	ctx := testCtx(t)
	srv := httptest.NewServer(IngestHandler(st.AddTelemetryBatch, nil))
	t.Cleanup(srv.Close)
	good := newGen(t).Add(3, "SYD", "FRA", 5).Recs
	goodBody, _ := json.Marshal(good)
	aggBody, _ := json.Marshal(storage.TelemetryBatch{Windows: newGen(t).Add(4, "FRA", "FRA", 5).Windows(), Records: good[:1]})
	badAgg := newGen(t).Add(4, "FRA", "FRA", 5).Windows()
	badAgg[0].Cells[0].Count = 5
	badAggBody, _ := json.Marshal(storage.TelemetryBatch{Windows: badAgg})
	// A worker host that aggregates itself: windows, and a sample of the records already counted in them.
	sampledBody, _ := json.Marshal(storage.TelemetryBatch{Windows: newGen(t).Add(4, "SYD", "SYD", 5).Windows(), Samples: good[:1]})
	badSample := append([]storage.Telemetry(nil), good[:1]...)
	badSample[0].Ingress = ""
	badSampleBody, _ := json.Marshal(storage.TelemetryBatch{Samples: badSample})
	bad := append([]storage.Telemetry(nil), good...)
	bad[1].Exec = ""
	badBody, _ := json.Marshal(bad)
	tests := []struct {
		name     string
		method   string
		body     string
		wantCode int
		wantBody string
		wantRecs int // requests stored (in windows) after this step
	}{
		{"get", http.MethodGet, "", http.StatusMethodNotAllowed, "POST only", 0},
		{"not_an_array", http.MethodPost, `"shop"`, http.StatusBadRequest, "want a JSON array of records or a batch object", 0},
		{"unknown_batch_field", http.MethodPost, `{"app":"shop"}`, http.StatusBadRequest, `batch: json: unknown field "app"`, 0},
		{"invalid_window", http.MethodPost, string(badAggBody), http.StatusBadRequest, "window 0: storage: telemetry window of shop", 0},
		{"unknown_field", http.MethodPost, `[{"app":"shop","color":"red"}]`, http.StatusBadRequest, `record 0: json: unknown field "color"`, 0},
		{"invalid_record", http.MethodPost, string(badBody), http.StatusBadRequest, "record 1: storage: telemetry exec PoP is empty (app shop)", 0},
		{"too_large", http.MethodPost, "[" + strings.Repeat(" ", MaxIngestBytes) + "]", http.StatusRequestEntityTooLarge, "", 0},
		{"good", http.MethodPost, string(goodBody), http.StatusNoContent, "", 3},
		{"aggregates_and_a_record", http.MethodPost, string(aggBody), http.StatusNoContent, "", 3 + 4 + 1},
		{"invalid_sample", http.MethodPost, string(badSampleBody), http.StatusBadRequest, "sample 0: storage: telemetry ingress PoP is empty", 3 + 4 + 1},
		{"aggregates_and_a_sample", http.MethodPost, string(sampledBody), http.StatusNoContent, "", 3 + 4 + 1 + 4}, // the sample is not counted again
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, tt.method, srv.URL+"/v1/telemetry", bytes.NewReader([]byte(tt.body)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(b.String(), tt.wantBody) {
				t.Errorf("%s: %d %q, want %d containing %q", tt.name, resp.StatusCode, b.String(), tt.wantCode, tt.wantBody)
			}
			ws, _, err := st.TelemetryWindows(ctx, "shop", smarttest.Now.Add(-time.Hour), smarttest.Now)
			n := int64(0)
			for _, w := range ws {
				n += w.Requests()
			}
			if err != nil || n != int64(tt.wantRecs) {
				t.Errorf("stored requests: %d (%v), want %d", n, err, tt.wantRecs)
			}
		})
	}
}

// TestRunNotLeading checks that Run skips its rounds while it does not lead, and runs once it does.
func TestRunNotLeading(t *testing.T) {
	st := openStore(t)
	ctx := testCtx(t)
	if err := st.PutApp(ctx, storage.App{Name: "shop", Mode: placement.ModeSmart}); err != nil {
		t.Fatal(err)
	}
	ticks := make(chan time.Time)
	var leading atomic.Bool
	asked := make(chan struct{}, 10)
	r, err := NewRunner(smart.DefaultConfig(), st, Sources{}, RunnerOptions{
		Tick: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} },
		Leading: func() (bool, storage.Fence) {
			select {
			case asked <- struct{}{}:
			default: // asked also by the lease check every Poll: the test waits for one ask at a time
			}
			return leading.Load(), storage.Fence{Lease: "vantage", Token: 7}
		},
		Poll: time.Hour, // the lease check is TestRunGainsLease's
	})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, ctx, r)
	<-asked
	ticks <- time.Now()
	<-asked
	if _, ok, err := st.Decision(ctx, "shop"); err != nil || ok {
		t.Fatalf("a decision was stored while not leading (%v, %v)", ok, err)
	}
	leading.Store(true)
	ticks <- time.Now()
	<-asked
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, err := st.Decision(ctx, "shop"); err != nil || ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no decision stored once leading")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A successor wrote under token 8: this runner's next round (token 7) is fenced off and changes nothing.
	succ := placement.Decision{App: "shop", Mode: placement.ModeSmart, Target: "successor", Status: placement.StatusInsufficientInvocations}
	if _, err := st.PutDecisionFenced(ctx, succ, storage.Fence{Lease: "vantage", Token: 8}); err != nil {
		t.Fatal(err)
	}
	ticks <- time.Now()
	<-asked
	failed := func() float64 {
		var m dto.Metric
		if err := r.runs.WithLabelValues("error").Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	for failed() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the fenced-off round did not fail")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d, _, err := st.Decision(ctx, "shop"); err != nil || d.Target != "successor" {
		t.Errorf("decision %+v (err %v): the fenced-off runner overwrote its successor's", d, err)
	}
}

var now = smarttest.Now

func newGen(t *testing.T) *smarttest.Gen { return smarttest.NewGen(t) }

// TestRunEarlyAndDeploys drives Run with the production thresholds and interval on a real redis-server while
// another client writes the telemetry, as worker hosts do: each step's analysis comes from enough new records
// or a deploy, well before the one-minute interval. A new deploy ends UNSUPPORTED_APPLICATION; a deploy does not
// throw away a placement that works.
func TestRunEarlyAndDeploys(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	open := func() *storage.Store {
		st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st, worker := open(), open()
	t0 := time.Now().UTC()
	if err := st.PutApp(ctx, storage.App{Name: "shop", Mode: placement.ModeSmart, DeployVersion: "v1", DeployedAt: t0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cfg := smart.DefaultConfig()
	r, err := NewRunner(cfg, st, Sources{}, RunnerOptions{Poll: 50 * time.Millisecond, MinGap: 10 * time.Millisecond,
		Leading: func() (bool, storage.Fence) { return true, storage.Fence{Lease: "vantage", Token: 1} }})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, ctx, r)

	// add writes g's records from another client, starting at `from`.
	add := func(from time.Time, g *smarttest.Gen) {
		t.Helper()
		for i := range g.Recs {
			g.Recs[i].At = from.Add(time.Duration(i) * time.Second)
		}
		if err := worker.AddTelemetry(ctx, g.Recs); err != nil {
			t.Fatal(err)
		}
	}
	// await waits, far less than cfg.Interval, for a decision computed after `after` and checks it.
	await := func(step string, after time.Time, status placement.Status, best, reason string) placement.Decision {
		t.Helper()
		deadline := time.Now().Add(cfg.Interval / 2)
		for {
			d, ok, err := st.Decision(ctx, "shop")
			if err != nil {
				t.Fatal(err)
			}
			if ok && d.ComputedAt.After(after) && d.Status == status {
				if d.BestPoP != best || !strings.Contains(d.Reason, reason) || (status == placement.StatusSuccess) != (d.Reason == "") {
					t.Fatalf("%s: decision %+v; want best %q and a reason containing %q", step, d, best, reason)
				}
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: decision %+v (found %v) after %v; want status %s computed after %v", step, d, ok, cfg.Interval/2, status, after)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	await("first_round", t0.Add(-time.Second), placement.StatusInsufficientInvocations, "", `0 requests of deploy "v1"`)

	mark := time.Now()
	add(t0.Add(-10*time.Minute), newGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6))
	await("enough_new_telemetry", mark, placement.StatusSuccess, "FRA", "")

	mark = time.Now()
	add(t0.Add(-9*time.Minute), newGen(t).Add(20, "SYD", "FRA", 6).Edit(20, func(r *storage.Telemetry) { r.DurationMs = 3000 }))
	await("slower_when_placed", mark, placement.StatusUnsupportedApplication, "", `deploy "v1" was slower when placed`)

	// A deploy Vantage is told without a version (generated: the workers go on reporting v1): the records
	// since it are the new deploy's, and there are none yet.
	deploy := func(at time.Time) time.Time {
		t.Helper()
		mark := time.Now()
		app := storage.App{Name: "shop", Mode: placement.ModeSmart, DeployVersion: "vantage-" + at.Format(time.RFC3339), DeployGenerated: true, DeployedAt: at}
		if err := st.PutApp(ctx, app); err != nil {
			t.Fatal(err)
		}
		return mark
	}
	mark = deploy(t0.Add(-5 * time.Minute))
	await("new_deploy_ends_unsupported", mark, placement.StatusInsufficientInvocations, "", "0 requests of deploy")

	mark = time.Now()
	add(t0.Add(-4*time.Minute), newGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6))
	await("new_deploy_analysed", mark, placement.StatusSuccess, "FRA", "")

	mark = deploy(t0.Add(-3 * time.Minute))
	await("placement_kept_over_a_deploy", mark, placement.StatusSuccess, "FRA", "")
}

// TestRunGainsLease checks that a smart application registered while no runner leads is analysed as soon as
// one comes to lead, not an interval later: the registration's notification found no leader, and the lease
// check every Poll runs a full round.
func TestRunGainsLease(t *testing.T) {
	st := openStore(t)
	ctx := testCtx(t)
	var leading atomic.Bool
	r, err := NewRunner(smart.DefaultConfig(), st, Sources{}, RunnerOptions{
		Tick:    func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} }, // no interval round
		Leading: func() (bool, storage.Fence) { return leading.Load(), storage.Fence{Lease: "vantage", Token: 3} },
		Poll:    20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, ctx, r)
	if err := st.PutApp(ctx, storage.App{Name: "shop", Mode: placement.ModeSmart}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the notification reaches a runner that does not lead
	if _, ok, err := st.Decision(ctx, "shop"); err != nil || ok {
		t.Fatalf("a decision was stored while not leading (%v, %v)", ok, err)
	}
	leading.Store(true)
	testwait.Eventually(t, 10*time.Second, "a decision once leading", func() bool {
		_, ok, err := st.Decision(ctx, "shop")
		return err == nil && ok
	})
}

// resyncStore is a Store whose registry notifications the test sends: fn(storage.Resync) as after a lost
// subscription, with no notification of what changed meanwhile.
type resyncStore struct {
	Store
	resync chan struct{}
}

func (s resyncStore) WatchApps(ctx context.Context, fn func(string)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.resync:
			fn(storage.Resync)
		}
	}
}

// TestRunResync checks that a (re)subscription to the registry's notifications runs a full round: what was
// registered while the subscription was down is analysed without waiting for the interval.
func TestRunResync(t *testing.T) {
	st := openStore(t)
	ctx := testCtx(t)
	rs := resyncStore{Store: st, resync: make(chan struct{})}
	if err := st.PutApp(ctx, storage.App{Name: "first", Mode: placement.ModeSmart}); err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(smart.DefaultConfig(), rs, Sources{}, RunnerOptions{
		Tick: func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} },
	})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, ctx, r)
	testwait.Eventually(t, 10*time.Second, "Run's first round", func() bool {
		_, ok, err := st.Decision(ctx, "first")
		return err == nil && ok
	})
	if err := st.PutApp(ctx, storage.App{Name: "shop", Mode: placement.ModeSmart}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, ok, err := st.Decision(ctx, "shop"); err != nil || ok {
		t.Fatalf("a decision was stored with no round run (%v, %v)", ok, err)
	}
	rs.resync <- struct{}{}
	testwait.Eventually(t, 10*time.Second, "a decision after the resync", func() bool {
		_, ok, err := st.Decision(ctx, "shop")
		return err == nil && ok
	})
}

// TestRunReadsNamedApps checks that a registration notice makes the runner read the named applications, not the
// whole registry: beside 2,500 registered applications, a smart application registered while the runner runs
// gets its decision without another HSCAN of the registry.
func TestRunReadsNamedApps(t *testing.T) {
	// The store's warnings tell a resubscription (a Redis connection lost on a busy machine), after which a full
	// read is the rule, not a fault.
	var storeLog syncbuf.Buffer
	st := openStoreLogged(t, slog.New(slog.NewTextHandler(&storeLog, nil)))
	ctx := testCtx(t)
	var others []storage.App
	for i := range 2500 {
		others = append(others, storage.App{Name: fmt.Sprintf("db-%04d", i), Mode: placement.ModeHost, Target: fmt.Sprintf("db%d.example:5432", i)})
	}
	if err := st.PutApps(ctx, append(others, storage.App{Name: "shop", Mode: placement.ModeSmart})); err != nil {
		t.Fatal(err)
	}
	var cmds redistest.Commands
	st.Client().AddHook(&cmds)
	r, err := NewRunner(smart.DefaultConfig(), st, Sources{}, RunnerOptions{
		Tick: func(time.Duration) (<-chan time.Time, func()) { return make(chan time.Time), func() {} },
	})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, ctx, r)
	decided := func(app string) bool {
		_, ok, err := st.Decision(ctx, app)
		return err == nil && ok
	}
	testwait.Eventually(t, 20*time.Second, "the first round's decision for shop", func() bool { return decided("shop") })
	// The first round and the subscription's resync read the registry; wait until they are over.
	scans := cmds.Count("hscan")
	testwait.Eventually(t, 20*time.Second, "the registry reads of the start to settle", func() bool {
		time.Sleep(200 * time.Millisecond)
		n := cmds.Count("hscan")
		defer func() { scans = n }()
		return n == scans
	})
	if err := st.PutApp(ctx, storage.App{Name: "cart", Mode: placement.ModeSmart}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 20*time.Second, "a decision for cart, registered while the runner runs", func() bool { return decided("cart") })
	if got := cmds.Count("hscan"); got != scans {
		if n := st.Metrics().Resubscriptions(storage.ChannelApps); n > 0 {
			t.Logf("the watch resubscribed %d times (a full read follows, as it must): HSCANs not checked\n%s", n, storeLog.String())
		} else {
			t.Errorf("the runner read the whole registry again for one registration (%d HSCANs, %d before)", got, scans)
		}
	}
	if cmds.Count("hmget") == 0 {
		t.Error("no HMGET: the registered application was not read by name")
	}
}
