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

// runWorker: vantage worker --pop FRA --listen :9001 --db db:5432 [--n 5] [--redis host:port | --scheduler URL]
// [--serve-db :5432].
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
	fs.DurationVar(&w.Window, "window", worker.DefaultWindow, "aggregate telemetry over windows of this length and send them at each window's end")
	fs.IntVar(&w.MaxGroups, "max-groups", worker.DefaultMaxGroups, "most telemetry groups (app x deploy x ingress x exec x reason, app x deploy x exec x back end) open in a window; requests beyond are dropped and counted")
	sched := envStringVar(fs, "scheduler", envScheduler, "", "send telemetry to this scheduler's API `URL` (POST /v1/telemetry) instead of --redis")
	token := envStringVar(fs, "token", envToken, "", "bearer `token` for --scheduler (one of its --tokens)")
	ca := envStringVar(fs, "scheduler-ca", envSchedulerCA, "", "PEM `file` of the CAs an https:// --scheduler's certificate is checked against (empty: the system's, or $SSL_CERT_FILE)")
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
	case w.Window <= 0:
		return fmt.Errorf("%w: --window %v: want > 0", errUsage, w.Window)
	case w.MaxGroups <= 0:
		return fmt.Errorf("%w: --max-groups %d: want > 0", errUsage, w.MaxGroups)
	case !(df.redis.sample >= 0 && df.redis.sample <= 1):
		return fmt.Errorf("%w: --telemetry-sample-rate %v: want 0 to 1", errUsage, df.redis.sample)
	case sched.get() != "" && df.hasRedis():
		return fmt.Errorf("%w: --scheduler and --redis: telemetry goes to one of them", errUsage)
	}
	w.PoP = strings.ToUpper(w.PoP)
	w.Apps = []worker.App{{Name: *app, Deploy: *deploy, DB: *db, Queries: *n}}
	// The worker samples its requests itself: --telemetry-sample-rate is the fraction it also sends one by one.
	if w.SampleRate = df.redis.sample; w.SampleRate == 0 {
		w.SampleRate = -1 // the worker's "none"
	}
	cfg.Logger = log.With("pop", w.PoP)
	if u := sched.get(); u != "" {
		f := fleetProbeFlags{ca: ca}
		client, err := f.client()
		if err != nil {
			return err
		}
		w.Report = worker.PostTelemetry(client, strings.TrimSuffix(u, "/")+"/v1/telemetry", token.get())
	}
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
