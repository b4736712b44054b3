package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vantage-edge/vantage/router"
)

func init() {
	register(command{name: "router", summary: "route requests to the PoP nearest their back end (HTTP front)", run: runRouter})
}

// routerShutdown bounds the graceful shutdown of the router's HTTP servers.
const routerShutdown = 5 * time.Second

func runRouter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("router", "", stderr)
	pprofAddr := addPprofFlag(fs)
	rf := addFleetRedisFlags(fs)
	def := router.DefaultConfig()
	var (
		listen      = fs.String("listen", "127.0.0.1:8080", "address of the HTTP front (requests to route)")
		admin       = fs.String("admin", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz (empty: none)")
		ingress     = fs.String("ingress", "", "the PoP this router runs in, e.g. EWR (required)")
		workers     = fs.String("workers", "", "worker endpoint per PoP: POP=URL, comma-separated, e.g. EWR=http://127.0.0.1:9001")
		workersFile = fs.String("workers-file", "", "file of POP=URL lines (# comments); merged with --workers")
		app         = fs.String("app", "", "application of every request (default: from --app-header or the Host header)")
		appHeader   = fs.String("app-header", "", "request header naming the application (default: the Host header)")
		idHeader    = fs.String("request-id-header", router.DefaultRequestIDHeader, "request header carrying the request id (generated when absent)")
		kindHeader  = fs.String("kind-header", router.DefaultKindHeader, "request header carrying the invocation kind (fetch, rpc, entrypoint, cron, asset)")
		recheck     = fs.Duration("recheck", def.RecheckInterval, "full snapshot reload period (changes also reload at once)")
		debounce    = fs.Duration("debounce", def.Debounce, "wait after a change notification before reloading")
		fleetEvery  = fs.Duration("fleet-interval", def.FleetInterval, "fleet (up/down/drained PoPs) refresh period")
		maxAge      = fs.Duration("max-age", def.MaxAge, "run everything locally when Redis has been unreachable this long")
		baseline    = fs.Float64("baseline", def.BaselineFraction, "fraction of routable requests held back as the baseline")
		foExtra     = fs.Float64("failover-extra-ms", def.FailoverExtraMs, "failover budget: a candidate within best + this many ms")
		foRatio     = fs.Float64("failover-ratio", def.FailoverRatio, "failover budget: or within best × this ratio")
		spreadRPS   = fs.Float64("spread-above-rps", def.SpreadAboveRPS, "spread an application's requests above this rate (0: never)")
		spreadEps   = fs.Float64("spread-epsilon-ms", def.SpreadEpsilonMs, "spread over the candidates within this many ms of the best")
		capacity    = fs.String("capacity", "", "per-PoP capacity in requests/s for spreading weights: POP=RPS, comma-separated")
		logFormat   = fs.String("log-format", "text", "log format: json or text")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: router takes no arguments, got %q", errUsage, fs.Args())
	}
	if err := checkLogFlags(*logFormat, *logLevel); err != nil {
		return err
	}
	log := fleetLogger(stderr, *logFormat, *logLevel)
	stopPprof, perr := servePprof(ctx, *pprofAddr, log)
	if perr != nil {
		return perr
	}
	defer stopPprof()
	if *ingress == "" {
		return fmt.Errorf("%w: --ingress is required", errUsage)
	}
	spec := *workers
	if *workersFile != "" {
		b, err := os.ReadFile(*workersFile)
		if err != nil {
			return fmt.Errorf("router: --workers-file: %w", err)
		}
		spec += "\n" + string(b)
	}
	ws, err := router.ParseWorkers(spec)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if ws[*ingress] == nil {
		return fmt.Errorf("%w: router: no worker endpoint for the ingress PoP %s (--workers %s=URL)", errUsage, *ingress, *ingress)
	}
	caps, err := parseCapacities(*capacity)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg := def
	cfg.RecheckInterval, cfg.Debounce, cfg.FleetInterval, cfg.MaxAge = *recheck, *debounce, *fleetEvery, *maxAge
	cfg.BaselineFraction, cfg.FailoverExtraMs, cfg.FailoverRatio = *baseline, *foExtra, *foRatio
	cfg.SpreadAboveRPS, cfg.SpreadEpsilonMs, cfg.PoPCapacityRPS = *spreadRPS, *spreadEps, caps
	cfg.PoPs = []string{*ingress}
	cfg.Logger = log
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg

	st, err := openWithRetry(ctx, rf, log)
	if err != nil {
		return err
	}
	defer st.Close()
	rt, err := router.New(st, cfg)
	if err != nil {
		return err
	}
	front, err := router.NewFront(rt, router.FrontConfig{Ingress: *ingress, Workers: ws, App: *app, AppHeader: *appHeader,
		RequestIDHeader: *idHeader, KindHeader: *kindHeader, Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}

	servers := []*http.Server{{Handler: front, ReadHeaderTimeout: 10 * time.Second}}
	addrs := []string{*listen}
	if *admin != "" {
		servers = append(servers, &http.Server{Handler: router.AdminHandler(rt, reg), ReadHeaderTimeout: 10 * time.Second})
		addrs = append(addrs, *admin)
	}
	var lns []net.Listener
	for i, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("router: %s %s: %w", []string{"--listen", "--admin"}[i], a, err)
		}
		lns = append(lns, ln)
	}
	adminAddr := "none"
	if len(lns) > 1 {
		adminAddr = lns[1].Addr().String()
	}
	fmt.Fprintf(stdout, "vantage router: ingress %s, front %s, admin %s, workers %s\n", *ingress, lns[0].Addr(),
		adminAddr, strings.Join(front.Workers(), ","))

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() {
			if err := srv.Serve(lns[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("router: HTTP %s: %w", lns[i].Addr(), err)
				cancel()
			}
		})
	}
	wg.Go(func() { rt.Run(runCtx) })
	<-runCtx.Done()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), routerShutdown)
	defer scancel()
	for _, srv := range servers {
		srv.Shutdown(sctx)
	}
	wg.Wait()
	log.Info("router: stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
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
