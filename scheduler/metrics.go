package scheduler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
)

// Metrics are the scheduler's Prometheus series (namespace vantage, subsystem scheduler).
type Metrics struct {
	checks           *prometheus.CounterVec // outcome: success, failure
	checkDuration    prometheus.Histogram
	decisions        *prometheus.CounterVec // changed: true, false
	jobsEnqueued     prometheus.Counter
	jobsPending      *prometheus.GaugeVec // pop
	results          *prometheus.CounterVec
	leader           prometheus.Gauge
	leaseToken       prometheus.Gauge
	targets          prometheus.Gauge
	adhoc            *prometheus.CounterVec // outcome: accepted, rate_limited, unauthorized, invalid
	apiRequests      *prometheus.CounterVec // route, code
	estimatedDecided prometheus.Counter
	configFiles      *prometheus.GaugeVec // state: ok, skipped
	redisDataLost    prometheus.Counter
	windowed         prometheus.Counter     // PoP RTTs taken from an earlier result of the history window
	explanations     *prometheus.CounterVec // outcome: written, failed
	mesh             *meshMetrics           // registered with the others
	// batchJobs, batchReads and batchDecisions are the sizes of the per-tick Redis calls (batch.go): probes
	// per PoP's job entry, rechecks per read, decisions per write.
	batchJobs, batchReads, batchDecisions prometheus.Histogram
	shardsLed                             prometheus.Gauge
	shardHandovers                        *prometheus.CounterVec // event: acquired, released, lost
}

// NewMetrics creates the scheduler's metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "rechecks_total", Help: "Rechecks of placement targets by outcome."}, []string{"outcome"}),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "recheck_duration_seconds", Help: "Time from enqueueing a recheck's jobs to writing its decision.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "decisions_written_total", Help: "Decisions written, by whether they changed."}, []string{"changed"}),
		jobsEnqueued: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "jobs_enqueued_total", Help: "Probe jobs sent to PoP job streams."}),
		jobsPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "jobs_pending", Help: "Jobs delivered to a PoP's daemons and not yet acknowledged."}, []string{"pop"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "results_total", Help: "Results of this scheduler's recheck jobs, by probe kind and outcome (success or the prober's failure class)."}, []string{"kind", "outcome"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "leader", Help: "1 while this scheduler holds the lease."}),
		leaseToken: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "lease_token", Help: "Fencing token of the lease this scheduler holds, 0 when it does not."}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "targets", Help: "Placement targets held."}),
		adhoc: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "adhoc_probes_total", Help: "Ad-hoc probe requests by outcome."}, []string{"outcome"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "api_requests_total", Help: "HTTP API requests by route and status code."}, []string{"route", "code"}),
		estimatedDecided: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "estimated_decisions_total", Help: "Decisions taken from the latency model (no endpoint answered)."}),
		configFiles: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "config_files", Help: "Files of the config dirs at their latest load, by state (ok, or skipped: see the log and the status page)."}, []string{"state"}),
		redisDataLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "redis_data_lost_total", Help: "Times Redis was found emptied or replaced (its epoch changed): every target was rechecked at once."}),
		windowed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "windowed_rtts_total", Help: "PoP RTTs a decision took from an earlier result of its history window because the latest was slower (a noisy round kept out)."}),
		explanations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: "explanations_total", Help: "Decision explanations written beside the decisions, by outcome (written, failed)."}, []string{"outcome"}),
	}
	for _, o := range []string{"written", "failed"} {
		m.explanations.WithLabelValues(o)
	}
	m.shardsLed = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "scheduler",
		Name: "shards_led", Help: "Shards of the targets this scheduler leads (holds the lease of)."})
	m.shardHandovers = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "scheduler",
		Name: "shard_handovers_total", Help: "Shard leases this scheduler acquired, released (rebalance, shutdown) or lost (refused or not renewed in time)."}, []string{"event"})
	for _, e := range []string{"acquired", "released", "lost"} {
		m.shardHandovers.WithLabelValues(e)
	}
	m.mesh = newMeshMetrics(reg)
	for _, st := range []string{ConfigOK, ConfigSkipped} {
		m.configFiles.WithLabelValues(st)
	}
	for _, o := range []string{"success", "failure"} {
		m.checks.WithLabelValues(o)
	}
	for _, c := range []string{"true", "false"} {
		m.decisions.WithLabelValues(c)
	}
	for _, k := range []placement.ProbeKind{placement.ProbeTCP, placement.ProbeHTTP} {
		m.results.WithLabelValues(string(k), "success")
		for _, c := range prober.Classes {
			m.results.WithLabelValues(string(k), string(c))
		}
	}
	for _, o := range []string{"accepted", "rate_limited", "unauthorized", "invalid"} {
		m.adhoc.WithLabelValues(o)
	}
	batch := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "scheduler",
			Name: name, Help: help, Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}})
	}
	m.batchJobs = batch("batch_jobs", "Probes per job stream entry a tick sends a PoP (one XADD per PoP per tick).")
	m.batchReads = batch("batch_reads", "Rechecks whose previous decision and recent results one script call read.")
	m.batchDecisions = batch("batch_decisions", "Decisions (with their explanations) one script call wrote.")
	if reg != nil {
		reg.MustRegister(m.batchJobs, m.batchReads, m.batchDecisions)
		reg.MustRegister(m.checks, m.checkDuration, m.decisions, m.jobsEnqueued, m.jobsPending, m.results,
			m.leader, m.leaseToken, m.targets, m.adhoc, m.apiRequests, m.estimatedDecided, m.configFiles, m.redisDataLost,
			m.windowed, m.explanations, m.shardsLed, m.shardHandovers)
	}
	return m
}

func (m *Metrics) observeCheck(err error, d time.Duration) {
	o := "success"
	if err != nil {
		o = "failure"
	}
	m.checks.WithLabelValues(o).Inc()
	m.checkDuration.Observe(d.Seconds())
}

func (m *Metrics) setLeader(leading bool, token int64) {
	if leading {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
	m.leaseToken.Set(float64(token))
}
