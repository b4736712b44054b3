package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/storage"
)

func init() {
	register(command{name: "worker", summary: "run the demo worker host (sequential database round trips, telemetry)", run: runWorker})
}

// runWorker: vantage worker --pop FRA --listen :9001 --db db:5432 [--n 5] [--redis host:port] [--serve-db :5432].
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("worker", "", stderr)
	df := addDaemonFlags(fs, daemonFlagOptions{Redis: redisOptional, TLS: true})
	cfg := daemon.DefaultWorkerConfig()
	w := &cfg.Worker
	fs.StringVar(&w.PoP, "pop", "", "IATA code of the PoP this worker host runs in (required)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of the worker's HTTP server")
	db := fs.String("db", "", "the application's database, host:port, speaking the PING/PONG line protocol (required unless --serve-db)")
	n := fs.Int("n", worker.DefaultQueries, fmt.Sprintf("sequential database round trips per request (1 to %d)", worker.MaxQueries))
	app := fs.String("app", "demo", "application name (reported in telemetry; with one application every Host is served)")
	deploy := fs.String("deploy", "", "the application's deploy version, reported in telemetry")
	fs.StringVar(&cfg.ServeDB, "serve-db", "", "also serve the demo database on this address (and use it when --db is empty)")
	fs.DurationVar(&w.FlushInterval, "flush", worker.DefaultFlushInterval, "send telemetry at least this often")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address of /metrics, /healthz and /readyz (empty: off), e.g. 127.0.0.1:9103")
	log, stop, err := parseDaemon(ctx, fs, df, args, stderr)
	if err != nil {
		return err
	}
	defer stop()
	cfg.TLS = df.tlsFiles()
	switch {
	case w.PoP == "":
		return fmt.Errorf("%w: --pop is required", errUsage)
	case *db == "" && cfg.ServeDB == "":
		return fmt.Errorf("%w: --db is required (or --serve-db)", errUsage)
	case *n < 1 || *n > worker.MaxQueries:
		return fmt.Errorf("%w: --n %d: want 1 to %d", errUsage, *n, worker.MaxQueries)
	case w.FlushInterval <= 0:
		return fmt.Errorf("%w: --flush %v: want > 0", errUsage, w.FlushInterval)
	}
	w.PoP = strings.ToUpper(w.PoP)
	w.Apps = []worker.App{{Name: *app, Deploy: *deploy, DB: *db, Queries: *n}}
	cfg.Logger = log.With("pop", w.PoP)
	var st *storage.Store // telemetry goes to Redis when --redis is given
	if df.hasRedis() {
		if st, err = openStore(ctx, df, cfg.Logger); err != nil {
			return err
		}
		defer st.Close()
	}
	k, err := daemon.NewWorker(cfg, st)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if a := k.DBAddr(); a != "" {
		fmt.Fprintf(stdout, "database on %s\n", a)
	}
	fmt.Fprintf(stdout, "worker %s serving %s (db %s, %d round trips) on %s\n", w.PoP, *app, cmp.Or(*db, k.DBAddr()), *n, k.Addr())
	return k.Run(ctx) // the last telemetry batch is sent before Redis is closed
}
