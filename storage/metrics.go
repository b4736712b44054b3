package storage

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
)

// metricCommands are the Redis commands the Store sends; their series start at 0.
var metricCommands = []string{
	"evalsha", "eval", "script", "hget", "hgetall", "hscan", "hset", "hdel", "get", "set", "pttl", "smembers",
	"sadd", "srem", "pexpire", "publish", "xadd", "xreadgroup", "xack", "xdel", "xautoclaim", "xpending", "xlen",
	"xgroup", "lrange", "llen", "lpush", "ltrim", "multi", "exec", "ping",
}

// Metrics are a Store's Prometheus metrics, named like blackbox_exporter's under the namespace "vantage",
// subsystem "storage". Register them with prometheus.Registerer.MustRegister(s.Metrics()).
//
//	vantage_storage_redis_commands_total{command, result="ok"|"error"}  commands sent (redis.Nil is ok)
//	vantage_storage_redis_command_duration_seconds{command}           latency; a pipeline is one "pipeline"
//	vantage_storage_redis_pool_connections{state="total"|"idle"}     connection pool size
//	vantage_storage_redis_pool_timeouts_total                          waits for a free connection that timed out
//	vantage_storage_corrupt_values_total{kind="decision"|"app"}        undecodable values skipped, each counted once
//	vantage_storage_watch_resubscriptions_total{channel}               watches subscribed again after an interruption
//	vantage_storage_results_dropped_late_total                         job results written too long past the deadline
type Metrics struct {
	commands *prometheus.CounterVec
	duration *prometheus.HistogramVec
	corrupt  *prometheus.CounterVec
	resubs   *prometheus.CounterVec
	late     prometheus.Counter
	pool     func() *redis.PoolStats

	connsDesc, timeoutsDesc *prometheus.Desc
}

func newMetrics(pool func() *redis.PoolStats) *Metrics {
	m := &Metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "storage",
			Name: "redis_commands_total", Help: "Redis commands sent, by command and result (ok or error)."},
			[]string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "storage",
			Name: "redis_command_duration_seconds", Help: "Latency of Redis commands; a pipeline counts once as \"pipeline\".",
			Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			[]string{"command"}),
		corrupt: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "storage",
			Name: "corrupt_values_total", Help: "Undecodable values found in Redis and skipped, by kind (decision, app); each distinct value counts once."},
			[]string{"kind"}),
		resubs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "storage",
			Name: "watch_resubscriptions_total", Help: "Subscriptions of a watch of a channel (decisions, apps) made again after an interruption (failed attempts not counted); each is followed by a full read."},
			[]string{"channel"}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "storage",
			Name: "results_dropped_late_total", Help: "Job results not stored because they were written more than half of storage.DedupAfterDeadline past their job's deadline (a daemon paused or cut off from Redis meanwhile)."}),
		pool: pool,
		connsDesc: prometheus.NewDesc("vantage_storage_redis_pool_connections",
			"Connections in the Redis client's pool, by state (total, idle).", []string{"state"}, nil),
		timeoutsDesc: prometheus.NewDesc("vantage_storage_redis_pool_timeouts_total",
			"Waits for a free pooled connection that timed out.", nil, nil),
	}
	for _, c := range metricCommands {
		m.commands.WithLabelValues(c, "ok")
		m.commands.WithLabelValues(c, "error")
	}
	for _, k := range corruptKinds {
		m.corrupt.WithLabelValues(k)
	}
	for _, c := range []string{ChannelDecisions, ChannelApps} {
		m.resubs.WithLabelValues(c)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.commands.Describe(ch)
	m.duration.Describe(ch)
	m.corrupt.Describe(ch)
	m.resubs.Describe(ch)
	m.late.Describe(ch)
	ch <- m.connsDesc
	ch <- m.timeoutsDesc
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.commands.Collect(ch)
	m.duration.Collect(ch)
	m.corrupt.Collect(ch)
	m.resubs.Collect(ch)
	m.late.Collect(ch)
	st := m.pool()
	ch <- prometheus.MustNewConstMetric(m.connsDesc, prometheus.GaugeValue, float64(st.TotalConns), "total")
	ch <- prometheus.MustNewConstMetric(m.connsDesc, prometheus.GaugeValue, float64(st.IdleConns), "idle")
	ch <- prometheus.MustNewConstMetric(m.timeoutsDesc, prometheus.CounterValue, float64(st.Timeouts))
}

// Resubscriptions returns how many times the watches of channel subscribed again after an interruption.
func (m *Metrics) Resubscriptions(channel string) int {
	var out dto.Metric
	if err := m.resubs.WithLabelValues(channel).Write(&out); err != nil {
		return 0
	}
	return int(out.GetCounter().GetValue())
}

func (m *Metrics) count(cmd redis.Cmder, err error) {
	if err == nil {
		err = cmd.Err()
	}
	result := "ok"
	if err != nil && !errors.Is(err, redis.Nil) {
		result = "error"
	}
	m.commands.WithLabelValues(strings.ToLower(cmd.Name()), result).Inc()
}

// DialHook implements redis.Hook.
func (m *Metrics) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook implements redis.Hook.
func (m *Metrics) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		m.duration.WithLabelValues(strings.ToLower(cmd.Name())).Observe(time.Since(start).Seconds())
		m.count(cmd, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (m *Metrics) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		m.duration.WithLabelValues("pipeline").Observe(time.Since(start).Seconds())
		for _, c := range cmds {
			m.count(c, nil)
		}
		return err
	}
}

// Metrics returns the Store's metrics collector.
func (s *Store) Metrics() *Metrics { return s.metrics }
