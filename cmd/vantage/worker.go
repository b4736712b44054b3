package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/storage"
)

func init() {
	register(command{name: "worker", summary: "run the demo worker host (sequential database round trips, telemetry)", run: runWorker})
}

// runWorker: vantage worker --pop FRA --listen :9001 --db db:5432 [--n 5] [--redis host:port] [--serve-db :5432].
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("worker", "", stderr)
	pprofAddr := addPprofFlag(fs)
	var (
		pop       = fs.String("pop", "", "IATA code of the PoP this worker host runs in (required)")
		listen    = fs.String("listen", "127.0.0.1:9001", "address of the worker's HTTP server")
		db        = fs.String("db", "", "the application's database, host:port, speaking the PING/PONG line protocol (required unless --serve-db)")
		n         = fs.Int("n", worker.DefaultQueries, fmt.Sprintf("sequential database round trips per request (1 to %d)", worker.MaxQueries))
		app       = fs.String("app", "demo", "application name (reported in telemetry; with one application every Host is served)")
		deploy    = fs.String("deploy", "", "the application's deploy version, reported in telemetry")
		redisAddr = fs.String("redis", "", "Redis for telemetry: host:port or unix:/path; several, comma-separated: a Cluster (empty: no telemetry)")
		serveDB   = fs.String("serve-db", "", "also serve the demo database on this address (and use it when --db is empty)")
		flush     = fs.Duration("flush", worker.DefaultFlushInterval, "send telemetry at least this often")
		metricsAt = fs.String("metrics-listen", "", "address of /metrics, /healthz and /readyz (empty: off), e.g. 127.0.0.1:9103")
		logFormat = fs.String("log-format", "text", "log format: json or text")
		logLevel  = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: worker takes no arguments, got %q", errUsage, fs.Args())
	}
	if err := checkLogFlags(*logFormat, *logLevel); err != nil {
		return err
	}
	if *pop == "" {
		return fmt.Errorf("%w: --pop is required", errUsage)
	}
	if *db == "" && *serveDB == "" {
		return fmt.Errorf("%w: --db is required (or --serve-db)", errUsage)
	}
	if *n < 1 || *n > worker.MaxQueries {
		return fmt.Errorf("%w: --n %d: want 1 to %d", errUsage, *n, worker.MaxQueries)
	}
	if *flush <= 0 {
		return fmt.Errorf("%w: --flush %v: want > 0", errUsage, *flush)
	}
	log := fleetLogger(stderr, *logFormat, *logLevel).With("pop", strings.ToUpper(*pop))
	stopPprof, perr := servePprof(ctx, *pprofAddr, log)
	if perr != nil {
		return perr
	}
	defer stopPprof()

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer wg.Wait()
	defer cancel()
	if *serveDB != "" {
		ln, err := net.Listen("tcp", *serveDB)
		if err != nil {
			return fmt.Errorf("worker: --serve-db: %w", err)
		}
		if *db == "" {
			*db = ln.Addr().String()
		}
		wg.Go(func() {
			if err := worker.ServeDB(ctx, ln); err != nil {
				log.Error("worker: database server stopped", "err", err)
			}
		})
		fmt.Fprintf(stdout, "database on %s\n", ln.Addr())
	}
	cfg := worker.Config{PoP: strings.ToUpper(*pop), FlushInterval: *flush, Logger: log,
		Apps: []worker.App{{Name: *app, Deploy: *deploy, DB: *db, Queries: *n}}}
	if *redisAddr != "" {
		var addrs []string
		for _, a := range strings.Split(*redisAddr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		st, err := storage.Open(ctx, storage.Options{Addrs: addrs, Password: os.Getenv("VANTAGE_REDIS_PASSWORD"), Logger: log})
		if err != nil {
			return fmt.Errorf("worker: opening Redis %s: %w", *redisAddr, err)
		}
		defer st.Close()
		cfg.Report = st.AddTelemetry
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg
	w, err := worker.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *metricsAt != "" {
		mln, err := net.Listen("tcp", *metricsAt)
		if err != nil {
			return fmt.Errorf("worker: --metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				log.Error("worker: metrics server stopped", "err", err)
			}
		})
		wg.Go(func() {
			<-ctx.Done()
			msrv.Close()
		})
		log.Info("worker: metrics", "listen", mln.Addr().String())
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("worker: --listen: %w", err)
	}
	fmt.Fprintf(stdout, "worker %s serving %s (db %s, %d round trips) on %s\n", cfg.PoP, *app, *db, *n, ln.Addr())
	wg.Go(func() { w.Run(ctx) })
	err = w.Serve(ctx, ln)
	cancel()
	wg.Wait() // the last telemetry batch is sent before Redis is closed
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
