package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/probed"
)

func init() {
	register(command{name: "probed", summary: "run the probe daemon of one PoP (jobs from Redis, results to Redis)", run: runProbed})
}

func runProbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probed", "", stderr)
	pprofAddr := addPprofFlag(fs)
	rf := addFleetRedisFlags(fs)
	var (
		pop          = fs.String("pop", "", "IATA code of this daemon's PoP (required)")
		id           = fs.String("id", "", "daemon id, the consumer name in the PoP's group (default hostname-pid)")
		listen       = fs.String("listen", "127.0.0.1:9101", "address of /metrics, /healthz and /readyz")
		rate         = fs.Int("rate", 0, "probes per second for the whole daemon (0: unlimited)")
		targetRate   = fs.Int("target-rate", 0, "probes per second per target address (0: unlimited)")
		heartbeat    = fs.Duration("heartbeat", probed.DefaultHeartbeat, "heartbeat interval")
		concurrency  = fs.Int("concurrency", probed.DefaultConcurrency, "probes in flight at once")
		reclaimIdle  = fs.Duration("reclaim-idle", probed.DefaultReclaimIdle, "take over jobs other daemons left unacknowledged this long")
		buffer       = fs.Int("buffer", probed.DefaultBufferSize, "results kept while Redis is unreachable")
		drainTimeout = fs.Duration("drain-timeout", probed.DefaultDrainTimeout, "on SIGTERM, how long in-flight probes may finish")
		timeout      = fs.Duration("timeout", prober.DefaultTimeout, "per-sample probe timeout")
		idleSockets  = fs.Int("tcp-idle-sockets", prober.DefaultIdleSockets, "disconnected TCP probe sockets kept per source address for reuse (0: none)")
		allDetail    = fs.Bool("result-detail", false, "store the prober's full result with every result (default: ad-hoc probes only)")
		logFormat    = fs.String("log-format", "text", "log format: json or text")
		logLevel     = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	var sources, allow listFlag
	fs.Var(&sources, "source", "source address(es) probes leave from, comma-separated (default: the kernel's choice)")
	fs.Var(&allow, "allow", "CIDR lifting the deny policy (repeatable), e.g. 198.18.0.0/15 for the emulated WAN")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: probed takes no arguments, got %q", errUsage, fs.Args())
	}
	if *pop == "" {
		return fmt.Errorf("%w: --pop is required", errUsage)
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
	pcfg := prober.DefaultConfig()
	for _, s := range sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%w: --source %q: %v", errUsage, s, err)
		}
		pcfg.Sources = append(pcfg.Sources, a)
	}
	var err error
	if pcfg.Allow, err = placement.ParsePrefixes("--allow", allow); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	pcfg.GlobalRate, pcfg.TargetRate, pcfg.Timeout, pcfg.Logger = *rate, *targetRate, *timeout, log
	switch {
	case *idleSockets < 0:
		return fmt.Errorf("%w: --tcp-idle-sockets %d: want 0 or more", errUsage, *idleSockets)
	case *idleSockets == 0:
		pcfg.IdleSockets = -1 // the prober's "none"
	default:
		pcfg.IdleSockets = *idleSockets
	}
	eng, err := prober.New(pcfg)
	if err != nil {
		return err
	}
	defer eng.Close()

	if _, err := rf.options(log); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("probed: --listen %s: %w", *listen, err)
	}
	st, err := openWithRetry(ctx, rf, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), eng.Collector())
	cfg := probed.Config{PoP: *pop, DaemonID: *id, Heartbeat: *heartbeat, Concurrency: *concurrency,
		ReclaimIdle: *reclaimIdle, BufferSize: *buffer, DrainTimeout: *drainTimeout, Logger: log}
	q := &probed.StoreQueue{DB: st, PoP: *pop, Addr: ln.Addr().String(), Version: version, SourceIPs: pcfg.Sources, AllDetail: *allDetail}
	d, err := probed.New(cfg, q, eng, reg)
	if err != nil {
		ln.Close()
		return err
	}
	q.DaemonID = d.ID()

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !d.Ready() {
			http.Error(w, "not ready: Redis unreachable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("probed: HTTP: %w", err)
		}
	}()
	log.Info("probed: running", "pop", *pop, "daemon", d.ID(), "listen", ln.Addr().String(), "sources", sources)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-errc:
			cancel()
		case <-runCtx.Done():
		}
	}()
	d.Run(runCtx) // drains on SIGTERM (ctx done)
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), schedulerShutdown)
	defer scancel()
	srv.Shutdown(sctx)
	log.Info("probed: stopped")
	return nil
}
