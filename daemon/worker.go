package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/storage"
)

// DefaultWorkerListen is the demo worker host's HTTP address.
const DefaultWorkerListen = "127.0.0.1:9001"

// WorkerConfig configures a demo worker host. Start from DefaultWorkerConfig.
type WorkerConfig struct {
	// Worker configures the applications it runs; Worker.PoP is required. Worker.Report defaults to the
	// store's telemetry ingest (AddTelemetryBatch: the worker's aggregated windows and sampled records) when a
	// store is given; worker.PostTelemetry sends them through a scheduler's API instead.
	Worker worker.Config
	// Listen is the worker's HTTP address (Listener, when set, is used instead); MetricsListen the address of
	// /metrics, /healthz and /readyz (empty: none).
	Listen        string
	Listener      net.Listener
	MetricsListen string
	// TLS serves the worker and its metrics over TLS (default: plain HTTP); the demo database stays plain.
	TLS TLSFiles
	// ServeDB also serves the demo database on this address (DBListener, when set, instead); an application
	// with no DB uses it.
	ServeDB    string
	DBListener net.Listener
	Logger     *slog.Logger
}

// DefaultWorkerConfig returns the defaults of `vantage worker`.
func DefaultWorkerConfig() WorkerConfig { return WorkerConfig{Listen: DefaultWorkerListen} }

// Validate checks what NewWorker cannot default.
func (c WorkerConfig) Validate() error {
	if c.Worker.PoP == "" {
		return errors.New("worker: --pop is required (the PoP of this worker host)")
	}
	if c.Listen == "" && c.Listener == nil {
		return errors.New("worker: an address is required (--listen)")
	}
	return c.TLS.validate("worker")
}

// Worker is a demo worker host: applications making sequential database round trips, reporting telemetry.
type Worker struct {
	w    *worker.Worker
	ln   net.Listener
	mln  net.Listener // nil: no metrics endpoint
	db   net.Listener
	g    group
	desc string
}

// NewWorker assembles a worker host; st (may be nil: no telemetry) receives its telemetry.
func NewWorker(cfg WorkerConfig, st *storage.Store) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logger(cfg.Logger)
	g, err := newGroup("worker", cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	db, err := listen(cfg.DBListener, cfg.ServeDB, "worker: --serve-db")
	if err != nil {
		return nil, err
	}
	for i := range cfg.Worker.Apps {
		if cfg.Worker.Apps[i].DB == "" && db != nil {
			cfg.Worker.Apps[i].DB = db.Addr().String()
		}
	}
	if cfg.Worker.Report == nil && st != nil {
		cfg.Worker.Report = st.AddTelemetryBatch
	}
	reg := newRegistry()
	cfg.Worker.Logger, cfg.Worker.Registerer = log, reg
	w, err := worker.New(cfg.Worker)
	if err != nil {
		closeAll(db)
		return nil, err
	}
	ln, err := listen(cfg.Listener, cfg.Listen, "worker: --listen")
	if err != nil {
		closeAll(db)
		return nil, err
	}
	mln, err := listen(nil, cfg.MetricsListen, "worker: --metrics-listen")
	if err != nil {
		closeAll(db, ln)
		return nil, err
	}
	k := &Worker{w: w, ln: ln, mln: mln, db: db, g: g}
	k.g.serve("worker", ln, w)
	k.g.serve("worker metrics", mln, adminMux(reg, nil))
	k.desc = fmt.Sprintf("worker %s on %s", cfg.Worker.PoP, ln.Addr())
	return k, nil
}

// Addr returns the worker's HTTP address; DBAddr the demo database's ("" when not served).
func (k *Worker) Addr() string { return k.ln.Addr().String() }

// MetricsAddr returns the address of /metrics, /healthz and /readyz, or "".
func (k *Worker) MetricsAddr() string {
	if k.mln == nil {
		return ""
	}
	return k.mln.Addr().String()
}

// DBAddr returns the address of the demo database it serves, or "".
func (k *Worker) DBAddr() string {
	if k.db == nil {
		return ""
	}
	return k.db.Addr().String()
}

// Run serves until ctx is done; the last telemetry batch is sent before it returns.
func (k *Worker) Run(ctx context.Context) error {
	if k.db != nil {
		k.g.loop(func(ctx context.Context) {
			if err := worker.ServeDB(ctx, k.db); err != nil {
				k.g.log.Error("worker: database server stopped", "err", err)
			}
		})
	}
	k.g.loop(func(ctx context.Context) { k.w.Run(ctx) })
	k.g.log.Info("worker: running", "worker", k.desc)
	return k.g.run(ctx)
}
