package router

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names: namespace vantage, subsystem router.
const (
	metricsNamespace = "vantage"
	metricsSubsystem = "router"
)

// metrics are the Router's Prometheus series. Every labelled series is initialised at 0.
type metrics struct {
	routes         [NumReasons]stripedCounter // Route's answers by reason, exported by routesCollector
	routesDesc     *prometheus.Desc
	reloads        *prometheus.CounterVec
	fleetRefreshes *prometheus.CounterVec
	reloadSeconds  prometheus.Histogram
	apps           prometheus.Gauge
	skipped        prometheus.Gauge
	bytes          prometheus.GaugeFunc
	age            prometheus.GaugeFunc
	contactAge     prometheus.GaugeFunc
	stale          prometheus.GaugeFunc
}

func newMetrics(r *Router) *metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	m := &metrics{
		routesDesc: prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "routes_total"),
			"Route answers by reason (remote, failover, spread route away; the others run locally; no_worker is "+
				"counted by the HTTP front in addition).", []string{"reason"}, nil),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts(opts("reloads_total",
			"Snapshot reloads from Redis by result (success, error).")), []string{"result"}),
		fleetRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("fleet_refreshes_total",
			"Fleet view refreshes from Redis by result (success, error).")), []string{"result"}),
		reloadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "reload_duration_seconds",
			Help:    "Duration of successful snapshot reloads (scan and build).",
			Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30},
		}),
		apps: prometheus.NewGauge(prometheus.GaugeOpts(opts("snapshot_applications",
			"Applications in the current snapshot."))),
		skipped: prometheus.NewGauge(prometheus.GaugeOpts(opts("snapshot_skipped_decisions",
			"Decisions the last reload could not hold (bad names or PoP codes)."))),
		bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("snapshot_bytes",
			"Memory of the current snapshot's tables in bytes (hot slots, shared profiles, cold fingerprints and rates).")),
			func() float64 {
				if s := r.snapshot(); s != nil {
					return float64(s.bytes())
				}
				return 0
			}),
		age: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("snapshot_age_seconds",
			"Seconds since the current snapshot was loaded (0 before the first).")), func() float64 {
			if s := r.snapshot(); s != nil {
				return r.now().Sub(s.loadedAt).Seconds()
			}
			return 0
		}),
		contactAge: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("redis_contact_age_seconds",
			"Seconds since the last successful reload, a full decision scan (0 before the first).")), func() float64 {
			if ms := r.contactMs.Load(); ms != 0 {
				return r.now().Sub(time.UnixMilli(ms)).Seconds()
			}
			return 0
		}),
		stale: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("stale",
			"1 when Redis has been unreachable for longer than the maximum age and every request runs locally.")),
			func() float64 {
				if r.snapshot() != nil && r.stale() {
					return 1
				}
				return 0
			}),
	}
	for _, res := range []string{"success", "error"} {
		m.reloads.WithLabelValues(res)
		m.fleetRefreshes.WithLabelValues(res)
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{routesCollector{m}, m.reloads, m.fleetRefreshes, m.reloadSeconds, m.apps,
		m.skipped, m.bytes, m.age, m.contactAge, m.stale} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("router: registering metrics: %w", err)
	}
	return nil
}

// counterStripes spreads a counter over cache lines, so that cores counting the same reason do not contend.
const counterStripes = 8

// stripedCounter is a lock-free counter striped over cache lines.
type stripedCounter struct {
	s [counterStripes]struct {
		v atomic.Uint64
		_ [56]byte // one cache line per stripe
	}
}

// inc adds one to the stripe chosen by key's address: concurrent requests hold different strings.
func (c *stripedCounter) inc(key string) {
	c.s[uintptr(unsafe.Pointer(unsafe.StringData(key)))>>4&(counterStripes-1)].v.Add(1)
}

// load returns the sum of the stripes.
func (c *stripedCounter) load() uint64 {
	var n uint64
	for i := range c.s {
		n += c.s[i].v.Load()
	}
	return n
}

// routesCollector exports metrics.routes as vantage_router_routes_total{reason}.
type routesCollector struct{ m *metrics }

func (c routesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.routesDesc }

func (c routesCollector) Collect(ch chan<- prometheus.Metric) {
	for i := range NumReasons {
		ch <- prometheus.MustNewConstMetric(c.m.routesDesc, prometheus.CounterValue, float64(c.m.routes[i].load()), i.String())
	}
}
