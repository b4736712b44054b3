// Package proxysync keeps the lookup tables of HAProxy and nginx in sync with a router's decisions and fleet.
package proxysync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/router"
)

// Defaults of Config.
const (
	// DefaultInterval is how often Run checks whether the router's view changed: a decision change reaches the
	// proxies within the router's debounce plus this plus the proxy's apply time.
	DefaultInterval = 100 * time.Millisecond
	// DefaultResync is how often Run recomputes the table even when the router's view did not change: a
	// decision's expiry and the router's staleness change its answers with time alone.
	DefaultResync = time.Second
)

// Reserved table keys. An application is matched on the Host header without its port, so a key with a ':' never
// names one: these carry the settings every proxy config reads from the same table.
const (
	// KeyIngress holds the ingress PoP code (the PoP the proxy runs in and forwards local requests to).
	KeyIngress = ":ingress"
	// KeyBaseline holds router.BaselineThreshold: request ids whose MurmurHash2 is below it run locally.
	KeyBaseline = ":baseline"
)

// Route is one application's entry in a table: where its fetch requests run when not in the baseline.
type Route struct {
	PoP    string        // the execution PoP, never the ingress
	Reason router.Reason // remote or failover
}

// Value is the entry's value in a HAProxy map: "LHR/remote".
func (r Route) Value() string { return r.PoP + "/" + r.Reason.String() }

// Table is what the proxies carry: the applications routed away from the ingress (every other application
// runs at the ingress) and the baseline. Tables are compared whole: a Table is never modified once built.
type Table struct {
	Ingress string
	Routes  map[string]Route // by application (host name)
	// BaselineThreshold and BaselinePercent are router.BaselineThreshold and router.BaselinePercent of the
	// router's baseline fraction.
	BaselineThreshold uint64
	BaselinePercent   string
}

// Equal reports whether t and o carry the same entries.
func (t *Table) Equal(o *Table) bool {
	return t != nil && o != nil && t.Ingress == o.Ingress && t.BaselineThreshold == o.BaselineThreshold &&
		t.BaselinePercent == o.BaselinePercent && maps.Equal(t.Routes, o.Routes)
}

// Apps returns the table's applications, sorted.
func (t *Table) Apps() []string { return slices.Sorted(maps.Keys(t.Routes)) }

// Target is one proxy whose tables a Sync keeps. Apply is called from one goroutine at a time.
type Target interface {
	// Name labels the target's metrics and logs ("haproxy", "nginx").
	Name() string
	// Apply makes the proxy carry t. A target that applied t successfully may skip the work when called again
	// with an equal table; after an error it must redo it.
	Apply(ctx context.Context, t *Table) error
}

// Config configures a Sync.
type Config struct {
	// Ingress is the PoP the proxies run in (required).
	Ingress string
	// PoPs are the PoPs the proxies can forward to (a backend or upstream each); a route to another PoP runs at
	// the ingress, as the Go front does for a PoP without a worker. Empty: every PoP.
	PoPs []string
	// BaselineFraction is the router's (router.Config.BaselineFraction).
	BaselineFraction float64
	// Interval and Resync: see DefaultInterval and DefaultResync (zero: the default).
	Interval, Resync time.Duration
	// Targets are the proxies to keep in sync (at least one).
	Targets []Target
	// Logger receives sync events (default: discard). Registerer, when set, registers the metrics (namespace
	// vantage, subsystem proxysync).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Names wraps a router.Source and remembers the application names of the last complete decision scan: the
// router's snapshot keeps fingerprints, not names, and a proxy's table is keyed by name. Pass it to router.New
// in place of the source.
type Names struct {
	router.Source
	apps atomic.Pointer[[]string]
}

// Record returns src wrapped to record the application names its scans return.
func Record(src router.Source) *Names { return &Names{Source: src} }

// ScanDecisions scans the source, publishing the names it saw when the scan completes without error.
func (n *Names) ScanDecisions(ctx context.Context, fn func(placement.Decision) error) error {
	var apps []string
	err := n.Source.ScanDecisions(ctx, func(d placement.Decision) error {
		apps = append(apps, d.App)
		return fn(d)
	})
	if err == nil {
		slices.Sort(apps)
		apps = slices.Compact(apps)
		n.apps.Store(&apps)
	}
	return err
}

// Apps returns the application names of the last complete scan, sorted (nil before one). Do not modify it.
func (n *Names) Apps() []string {
	if p := n.apps.Load(); p != nil {
		return *p
	}
	return nil
}

// Sync keeps its targets' tables equal to what a router answers.
type Sync struct {
	cfg   Config
	r     *router.Router
	names *Names
	log   *slog.Logger
	pops  map[string]bool // Config.PoPs; nil: every PoP
	m     *metrics
}

// New returns a Sync of r's answers; names must be the Source r reads (Record).
func New(r *router.Router, names *Names, cfg Config) (*Sync, error) {
	if r == nil || names == nil {
		return nil, errors.New("proxysync: nil Router or Names")
	}
	if cfg.Ingress == "" {
		return nil, errors.New("proxysync: no ingress PoP")
	}
	if len(cfg.Targets) == 0 {
		return nil, errors.New("proxysync: no target (HAProxy or nginx)")
	}
	if !(cfg.BaselineFraction >= 0 && cfg.BaselineFraction <= 1) {
		return nil, fmt.Errorf("proxysync: baseline fraction %v: must be in [0, 1]", cfg.BaselineFraction)
	}
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.Resync = cmp.Or(cfg.Resync, DefaultResync)
	s := &Sync{cfg: cfg, r: r, names: names, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(cfg.PoPs) > 0 {
		s.pops = map[string]bool{}
		for _, p := range cfg.PoPs {
			s.pops[p] = true
		}
		s.pops[cfg.Ingress] = true
	}
	var err error
	if s.m, err = newMetrics(cfg.Targets, cfg.Registerer); err != nil {
		return nil, err
	}
	return s, nil
}

// Table returns the table of the router's current answers. Applications whose names no proxy config can
// match (see validApp) are left out and counted.
func (s *Sync) Table() (*Table, int) {
	t := &Table{Ingress: s.cfg.Ingress, Routes: map[string]Route{},
		BaselineThreshold: router.BaselineThreshold(s.cfg.BaselineFraction),
		BaselinePercent:   router.BaselinePercent(s.cfg.BaselineFraction)}
	skipped := 0
	for _, app := range s.names.Apps() {
		res := s.r.Place(app, s.cfg.Ingress)
		if !res.Routed || (s.pops != nil && !s.pops[res.ExecPoP]) {
			continue
		}
		if !validApp(app) {
			skipped++
			continue
		}
		t.Routes[app] = Route{PoP: res.ExecPoP, Reason: res.Reason}
	}
	return t, skipped
}

// validApp reports whether app can be a table key: what the proxies match, a lower-case host name without a
// port (letters, digits, '.', '-', '_'), which also keeps the map files' syntax safe. The Go front, reading
// the Host header the same way, cannot match other names either.
func validApp(app string) bool {
	if app == "" || len(app) > 253 {
		return false
	}
	for i := 0; i < len(app); i++ {
		c := app[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Run keeps the targets in sync until ctx is done, from the router's first snapshot on (the router must be
// running). It returns nil when ctx is done, once every target's goroutine has stopped.
//
// Each target applies tables on its own goroutine (follow): a proxy that is slow to apply (an nginx reload
// waits up to its ReloadTimeout for new workers) or does not answer delays only its own table, not the
// other proxies'.
func (s *Sync) Run(ctx context.Context) error {
	offers := make([]chan *Table, len(s.cfg.Targets))
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, tg := range s.cfg.Targets {
		offers[i] = make(chan *Table, 1)
		wg.Go(func() { s.follow(ctx, tg, offers[i]) })
	}
	tk := time.NewTicker(s.cfg.Interval)
	defer tk.Stop()
	var (
		gen     uint64
		lastRun time.Time
	)
	for {
		if s.r.Ready() {
			if g := s.r.Generation(); g != gen || time.Since(lastRun) >= s.cfg.Resync {
				gen, lastRun = g, time.Now()
				t, skipped := s.Table()
				s.m.skipped.Set(float64(skipped))
				for _, ch := range offers {
					// The newest table replaces one its target has not taken yet.
					select {
					case <-ch:
					default:
					}
					ch <- t
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}

// follow applies each table offered to tg that differs from what tg carries, until ctx is done. After a
// failure the next offer (a change, or the resync at the latest) is applied whatever it holds.
func (s *Sync) follow(ctx context.Context, tg Target, offers <-chan *Table) {
	var applied *Table // the table tg carries; nil: unknown
	failing := false
	for {
		var t *Table
		select {
		case <-ctx.Done():
			return
		case t = <-offers:
		}
		if t.Equal(applied) {
			continue
		}
		applied = nil
		if err := s.apply(ctx, tg, t); err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				s.log.Warn("proxysync: applying the table failed; retrying", "proxy", tg.Name(), "err", err)
			}
			failing = true
			continue
		}
		if failing {
			s.log.Info("proxysync: applying the table succeeded again", "proxy", tg.Name())
		}
		applied, failing = t, false
	}
}

// applyTimeout bounds one Apply: a proxy that does not answer is tried again, with the newest table.
const applyTimeout = 30 * time.Second

// apply applies t to tg, counting and logging it.
func (s *Sync) apply(ctx context.Context, tg Target, t *Table) error {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	start := time.Now()
	err := tg.Apply(ctx, t)
	tm := s.m.target[tg.Name()]
	if err != nil {
		tm.syncs.WithLabelValues("error").Inc()
		return fmt.Errorf("proxysync: %s: %w", tg.Name(), err)
	}
	tm.syncs.WithLabelValues("success").Inc()
	tm.entries.Set(float64(len(t.Routes)))
	tm.last.SetToCurrentTime()
	s.log.Debug("proxysync: table applied", "proxy", tg.Name(), "routes", len(t.Routes), "took", time.Since(start).Round(time.Microsecond))
	return nil
}

// metrics are the Sync's series; per target, labelled by the target's name.
type metrics struct {
	skipped prometheus.Gauge
	target  map[string]*targetMetrics
}

type targetMetrics struct {
	syncs   *prometheus.CounterVec
	entries prometheus.Gauge
	last    prometheus.Gauge
}

func newMetrics(targets []Target, reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "vantage", "proxysync"
	syncs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "syncs_total",
		Help: "Table applications to a proxy that changed it, by proxy and result (success, error)."}, []string{"proxy", "result"})
	entries := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "entries",
		Help: "Applications routed away from the ingress in the table a proxy last applied."}, []string{"proxy"})
	last := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_sync_timestamp_seconds",
		Help: "Unix time of the last successful table application to a proxy (0: none)."}, []string{"proxy"})
	m := &metrics{target: map[string]*targetMetrics{},
		skipped: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "skipped_apps",
			Help: "Routed applications left out of the last table: names no proxy can match (not a lower-case host name)."})}
	for _, tg := range targets {
		n := tg.Name()
		if _, dup := m.target[n]; dup {
			return nil, fmt.Errorf("proxysync: two targets named %q", n)
		}
		tm := &targetMetrics{syncs: syncs.MustCurryWith(prometheus.Labels{"proxy": n})}
		tm.syncs.WithLabelValues("success")
		tm.syncs.WithLabelValues("error")
		tm.entries, tm.last = entries.WithLabelValues(n), last.WithLabelValues(n)
		m.target[n] = tm
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{syncs, entries, last, m.skipped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("proxysync: registering metrics: %w", err)
			}
		}
	}
	return m, nil
}
