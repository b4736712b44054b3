package e2e_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/internal/stats"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
	"github.com/vantage-edge/vantage/testbed"
)

// The emulated WAN of the end-to-end test: four PoPs, a database at AWS eu-central-1 (Frankfurt) for most
// applications (it also answers to the region's endpoint name, ec2.eu-central-1.amazonaws.com, on port 443),
// a second one there for the application that gets slower when placed, and a database behind an anycast
// address served from Sydney, Frankfurt and Ashburn.
var e2eSpec = testbed.Spec{
	Name: "placement-e2e",
	PoPs: []string{"SYD", "FRA", "SIN", "IAD"},
	Hosts: []testbed.HostSpec{
		{Name: "db", Location: testbed.Location{Region: "aws:eu-central-1"}, Services: testbed.Services{TCP: []int{443}},
			Aliases: []string{"ec2.eu-central-1.amazonaws.com"}},
		{Name: "db2", Location: testbed.Location{Region: "aws:eu-central-1"}},
		{Name: "ns", Location: testbed.Location{Region: "aws:eu-west-1"}, Services: testbed.Services{DNS: true}},
	},
	Anycast: []testbed.AnycastSpec{{Name: "dbany", Instances: []testbed.InstanceSpec{
		{Name: "syd", Location: testbed.Location{PoP: "SYD"}},
		{Name: "fra", Location: testbed.Location{Region: "aws:eu-central-1"}},
		{Name: "iad", Location: testbed.Location{Region: "aws:us-east-1"}},
	}}},
}

// The smart applications' first traffic, before any decision: enough for the production thresholds
// (smart.DefaultConfig: DefaultMinRequests requests from more than one PoP, DefaultMinObserved at each).
const (
	smartSydney    = 14
	smartFrankfurt = 8
)

// The applications, all making e2eQueries sequential queries per request after connecting, and how each is
// registered (its wrangler.toml placement).
const (
	e2eQueries  = 5
	appNone     = "none"     // no placement
	appHost     = "host"     // host = "db.vantage.test:5432"
	appRegion   = "region"   // region = "aws:eu-central-1"
	appSmart    = "smart"    // smart
	appAnycast  = "anycast"  // host = "dbany.vantage.test:5432": anycast
	appAnySmart = "anysmart" // smart, its database behind the anycast address
	appSlower   = "slower"   // smart, on db2, whose path from FRA degrades once placed
	workerPort  = "8080"
	frontPort   = "80"
	dbHost      = "db.vantage.test:5432"
	dbAnyHost   = "dbany.vantage.test:5432"
)

var e2eApps = []worker.App{
	{Name: appNone, Deploy: "v1", DB: dbHost}, {Name: appHost, Deploy: "v1", DB: dbHost},
	{Name: appRegion, Deploy: "v1", DB: dbHost}, {Name: appSmart, Deploy: "v1", DB: dbHost},
	{Name: appAnycast, Deploy: "v1", DB: dbAnyHost}, {Name: appAnySmart, Deploy: "v1", DB: dbAnyHost},
	{Name: appSlower, Deploy: "v1", DB: "db2.vantage.test:5432"},
}

// e2ePlacements are the placements registered through the scheduler's API, by app.
var e2ePlacements = map[string]string{
	appHost: `host = "` + dbHost + `"`, appRegion: `region = "aws:eu-central-1"`, appAnycast: `host = "` + dbAnyHost + `"`,
	appSmart: `mode = "smart"`, appAnySmart: `mode = "smart"`, appSlower: `mode = "smart"`,
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

// get sends one request of app from a user at ingress and times it; a non-empty id is sent as its request id.
func (e *e2e) get(app, ingress, id string) (reply, error) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, e.fronts[ingress]+"/", nil)
	if err != nil {
		return reply{}, err
	}
	req.Host = app
	if id != "" {
		req.Header.Set(router.DefaultRequestIDHeader, id)
	}
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
	return e.burstIDs(t, app, ingress, make([]string, n))
}

// burstIDs sends one concurrent request of app from ingress per request id ("": generated by the front).
func (e *e2e) burstIDs(t *testing.T, app, ingress string, ids []string) []reply {
	t.Helper()
	out := make([]reply, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { out[i], errs[i] = e.get(app, ingress, id) })
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
		r, err := e.get(app, ingress, "")
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
	want := cmp.Or(best, "SYD")
	var d placement.Decision
	took := testwait.Eventually(t, timeout, fmt.Sprintf("%s: status %q at %q", app, st, best), func() bool {
		var ok bool
		d, ok = decision(e.st, app)
		return ok && d.Status == st && d.BestPoP == best && routesTo(e.rt["SYD"], app, "SYD") == want
	})
	t.Logf("%s: %s at %q (version %d) after %v", app, d.Status, d.BestPoP, d.Version, took.Round(time.Millisecond))
	return d
}

func medianMs(rs []reply) float64 {
	ms := make([]float64, len(rs))
	for i, r := range rs {
		ms[i] = r.ms
	}
	return stats.Median(ms)
}

// routesTo returns where r runs a fetch of app entering at ingress, for a request id outside the baseline.
func routesTo(r *router.Router, app, ingress string) string { return route(r, app, ingress).ExecPoP }

// route returns how r routes a fetch of app entering at ingress, for a request id outside the baseline.
func route(r *router.Router, app, ingress string) router.Result {
	for i := 0; ; i++ {
		res := r.Route(app, ingress, fmt.Sprintf("e2e-check-%d", i), router.KindFetch)
		if res.Reason != router.ReasonBaseline {
			return res
		}
	}
}

// startE2E builds the whole system on the emulated WAN from the one assembly (package daemon), with the
// defaults the daemons ship with: a real redis-server; in every PoP a probe daemon (probing from the PoP's
// namespace) and a worker host; in SYD and FRA a router with its HTTP front (listening in the PoP's namespace
// and forwarding through the emulated WAN); the scheduler with its API, through which every application is
// registered as a user would.
func startE2E(t *testing.T) *e2e {
	needRoot(t, "end-to-end placement")
	skipShort(t, "end-to-end placement")
	log := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	st := openStore(t, []string{srv.Addr()}, log)
	e := &e2e{tb: tb, st: st, ctx: ctx, users: map[string]*http.Client{}, fronts: map[string]string{}, rt: map[string]*router.Router{}}

	// The databases: the PING/PONG server in each database namespace (and every anycast instance).
	for _, name := range []string{"db", "db2", "dbany-syd", "dbany-fra", "dbany-iad"} {
		ln, err := tb.Node(name).Listen(ctx, "tcp4", ":5432")
		if err != nil {
			t.Fatal(err)
		}
		start(t, "db "+name, func(ctx context.Context) error { return worker.ServeDB(ctx, ln) })
	}

	workers := map[string]*url.URL{}
	for _, pop := range spec.PoPs {
		n := tb.Node(pop)
		workers[pop] = &url.URL{Scheme: "http", Host: net.JoinHostPort(n.Addr().String(), workerPort)}
		ln, err := n.Listen(ctx, "tcp4", ":"+workerPort)
		if err != nil {
			t.Fatal(err)
		}
		wc := daemon.DefaultWorkerConfig()
		wc.Listener, wc.Logger = ln, log
		wc.Worker = worker.Config{PoP: pop, Apps: e2eApps, Dial: n.DialContext}
		w, err := daemon.NewWorker(wc, st)
		if err != nil {
			t.Fatal(err)
		}
		start(t, "worker "+pop, w.Run)

		pc := demo.ProbedConfig(tb, pop)
		pc.Listen, pc.Logger, pc.Daemon.DaemonID = "127.0.0.1:0", log, "e2e-"+pop
		d, err := daemon.NewProbed(pc, st)
		if err != nil {
			t.Fatal(err)
		}
		start(t, "probed "+pop, d.Run)
	}

	// Routers and fronts in SYD and FRA; users next to them.
	for _, pop := range []string{"SYD", "FRA"} {
		n := tb.Node(pop)
		ln, err := n.Listen(ctx, "tcp4", ":"+frontPort)
		if err != nil {
			t.Fatal(err)
		}
		rc := daemon.DefaultRouterConfig()
		rc.Listener, rc.Admin, rc.Logger = ln, "", log
		rc.Front.Ingress, rc.Front.Workers, rc.Front.Transport = pop, workers, daemon.NewUpstreamTransport(n.DialContext)
		rt, err := daemon.NewRouter(rc, st)
		if err != nil {
			t.Fatal(err)
		}
		e.rt[pop] = rt.Router()
		start(t, "router "+pop, rt.Run)
		e.fronts[pop] = "http://" + net.JoinHostPort(n.Addr().String(), frontPort)
		tr := &http.Transport{DialContext: n.DialContext, MaxIdleConnsPerHost: 64}
		t.Cleanup(tr.CloseIdleConnections)
		e.users[pop] = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}

	// The scheduler, its API and the smart runner.
	const token = "e2e-token"
	sc := daemon.DefaultSchedulerConfig()
	sc.Listen, sc.Logger = "127.0.0.1:0", log
	sc.Tokens = scheduler.Tokens{token: scheduler.Operator("e2e")}
	sc.Allow = []netip.Prefix{tb.Prefix()}
	s, err := daemon.NewScheduler(sc, st)
	if err != nil {
		t.Fatal(err)
	}
	api := s.URL() // before Run: URL races with Run's start
	start(t, "scheduler", s.Run)
	for _, app := range slices.Sorted(maps.Keys(e2ePlacements)) {
		toml := fmt.Sprintf("name = %q\nmain = \"src/index.ts\"\n\n[placement]\n%s\n", app, e2ePlacements[app])
		if err := demo.PostApp(ctx, api, token, toml, "v1"); err != nil { // the workers report deploy v1
			t.Fatal(err)
		}
	}
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
		wg.Go(func() { e.burst(t, app, "SYD", smartSydney) })
		wg.Go(func() { e.burst(t, app, "FRA", smartFrankfurt) })
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
	e.waitDecision(t, appHost, placement.StatusSuccess, "FRA", time.Minute)
	e.waitDecision(t, appRegion, placement.StatusSuccess, "FRA", time.Minute)
	e.waitDecision(t, appSmart, placement.StatusSuccess, "FRA", time.Minute)
	e.waitDecision(t, appSlower, placement.StatusSuccess, "FRA", time.Minute)
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
		d := e.waitDecision(t, appAnycast, placement.StatusUnsupportedApplication, "", time.Minute)
		if d.Verdict != placement.VerdictAnycast {
			t.Errorf("%s: verdict %q, want anycast", appAnycast, d.Verdict)
		}
		// Smart mode does not count the anycast database: no supported back end.
		e.waitDecision(t, appAnySmart, placement.StatusNoValidHosts, "", time.Minute)
		for _, app := range []string{appAnycast, appAnySmart} {
			for _, r := range e.sequential(t, app, "SYD", 2) {
				if r.placement != "local-SYD" || r.exec != "SYD" || r.reason != "status" {
					t.Errorf("%s: %+v, want run locally (local-SYD, reason status)", app, r)
				}
			}
			// Nothing was ever routed: each request (before the decision, and 2 after) ran where it entered. The
			// workers' aggregated windows (what the analysis reads) count them, the last ones at most a window late.
			want := int64(smartSydney + smartFrankfurt + 2)
			var n, routed int64
			for deadline := time.Now().Add(worker.DefaultWindow + 10*time.Second); n < want && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				n, routed = 0, 0
				ws, _, err := e.st.TelemetryWindows(e.ctx, app, time.Now().Add(-time.Hour), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range ws {
					for _, c := range w.Cells {
						n += c.Count
						if c.Routed || c.Exec != c.Ingress {
							routed += c.Count
						}
					}
				}
			}
			if n != want || routed != 0 {
				t.Errorf("%s: %d requests in telemetry, %d of them routed; want %d, none routed", app, n, routed, want)
			}
		}
	})

	t.Run("slower_when_placed_is_unsupported", func(t *testing.T) {
		// db2's path from Frankfurt degrades: 250 ms each way. Placed requests now take RTT(SYD, FRA) plus six
		// 500 ms round trips, far more than the six ~274 ms round trips of running in Sydney.
		if err := e.tb.SetDelay("FRA", "db2", 250*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		// The router holds 1 % of requests back, by request id, as the baseline the placed ones are compared
		// with: send six placed requests and smart.DefaultMinCompare that the SYD router holds back (ids found
		// through Route).
		var ids []string
		for i := 0; len(ids) < smart.DefaultMinCompare; i++ {
			id := fmt.Sprintf("baseline-%d", i)
			if e.rt["SYD"].Route(appSlower, "SYD", id, router.KindFetch).Reason == router.ReasonBaseline {
				ids = append(ids, id)
			}
		}
		held := e.burstIDs(t, appSlower, "SYD", ids)
		for _, r := range held {
			if r.reason != "baseline" || r.exec != "SYD" {
				t.Errorf("request held back as baseline: %+v, want run at SYD with reason baseline", r)
			}
		}
		placed := e.burst(t, appSlower, "SYD", 6)
		d := e.waitDecision(t, appSlower, placement.StatusUnsupportedApplication, "", time.Minute)
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
