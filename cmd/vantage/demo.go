package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
)

func init() {
	register(command{name: "demo", summary: "run everything on an emulated WAN and show where applications are placed (root)", run: runDemo})
}

// demoEUID is the effective user id the demo checks; a test seam.
var demoEUID = os.Geteuid

// runDemo is `vantage demo`: the README's main job.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "", stderr)
	df := addDaemonFlags(fs, daemonFlagOptions{Redis: redisOptional, LogLevel: "warn"})
	var (
		listen   = fs.String("listen", demo.DefaultListen, "scheduler API, status page and /metrics address")
		routerL  = fs.String("router-listen", demo.DefaultRouterListen, "router /metrics, /healthz and /readyz address")
		recheck  = fs.Duration("recheck", scheduler.DefaultRecheckInterval, "recheck interval of every target")
		meshIvl  = fs.Duration("mesh-interval", scheduler.DefaultMeshInterval, "how often every PoP measures every other (the status page's heat map fills over one)")
		queries  = fs.Int("queries", 5, "sequential database queries per user request")
		requests = fs.Int("requests", demo.DefaultRequests, "user requests timed with and without placement")
		once     = fs.Bool("once", false, "exit after the first full report")
		duration = fs.Duration("duration", 0, "exit after this long (0: run until Ctrl-C)")
		timeout  = fs.Duration("decide-timeout", demo.DefaultDecideTimeout, "give up when the fleet or a decision takes longer")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: demo takes no arguments, got %q", errUsage, fs.Args())
	}
	if *queries < 1 || *queries > 100 {
		return fmt.Errorf("%w: demo: --queries %d: want 1 to 100", errUsage, *queries)
	}
	if *requests < 1 {
		return fmt.Errorf("%w: demo: --requests %d: want at least 1", errUsage, *requests)
	}
	if err := df.check(); err != nil {
		return err
	}
	if err := demo.CheckRoot(demoEUID()); err != nil {
		return err
	}
	log, stop, err := df.start(ctx, stderr)
	if err != nil {
		return err
	}
	defer stop()
	storage.SetClientLogger(log)
	cfg := demo.Config{Listen: *listen, RouterListen: *routerL, Recheck: *recheck, MeshInterval: *meshIvl, Queries: *queries,
		Requests: *requests, DecideTimeout: *timeout, Once: *once, Logger: log}
	if df.hasRedis() { // else an embedded Redis
		o, err := df.redisOptions(log)
		if err != nil {
			return err
		}
		cfg.Redis = o.Addrs
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	return demo.Run(ctx, cfg, stdout)
}
