package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
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

func runScheduler(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("scheduler", "", stderr)
	df := addDaemonFlags(fs, daemonFlagOptions{Redis: redisRequired, TLS: true})
	df.redis.addHistoryFlags(fs)
	cfg := daemon.DefaultSchedulerConfig()
	sf := addSchedulerFlags(fs, &cfg)
	gc := addGCFlags(fs, DefaultSchedulerGCPercent, "none")
	log, stop, err := parseDaemon(ctx, fs, df, args, stderr)
	if err != nil {
		return err
	}
	defer stop()
	policy, err := gc.resolve(fs, os.Getenv)
	if err != nil {
		return fmt.Errorf("%w: scheduler: %w", errUsage, err)
	}
	cfg.TLS = df.tlsFiles()
	if err := sf.complete(&cfg); err != nil {
		return err
	}
	defer sf.close()
	cfg.Logger = log
	policy.apply(log)
	return runOnStore(ctx, df, log, func(st *storage.Store) (runner, error) { return daemon.NewScheduler(cfg, st) })
}

// schedulerFlags are the scheduler's flags that are not a config field as they are.
type schedulerFlags struct {
	tokensFile, regionFile   *string
	geoipFile                *string
	allow, regionEPs, tokens listFlag
	geoip                    *geo.GeoIP // opened by complete from --geoip; close releases it
}

// close releases what complete opened.
func (f *schedulerFlags) close() {
	if f.geoip != nil {
		f.geoip.Close()
	}
}

// addSchedulerFlags registers the scheduler's flags on fs, defaulting from and writing into cfg.
func addSchedulerFlags(fs *flag.FlagSet, cfg *daemon.SchedulerConfig) *schedulerFlags {
	f := &schedulerFlags{}
	s := &cfg.Scheduler
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP API, status page, /metrics (operator token), /healthz and /readyz address")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address serving /metrics without a token, for scrapers (empty: none)")
	fs.StringVar(&cfg.ConfigDir, "config-dir", "", "directory of wrangler.toml / wrangler.jsonc files to place (reloaded every --config-reload)")
	fs.DurationVar(&cfg.ConfigReload, "config-reload", cfg.ConfigReload, "how often --config-dir is read again")
	fs.StringVar(&cfg.Env, "env", "", "wrangler environment of the configs, as wrangler's --env (empty: the top level and every [env.NAME], one app each)")
	f.tokensFile = fs.String("tokens", "", "file of bearer tokens, \"TOKEN NAME ACCOUNT\" per line (ACCOUNT * for an operator); every request but /healthz and /readyz needs one")
	fs.IntVar(&cfg.Limits.MaxAppsPerAccount, "max-apps-per-account", cfg.Limits.MaxAppsPerAccount, "applications one account may register")
	fs.Float64Var(&cfg.Limits.TelemetryPerSecond, "telemetry-per-second", cfg.Limits.TelemetryPerSecond, "telemetry records per second per account")
	fs.Float64Var(&cfg.Limits.TelemetryBurst, "telemetry-burst", cfg.Limits.TelemetryBurst, "telemetry records one account may send at once")
	fs.Float64Var(&cfg.Quota.PerMinute, "quota-per-minute", cfg.Quota.PerMinute, "ad-hoc probes per minute per token")
	fs.Float64Var(&cfg.Quota.Burst, "quota-burst", cfg.Quota.Burst, "ad-hoc probes a token may start at once")
	fs.StringVar(&s.Name, "name", "", "lease holder name (default hostname-pid)")
	fs.DurationVar(&s.RecheckInterval, "recheck", s.RecheckInterval, "recheck interval per target (jittered)")
	fs.Float64Var(&s.Jitter, "jitter", s.Jitter, "recheck jitter, a fraction of --recheck (0: none)")
	fs.DurationVar(&s.LeaseTTL, "lease-ttl", s.LeaseTTL, "leader lease; a dead leader is replaced within it")
	fs.IntVar(&s.Shards, "shards", s.Shards, "shards the targets are split into, each led by one scheduler of the fleet under its own lease (the fleet's first scheduler stores the count in Redis; the others adopt it)")
	fs.IntVar(&s.Concurrency, "concurrency", s.Concurrency, "rechecks in flight at once")
	fs.DurationVar(&s.ResultTimeout, "result-timeout", s.ResultTimeout, "how long a recheck waits for the fleet's results")
	fs.IntVar(&s.ProbeCount, "count", s.ProbeCount, "samples per probe job")
	fs.IntVar(&s.Budget, "budget", 0, "PoPs probed per recheck (0: the planner's share of the fleet)")
	fs.DurationVar(&s.BatchTick, "batch-tick", s.BatchTick, "how often the rechecks in flight send their jobs (one stream entry per PoP), read their inputs and write their decisions, one Redis call each (negative: no batching, e.g. while daemons older than job batches run)")
	f.geoipFile = fs.String("geoip", "", "GeoIP2/GeoLite2/DB-IP City .mmdb: a target's prior location orders the first PoPs probed; a prior far outside the measured region is a note, never the verdict")
	fs.IntVar(&s.HistoryRounds, "history-rounds", s.HistoryRounds, "a decision takes each PoP's minimum RTT over its last N results (1: the latest only)")
	fs.DurationVar(&s.HistoryWindow, "history-window", s.HistoryWindow, "... none older than this")
	fs.DurationVar(&s.MeshInterval, "mesh-interval", s.MeshInterval, "how often every PoP measures every other (the mesh that calibrates the engine and finds mislocated PoPs; negative: no mesh)")
	fs.IntVar(&s.MeshBudget, "mesh-budget", s.MeshBudget, "mesh probes enqueued per minute at most (a large fleet's mesh round then takes longer than --mesh-interval)")
	f.regionFile = fs.String("region-endpoints", "", "file mapping region id to host:port (\"aws:us-east-1 198.18.0.9:443\" per line)")
	fs.DurationVar(&cfg.AdHocTimeout, "adhoc-timeout", cfg.AdHocTimeout, "how long an ad-hoc probe waits for its PoPs")
	fs.DurationVar(&cfg.Smart.Window, "smart-window", cfg.Smart.Window, "Smart Placement's analysis window of request telemetry")
	fs.StringVar(&s.HostnameScheme, "hostname-scheme", "", "probe hostname targets as http:// or https:// URLs (empty: plain HTTP to the bare name)")
	fs.Var(&f.allow, "allow", "CIDR lifting the deny policy for configured hosts (repeatable), e.g. 198.18.0.0/15")
	fs.Var(&f.regionEPs, "region-endpoint", "region-id=host:port override (repeatable)")
	fs.Var(&f.tokens, "token", "operator's bearer token (account *) accepted (repeatable; prefer --tokens)")
	return f
}

// complete checks the parsed flags and fills what they name (files, lists) into cfg.
func (f *schedulerFlags) complete(cfg *daemon.SchedulerConfig) error {
	s := &cfg.Scheduler
	if sc := s.HostnameScheme; sc != "" && sc != "http" && sc != "https" {
		return fmt.Errorf("%w: --hostname-scheme %q: want http or https", errUsage, sc)
	}
	if s.Jitter == 0 {
		s.Jitter = -1 // the scheduler's "none"
	}
	var err error
	if cfg.Allow, err = placement.ParsePrefixes("--allow", f.allow); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	s.Regions.Overrides = map[string]string{}
	if *f.regionFile != "" {
		if s.Regions.Overrides, err = scheduler.LoadRegionEndpointsFile(*f.regionFile); err != nil {
			return err
		}
	}
	for _, r := range f.regionEPs {
		id, ep, err := scheduler.ParseRegionEndpoint(r)
		if err != nil {
			return fmt.Errorf("%w: --region-endpoint: %v", errUsage, err)
		}
		s.Regions.Overrides[id] = ep
	}
	cfg.Tokens = scheduler.Tokens{}
	if *f.tokensFile != "" {
		if cfg.Tokens, err = scheduler.LoadTokensFile(*f.tokensFile); err != nil {
			return err
		}
	}
	for i, t := range f.tokens {
		cfg.Tokens[t] = scheduler.Operator(fmt.Sprintf("flag-%d", i+1))
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *f.geoipFile != "" {
		if f.geoip, err = geo.OpenGeoIP(*f.geoipFile, ""); err != nil {
			return fmt.Errorf("%w: --geoip: %w", errUsage, err)
		}
		s.Prior = scheduler.GeoIPPrior(f.geoip)
	}
	return nil
}
