package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/scheduler/smartrun"
	"github.com/vantage-edge/vantage/scheduler/ui"
	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/storage"
)

// DefaultSchedulerListen serves the scheduler's API, status page, /metrics, /healthz and /readyz.
const DefaultSchedulerListen = "127.0.0.1:8080"

// PendingInterval is how often the scheduler refreshes each PoP's pending-jobs gauge.
const PendingInterval = 10 * time.Second

// SchedulerConfig configures a scheduler with everything it serves. Start from DefaultSchedulerConfig.
type SchedulerConfig struct {
	// Scheduler tunes the rechecks, the lease, the planner and the engine.
	Scheduler scheduler.Config
	// Smart tunes Smart Placement's analysis and runner.
	Smart smart.Config
	// Listen is the address of the API, the status page and /metrics (Listener, when set, is used instead);
	// there /metrics needs an operator's token.
	Listen   string
	Listener net.Listener
	// TLS serves the API, the status page and the metrics listener over TLS (default: plain HTTP).
	TLS TLSFiles
	// MetricsListen, when set, is the address of a second listener serving /metrics without a token, for
	// scrapers on a network only operators reach (empty: /metrics on Listen only).
	MetricsListen string
	// ConfigDir is a directory of wrangler.toml / wrangler.jsonc files to place (empty: none), read again every
	// ConfigReload.
	ConfigDir    string
	ConfigReload time.Duration
	// Env is the wrangler environment read from each config of ConfigDir and each config POSTed (as wrangler's
	// --env; "": the top level and every environment, one app each, named NAME-ENV).
	Env string
	// Tokens maps the bearer tokens accepted to whom they act for (scheduler.LoadTokensFile); none: every
	// request but /healthz and /readyz is refused.
	Tokens scheduler.Tokens
	// Limits caps each account's applications and telemetry rate.
	Limits scheduler.Limits
	// Quota limits each token's ad-hoc probes.
	Quota scheduler.Quota
	// AdHocTimeout is how long an ad-hoc probe waits for its PoPs.
	AdHocTimeout time.Duration
	// Allow lifts the deny policy for these prefixes in the configs it accepts (the probers' --allow).
	Allow  []netip.Prefix
	Logger *slog.Logger
}

// DefaultSchedulerConfig returns the defaults of `vantage scheduler`.
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{
		Scheduler:    scheduler.DefaultConfig(),
		Smart:        smart.DefaultConfig(),
		Listen:       DefaultSchedulerListen,
		ConfigReload: scheduler.DefaultDirReload,
		Quota:        scheduler.Quota{PerMinute: scheduler.DefaultQuotaPerMinute, Burst: scheduler.DefaultQuotaBurst},
		AdHocTimeout: scheduler.DefaultAdHocTimeout,
		Limits: scheduler.Limits{MaxAppsPerAccount: scheduler.DefaultMaxAppsPerAccount,
			TelemetryPerSecond: scheduler.DefaultTelemetryPerSecond, TelemetryBurst: scheduler.DefaultTelemetryBurst},
	}
}

// Validate checks the parts NewScheduler does not default.
func (c SchedulerConfig) Validate() error {
	if c.Listen == "" && c.Listener == nil {
		return errors.New("scheduler: an address is required (--listen)")
	}
	if c.ConfigReload <= 0 {
		return fmt.Errorf("scheduler: --config-reload %v: want > 0", c.ConfigReload)
	}
	if c.AdHocTimeout <= 0 {
		return fmt.Errorf("scheduler: --adhoc-timeout %v: want > 0", c.AdHocTimeout)
	}
	if err := c.Smart.Validate(); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w (--max-apps-per-account, --telemetry-per-second, --telemetry-burst)", err)
	}
	return c.TLS.validate("scheduler")
}

// Scheduler is a scheduler with its API, status page, telemetry ingest and smart runner.
type Scheduler struct {
	cfg    SchedulerConfig
	s      *scheduler.Scheduler
	st     *storage.Store
	runner *smartrun.Runner
	parser placement.Parser
	g      group
}

// NewScheduler assembles a scheduler on st.
func NewScheduler(cfg SchedulerConfig, st *storage.Store) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logger(cfg.Logger)
	cfg.Scheduler.Logger = log
	g, err := newGroup("scheduler", cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	if len(cfg.Tokens) == 0 {
		log.Warn("scheduler: no bearer token configured: every request but /healthz and /readyz is refused")
	}
	if lines := cfg.Tokens.LegacyLines(); len(lines) > 0 {
		log.Warn("scheduler: tokens in the old \"TOKEN [NAME]\" form act as operators (account *); write \"TOKEN NAME ACCOUNT\"",
			"lines", lines)
	}
	b := scheduler.StoreBackend{Store: st}
	reg := newRegistry()
	m := scheduler.NewMetrics(reg)
	s, err := scheduler.New(cfg.Scheduler, b, m)
	if err != nil {
		return nil, err
	}
	k := &Scheduler{cfg: cfg, s: s, st: st, g: g, parser: placement.Parser{Policy: placement.DefaultPolicy(cfg.Allow...), Env: cfg.Env}}
	// Smart Placement: telemetry in (worker hosts write it to Redis, or POST it here), analysis by the leader,
	// decisions written under its fencing token.
	k.runner, err = smartrun.NewRunner(cfg.Smart, st, meshSources(s, smartrun.FleetSources(st, nil)), smartrun.RunnerOptions{
		Logger: log, Registerer: reg, Leading: s.Leading})
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	auth := scheduler.NewScopedAuth(cfg.Tokens, cfg.Quota, nil)
	page, err := ui.New(ui.Config{Sched: s, Store: st, MaxResultAge: 2 * cmp.Or(cfg.Scheduler.RecheckInterval, scheduler.DefaultRecheckInterval),
		Authenticate: auth.Authenticate, Logger: log, PoPs: popLookup(cfg.Scheduler.PoPs)})
	if err != nil {
		return nil, err
	}
	api := &scheduler.API{
		Sched: s, Decisions: b, Apps: b, Regions: cfg.Scheduler.Regions, Parser: k.parser, Metrics: m, Logger: log, Gatherer: reg,
		Auth:   auth,
		AdHoc:  &scheduler.AdHoc{Backend: b, Parser: k.parser, Timeout: cfg.AdHocTimeout},
		Ready:  func(ctx context.Context) error { return st.Client().Ping(ctx).Err() },
		Limits: cfg.Limits, Quotas: b,
	}
	api.Telemetry = smartrun.IngestHandler(api.GuardTelemetry(st.AddTelemetryBatch), log)
	ln, err := listen(cfg.Listener, cfg.Listen, "scheduler: --listen")
	if err != nil {
		return nil, err
	}
	mln, err := listen(nil, cfg.MetricsListen, "scheduler: --metrics-listen")
	if err != nil {
		closeAll(ln)
		return nil, err
	}
	k.g.serve("scheduler", ln, ui.Wrap(api.Handler(), page))
	metrics := http.NewServeMux()
	metrics.Handle("GET /metrics", api.MetricsHandler())
	k.g.serve("scheduler metrics", mln, metrics)
	return k, nil
}

// meshSources completes the smart runner's sources with the PoP mesh: the forwarding RTT between PoPs is the
// mesh's (the latency model answers for pairs it has not measured), and the PoPs the mesh found mislocated are
// left out of the back ends' RTTs and of the anycast test on them (src is smartrun.FleetSources).
func meshSources(s *scheduler.Scheduler, src smartrun.Sources) smartrun.Sources {
	src.PoPRTT = s.MeshRTT
	rtts := src.HostRTTs
	src.HostRTTs = func(ctx context.Context, host string) (map[string]float64, error) {
		m, err := rtts(ctx, host)
		for pop := range m {
			if s.Mislocated(pop) {
				delete(m, pop)
			}
		}
		return m, err
	}
	src.Verdict = func(ctx context.Context, host string) (placement.Verdict, bool, error) {
		m, err := src.HostRTTs(ctx, host)
		if err != nil || len(m) == 0 {
			return "", false, err
		}
		v := smartrun.FleetVerdict(host, m)
		return v, v != placement.VerdictUnknown, nil
	}
	return src
}

// Scheduler returns the scheduler (its targets, leadership), for callers that watch it in process.
func (k *Scheduler) Scheduler() *scheduler.Scheduler { return k.s }

// URL returns the base URL of the API and the status page: https:// when it serves TLS.
func (k *Scheduler) URL() string { return k.g.scheme() + "://" + addrOf(&k.g) }

// MetricsURL returns the URL of /metrics on the MetricsListen listener, or "" without one.
func (k *Scheduler) MetricsURL() string {
	if len(k.g.endpoints) < 2 {
		return ""
	}
	return k.g.scheme() + "://" + k.g.endpoints[1].ln.Addr().String() + "/metrics"
}

// Run rechecks targets (while it holds the lease), watches the config dir and the app registry, runs the
// smart analysis and serves the API until ctx is done.
func (k *Scheduler) Run(ctx context.Context) error {
	b := scheduler.StoreBackend{Store: k.st}
	regions := k.cfg.Scheduler.Regions
	if k.cfg.ConfigDir != "" {
		k.g.loop(func(ctx context.Context) { k.s.WatchDir(ctx, k.cfg.ConfigDir, k.parser, regions, k.cfg.ConfigReload) })
	}
	k.g.loop(func(ctx context.Context) { k.s.SyncAPIApps(ctx, b, regions, scheduler.DefaultAppsReload) })
	k.g.loop(func(ctx context.Context) { k.s.WatchPending(ctx, k.st.PendingJobs, b.UpPoPs, PendingInterval) })
	k.g.loop(func(ctx context.Context) {
		if err := k.runner.Run(ctx); err != nil && ctx.Err() == nil {
			k.g.log.Error("scheduler: smart placement stopped", "err", err)
		}
	})
	k.g.loop(func(ctx context.Context) { k.s.Run(ctx) })
	k.g.log.Info("scheduler: serving", "addr", addrOf(&k.g))
	err := k.g.run(ctx)
	k.g.log.Info("scheduler: stopped")
	return err
}

// popLookup locates PoP codes in cat, the scheduler's catalogue, so that the status page draws each PoP where
// the scheduler places it (a mislocated PoP too); nil when cat is (the page then uses geo.LookupPoP).
func popLookup(cat []geo.PoP) func(string) (geo.PoP, bool) {
	if cat == nil {
		return nil
	}
	byCode := make(map[string]geo.PoP, len(cat))
	for _, p := range cat {
		byCode[p.Code] = p
	}
	return func(c string) (geo.PoP, bool) { p, ok := byCode[c]; return p, ok }
}
