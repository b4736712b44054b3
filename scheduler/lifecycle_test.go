package scheduler

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// lifecycleEnv is a real Redis, a scheduler (not running: nothing rechecks) with its API, and a running router
// reading the same Redis.
type lifecycleEnv struct {
	*apiEnv
	st     *storage.Store
	router *router.Router
}

func newLifecycleEnv(t *testing.T) *lifecycleEnv {
	t.Helper()
	srv := redistest.Start(t)
	f := &fleetEnv{t: t, addrs: []string{srv.Addr()}, log: testLogger(t)}
	st := f.open()
	b := StoreBackend{st}
	s, err := New(Config{Name: "life", Logger: f.log}, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := &API{Sched: s, Decisions: b, Apps: b, Logger: f.log,
		Parser: placement.Parser{Policy: placement.DefaultPolicy(netip.MustParsePrefix("127.0.0.0/8"))},
		Auth:   NewAuth(map[string]string{testToken: "ops"}, Quota{}, nil),
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)

	rcfg := router.DefaultConfig()
	rcfg.BaselineFraction = 0
	rcfg.PoPs = []string{"FRA"}
	rcfg.Logger = f.log
	rt, err := router.New(st, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rt.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &lifecycleEnv{apiEnv: &apiEnv{t: t, url: hs.URL, b: b, s: s}, st: st, router: rt}
}

// putRemote stores a decision placing app at IAD.
func (e *lifecycleEnv) putRemote(app, target string) {
	e.t.Helper()
	now := time.Now()
	d := placement.Decision{App: app, Mode: placement.ModeHost, Target: target, BestPoP: "IAD",
		Verdict: placement.VerdictUnicast, Status: placement.StatusSuccess, ComputedAt: now,
		ExpiresAt:  now.Add(time.Hour),
		Candidates: []placement.Candidate{{PoP: "IAD", RTTMs: 1}, {PoP: "FRA", RTTMs: 80}}}
	if _, err := e.st.PutDecision(context.Background(), d); err != nil {
		e.t.Fatal(err)
	}
}

// route asks the router where a fetch of app entering at FRA runs.
func (e *lifecycleEnv) route(app string) router.Result {
	return e.router.Route(app, "FRA", "req-1", router.KindFetch)
}

// waitDeleted waits until the router no longer routes app and its decision is gone from Redis, and returns
// how long that took after start.
func (e *lifecycleEnv) waitDeleted(app string, start time.Time) time.Duration {
	e.t.Helper()
	waitUntil(e.t, "the router to run "+app+" locally", 5*time.Second, func() bool {
		return e.route(app).Reason == router.ReasonNoDecision
	})
	took := time.Since(start)
	if _, ok := decision(e.t, e.st, app); ok {
		e.t.Errorf("decision of %s still stored after the delete", app)
	}
	return took
}

// TestDeleteStopsRouting: deleting an app through the API, or removing its file from the config dir, deletes
// its decision, and a router reading Redis stops routing it at once (the issue wants within 1 s; the test
// fails only beyond 5 s, as the machine may be busy).
func TestDeleteStopsRouting(t *testing.T) {
	e := newLifecycleEnv(t)
	host := "127.0.0.1:5432"

	// Through the API.
	code, _, _, raw := e.do("POST", "/v1/apps", testToken, "application/toml",
		"name = \"shop\"\n[placement]\nhost = \""+host+"\"\n")
	if code != 201 {
		t.Fatalf("POST /v1/apps = %d %s", code, raw)
	}
	e.putRemote("shop", host)
	waitUntil(t, "the router to route shop to IAD", 10*time.Second, func() bool { return e.route("shop").ExecPoP == "IAD" })
	start := time.Now()
	if code, _, _, raw := e.do("DELETE", "/v1/apps/shop", testToken, "", ""); code != 200 {
		t.Fatalf("DELETE /v1/apps/shop = %d %s", code, raw)
	}
	t.Logf("API delete: the router ran shop locally %v after the DELETE was sent", e.waitDeleted("shop", start))

	// Through the config dir.
	dir := t.TempDir()
	file := filepath.Join(dir, "billing.toml")
	if err := os.WriteFile(file, []byte("name = \"billing\"\n[placement]\nhost = \""+host+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	parser := placement.Parser{Policy: placement.DefaultPolicy(netip.MustParsePrefix("127.0.0.0/8"))}
	if n, err := e.s.LoadDir(dir, parser, RegionEndpoints{}); n != 1 || err != nil {
		t.Fatalf("LoadDir = %d, %v; want 1 target", n, err)
	}
	e.putRemote("billing", host)
	waitUntil(t, "the router to route billing to IAD", 10*time.Second, func() bool { return e.route("billing").ExecPoP == "IAD" })
	// A reload that fails on another file keeps the decision (the removal is not trusted).
	os.Remove(file)
	broken := filepath.Join(dir, "broken.toml")
	os.WriteFile(broken, []byte("name = \"broken\"\n[placement]\nhost = \n"), 0o644)
	if _, err := e.s.LoadDir(dir, parser, RegionEndpoints{}); err == nil {
		t.Fatal("LoadDir with broken.toml: no error")
	}
	if _, ok := decision(t, e.st, "billing"); !ok {
		t.Error("decision of billing deleted by a reload that failed on another file")
	}
	os.Remove(broken)
	start = time.Now()
	if n, err := e.s.LoadDir(dir, parser, RegionEndpoints{}); n != 0 || err != nil {
		t.Fatalf("LoadDir of the emptied dir = %d, %v", n, err)
	}
	t.Logf("config dir: the router ran billing locally %v after the reload", e.waitDeleted("billing", start))
}

// TestRedisDataLossRechecksAtOnce: a scheduler with targets from a config dir and a fleet on loopback; Redis is
// emptied (FLUSHALL, as a restart without persistence would): the scheduler notices the new epoch and decides
// every target again within one ResultTimeout, though the recheck interval and the initial spread are a minute.
func TestRedisDataLossRechecksAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("fleet integration test: skipped with -short")
	}
	const resultTimeout = 5 * time.Second
	srv := redistest.Start(t)
	f := &fleetEnv{t: t, addrs: []string{srv.Addr()}, log: testLogger(t)}
	for i, pop := range []string{"FRA", "IAD", "SIN"} {
		f.startDaemon(pop, "d-"+pop, loopbackProber(t, 20+i), time.Second)
	}
	obs := f.open()
	dir := t.TempDir()
	apps := []string{"alpha", "bravo", "charlie"}
	for _, app := range apps {
		body := "name = \"" + app + "\"\n[placement]\nhost = \"" + testnet.Listen(t) + "\"\n"
		if err := os.WriteFile(filepath.Join(dir, app+".toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	s, err := New(Config{Name: "loss", RecheckInterval: time.Minute, InitialSpread: time.Minute, LeaseTTL: testLease,
		ResultTimeout: resultTimeout, ResultPoll: 50 * time.Millisecond, EpochPoll: 100 * time.Millisecond, Logger: f.log},
		StoreBackend{f.open()}, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { s.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	waitUntil(t, "the scheduler to lead", 10*time.Second, func() bool { ok, _ := s.Leading(); return ok })
	parser := placement.Parser{Policy: placement.DefaultPolicy(netip.MustParsePrefix("127.0.0.0/8"))}
	// Loaded while leading: checked at once (not at their offsets in the minute-long initial spread).
	go func() { s.WatchDir(ctx, dir, parser, RegionEndpoints{}, time.Minute); done <- struct{}{} }()
	decidedAfter := func(at time.Time) bool {
		for _, app := range apps {
			if d, ok := decision(t, obs, app); !ok || d.ComputedAt.Before(at) {
				return false
			}
		}
		return true
	}
	waitUntil(t, "every app decided", 20*time.Second, func() bool { return decidedAfter(time.Time{}) })
	d, _ := decision(t, obs, apps[0])
	if want := d.ComputedAt.Add(DecisionTTLIntervals*time.Minute + resultTimeout); !d.ExpiresAt.Equal(want) {
		t.Errorf("decision computed at %v expires at %v, want %v (%d intervals and a result timeout later)",
			d.ComputedAt, d.ExpiresAt, want, DecisionTTLIntervals)
	}

	flush := time.Now()
	if err := obs.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, "every app decided again after FLUSHALL", 3*resultTimeout, func() bool { return decidedAfter(flush) })
	t.Logf("every app decided again %v after FLUSHALL (result timeout %v, recheck interval and initial spread 1 min)", took, resultTimeout)
	if took > resultTimeout {
		t.Errorf("decided again %v after FLUSHALL, want within one result timeout (%v)", took, resultTimeout)
	}
	if n := counterValue(t, reg, "vantage_scheduler_redis_data_lost_total"); n != 1 {
		t.Errorf("vantage_scheduler_redis_data_lost_total = %v, want 1", n)
	}
	if v, err := obs.Client().Get(context.Background(), storage.KeySchema).Result(); err != nil || v == "" {
		t.Errorf("schema key after the loss: %q, %v; want it written back", v, err)
	}
}

// counterValue returns the value of the unlabelled counter name in reg.
func counterValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
