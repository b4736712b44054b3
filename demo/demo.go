// Package demo runs Vantage end to end on one machine: an emulated WAN of real PoPs, a probe daemon in each,
// the scheduler with its API and status page, the router with an HTTP front in Sydney, demo workers and
// database, and Redis; it registers the showcase applications and reports their placement as it is decided.
package demo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/testbed"
)

// Defaults of Config. The components run with the defaults `vantage probed|scheduler|router` ship with
// (daemon.Default*Config): the demo is a deployment.
const (
	// DefaultListen serves the scheduler's API, its status page and its /metrics.
	DefaultListen = "127.0.0.1:8080"
	// DefaultRouterListen serves the router's /metrics, /healthz and /readyz.
	DefaultRouterListen = "127.0.0.1:8081"
	// DefaultRequests is how many user requests are timed per mode (the median is reported).
	DefaultRequests = 3
	// DefaultDecideTimeout bounds the wait for the fleet and for every showcase decision.
	DefaultDecideTimeout = 2 * time.Minute
	// Ingress is the PoP whose router front the Sydney user's requests enter.
	Ingress = "SYD"
	// FrontPort and WorkerPort are the HTTP ports of the router front and of the worker hosts in their PoPs'
	// namespaces; DBPort is the demo database's port in the db host's namespace.
	FrontPort  = 80
	WorkerPort = 8080
	DBPort     = 5432
	// MeshPort is where every PoP's probe daemon answers the mesh probes, in the PoP's namespace.
	MeshPort = 9102
)

// ErrNotRoot is returned without root: the emulated WAN creates network namespaces and TUN devices.
var ErrNotRoot = errors.New("demo: needs root: the emulated WAN creates network namespaces and TUN devices (run it as root, e.g. sudo make demo)")

// CheckRoot returns ErrNotRoot unless euid is 0.
func CheckRoot(euid int) error {
	if euid != 0 {
		return ErrNotRoot
	}
	return nil
}

// Config tunes Run. Zero fields take the defaults above.
type Config struct {
	Redis         []string      // Redis addresses (storage.Options.Addrs); empty: an embedded server
	Listen        string        // scheduler API and status page address
	RouterListen  string        // router admin address
	Recheck       time.Duration // recheck interval of every target (default scheduler.DefaultRecheckInterval)
	Queries       int           // sequential database round trips per user request (default worker.DefaultQueries)
	Requests      int           // user requests timed per mode
	DecideTimeout time.Duration
	// Once returns after the first full report; otherwise Run reports decision changes until ctx is done.
	Once   bool
	Logger *slog.Logger // the components' logs (default: warnings and errors to stderr)
	// Ready, when set, is called once the report is printed, with where the demo serves (for tests and
	// tools driving the running demo).
	Ready func(Info)
	// MeshInterval is how often every PoP measures every other (default: the scheduler's,
	// scheduler.DefaultMeshInterval; negative: no mesh): the status page's PoP × PoP heat map fills over one.
	MeshInterval time.Duration
}

// Info says where a running demo serves.
type Info struct {
	APIURL    string         // the scheduler's API and status page, "http://127.0.0.1:8080"
	RouterURL string         // the router's admin endpoints
	Token     string         // the bearer token the API accepts (random per run)
	Front     netip.AddrPort // the router front in the ingress PoP's namespace
	Testbed   *testbed.Testbed
}

func (c Config) withDefaults() Config {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.RouterListen = cmp.Or(c.RouterListen, DefaultRouterListen)
	c.Recheck = cmp.Or(c.Recheck, scheduler.DefaultRecheckInterval)
	c.Queries = cmp.Or(c.Queries, worker.DefaultQueries)
	c.Requests = cmp.Or(c.Requests, DefaultRequests)
	c.DecideTimeout = cmp.Or(c.DecideTimeout, DefaultDecideTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return c
}

// Spec returns the demo's emulated WAN: the testbed's default spec (26 PoPs on every continent, the
// showcase's hosts), with the database host's TCP port left to the demo's own database server, which
// answers queries instead of only accepting connections, and every host at a cloud region also answering
// to that region's endpoint name (scheduler.DefaultRegionTemplates, e.g. asia-northeast1-run.googleapis.com),
// so that region placement probes the endpoints production probes.
func Spec() *testbed.Spec {
	s := testbed.DefaultSpec()
	s.Name = "demo"
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if h.Name == "db" {
			h.TCP = slices.DeleteFunc(h.TCP, func(p int) bool { return p == DBPort })
		}
		if h.Region == "" || len(h.TCP) == 0 {
			continue
		}
		if ep, err := (scheduler.RegionEndpoints{}).Endpoint(h.Region); err == nil && ep != "" {
			if host, _, err := net.SplitHostPort(ep); err == nil {
				h.Aliases = append(h.Aliases, host)
			}
		}
	}
	return s
}

// Scenario is one showcase application.
type Scenario struct {
	App    string
	Mode   placement.Mode
	Target string // host:port, hostname or region, with "{zone}" for the testbed's zone
	About  string // what it shows
	deploy string // the deploy version registered ("": Vantage names one)
}

// Scenarios are the showcase applications the demo registers, in report order.
var Scenarios = []Scenario{
	{App: "frankfurt-db", Mode: placement.ModeHost, Target: "db.{zone}:5432", About: "a database in Frankfurt"},
	{App: "ashburn-api", Mode: placement.ModeHostname, Target: "api.{zone}", About: "an API in Ashburn"},
	{App: "tokyo-app", Mode: placement.ModeRegion, Target: "gcp:asia-northeast1", About: "a region hint, probed at its endpoint asia-northeast1-run.googleapis.com:443"},
	{App: "edge-anycast", Mode: placement.ModeHost, Target: "edge.{zone}:443", About: "one address served from 4 places: never placed"},
	{App: "www-geodns", Mode: placement.ModeHostname, Target: "www.{zone}", About: "geo-DNS over 3 replicas: never placed"},
}

// SmartApp is the Sydney application in placement mode smart: the same worker code and database, placed from
// its requests' telemetry by the smart runner (users in Sydney and in Frankfurt call it before any decision).
const SmartApp = "sydney-smart"

// smartScenario is SmartApp's row of the report.
var smartScenario = Scenario{App: SmartApp, Mode: placement.ModeSmart, Target: "(telemetry)", About: "smart: placed from its requests' telemetry", deploy: smartDeploy}

// smartDeploy is the smart application's deploy version: its workers report it, and its registration says so.
const smartDeploy = "v1"

// The smart application's first traffic, made before any decision: enough for the production thresholds
// (smart.DefaultConfig: DefaultMinRequests requests from DefaultMinLocations PoPs, DefaultMinObserved at each).
const (
	smartSydney    = smart.DefaultMinRequests     // requests from Sydney (through the SYD front)
	smartFrankfurt = 2 * smart.DefaultMinObserved // and from Frankfurt (at the FRA worker)
	// smartSettle is how long after the traffic an INSUFFICIENT_* status may still change: the workers send their
	// aggregated telemetry at the end of each window, then the runner analyses it.
	smartSettle = worker.DefaultWindow + 10*time.Second
)

// UnplacedApp is the Sydney application deployed without placement, for the comparison: the same worker code
// and database as frankfurt-db, run where the request enters.
const UnplacedApp = "frankfurt-db-unplaced"

func (s Scenario) target(zone string) string { return strings.ReplaceAll(s.Target, "{zone}", zone) }

// wrangler returns the scenario's wrangler.toml.
func (s Scenario) wrangler(zone string) string {
	if s.Mode == placement.ModeSmart {
		return fmt.Sprintf("name = %q\nmain = \"src/index.ts\"\n\n[placement]\nmode = \"smart\"\n", s.App)
	}
	return fmt.Sprintf("name = %q\nmain = \"src/index.ts\"\n\n[placement]\n%s = %q\n", s.App, s.Mode, s.target(zone))
}

// env is everything Run started; stop tears it down in reverse.
type env struct {
	cfg   Config
	log   *slog.Logger
	out   *printer
	st    *storage.Store
	tb    *testbed.Testbed
	zone  string
	token string

	apiURL, routerURL string
	frontAddr         netip.AddrPort
	sched             *scheduler.Scheduler
	rt                *router.Router

	wg sync.WaitGroup
}

// Run brings the demo up, prints the report to out and, unless cfg.Once, keeps running (printing decision
// changes) until ctx is done. Everything it started is stopped and removed when it returns.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if err := CheckRoot(os.Geteuid()); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	e := &env{cfg: cfg, log: cfg.Logger, out: newPrinter(out)}
	tok := make([]byte, 12)
	rand.Read(tok)
	e.token = hex.EncodeToString(tok)

	runCtx, cancel := context.WithCancel(ctx)
	var closers []func() error // the testbed and the store, closed after every goroutine has stopped
	defer func() {
		cancel()
		e.wg.Wait()
		for _, c := range slices.Backward(closers) {
			c()
		}
	}()

	spec := Spec()
	e.out.linef("Vantage demo: starting an emulated WAN of %d PoPs on every continent, %d hosts and %d anycast address(es)...",
		len(spec.PoPs), len(spec.Hosts), len(spec.Anycast))
	tb, err := testbed.Start(ctx, spec, testbed.Options{Logger: e.log, Nice: -10})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	closers = append(closers, tb.Close)
	e.tb, e.zone = tb, strings.TrimSuffix(tb.Zone(), ".")

	st, err := daemon.OpenStore(ctx, storage.Options{Addrs: cfg.Redis, Logger: e.log, PoolSize: 4*len(spec.PoPs) + 64}, e.log)
	if err != nil {
		return fmt.Errorf("demo: opening Redis: %w", err)
	}
	closers = append(closers, st.Close)
	e.st = st
	redis := "embedded Redis at " + strings.Join(cfg.Redis, ",")
	if em := st.Embedded(); em != nil {
		redis = fmt.Sprintf("embedded Redis at %s (unix socket %s)", em.Addr(), strings.TrimPrefix(em.UnixAddr(), "unix:"))
	} else {
		redis = "Redis at " + strings.Join(cfg.Redis, ",")
	}
	e.out.linef("  emulated WAN %s: %s, zone %s; %s", tb.Name(), tb.Prefix(), e.zone, redis)

	if err := e.startDB(runCtx); err != nil {
		return err
	}
	if err := e.startFleet(runCtx, spec.PoPs); err != nil {
		return err
	}
	if err := e.startScheduler(runCtx); err != nil {
		return err
	}
	if err := e.startRouter(runCtx, spec.PoPs); err != nil {
		return err
	}
	e.out.linef("  started: %d probe daemons, %d worker hosts, the scheduler (recheck every %s) at %s, the router (front at %s %s)",
		len(spec.PoPs), len(spec.PoPs), cfg.Recheck, e.apiURL, Ingress, e.frontAddr)

	deadline := time.Now().Add(cfg.DecideTimeout)
	if err := e.awaitFleet(runCtx, spec.PoPs, deadline); err != nil {
		return err
	}
	registered := time.Now() // decisions left in a --redis from an earlier run are older
	if err := e.register(runCtx); err != nil {
		return err
	}
	var trafficErr error
	trafficDone := make(chan struct{})
	go func() { defer close(trafficDone); trafficErr = e.smartTraffic(runCtx) }()
	if err := e.awaitDecisions(runCtx, registered, deadline, trafficDone); err != nil {
		<-trafficDone
		return err
	}
	e.out.linef("  all %d applications decided %.1f s after the fleet came up", len(Scenarios)+1, time.Since(registered).Seconds())
	if <-trafficDone; trafficErr != nil {
		return trafficErr
	}
	if err := e.sydney(runCtx, deadline); err != nil {
		return err
	}
	e.whereNext()
	if cfg.Ready != nil {
		cfg.Ready(Info{APIURL: e.apiURL, RouterURL: e.routerURL, Token: e.token, Front: e.frontAddr, Testbed: tb})
	}
	if cfg.Once {
		return nil
	}
	e.out.linef("\nRunning; decision changes are printed below. Ctrl-C stops the demo and removes the emulated WAN.")
	e.watch(runCtx)
	e.out.linef("Stopping...")
	return nil
}

// run runs a component until the demo stops.
func (e *env) run(ctx context.Context, what string, run func(context.Context) error) {
	e.wg.Go(func() {
		if err := run(ctx); err != nil {
			e.log.Error("demo: component stopped", "component", what, "err", err)
		}
	})
}

// startDB serves the demo database in the db host's namespace.
func (e *env) startDB(ctx context.Context) error {
	db := e.tb.Node("db")
	if db == nil {
		return errors.New("demo: the spec has no host db")
	}
	ln, err := db.Listen(ctx, "tcp", fmt.Sprintf(":%d", DBPort))
	if err != nil {
		return fmt.Errorf("demo: database: %w", err)
	}
	e.run(ctx, "database", func(ctx context.Context) error { return worker.ServeDB(ctx, ln) })
	return nil
}

// startFleet starts one probe daemon per PoP, in process, configured by ProbedConfig.
func (e *env) startFleet(ctx context.Context, pops []string) error {
	for _, pop := range pops {
		cfg := ProbedConfig(e.tb, pop)
		cfg.Listen = "127.0.0.1:0"
		cfg.Version = "demo"
		cfg.Logger = e.log.With("pop", pop)
		cfg.Daemon.DaemonID = "demo-" + strings.ToLower(pop)
		d, err := daemon.NewProbed(cfg, e.st)
		if err != nil {
			return fmt.Errorf("demo: probe daemon of %s: %w", pop, err)
		}
		e.run(ctx, "probed "+pop, d.Run)
	}
	return nil
}

// ProbedConfig returns the configuration of the probe daemon of pop, a PoP of tb: the defaults of `vantage
// probed` (daemon.DefaultProbedConfig), with its prober's sockets in the PoP's namespace (the prober's Enter
// seam is Node.Do), the PoP's address as its source, tb's prefix allowed, and names resolved by the testbed's
// DNS server asked from the PoP (so geo-DNS answers per PoP). The caller sets Listen, Logger and DaemonID.
func ProbedConfig(tb *testbed.Testbed, pop string) daemon.ProbedConfig {
	node := tb.Node(pop)
	cfg := daemon.DefaultProbedConfig()
	cfg.Daemon.PoP = pop
	cfg.Prober.Allow = []netip.Prefix{tb.Prefix()}
	cfg.Prober.Sources = []netip.Addr{node.Addr()}
	cfg.Prober.Enter = node.Do
	cfg.MeshListen = netip.AddrPortFrom(node.Addr(), MeshPort).String()
	if dns, ok := tb.DNSServer(); ok {
		cfg.Prober.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return node.DialContext(ctx, network, dns.String())
		}}
	}
	return cfg
}

// startScheduler starts the scheduler with the defaults of `vantage scheduler`, its API (one bearer token)
// and its status page.
func (e *env) startScheduler(ctx context.Context) error {
	cfg := daemon.DefaultSchedulerConfig()
	cfg.Listen, cfg.Logger = e.cfg.Listen, e.log
	cfg.Scheduler.Name = "demo"
	cfg.Scheduler.RecheckInterval = e.cfg.Recheck
	if e.cfg.MeshInterval != 0 {
		cfg.Scheduler.MeshInterval = e.cfg.MeshInterval
	}
	cfg.Tokens = scheduler.Tokens{e.token: scheduler.Operator("demo")}
	cfg.Allow = []netip.Prefix{e.tb.Prefix()}
	s, err := daemon.NewScheduler(cfg, e.st)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	e.sched = s.Scheduler()
	e.apiURL = s.URL()
	e.run(ctx, "scheduler", s.Run)
	return nil
}

// startRouter starts the worker hosts of every PoP, and the router with the defaults of `vantage router`, its
// HTTP front in the ingress PoP's namespace.
func (e *env) startRouter(ctx context.Context, pops []string) error {
	dbAddr := fmt.Sprintf("db.%s:%d", e.zone, DBPort)
	workers := map[string]*url.URL{}
	for _, pop := range pops {
		node := e.tb.Node(pop)
		ln, err := node.Listen(ctx, "tcp", fmt.Sprintf(":%d", WorkerPort))
		if err != nil {
			return fmt.Errorf("demo: worker of %s: %w", pop, err)
		}
		cfg := daemon.DefaultWorkerConfig()
		cfg.Listener, cfg.Logger = ln, e.log.With("pop", pop)
		cfg.Worker = worker.Config{PoP: pop, Dial: node.DialContext,
			Apps: []worker.App{{Name: "frankfurt-db", DB: dbAddr, Queries: e.cfg.Queries},
				{Name: UnplacedApp, DB: dbAddr, Queries: e.cfg.Queries},
				{Name: SmartApp, Deploy: smartDeploy, DB: dbAddr, Queries: e.cfg.Queries}}}
		w, err := daemon.NewWorker(cfg, e.st)
		if err != nil {
			ln.Close()
			return fmt.Errorf("demo: worker of %s: %w", pop, err)
		}
		e.run(ctx, "worker "+pop, w.Run)
		workers[pop] = &url.URL{Scheme: "http", Host: netip.AddrPortFrom(node.Addr(), WorkerPort).String()}
	}

	syd := e.tb.Node(Ingress)
	ln, err := syd.Listen(ctx, "tcp", fmt.Sprintf(":%d", FrontPort))
	if err != nil {
		return fmt.Errorf("demo: router front: %w", err)
	}
	cfg := daemon.DefaultRouterConfig()
	cfg.Listener, cfg.Admin, cfg.Logger = ln, e.cfg.RouterListen, e.log
	cfg.Front.Ingress, cfg.Front.Workers = Ingress, workers
	cfg.Front.Transport = daemon.NewUpstreamTransport(syd.DialContext)
	rt, err := daemon.NewRouter(cfg, e.st)
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo: %w", err)
	}
	e.frontAddr = netip.AddrPortFrom(syd.Addr(), FrontPort)
	e.routerURL = "http://" + rt.AdminAddr()
	e.rt = rt.Router()
	e.run(ctx, "router", rt.Run)
	return nil
}

// awaitFleet shows the fleet warming up until every PoP is up.
func (e *env) awaitFleet(ctx context.Context, pops []string, deadline time.Time) error {
	start, last := time.Now(), -1
	for {
		fleet, err := e.st.Fleet(ctx)
		up := 0
		if err == nil {
			for _, p := range fleet {
				if p.Up && slices.Contains(pops, p.PoP) {
					up++
				}
			}
		}
		if up != last {
			e.out.progress(fmt.Sprintf("  fleet: %d/%d PoPs up (%.1f s)", up, len(pops), time.Since(start).Seconds()))
			last = up
		}
		if up == len(pops) {
			e.out.endProgress()
			return nil
		}
		if time.Now().After(deadline) {
			e.out.endProgress()
			return fmt.Errorf("demo: only %d of %d PoPs came up (last error: %v)", up, len(pops), err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// register posts every showcase application's wrangler.toml to the scheduler's API, as a user would.
func (e *env) register(ctx context.Context) error {
	for _, s := range append(slices.Clone(Scenarios), smartScenario) {
		if err := PostApp(ctx, e.apiURL, e.token, s.wrangler(e.zone), s.deploy); err != nil {
			return fmt.Errorf("demo: registering %s: %w", s.App, err)
		}
	}
	e.out.linef("  registered %d applications through POST %s/v1/apps (%s in mode smart); probing them from the fleet...\n",
		len(Scenarios)+1, e.apiURL, SmartApp)
	return nil
}

// PostApp registers an application as a user does: its wrangler.toml in a POST /v1/apps to the scheduler's
// API at apiURL ("http://127.0.0.1:8080"), with token as the bearer token. Anything but 201 Created is an
// error carrying the API's answer. A non-empty deploy is the deploy version the workers report (?deploy=).
func PostApp(ctx context.Context, apiURL, token, wranglerTOML, deploy string) error {
	u := apiURL + "/v1/apps"
	if deploy != "" {
		u += "?deploy=" + url.QueryEscape(deploy)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(wranglerTOML))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/toml")
	req.Header.Set("Authorization", "Bearer "+token)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("POST %s/v1/apps: %s: %s", apiURL, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// smartTraffic makes the requests smart placement learns from, before any decision: users in Sydney (through
// the SYD front, run locally for now) and in Frankfurt (at the FRA worker). It returns when they are done.
func (e *env) smartTraffic(ctx context.Context) error {
	errs := make(chan error, smartSydney+smartFrankfurt)
	var wg sync.WaitGroup
	for i := range smartSydney + smartFrankfurt {
		from, url := Ingress, "http://"+e.frontAddr.String()+"/"
		if i >= smartSydney {
			fra := e.tb.Node("FRA")
			from, url = "FRA", "http://"+netip.AddrPortFrom(fra.Addr(), WorkerPort).String()+"/"
		}
		wg.Go(func() {
			node := e.tb.Node(from)
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: node.DialContext, DisableKeepAlives: true}}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				errs <- err
				return
			}
			req.Host = SmartApp
			resp, err := c.Do(req)
			if err != nil {
				errs <- fmt.Errorf("demo: %s request from %s: %w", SmartApp, from, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("demo: %s request from %s: %s", SmartApp, from, resp.Status)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // the first error, or nil
}

// awaitDecisions prints each showcase decision computed since since as soon as it is stored. The smart application's first
// analyses find too few requests: its decision is printed once it has more to say, or once the runner has
// analysed the telemetry of the requests made before (trafficDone closed) for two intervals.
func (e *env) awaitDecisions(ctx context.Context, since, deadline time.Time, trafficDone <-chan struct{}) error {
	var doneAt time.Time
	smartDecided := func(d placement.Decision) bool {
		if d.Status != placement.StatusInsufficientInvocations {
			return true
		}
		if doneAt.IsZero() {
			select {
			case <-trafficDone:
				doneAt = time.Now()
			default:
				return false
			}
		}
		return d.ComputedAt.After(doneAt.Add(smartSettle))
	}
	e.out.linef("Placement decisions (as they are decided):")
	e.out.linef("  %s", header())
	all := append(slices.Clone(Scenarios), smartScenario)
	printed := map[string]bool{}
	start, lastNote := time.Now(), time.Now()
	for len(printed) < len(all) {
		for _, s := range all {
			if printed[s.App] {
				continue
			}
			d, ok, err := e.st.Decision(ctx, s.App)
			if err != nil || !ok || d.ComputedAt.Before(since) || (s.App == SmartApp && !smartDecided(d)) {
				continue
			}
			printed[s.App] = true
			e.out.linef("  %s", row(s, e.zone, d)) // on a terminal, replaces the progress line
		}
		if len(printed) == len(all) {
			break
		}
		if time.Now().After(deadline) {
			e.out.endProgress()
			var missing []string
			for _, s := range all {
				if !printed[s.App] {
					ts, _ := e.sched.Target(s.App)
					missing = append(missing, fmt.Sprintf("%s (checks %d, last error %q)", s.App, ts.Checks, ts.LastError))
				}
			}
			return fmt.Errorf("demo: no decision within %s for %s", e.cfg.DecideTimeout, strings.Join(missing, ", "))
		}
		if time.Since(lastNote) > time.Second {
			e.out.progress(fmt.Sprintf("  ... %d of %d decided (%.0f s)", len(printed), len(all), time.Since(start).Seconds()))
			lastNote = time.Now()
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// watch prints every change of a decision's status, best PoP or verdict until ctx is done. (A stored
// decision also changes when only its candidates' order does.)
func (e *env) watch(ctx context.Context) {
	// What a change is: the status, the best PoP or the verdict (not a few tenths of a ms of RTT).
	key := func(d placement.Decision) string { return string(d.Status) + "|" + d.BestPoP + "|" + string(d.Verdict) }
	last := map[string]string{}
	all := append(slices.Clone(Scenarios), smartScenario)
	for _, s := range all {
		if d, ok, err := e.st.Decision(ctx, s.App); err == nil && ok {
			last[s.App] = key(d)
		}
	}
	err := e.st.WatchDecisions(ctx, func(app string) {
		d, ok, err := e.st.Decision(ctx, app)
		if err != nil || !ok {
			return
		}
		s := Scenario{App: app, Mode: d.Mode, Target: d.Target}
		for _, sc := range all {
			if sc.App == app {
				s = sc
			}
		}
		if k := key(d); k != last[app] {
			last[app] = k
			e.out.linef("  %s  (changed %s)", row(s, e.zone, d), time.Now().Format(time.TimeOnly))
		}
	})
	if err != nil && ctx.Err() == nil {
		e.log.Warn("demo: watching decisions", "err", err)
		<-ctx.Done()
	}
}
