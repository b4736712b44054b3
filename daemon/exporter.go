package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/vantage-edge/vantage/exporter"
	"github.com/vantage-edge/vantage/prober"
)

// DefaultExporterListen is blackbox_exporter's default address, on loopback: /probe sends probes on request.
const DefaultExporterListen = "127.0.0.1:9115"

// ExporterConfig configures `vantage exporter`, a drop-in for blackbox_exporter. Start from
// DefaultExporterConfig.
type ExporterConfig struct {
	// File is the blackbox_exporter configuration file (required).
	File string
	// Prober is the base of every module's prober: the deny policy's lifts (Allow), OwnPrefixes, Sources.
	Prober prober.Config
	// Listen is the address of /probe, /metrics, /healthz and /readyz; Listener, when set, is used instead.
	Listen   string
	Listener net.Listener
	TLS      TLSFiles
	Logger   *slog.Logger
}

// DefaultExporterConfig returns the defaults of `vantage exporter`.
func DefaultExporterConfig() ExporterConfig {
	return ExporterConfig{Prober: prober.DefaultConfig(), Listen: DefaultExporterListen}
}

// Exporter serves blackbox_exporter's /probe with Vantage's prober.
type Exporter struct {
	x *exporter.Exporter
	g group
}

// NewExporter loads cfg.File and binds the listener. A file that does not parse is an error; a module the
// exporter cannot run is logged and answered with a 400.
func NewExporter(cfg ExporterConfig) (*Exporter, error) {
	if err := cfg.TLS.validate("exporter"); err != nil {
		return nil, err
	}
	log := logger(cfg.Logger)
	if cfg.File == "" {
		return nil, fmt.Errorf("exporter: --config is required (a blackbox_exporter configuration file)")
	}
	f, err := exporter.Load(cfg.File)
	if err != nil {
		return nil, err
	}
	g, err := newGroup("exporter", cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	cfg.Prober.Logger = log
	x, err := exporter.New(exporter.Config{File: f, Prober: cfg.Prober, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := listen(cfg.Listener, cfg.Listen, "exporter: --listen")
	if err != nil {
		x.Close()
		return nil, err
	}
	if ln == nil {
		x.Close()
		return nil, fmt.Errorf("exporter: --listen is required")
	}
	reg := newRegistry()
	reg.MustRegister(x.Collector())
	mux := adminMux(reg, nil)
	mux.Handle("GET /probe", x)
	e := &Exporter{x: x, g: g}
	e.g.serve("exporter", ln, mux)
	return e, nil
}

// Addr returns the address /probe is served on.
func (e *Exporter) Addr() string { return addrOf(&e.g) }

// Run serves until ctx is done, then closes the probers.
func (e *Exporter) Run(ctx context.Context) error {
	defer e.x.Close()
	e.g.log.Info("exporter: serving /probe", "listen", e.Addr())
	return e.g.run(ctx)
}
