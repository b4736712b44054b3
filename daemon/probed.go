package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/exporter"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/prober/simulate"
	"github.com/vantage-edge/vantage/storage"
)

// DefaultProbedListen serves a probe daemon's /metrics, /healthz and /readyz.
const DefaultProbedListen = "127.0.0.1:9101"

// ProbedConfig configures one PoP's probe daemon. Start from DefaultProbedConfig.
type ProbedConfig struct {
	// Prober configures the probes: source addresses, the deny policy's --allow lifts, rates, timeouts, and the
	// seams (Enter, Resolver) that put a daemon in a PoP's network namespace on the emulated WAN.
	Prober prober.Config
	// Daemon configures the job loop; Daemon.PoP is required.
	Daemon probed.Config
	// Listen is the address of /metrics, /healthz and /readyz (empty and no Listener: none); Listener, when
	// set, is used instead.
	Listen   string
	Listener net.Listener
	// TLS serves the endpoints over TLS (default: plain HTTP).
	TLS TLSFiles
	// ProbeModules is a blackbox_exporter configuration file whose modules the daemon's /probe answers, so that
	// Prometheus can scrape any PoP as a blackbox_exporter; empty: exporter.DefaultFile's modules.
	ProbeModules string
	// MeshListen is where the daemon answers the other PoPs' mesh probes (TCP, accept and close; see
	// probed.ServeMesh), e.g. ":9102"; empty: it does not, and the scheduler's mesh leaves this PoP out. The
	// socket is opened inside Prober.Enter, as the probes' sockets are (a PoP's namespace on the emulated WAN).
	MeshListen string
	// MeshAdvertise is the address the other PoPs dial for the mesh, advertised in the heartbeats; default
	// MeshListen when it names a host, else the first of Prober.Sources with MeshListen's port.
	MeshAdvertise string
	// AllDetail stores the prober's full result with every result (default: ad-hoc probes only).
	AllDetail bool
	// Version is advertised in heartbeats.
	Version string
	Logger  *slog.Logger
	// Simulate, when set, makes this a SIMULATION for scale runs: jobs are answered from the latency model
	// (package prober/simulate), no probe touches the network, results are marked simulated, /probe and the
	// mesh are off, and one process may stand in for many PoPs (SimulateConfig.PoPs). Nil: real probes.
	Simulate *SimulateConfig
}

// SimulateConfig configures a simulated probe daemon (ProbedConfig.Simulate); see simulate.Config for the
// fields' defaults.
type SimulateConfig struct {
	// PoPs are the catalogue PoPs this process stands in for, one job loop each on the one Redis client;
	// empty: Daemon.PoP alone.
	PoPs []string
	// Rate is the probes per second each simulated PoP answers at most (0: unlimited).
	Rate int
	// JitterMs is the jitter added to each sample (0: simulate.DefaultJitterMs; negative: none).
	JitterMs float64
	// FailFraction of the probes are answered as timeouts.
	FailFraction float64
	// Seed seeds the jitter and the failures (0: a fixed default).
	Seed uint64
}

// pops returns the PoPs a simulated daemon stands in for.
func (c SimulateConfig) pops(dflt string) []string {
	if len(c.PoPs) == 0 {
		return []string{dflt}
	}
	return c.PoPs
}

// DefaultProbedConfig returns the defaults of `vantage probed`.
func DefaultProbedConfig() ProbedConfig {
	return ProbedConfig{Prober: prober.DefaultConfig(), Listen: DefaultProbedListen}
}

// Validate checks what NewProbed cannot default.
func (c ProbedConfig) Validate() error {
	if c.Daemon.PoP == "" && (c.Simulate == nil || len(c.Simulate.PoPs) == 0) {
		return errors.New("probed: --pop is required (the PoP of this daemon)")
	}
	if c.Simulate != nil {
		switch {
		case c.MeshListen != "":
			return errors.New("probed: --mesh-listen: a simulated daemon takes no part in the mesh (--simulate)")
		case c.ProbeModules != "":
			return errors.New("probed: --probe-modules: a simulated daemon serves no /probe (--simulate)")
		}
		if _, err := simulate.LookupPoPs(c.Simulate.pops(c.Daemon.PoP)); err != nil {
			return fmt.Errorf("probed: --simulate: %w", err)
		}
	}
	return c.TLS.validate("probed")
}

// Probed is one PoP's probe daemon: its prober, job loop and HTTP endpoints; simulated (ProbedConfig.Simulate),
// one job loop per simulated PoP and no prober.
type Probed struct {
	cfg ProbedConfig
	eng *prober.Engine     // nil when simulated
	x   *exporter.Exporter // nil when simulated
	ds  []*probed.Daemon   // one per PoP: the daemon's own, or every simulated PoP's
	g   group
	// mesh answers the mesh probes (nil: none), dialled by the other PoPs at meshAddr.
	mesh     net.Listener
	meshAddr string
}

// listenMesh opens cfg.MeshListen inside cfg.Prober.Enter and returns it with the address to advertise; no
// MeshListen: none.
func listenMesh(cfg ProbedConfig) (net.Listener, string, error) {
	if cfg.MeshListen == "" {
		return nil, "", nil
	}
	host, port, err := net.SplitHostPort(cfg.MeshListen)
	if err != nil {
		return nil, "", fmt.Errorf("probed: --mesh-listen %q: %w", cfg.MeshListen, err)
	}
	enter := cfg.Prober.Enter
	if enter == nil {
		enter = func(open func() error) error { return open() }
	}
	var ln net.Listener
	if err := enter(func() (err error) { ln, err = net.Listen("tcp", cfg.MeshListen); return err }); err != nil {
		return nil, "", fmt.Errorf("probed: --mesh-listen %s: %w", cfg.MeshListen, err)
	}
	if port == "0" {
		_, port, _ = net.SplitHostPort(ln.Addr().String())
	}
	adv := cfg.MeshAdvertise
	switch ip := net.ParseIP(host); {
	case adv != "":
	case host != "" && (ip == nil || !ip.IsUnspecified()):
		adv = net.JoinHostPort(host, port)
	case len(cfg.Prober.Sources) > 0:
		adv = net.JoinHostPort(cfg.Prober.Sources[0].String(), port)
	default:
		ln.Close()
		return nil, "", fmt.Errorf("probed: --mesh-listen %s names no host and there is no --source: set --mesh-advertise to the address the other PoPs dial", cfg.MeshListen)
	}
	return ln, adv, nil
}

// NewProbed assembles the probe daemon of cfg.Daemon.PoP on st.
func NewProbed(cfg ProbedConfig, st *storage.Store) (*Probed, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logger(cfg.Logger)
	cfg.Prober.Logger, cfg.Daemon.Logger = log, log
	g, err := newGroup("probed", cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	if cfg.Simulate != nil {
		return newSimulated(cfg, st, g)
	}
	modules := exporter.DefaultFile()
	if cfg.ProbeModules != "" {
		if modules, err = exporter.Load(cfg.ProbeModules); err != nil {
			return nil, fmt.Errorf("probed: --probe-modules: %w", err)
		}
	}
	eng, err := prober.New(cfg.Prober)
	if err != nil {
		return nil, fmt.Errorf("probed: %w", err)
	}
	x, err := exporter.New(exporter.Config{File: modules, Prober: cfg.Prober, Logger: log})
	if err != nil {
		eng.Close()
		return nil, fmt.Errorf("probed: %w", err)
	}
	ln, err := listen(cfg.Listener, cfg.Listen, "probed: --listen")
	if err != nil {
		eng.Close()
		x.Close()
		return nil, err
	}
	reg := newRegistry()
	reg.MustRegister(eng.Collector(), x.Collector())
	mln, meshAddr, err := listenMesh(cfg)
	if err != nil {
		eng.Close()
		x.Close()
		closeAll(ln)
		return nil, err
	}
	q := &probed.StoreQueue{DB: st, PoP: cfg.Daemon.PoP, Version: cfg.Version, SourceIPs: cfg.Prober.Sources, AllDetail: cfg.AllDetail,
		MeshAddr: meshAddr}
	if ln != nil {
		q.Addr = ln.Addr().String()
	}
	d, err := probed.New(cfg.Daemon, q, eng, reg)
	if err != nil {
		eng.Close()
		x.Close()
		closeAll(ln, mln)
		return nil, err
	}
	q.DaemonID = d.ID()
	p := &Probed{cfg: cfg, eng: eng, x: x, ds: []*probed.Daemon{d}, g: g, mesh: mln, meshAddr: meshAddr}
	mux := p.adminMux(reg)
	mux.Handle("GET /probe", x) // blackbox_exporter's /probe, with this PoP's prober settings
	p.g.serve("probed", ln, mux)
	return p, nil
}

// adminMux serves /metrics from reg, /healthz, and /readyz while every job loop reaches Redis.
func (p *Probed) adminMux(reg prometheus.Gatherer) *http.ServeMux {
	return adminMux(reg, func() error {
		for _, d := range p.ds {
			if !d.Ready() {
				return errors.New("Redis unreachable")
			}
		}
		return nil
	})
}

// newSimulated assembles a simulated daemon (cfg.Simulate): for each PoP a job loop on st answering from
// simulate.Prober, their metrics on one registry labelled by pop, and the process's vantage_probed_simulated.
func newSimulated(cfg ProbedConfig, st *storage.Store, g group) (*Probed, error) {
	sc := *cfg.Simulate
	pops, err := simulate.LookupPoPs(sc.pops(cfg.Daemon.PoP))
	if err != nil {
		return nil, fmt.Errorf("probed: --simulate: %w", err)
	}
	ln, err := listen(cfg.Listener, cfg.Listen, "probed: --listen")
	if err != nil {
		return nil, err
	}
	reg := newRegistry()
	sm := simulate.NewMetrics(reg)
	p := &Probed{cfg: cfg, g: g}
	for _, pop := range pops {
		sim, err := simulate.New(simulate.Config{From: pop, Rate: sc.Rate, JitterMs: sc.JitterMs, FailFraction: sc.FailFraction,
			Seed: sc.Seed, Metrics: sm})
		if err != nil {
			closeAll(ln)
			return nil, fmt.Errorf("probed: --simulate: %w", err)
		}
		dc := cfg.Daemon
		dc.PoP = pop.Code
		if dc.DaemonID != "" && len(pops) > 1 {
			dc.DaemonID += "-" + strings.ToLower(pop.Code)
		}
		q := &probed.StoreQueue{DB: st, PoP: pop.Code, Version: cfg.Version + "+" + simulate.Marker}
		if ln != nil {
			q.Addr = ln.Addr().String()
		}
		d, err := probed.New(dc, q, sim, prometheus.WrapRegistererWith(prometheus.Labels{"pop": pop.Code}, reg))
		if err != nil {
			closeAll(ln)
			return nil, err
		}
		q.DaemonID = d.ID()
		p.ds = append(p.ds, d)
	}
	p.g.serve("probed", ln, p.adminMux(reg))
	return p, nil
}

// MeshAddr returns the address the daemon advertises for mesh probes, or "" when it answers none.
func (p *Probed) MeshAddr() string { return p.meshAddr }

// ID returns the daemon's consumer name in its PoP's group (simulated: the first PoP's).
func (p *Probed) ID() string { return p.ds[0].ID() }

// Addr returns the address of the daemon's HTTP endpoints, or "" when it has none.
func (p *Probed) Addr() string { return addrOf(&p.g) }

// Run runs the daemon until ctx is done, then drains its in-flight probes (Daemon.DrainTimeout) and closes
// the prober.
func (p *Probed) Run(ctx context.Context) error {
	if p.eng != nil {
		defer p.eng.Close()
		defer p.x.Close()
	}
	for _, d := range p.ds {
		p.g.loop(func(ctx context.Context) { d.Run(ctx) })
	}
	if s := p.cfg.Simulate; s != nil {
		p.g.log.Warn("probed: SIMULATION: jobs are answered from the latency model, not measured on the network; every result is marked simulated",
			"pops", len(p.ds), "rate_per_pop", s.Rate, "jitter_ms", s.JitterMs, "fail_fraction", s.FailFraction, "listen", p.Addr())
		err := p.g.run(ctx)
		p.g.log.Info("probed: simulation stopped", "pops", len(p.ds))
		return err
	}
	if p.mesh != nil {
		p.g.loop(func(ctx context.Context) { probed.ServeMesh(ctx, p.mesh, p.g.log) })
		p.g.log.Info("probed: answering mesh probes", "listen", p.mesh.Addr().String(), "advertised", p.meshAddr)
	}
	p.g.log.Info("probed: running", "pop", p.cfg.Daemon.PoP, "daemon", p.ID(), "listen", p.Addr(), "sources", p.cfg.Prober.Sources)
	err := p.g.run(ctx)
	p.g.log.Info("probed: stopped", "pop", p.cfg.Daemon.PoP)
	return err
}

// addrOf returns the address of g's first endpoint, or "". It reads only the endpoints, which are set before
// Run: safe while Run runs.
func addrOf(g *group) string {
	if len(g.endpoints) == 0 {
		return ""
	}
	return g.endpoints[0].ln.Addr().String()
}
