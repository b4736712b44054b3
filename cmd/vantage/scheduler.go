package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/scheduler/smartrun"
	"github.com/vantage-edge/vantage/scheduler/ui"
	"github.com/vantage-edge/vantage/storage"
)

func init() {
	register(command{name: "scheduler", summary: "recheck placement targets from the probe fleet and serve the API", run: runScheduler})
}

// listFlag collects a repeatable or comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// schedulerShutdown bounds the HTTP server's graceful shutdown.
const schedulerShutdown = 5 * time.Second

func runScheduler(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("scheduler", "", stderr)
	pprofAddr := addPprofFlag(fs)
	rf := addFleetRedisFlags(fs)
	def := scheduler.DefaultConfig()
	var (
		listen        = fs.String("listen", "127.0.0.1:8080", "HTTP API, /metrics, /healthz and /readyz address")
		configDir     = fs.String("config-dir", "", "directory of wrangler.toml / wrangler.jsonc files to place (reloaded every --config-reload)")
		configReload  = fs.Duration("config-reload", scheduler.DefaultDirReload, "how often --config-dir is read again")
		tokensFile    = fs.String("tokens", "", "file of bearer tokens (\"token [name]\" per line) for writes and ad-hoc probes")
		quotaRate     = fs.Float64("quota-per-minute", scheduler.DefaultQuotaPerMinute, "ad-hoc probes per minute per token")
		quotaBurst    = fs.Float64("quota-burst", scheduler.DefaultQuotaBurst, "ad-hoc probes a token may start at once")
		name          = fs.String("name", "", "lease holder name (default hostname-pid)")
		recheck       = fs.Duration("recheck", def.RecheckInterval, "recheck interval per target (jittered)")
		jitter        = fs.Float64("jitter", def.Jitter, "recheck jitter, a fraction of --recheck")
		leaseTTL      = fs.Duration("lease-ttl", def.LeaseTTL, "leader lease; a dead leader is replaced within it")
		concurrency   = fs.Int("concurrency", def.Concurrency, "rechecks in flight at once")
		resultTimeout = fs.Duration("result-timeout", def.ResultTimeout, "how long a recheck waits for the fleet's results")
		count         = fs.Int("count", def.ProbeCount, "samples per probe job")
		budget        = fs.Int("budget", 0, "PoPs probed per recheck (0: the planner's share of the fleet)")
		regionFile    = fs.String("region-endpoints", "", "file mapping region id to host:port (\"aws:us-east-1 198.18.0.9:443\" per line)")
		logFormat     = fs.String("log-format", "text", "log format: json or text")
		logLevel      = fs.String("log-level", "info", "log level: debug, info, warn or error")
		adhocTimeout  = fs.Duration("adhoc-timeout", scheduler.DefaultAdHocTimeout, "how long an ad-hoc probe waits for its PoPs")
		smartWindow   = fs.Duration("smart-window", smart.DefaultConfig().Window, "Smart Placement's analysis window of request telemetry")
		hostScheme    = fs.String("hostname-scheme", "", "probe hostname targets as http:// or https:// URLs (empty: plain HTTP to the bare name)")
	)
	var allow, regionEPs, tokens listFlag
	fs.Var(&allow, "allow", "CIDR lifting the deny policy for configured hosts (repeatable), e.g. 198.18.0.0/15")
	fs.Var(&regionEPs, "region-endpoint", "region-id=host:port override (repeatable)")
	fs.Var(&tokens, "token", "bearer token accepted (repeatable; prefer --tokens)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: scheduler takes no arguments, got %q", errUsage, fs.Args())
	}
	if err := checkLogFlags(*logFormat, *logLevel); err != nil {
		return err
	}
	if sc := *hostScheme; sc != "" && sc != "http" && sc != "https" {
		return fmt.Errorf("%w: --hostname-scheme %q: want http or https", errUsage, sc)
	}
	log := fleetLogger(stderr, *logFormat, *logLevel)
	stopPprof, perr := servePprof(ctx, *pprofAddr, log)
	if perr != nil {
		return perr
	}
	defer stopPprof()
	allowP, err := placement.ParsePrefixes("--allow", allow)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	regions := scheduler.RegionEndpoints{Overrides: map[string]string{}}
	if *regionFile != "" {
		if regions.Overrides, err = scheduler.LoadRegionEndpointsFile(*regionFile); err != nil {
			return err
		}
	}
	for _, r := range regionEPs {
		id, ep, err := scheduler.ParseRegionEndpoint(r)
		if err != nil {
			return fmt.Errorf("%w: --region-endpoint: %v", errUsage, err)
		}
		regions.Overrides[id] = ep
	}
	toks := map[string]string{}
	if *tokensFile != "" {
		if toks, err = scheduler.LoadTokensFile(*tokensFile); err != nil {
			return err
		}
	}
	for i, t := range tokens {
		toks[t] = fmt.Sprintf("flag-%d", i+1)
	}
	if len(toks) == 0 {
		log.Warn("scheduler: no bearer token configured: writes and ad-hoc probes are refused")
	}

	st, err := openWithRetry(ctx, rf, log)
	if err != nil {
		return err
	}
	defer st.Close()
	b := scheduler.StoreBackend{Store: st}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := scheduler.NewMetrics(reg)
	cfg := scheduler.Config{Name: *name, RecheckInterval: *recheck, Jitter: *jitter, LeaseTTL: *leaseTTL,
		Concurrency: *concurrency, ResultTimeout: *resultTimeout, ProbeCount: *count, Budget: *budget,
		Regions: regions, HostnameScheme: *hostScheme, Logger: log}
	if *jitter == 0 {
		cfg.Jitter = -1
	}
	s, err := scheduler.New(cfg, b, m)
	if err != nil {
		return err
	}
	parser := placement.Parser{Policy: placement.DefaultPolicy(allowP...)}
	// Smart Placement: telemetry in (worker hosts write it to Redis, or POST it here), analysis by the leader.
	smartCfg := smart.DefaultConfig()
	smartCfg.Window = *smartWindow
	runner, err := smartrun.NewRunner(smartCfg, st, smartrun.FleetSources(st, nil), smartrun.RunnerOptions{
		Logger: log, Registerer: reg, Leading: s.Leading})
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	page, err := ui.New(ui.Config{Sched: s, Store: st, MaxResultAge: 2 * *recheck, Logger: log})
	if err != nil {
		return err
	}
	api := &scheduler.API{
		Telemetry: smartrun.IngestHandler(st.AddTelemetry, log),
		Sched:     s, Decisions: b, Apps: b, Regions: regions, Parser: parser, Metrics: m, Logger: log, Gatherer: reg,
		Auth:  scheduler.NewAuth(toks, scheduler.Quota{PerMinute: *quotaRate, Burst: *quotaBurst}, nil),
		AdHoc: &scheduler.AdHoc{Backend: b, Timeout: *adhocTimeout},
		Ready: func(ctx context.Context) error { return st.Client().Ping(ctx).Err() },
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("scheduler: --listen %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: ui.Wrap(api.Handler(), page), ReadHeaderTimeout: 10 * time.Second}
	log.Info("scheduler: serving", "addr", ln.Addr().String())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("scheduler: HTTP: %w", err)
			cancel()
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var bg []func()
		if *configDir != "" {
			bg = append(bg, func() { s.WatchDir(runCtx, *configDir, parser, regions, *configReload) })
		}
		bg = append(bg, func() { s.SyncAPIApps(runCtx, b, regions, scheduler.DefaultAppsReload) })
		bg = append(bg, func() { s.WatchPending(runCtx, st.PendingJobs, b.UpPoPs, 10*time.Second) })
		bg = append(bg, func() {
			if err := runner.Run(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("scheduler: smart placement stopped", "err", err)
			}
		})
		waits := make(chan struct{}, len(bg))
		for _, f := range bg {
			go func() { f(); waits <- struct{}{} }()
		}
		s.Run(runCtx)
		for range bg {
			<-waits
		}
	}()
	<-runCtx.Done()
	<-done
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), schedulerShutdown)
	defer scancel()
	srv.Shutdown(sctx)
	select {
	case err := <-errc:
		return err
	default:
	}
	log.Info("scheduler: stopped")
	return nil
}

// openWithRetry opens the store, retrying with backoff while Redis is unreachable (a daemon may start before
// its Redis), until ctx is done. Usage errors are returned at once.
func openWithRetry(ctx context.Context, rf *fleetRedisFlags, log *slog.Logger) (*storage.Store, error) {
	wait := 100 * time.Millisecond
	for {
		st, err := rf.open(ctx, log)
		if err == nil || errors.Is(err, errUsage) || errors.Is(err, storage.ErrSchema) {
			return st, err
		}
		log.Warn("opening Redis; retrying", "err", err, "backoff", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}
