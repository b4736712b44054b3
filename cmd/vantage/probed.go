package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober/simulate"
	"github.com/vantage-edge/vantage/storage"
)

func init() {
	register(command{name: "probed", summary: "run the probe daemon of one PoP (jobs from Redis, results to Redis)", run: runProbed})
}

func runProbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probed", "", stderr)
	df := addDaemonFlags(fs, daemonFlagOptions{Redis: redisRequired, TLS: true})
	cfg := daemon.DefaultProbedConfig()
	cfg.Version = version
	pf := addProbedFlags(fs, &cfg)
	log, stop, err := parseDaemon(ctx, fs, df, args, stderr)
	if err != nil {
		return err
	}
	defer stop()
	cfg.TLS = df.tlsFiles()
	if err := pf.complete(&cfg); err != nil {
		return err
	}
	cfg.Logger = log
	if cfg.Simulate != nil {
		// One blocking job read per simulated PoP, and its writes beside it.
		df.redis.poolSize = 2*len(cfg.Simulate.PoPs) + 32
	}
	return runOnStore(ctx, df, log, func(st *storage.Store) (runner, error) { return daemon.NewProbed(cfg, st) })
}

// probedFlags are the probe daemon's flags that are not a config field as they are.
type probedFlags struct {
	idle                *int
	pop                 *string
	sources, allow, own listFlag
	sim                 simulateFlags
}

// simulateFlags are probed's --simulate flags.
type simulateFlags struct {
	on     *bool
	pops   *int
	rate   *int
	jitter *float64
	fail   *float64
	seed   *uint64
}

// addSimulateFlags registers the flags of a simulated daemon on fs.
func addSimulateFlags(fs *flag.FlagSet) simulateFlags {
	return simulateFlags{
		on: fs.Bool("simulate", false, "SIMULATION for scale runs, never for placement: answer jobs from the latency model "+
			"between the PoP and a location hashed from the target, without touching the network; results are marked "+
			"simulated and /metrics shows vantage_probed_simulated 1; --pop may then list many PoPs, one job loop each"),
		pops:   fs.Int("simulate-pops", 0, "with --simulate and no --pop: stand in for the first N PoPs of the catalogue"),
		rate:   fs.Int("simulate-rate", simulateDefaultRate, "with --simulate: probes per second answered per simulated PoP (0: unlimited)"),
		jitter: fs.Float64("simulate-jitter", simulate.DefaultJitterMs, "with --simulate: ms of uniform jitter added to each modelled sample (negative: none)"),
		fail:   fs.Float64("simulate-fail", 0, "with --simulate: fraction of the probes answered as timeouts, 0 to 1"),
		seed:   fs.Uint64("simulate-seed", 0, "with --simulate: seed of the jitter and failures (0: a fixed default)"),
	}
}

// simulateDefaultRate is --simulate-rate's default: a real PoP's daemon probes at a few hundred per second at
// most, and a recheck every 5 minutes of 1,000,000 targets over 300 PoPs asks ~50 per PoP per second.
const simulateDefaultRate = 200

// addProbedFlags registers the probe daemon's flags on fs, defaulting from and writing into cfg.
func addProbedFlags(fs *flag.FlagSet, cfg *daemon.ProbedConfig) *probedFlags {
	f := &probedFlags{}
	d, p := &cfg.Daemon, &cfg.Prober
	f.pop = fs.String("pop", "", "IATA code of this daemon's PoP (required; with --simulate, a comma-separated list)")
	fs.StringVar(&d.DaemonID, "id", "", "daemon id, the consumer name in the PoP's group (default hostname-pid-random)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of /metrics, /healthz and /readyz")
	fs.StringVar(&cfg.MeshListen, "mesh-listen", cfg.MeshListen, "TCP address answering the other PoPs' mesh probes, e.g. :9102 (empty: this PoP takes no part in the mesh that calibrates the scheduler)")
	fs.StringVar(&cfg.MeshAdvertise, "mesh-advertise", cfg.MeshAdvertise, "address the other PoPs dial for the mesh (default: --mesh-listen's host, else the first --source with its port)")
	fs.IntVar(&p.GlobalRate, "rate", 0, "probes per second for the whole daemon (0: unlimited)")
	fs.IntVar(&p.TargetRate, "target-rate", 0, "probes per second per target address (0: unlimited)")
	fs.DurationVar(&d.Heartbeat, "heartbeat", probed.DefaultHeartbeat, "heartbeat interval")
	fs.IntVar(&d.Concurrency, "concurrency", probed.DefaultConcurrency, "probes in flight at once")
	fs.DurationVar(&d.ReclaimIdle, "reclaim-idle", probed.DefaultReclaimIdle, "take over jobs other daemons left unacknowledged this long")
	fs.IntVar(&d.BufferSize, "buffer", probed.DefaultBufferSize, "results kept while Redis is unreachable")
	fs.DurationVar(&d.DrainTimeout, "drain-timeout", probed.DefaultDrainTimeout, "on SIGTERM, how long in-flight probes may finish")
	fs.DurationVar(&d.FlushDelay, "flush-delay", probed.DefaultFlushDelay, "once a result is ready, how long to wait for the probes still running so that their results are written in one call (negative: write each at once)")
	fs.DurationVar(&p.Timeout, "timeout", p.Timeout, "per-sample probe timeout")
	f.idle = fs.Int("tcp-idle-sockets", p.IdleSockets, "disconnected TCP probe sockets kept per source address for reuse (0: none)")
	fs.StringVar(&cfg.ProbeModules, "probe-modules", "", "blackbox_exporter configuration whose modules /probe on --listen answers (default: http_2xx, http_post_2xx, tcp_connect, icmp)")
	fs.BoolVar(&cfg.AllDetail, "result-detail", false, "store the prober's full result with every result (default: ad-hoc probes only)")
	fs.Var(&f.sources, "source", "source address(es) probes leave from, comma-separated (default: the kernel's choice)")
	fs.Var(&f.allow, "allow", "CIDR lifting the deny policy (repeatable), e.g. 198.18.0.0/15 for the emulated WAN")
	fs.Var(&f.own, "own-prefix", "CIDR of the platform's own anycast prefixes (repeatable): refuse to start with a --source inside one; deny targets inside them")
	f.sim = addSimulateFlags(fs)
	return f
}

// complete checks the parsed flags and fills what they name into cfg.
func (f *probedFlags) complete(cfg *daemon.ProbedConfig) error {
	p := &cfg.Prober
	var pops listFlag
	pops.Set(*f.pop)
	if err := f.sim.complete(cfg, pops); err != nil {
		return err
	}
	for _, s := range f.sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%w: --source %q: %v", errUsage, s, err)
		}
		p.Sources = append(p.Sources, a)
	}
	var err error
	if p.Allow, err = placement.ParsePrefixes("--allow", f.allow); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if p.OwnPrefixes, err = placement.ParsePrefixes("--own-prefix", f.own); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	// Refused here, before Redis is dialled, and again by prober.New for any other caller.
	for _, s := range p.Sources {
		for _, o := range p.OwnPrefixes {
			if o.Contains(s.Unmap()) {
				return fmt.Errorf("%w: --source %v is inside --own-prefix %v: replies to it would be routed to the "+
					"nearest PoP announcing the prefix, not to this daemon; probe from a unicast address", errUsage, s, o)
			}
		}
	}
	switch {
	case *f.idle < 0:
		return fmt.Errorf("%w: --tcp-idle-sockets %d: want 0 or more", errUsage, *f.idle)
	case *f.idle == 0:
		p.IdleSockets = -1 // the prober's "none"
	default:
		p.IdleSockets = *f.idle
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// complete fills cfg.Daemon.PoP from the --pop list, and cfg.Simulate from the --simulate flags.
func (f simulateFlags) complete(cfg *daemon.ProbedConfig, pops listFlag) error {
	if !*f.on {
		if len(pops) > 1 {
			return fmt.Errorf("%w: --pop %s: one PoP per daemon (a list only with --simulate)", errUsage, pops.String())
		}
		if *f.pops != 0 {
			return fmt.Errorf("%w: --simulate-pops needs --simulate", errUsage)
		}
		if len(pops) == 1 {
			cfg.Daemon.PoP = pops[0]
		}
		return nil
	}
	switch {
	case *f.pops < 0:
		return fmt.Errorf("%w: --simulate-pops %d: want > 0", errUsage, *f.pops)
	case *f.pops > 0 && len(pops) > 0:
		return fmt.Errorf("%w: --simulate-pops and --pop: give one of them", errUsage)
	case *f.pops > 0:
		all := geo.PoPs()
		if *f.pops > len(all) {
			return fmt.Errorf("%w: --simulate-pops %d: the catalogue has %d PoPs", errUsage, *f.pops, len(all))
		}
		for _, p := range all[:*f.pops] {
			pops = append(pops, p.Code)
		}
	}
	s := &daemon.SimulateConfig{PoPs: pops, Rate: *f.rate, JitterMs: *f.jitter, FailFraction: *f.fail, Seed: *f.seed}
	if s.JitterMs == 0 {
		s.JitterMs = -1 // --simulate-jitter 0 is none; the config's zero is the default
	}
	if len(pops) > 0 {
		cfg.Daemon.PoP = pops[0]
	}
	ps, err := simulate.LookupPoPs(pops)
	switch {
	case err != nil:
		return fmt.Errorf("%w: --pop: %w", errUsage, err)
	case len(ps) == 0:
		return fmt.Errorf("%w: --simulate: --pop or --simulate-pops is required", errUsage)
	}
	sc := simulate.Config{From: ps[0], Rate: s.Rate, FailFraction: s.FailFraction, JitterMs: s.JitterMs}
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("%w: --simulate: %w", errUsage, err)
	}
	cfg.Simulate = s
	return nil
}
