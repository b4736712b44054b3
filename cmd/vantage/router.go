package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/router/proxysync"
	"github.com/vantage-edge/vantage/storage"
)

func init() {
	register(command{name: "router", summary: "route requests to the PoP nearest their back end (HTTP front)", run: runRouter})
}

func runRouter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("router", "", stderr)
	df := addDaemonFlags(fs, daemonFlagOptions{Redis: redisRequired, TLS: true})
	cfg := daemon.DefaultRouterConfig()
	rf := addRouterFlags(fs, &cfg)
	gc := addGCFlags(fs, DefaultRouterGCPercent, DefaultRouterMemoryLimit)
	log, stop, err := parseDaemon(ctx, fs, df, args, stderr)
	if err != nil {
		return err
	}
	defer stop()
	policy, err := gc.resolve(fs, os.Getenv)
	if err != nil {
		return fmt.Errorf("%w: router: %w", errUsage, err)
	}
	cfg.TLS = df.tlsFiles()
	if err := rf.complete(&cfg); err != nil {
		return err
	}
	cfg.Logger = log
	policy.apply(log)
	return runOnStore(ctx, df, log, func(st *storage.Store) (runner, error) { return daemon.NewRouter(cfg, st) })
}

// routerFlags are the router's flags that are not a config field as they are.
type routerFlags struct{ workers, workersFile, capacity, nginxReload, proxyPoPs *string }

// addRouterFlags registers the router's flags on fs, defaulting from and writing into cfg.
func addRouterFlags(fs *flag.FlagSet, cfg *daemon.RouterConfig) *routerFlags {
	f := &routerFlags{}
	rc, fc := &cfg.Router, &cfg.Front
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of the HTTP front (requests to route); empty: no front, proxy tables only")
	fs.StringVar(&cfg.Admin, "admin", cfg.Admin, "address of /metrics, /healthz and /readyz (empty: none)")
	fs.StringVar(&fc.Ingress, "ingress", "", "the PoP this router runs in, e.g. EWR (required)")
	f.workers = fs.String("workers", "", "worker endpoint per PoP: POP=URL, comma-separated, e.g. EWR=http://127.0.0.1:9001")
	f.workersFile = fs.String("workers-file", "", "file of POP=URL lines (# comments); merged with --workers")
	fs.StringVar(&fc.App, "app", "", "application of every request (default: from --app-header or the Host header)")
	fs.StringVar(&fc.AppHeader, "app-header", "", "request header naming the application (default: the Host header)")
	fs.StringVar(&fc.RequestIDHeader, "request-id-header", router.DefaultRequestIDHeader, "request header carrying the request id (generated when absent)")
	fs.StringVar(&fc.KindHeader, "kind-header", router.DefaultKindHeader, "request header carrying the invocation kind (fetch, rpc, entrypoint, cron, asset)")
	fs.IntVar(&fc.MaxIdlePerWorker, "upstream-max-idle-per-host", router.DefaultMaxIdlePerWorker,
		"idle connections kept to each worker for reuse: at least the requests in flight toward one worker")
	fs.StringVar(&cfg.FrontServer, "front-server", daemon.FrontAuto,
		"HTTP server of the front: fasthttp (cleartext HTTP/1.1 to plain-HTTP workers, fastest), net/http (TLS, HTTP/2, https workers) or auto (fasthttp unless --tls-cert or an https worker)")
	fs.DurationVar(&fc.UpstreamTimeout, "upstream-timeout", router.DefaultUpstreamTimeout, "bound on one exchange with a worker (request written, response read)")
	fs.DurationVar(&rc.RecheckInterval, "recheck", rc.RecheckInterval, "full snapshot reload period (changes also reload at once)")
	fs.DurationVar(&rc.Debounce, "debounce", rc.Debounce, "wait after a change notification before reloading")
	fs.DurationVar(&rc.FleetInterval, "fleet-interval", rc.FleetInterval, "fleet (up/down/drained PoPs) refresh period")
	fs.DurationVar(&rc.MaxAge, "max-age", rc.MaxAge, "run everything locally when Redis has been unreachable this long")
	fs.Float64Var(&rc.BaselineFraction, "baseline", rc.BaselineFraction, "fraction of routable requests held back as the baseline")
	fs.Float64Var(&rc.FailoverExtraMs, "failover-extra-ms", rc.FailoverExtraMs, "failover budget: a candidate within best + this many ms")
	fs.Float64Var(&rc.FailoverRatio, "failover-ratio", rc.FailoverRatio, "failover budget: or within best × this ratio")
	fs.Float64Var(&rc.SpreadAboveRPS, "spread-above-rps", rc.SpreadAboveRPS, "spread an application's requests above this rate (0: never)")
	fs.Float64Var(&rc.SpreadEpsilonMs, "spread-epsilon-ms", rc.SpreadEpsilonMs, "spread over the candidates within this many ms of the best")
	f.capacity = fs.String("capacity", "", "per-PoP capacity in requests/s for spreading weights: POP=RPS, comma-separated")
	pc := &cfg.Proxies
	fs.StringVar(&pc.HAProxyMapFile, "haproxy-map-file", "", "keep this HAProxy map file in sync with the decisions (see deploy/haproxy)")
	fs.StringVar(&pc.HAProxySocket, "haproxy-socket", "", "HAProxy runtime API (stats socket, level admin: a path or host:port) to update the map live")
	fs.StringVar(&pc.NginxMapFile, "nginx-map-file", "", "keep this nginx include file of maps in sync with the decisions (see deploy/nginx)")
	fs.StringVar(&pc.NginxPIDFile, "nginx-pid-file", "", "reload nginx by SIGHUP to the pid in this file (default: --nginx-reload-cmd)")
	f.nginxReload = fs.String("nginx-reload-cmd", strings.Join(proxysync.DefaultNginxReload, " "), "command reloading nginx after a table change (split on spaces)")
	f.proxyPoPs = fs.String("proxy-pops", "", "PoPs the proxies have a backend for, comma-separated (default: the --workers PoPs; none: every PoP)")
	return f
}

// complete reads the workers file, parses the workers and capacities into cfg and checks it.
func (f *routerFlags) complete(cfg *daemon.RouterConfig) error {
	spec := *f.workers
	if *f.workersFile != "" {
		b, err := os.ReadFile(*f.workersFile)
		if err != nil {
			return fmt.Errorf("router: --workers-file: %w", err)
		}
		spec += "\n" + string(b)
	}
	var err error
	if cfg.Front.Workers, err = router.ParseWorkers(spec); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg.Proxies.NginxReloadCommand = strings.Fields(*f.nginxReload)
	for _, p := range strings.Split(*f.proxyPoPs, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Proxies.PoPs = append(cfg.Proxies.PoPs, p)
		}
	}
	if cfg.Router.PoPCapacityRPS, err = parseCapacities(*f.capacity); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// parseCapacities parses "LHR=5000,FRA=3000" (requests per second per PoP).
func parseCapacities(s string) (map[string]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]float64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		pop, v, ok := strings.Cut(item, "=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || pop == "" || err != nil || f < 0 {
			return nil, fmt.Errorf("router: --capacity %q: want POP=RPS with RPS >= 0", item)
		}
		out[pop] = f
	}
	return out, nil
}
