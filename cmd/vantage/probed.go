package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
)

func init() {
	register(command{name: "probed", summary: "run the probe daemon of one PoP (jobs from Redis, results to Redis)", run: runProbed})
}

func runProbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probed", "", stderr)
	df := addDaemonFlags(fs, daemonFlagOptions{Redis: redisRequired})
	cfg := daemon.DefaultProbedConfig()
	cfg.Version = version
	d, p := &cfg.Daemon, &cfg.Prober
	fs.StringVar(&d.PoP, "pop", "", "IATA code of this daemon's PoP (required)")
	fs.StringVar(&d.DaemonID, "id", "", "daemon id, the consumer name in the PoP's group (default hostname-pid)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /metrics, /healthz and /readyz")
	fs.IntVar(&p.GlobalRate, "rate", 0, "probes per second for the whole daemon (0: unlimited)")
	fs.IntVar(&p.TargetRate, "target-rate", 0, "probes per second per target address (0: unlimited)")
	fs.DurationVar(&d.Heartbeat, "heartbeat", probed.DefaultHeartbeat, "heartbeat interval")
	fs.IntVar(&d.Concurrency, "concurrency", probed.DefaultConcurrency, "probes in flight at once")
	fs.DurationVar(&d.ReclaimIdle, "reclaim-idle", probed.DefaultReclaimIdle, "take over jobs other daemons left unacknowledged this long")
	fs.IntVar(&d.BufferSize, "buffer", probed.DefaultBufferSize, "results kept while Redis is unreachable")
	fs.DurationVar(&d.DrainTimeout, "drain-timeout", probed.DefaultDrainTimeout, "on SIGTERM, how long in-flight probes may finish")
	fs.DurationVar(&p.Timeout, "timeout", p.Timeout, "per-sample probe timeout")
	idle := fs.Int("tcp-idle-sockets", p.IdleSockets, "disconnected TCP probe sockets kept per source address for reuse (0: none)")
	fs.BoolVar(&cfg.AllDetail, "result-detail", false, "store the prober's full result with every result (default: ad-hoc probes only)")
	var sources, allow listFlag
	fs.Var(&sources, "source", "source address(es) probes leave from, comma-separated (default: the kernel's choice)")
	fs.Var(&allow, "allow", "CIDR lifting the deny policy (repeatable), e.g. 198.18.0.0/15 for the emulated WAN")
	log, stop, err := parseDaemon(ctx, fs, df, args, stderr)
	if err != nil {
		return err
	}
	defer stop()
	for _, s := range sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%w: --source %q: %v", errUsage, s, err)
		}
		p.Sources = append(p.Sources, a)
	}
	if p.Allow, err = placement.ParsePrefixes("--allow", allow); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	switch {
	case *idle < 0:
		return fmt.Errorf("%w: --tcp-idle-sockets %d: want 0 or more", errUsage, *idle)
	case *idle == 0:
		p.IdleSockets = -1 // the prober's "none"
	default:
		p.IdleSockets = *idle
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	cfg.Logger = log
	st, err := openStore(ctx, df, log)
	if err != nil {
		return err
	}
	defer st.Close()
	k, err := daemon.NewProbed(cfg, st)
	if err != nil {
		return err
	}
	return k.Run(ctx)
}
