package prober

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Engine's Prometheus metrics, named like blackbox_exporter's under the namespace "vantage":
//
//	vantage_probe_success{kind}                  1 if the kind's last probe succeeded, else 0
//	vantage_probe_duration_seconds{kind}         histogram of whole-probe durations
//	vantage_probe_rtt_seconds{kind}              histogram of every RTT sample
//	vantage_probe_http_duration_seconds{phase}   histogram of HTTP phases (resolve, connect, tls, processing, transfer)
//	vantage_probes_total{kind,outcome}           probes by kind and outcome ("success" or a Class)
//	vantage_probe_tcp_connects_total{socket}     TCP connect() calls on a "new" socket or one "reused" from an earlier probe
//
// Labels are bounded: kinds, phases and classes are fixed sets. Every series starts at 0. Metrics is a
// prometheus.Collector: register it with a registry of your own.
type Metrics struct {
	success  *prometheus.GaugeVec
	duration *prometheus.HistogramVec
	rtt      *prometheus.HistogramVec
	phases   *prometheus.HistogramVec
	total    *prometheus.CounterVec
	connects *prometheus.CounterVec

	tcpConnects struct{ created, reused prometheus.Counter } // connects' two series, resolved once
}

// rttBuckets span loopback (50 µs) to the far side of the planet with retransmissions (4 s).
var rttBuckets = prometheus.ExponentialBucketsRange(0.00005, 4, 20)

func newMetrics() *Metrics {
	m := &Metrics{
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "probe",
			Name: "success", Help: "Whether the last probe of this kind succeeded (1) or not (0)."}, []string{"kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "probe",
			Name: "duration_seconds", Help: "Duration of whole probes, resolution and rate-limit waits included.",
			Buckets: rttBuckets}, []string{"kind"}),
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "probe",
			Name: "rtt_seconds", Help: "Round-trip time of every answered probe sample.",
			Buckets: rttBuckets}, []string{"kind"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "probe",
			Name: "http_duration_seconds", Help: "Duration of the phases of the connection-opening HTTP HEAD.",
			Buckets: rttBuckets}, []string{"phase"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Name: "probes_total",
			Help: "Probes run, by kind and outcome (success or the error class)."}, []string{"kind", "outcome"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "probe",
			Name: "tcp_connects_total", Help: "TCP connect() calls of TCP probes, on a new socket or on one reused from an earlier probe."},
			[]string{"socket"}),
	}
	m.tcpConnects.created = m.connects.WithLabelValues("new")
	m.tcpConnects.reused = m.connects.WithLabelValues("reused")
	for k := range Registry {
		m.success.WithLabelValues(string(k))
		m.duration.WithLabelValues(string(k))
		m.rtt.WithLabelValues(string(k))
		m.total.WithLabelValues(string(k), "success")
		for _, c := range Classes {
			m.total.WithLabelValues(string(k), string(c))
		}
	}
	for _, ph := range []string{"resolve", "connect", "tls", "processing", "transfer"} {
		m.phases.WithLabelValues(ph)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.success.Describe(ch)
	m.duration.Describe(ch)
	m.rtt.Describe(ch)
	m.phases.Describe(ch)
	m.total.Describe(ch)
	m.connects.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.success.Collect(ch)
	m.duration.Collect(ch)
	m.rtt.Collect(ch)
	m.phases.Collect(ch)
	m.total.Collect(ch)
	m.connects.Collect(ch)
}

// observe records one finished probe. Unknown kinds are counted under outcome only if registered, so label
// values stay bounded.
func (m *Metrics) observe(r *Result) {
	if _, ok := Registry[r.Kind]; !ok {
		return
	}
	k := string(r.Kind)
	ok := 0.0
	outcome := string(r.Class)
	if r.Success {
		ok, outcome = 1, "success"
	}
	m.success.WithLabelValues(k).Set(ok)
	m.total.WithLabelValues(k, outcome).Inc()
	m.duration.WithLabelValues(k).Observe(secs(r.Duration))
	h := m.rtt.WithLabelValues(k)
	for _, s := range r.Samples {
		h.Observe(secs(s))
	}
	if r.HTTP != nil && r.Received > 0 {
		ph := r.HTTP.Phases
		m.phases.WithLabelValues("resolve").Observe(secs(ph.Resolve))
		m.phases.WithLabelValues("connect").Observe(secs(ph.Connect))
		m.phases.WithLabelValues("tls").Observe(secs(ph.TLS))
		m.phases.WithLabelValues("processing").Observe(secs(ph.Processing))
		m.phases.WithLabelValues("transfer").Observe(secs(ph.Transfer))
	}
}

func secs(d Duration) float64 { return float64(d) / 1e9 }

var _ prometheus.Collector = (*Metrics)(nil)
