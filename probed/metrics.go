package probed

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the daemon's Prometheus series (namespace vantage, subsystem probed); the prober's own
// (vantage_probes_total{kind,outcome}, vantage_probe_duration_seconds{kind}, ...) are registered beside them.
type Metrics struct {
	jobs        *prometheus.CounterVec // outcome: success, failure, expired, abandoned
	reclaimed   prometheus.Counter
	inFlight    prometheus.Gauge
	buffered    prometheus.Gauge
	dropped     prometheus.Counter
	redisErrors *prometheus.CounterVec // op: read, reclaim, store, ack
	heartbeats  *prometheus.CounterVec // outcome
	redisUp     prometheus.Gauge
	// batchResults is vantage_probed_batch_results: results per write (one script call with a StoreQueue).
	batchResults prometheus.Histogram
}

// NewMetrics creates the daemon's metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "jobs_total", Help: "Jobs finished, by outcome (success, failure: probe failed but result stored; expired: read or cut at its deadline; abandoned at shutdown)."}, []string{"outcome"}),
		reclaimed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "jobs_reclaimed_total", Help: "Jobs taken over from daemons that left them unacknowledged."}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "jobs_in_flight", Help: "Probes running now."}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "results_buffered", Help: "Results measured and not yet stored (Redis slow or away)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "results_dropped_total", Help: "Results dropped because the buffer was full; their jobs are re-run."}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "redis_errors_total", Help: "Failed Redis operations by operation."}, []string{"op"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "heartbeats_total", Help: "Heartbeats by outcome."}, []string{"outcome"}),
		redisUp: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "redis_up", Help: "1 when the last Redis operation succeeded."}),
		batchResults: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "probed",
			Name: "batch_results", Help: "Results stored per write to Redis (one script call per write).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}}),
	}
	for _, o := range []string{"success", "failure", "expired", "abandoned"} {
		m.jobs.WithLabelValues(o)
	}
	for _, o := range []string{"read", "reclaim", "store", "ack"} {
		m.redisErrors.WithLabelValues(o)
	}
	for _, o := range []string{"success", "failure"} {
		m.heartbeats.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.reclaimed, m.inFlight, m.buffered, m.dropped, m.redisErrors, m.heartbeats, m.redisUp, m.batchResults)
	}
	return m
}
