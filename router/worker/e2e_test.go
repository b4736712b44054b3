package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/router/worker"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/scheduler/probed"
	"github.com/vantage-edge/vantage/scheduler/smart"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
	"github.com/vantage-edge/vantage/testbed"
)

// The emulated WAN of the end-to-end test: four PoPs, a database at AWS eu-central-1 (Frankfurt) for most
// applications, a second one there for the application that gets slower when placed, and a database behind
// an anycast address served from Sydney, Frankfurt and Ashburn.
var e2eSpec = testbed.Spec{
	Name: "placement-e2e",
	PoPs: []string{"SYD", "FRA", "SIN", "IAD"},
	Hosts: []testbed.HostSpec{
		{Name: "db", Location: testbed.Location{Region: "aws:eu-central-1"}},
		{Name: "db2", Location: testbed.Location{Region: "aws:eu-central-1"}},
	},
	Anycast: []testbed.AnycastSpec{{Name: "dbany", Instances: []testbed.InstanceSpec{
		{Name: "syd", Location: testbed.Location{PoP: "SYD"}},
		{Name: "fra", Location: testbed.Location{Region: "aws:eu-central-1"}},
		{Name: "iad", Location: testbed.Location{Region: "aws:us-east-1"}},
	}}},
}

// The applications, all making e2eQueries sequential queries per request after connecting.
const (
	e2eQueries  = 5
	appNone     = "none.test"     // no placement
	appHost     = "host.test"     // host = "db:5432"
	appRegion   = "region.test"   // region = "aws:eu-central-1"
	appSmart    = "smart.test"    // smart
	appAnycast  = "anycast.test"  // host = "dbany:5432": anycast
	appAnySmart = "anysmart.test" // smart, its database behind the anycast address
	appSlower   = "slower.test"   // smart, on db2, whose path from FRA degrades once placed
	workerPort  = "8080"
	frontPort   = "80"
)

var e2eApps = []worker.App{
	{Name: appNone, Deploy: "v1", DB: "db:5432"}, {Name: appHost, Deploy: "v1", DB: "db:5432"},
	{Name: appRegion, Deploy: "v1", DB: "db:5432"}, {Name: appSmart, Deploy: "v1", DB: "db:5432"},
	{Name: appAnycast, Deploy: "v1", DB: "dbany:5432"}, {Name: appAnySmart, Deploy: "v1", DB: "dbany:5432"},
	{Name: appSlower, Deploy: "v1", DB: "db2:5432"},
}

// e2e is the running system.
type e2e struct {
	tb     *testbed.Testbed
	st     *storage.Store
	ctx    context.Context
	users  map[string]*http.Client // by ingress PoP: a user's client in that PoP
	fronts map[string]string       // by ingress PoP: the router front's base URL
	rt     map[string]*router.Router
}

// reply is what a user saw.
type reply struct {
	ms        float64
	placement string // cf-placement
	reason    string
	exec      string
	res       worker.Result
}

// get sends one request of app from a user at ingress and times it.
func (e *e2e) get(app, ingress string) (reply, error) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, e.fronts[ingress]+"/", nil)
	if err != nil {
		return reply{}, err
	}
	req.Host = app
	t0 := time.Now()
	resp, err := e.users[ingress].Do(req)
	if err != nil {
		return reply{}, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := reply{ms: float64(time.Since(t0).Microseconds()) / 1000, placement: resp.Header.Get(router.HeaderPlacement),
		reason: resp.Header.Get(router.HeaderReason), exec: resp.Header.Get(worker.HeaderExec)}
	if err != nil || resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("%s from %s: %d %s (%v)", app, ingress, resp.StatusCode, body, err)
	}
	return r, json.Unmarshal(body, &r.res)
}

// burst sends n concurrent requests of app from ingress and returns the replies.
func (e *e2e) burst(t *testing.T, app, ingress string, n int) []reply {
	t.Helper()
	out := make([]reply, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = e.get(app, ingress) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err) // not Fatal: burst may run outside the test's goroutine
	}
	return out
}

// sequential sends n requests of app from ingress one after the other.
func (e *e2e) sequential(t *testing.T, app, ingress string, n int) []reply {
	t.Helper()
	var out []reply
	for range n {
		r, err := e.get(app, ingress)
		if err != nil {
			t.Error(err) // not Fatal: sequential may run outside the test's goroutine
			break
		}
		out = append(out, r)
	}
	return out
}

// waitDecision waits until app's stored decision has status st, and every router routes a fetch from SYD as
// the decision says (to best, or locally).
func (e *e2e) waitDecision(t *testing.T, app string, st placement.Status, best string, timeout time.Duration) placement.Decision {
	t.Helper()
	t0 := time.Now()
	deadline := time.Now().Add(timeout)
	for {
		d, ok, err := e.st.Decision(e.ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		if ok && d.Status == st && d.BestPoP == best {
			want := "SYD"
			if best != "" {
				want = best
			}
			if e.rt["SYD"].Route(app, "SYD", "e2e-check", router.KindFetch).ExecPoP == want {
				t.Logf("%s: %s at %q (version %d) after %v", app, d.Status, d.BestPoP, d.Version, time.Since(t0).Round(time.Millisecond))
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: decision %+v (stored %v) after %v, want status %q best %q", app, d, ok, timeout, st, best)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func medianMs(rs []reply) float64 {
	ms := make([]float64, len(rs))
	for i, r := range rs {
		ms[i] = r.ms
	}
	slices.Sort(ms)
	return ms[len(ms)/2]
}

// tbResolver resolves the testbed's names for the probers.
type tbResolver struct{ tb *testbed.Testbed }

func (r tbResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r.tb.Resolve(host); ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such testbed node", Name: host, IsNotFound: true}
}

// run starts a goroutine owned by the test: ctx is cancelled and the goroutine awaited at cleanup.
func run(t *testing.T, name string, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("%s: %v", name, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startE2E builds the whole system on the emulated WAN: a real redis-server; in every PoP a probe daemon
// (probing from the PoP's namespace), a worker host and, in SYD and FRA, a router with its HTTP front (listening
// in the PoP's namespace and forwarding through the emulated WAN); the scheduler with the host, region and
// anycast targets; and the smart runner on the workers' telemetry.
func startE2E(t *testing.T) *e2e {
	if os.Geteuid() != 0 {
		t.Skip("worker: the end-to-end placement test needs root for the testbed's network namespaces (CI runs as root)")
	}
	log := testLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	t0 := time.Now()
	spec := e2eSpec
	tb, err := testbed.Start(ctx, &spec, testbed.Options{Logger: log, Nice: -10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	})
	srv := redistest.Start(t)
	open := func() *storage.Store {
		st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	e := &e2e{tb: tb, st: open(), ctx: ctx, users: map[string]*http.Client{}, fronts: map[string]string{}, rt: map[string]*router.Router{}}

	// The databases: the PING/PONG server in each database namespace (and both anycast instances).
	for _, name := range []string{"db", "db2", "dbany-syd", "dbany-fra", "dbany-iad"} {
		n := tb.Node(name)
		ln, err := n.Listen(ctx, "tcp4", ":5432")
		if err != nil {
			t.Fatal(err)
		}
		run(t, "db "+name, func(ctx context.Context) error { return worker.ServeDB(ctx, ln) })
	}

	workers := map[string]*url.URL{}
	for _, pop := range spec.PoPs {
		n := tb.Node(pop)
		workers[pop] = &url.URL{Scheme: "http", Host: net.JoinHostPort(n.Addr().String(), workerPort)}

		// The worker host.
		w, err := worker.New(worker.Config{PoP: pop, Apps: e2eApps, Dial: n.DialContext, Report: e.st.AddTelemetry,
			FlushInterval: 50 * time.Millisecond, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := n.Listen(ctx, "tcp4", ":"+workerPort)
		if err != nil {
			t.Fatal(err)
		}
		run(t, "worker "+pop, func(ctx context.Context) error { return w.Serve(ctx, ln) })
		run(t, "telemetry "+pop, w.Run)

		// The probe daemon: its prober dials from the PoP's namespace.
		pc := prober.DefaultConfig()
		pc.Allow = []netip.Prefix{testbed.WANPrefix}
		pc.Enter = n.Do
		pc.Resolver = tbResolver{tb}
		pc.Interval = 10 * time.Millisecond
		pc.Logger = log
		pe, err := prober.New(pc)
		if err != nil {
			t.Fatal(err)
		}
		d, err := probed.New(probed.Config{PoP: pop, DaemonID: "e2e-" + pop, Heartbeat: 500 * time.Millisecond,
			ReadBlock: 100 * time.Millisecond, Logger: log}, &probed.StoreQueue{DB: open(), PoP: pop, DaemonID: "e2e-" + pop}, pe, nil)
		if err != nil {
			t.Fatal(err)
		}
		run(t, "probed "+pop, d.Run)
	}

	// Routers and fronts in SYD and FRA; users next to them.
	for _, pop := range []string{"SYD", "FRA"} {
		n := tb.Node(pop)
		cfg := router.DefaultConfig()
		cfg.RecheckInterval, cfg.Debounce, cfg.MinReloadGap, cfg.FleetInterval = time.Second, 20*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond
		cfg.PoPs, cfg.Logger = []string{pop}, log
		rt, err := router.New(open(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.rt[pop] = rt
		run(t, "router "+pop, rt.Run)
		front, err := router.NewFront(rt, router.FrontConfig{Ingress: pop, Workers: workers, Logger: log,
			Transport: &http.Transport{DialContext: n.DialContext, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := n.Listen(ctx, "tcp4", ":"+frontPort)
		if err != nil {
			t.Fatal(err)
		}
		run(t, "front "+pop, func(ctx context.Context) error { return serveHTTP(ctx, ln, front) })
		e.fronts[pop] = "http://" + net.JoinHostPort(n.Addr().String(), frontPort)
		tr := &http.Transport{DialContext: n.DialContext, MaxIdleConnsPerHost: 64}
		t.Cleanup(tr.CloseIdleConnections)
		e.users[pop] = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}

	// The fleet is up (every daemon's first heartbeat) before the scheduler plans its first probes.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fleet, err := e.st.Fleet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		up := 0
		for _, p := range fleet {
			if p.Up {
				up++
			}
		}
		if up == len(spec.PoPs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet %+v: want all %d PoPs up", fleet, len(spec.PoPs))
		}
	}

	// The scheduler: host, region (its endpoint is the database at the region) and the anycast database.
	sc, err := scheduler.New(scheduler.Config{Name: "e2e", InitialSpread: 100 * time.Millisecond, ResultTimeout: 3 * time.Second,
		ResultPoll: 50 * time.Millisecond, Logger: log}, scheduler.StoreBackend{Store: open()}, scheduler.NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	sc.SetTargets("e2e", []scheduler.Target{
		{App: appHost, Mode: placement.ModeHost, Target: "db:5432"},
		{App: appRegion, Mode: placement.ModeRegion, Target: "aws:eu-central-1", Endpoint: "db:5432"},
		{App: appAnycast, Mode: placement.ModeHost, Target: "dbany:5432"},
	})
	run(t, "scheduler", sc.Run)

	// Smart placement: the applications registered in mode smart, and the runner.
	for _, app := range []string{appSmart, appAnySmart, appSlower} {
		if err := e.st.PutApp(ctx, storage.App{Name: app, Mode: placement.ModeSmart, DeployVersion: "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	scfg := smart.DefaultConfig()
	scfg.MinRequests, scfg.MinCompare, scfg.Interval = 8, 3, 300*time.Millisecond
	runner, err := smart.NewRunner(scfg, e.st, smart.FleetSources(e.st, func(h string) string {
		return scheduler.TargetKey(placement.ProbeTCP, h)
	}), smart.RunnerOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "smart runner", runner.Run)
	t.Logf("system up in %v (testbed %s)", time.Since(t0).Round(time.Millisecond), tb.Name())
	return e
}

// TestPlacementEndToEnd is the seeds' example on the emulated WAN: a user in Sydney, an application making 5
// sequential queries to a database in Frankfurt. With region, host or smart placement the duration the user
// sees drops by at least 60 % against no placement; with the database behind an anycast address nothing is
// routed; an application that gets slower when placed ends UNSUPPORTED_APPLICATION and runs locally.
func TestPlacementEndToEnd(t *testing.T) {
	e := startE2E(t)
	t0 := time.Now()

	// Traffic before any decision: the unplaced baseline, and telemetry for the smart applications from users
	// in Sydney and in Frankfurt (where the applications then run too).
	var none []reply
	var wg sync.WaitGroup
	wg.Go(func() { none = e.burst(t, appNone, "SYD", 3) })
	for _, app := range []string{appSmart, appAnySmart, appSlower, appAnycast} {
		wg.Go(func() { e.burst(t, app, "SYD", 6) })
		wg.Go(func() { e.burst(t, app, "FRA", 4) })
	}
	wg.Wait()
	noneMs := medianMs(none)
	for _, r := range none {
		if r.placement != "local-SYD" || r.exec != "SYD" || len(r.res.QueryMs) != e2eQueries {
			t.Fatalf("unplaced request: %+v, want local-SYD, run in SYD with %d queries", r, e2eQueries)
		}
	}
	rtt, _ := e.tb.RTT("SYD", "db")
	t.Logf("no placement: Sydney user sees %.0f ms (median of 3; %d round trips of %v each)", noneMs, e2eQueries+1, rtt)

	// Decisions: the scheduler's from probes measured in every PoP's namespace, the runner's from telemetry.
	e.waitDecision(t, appHost, placement.StatusSuccess, "FRA", 30*time.Second)
	e.waitDecision(t, appRegion, placement.StatusSuccess, "FRA", 30*time.Second)
	e.waitDecision(t, appSmart, placement.StatusSuccess, "FRA", 30*time.Second)
	e.waitDecision(t, appSlower, placement.StatusSuccess, "FRA", 30*time.Second)
	t.Logf("decisions in place after %v", time.Since(t0).Round(time.Millisecond))

	t.Run("placed_60_percent_faster", func(t *testing.T) {
		apps := []string{appRegion, appHost, appSmart}
		got := make([][]reply, len(apps))
		var wg sync.WaitGroup
		for i, app := range apps {
			wg.Go(func() { got[i] = e.sequential(t, app, "SYD", 4)[1:] }) // the first opens the front's connection to FRA
		}
		wg.Wait()
		for i, app := range apps {
			routed := 0
			for _, r := range got[i] {
				if r.placement == "remote-FRA" && r.exec == "FRA" {
					routed++
				}
			}
			ms := medianMs(got[i])
			t.Logf("%s: Sydney user sees %.0f ms (median of 3), %.0f %% less than %.0f ms unplaced; %d/3 routed to FRA",
				app, ms, 100*(1-ms/noneMs), noneMs, routed)
			if routed < 2 {
				t.Errorf("%s: %d of 3 requests routed to FRA, want at least 2 (1 %% baseline): %+v", app, routed, got[i])
			}
			if ms > 0.4*noneMs {
				t.Errorf("%s: %.0f ms placed vs %.0f ms unplaced: a drop of %.0f %%, want >= 60 %%", app, ms, noneMs, 100*(1-ms/noneMs))
			}
		}
	})

	t.Run("anycast_database_not_placed", func(t *testing.T) {
		d := e.waitDecision(t, appAnycast, placement.StatusUnsupportedApplication, "", 30*time.Second)
		if d.Verdict != placement.VerdictAnycast {
			t.Errorf("%s: verdict %q, want anycast", appAnycast, d.Verdict)
		}
		// Smart mode does not count the anycast database: no supported back end.
		e.waitDecision(t, appAnySmart, placement.StatusNoValidHosts, "", 30*time.Second)
		for _, app := range []string{appAnycast, appAnySmart} {
			for _, r := range e.sequential(t, app, "SYD", 2) {
				if r.placement != "local-SYD" || r.exec != "SYD" || r.reason != "status" {
					t.Errorf("%s: %+v, want run locally (local-SYD, reason status)", app, r)
				}
			}
			// Nothing was ever routed: each of the 12 requests (6 + 4 before the decision, 2 after) ran where
			// it entered.
			var n, routed int
			for deadline := time.Now().Add(10 * time.Second); n < 12 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				n, routed = 0, 0
				if _, err := e.st.TelemetrySince(e.ctx, app, time.Now().Add(-time.Hour), func(r storage.Telemetry) error {
					n++
					if r.Routed || r.Exec != r.Ingress {
						routed++
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			if n != 12 || routed != 0 {
				t.Errorf("%s: %d requests in telemetry, %d of them routed; want 12, none routed", app, n, routed)
			}
		}
	})

	t.Run("slower_when_placed_is_unsupported", func(t *testing.T) {
		// db2's path from Frankfurt degrades: 250 ms each way. Placed requests now take RTT(SYD, FRA) plus six
		// 500 ms round trips, far more than the six ~274 ms round trips of running in Sydney.
		if err := e.tb.SetDelay("FRA", "db2", 250*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		placed := e.burst(t, appSlower, "SYD", 6)
		d := e.waitDecision(t, appSlower, placement.StatusUnsupportedApplication, "", 30*time.Second)
		if v, ok, err := e.st.UnsupportedDeploy(e.ctx, appSlower); err != nil || !ok || v != "v1" {
			t.Errorf("unsupported mark %q, %v, %v; want deploy v1", v, ok, err)
		}
		local := e.sequential(t, appSlower, "SYD", 2)
		for _, r := range local {
			if r.placement != "local-SYD" || r.exec != "SYD" || r.reason != "status" {
				t.Errorf("after UNSUPPORTED_APPLICATION: %+v, want run locally", r)
			}
		}
		t.Logf("%s: placed at FRA the Sydney user saw %.0f ms (median of 6) against %.0f ms unplaced; decision %s (version %d), then locally %.0f ms",
			appSlower, medianMs(placed), noneMs, d.Status, d.Version, medianMs(local))
	})
	t.Logf("scenarios done in %v", time.Since(t0).Round(time.Millisecond))
}
