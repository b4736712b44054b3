package storage

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the value of every series of reg as "name{label=value,...}" -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather() // the pedantic registry checks descriptions and consistency
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{"
			for i, l := range m.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + "=" + l.GetValue()
			}
			key += "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	ctx := testCtx(t)
	s, err := OpenEmbedded(ctx, t.TempDir(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Metrics())
	if _, err := s.PutDecision(ctx, decision("m", "LHR", "LHR")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Decision(ctx, "missing"); err != nil { // redis.Nil: counted as ok
		t.Fatal(err)
	}
	if _, err := s.Client().Do(ctx, "NOSUCHCOMMAND").Result(); err == nil {
		t.Fatal("an unknown command succeeded")
	}
	got := gather(t, reg)
	tests := []struct {
		series string
		want   float64
	}{
		{"vantage_storage_redis_commands_total{command=hget,result=ok}", 1},
		{"vantage_storage_redis_commands_total{command=hget,result=error}", 0},
		{"vantage_storage_redis_commands_total{command=evalsha,result=ok}", 1},
		{"vantage_storage_redis_commands_total{command=nosuchcommand,result=error}", 1},
		{"vantage_storage_redis_commands_total{command=xadd,result=error}", 0}, // initialised
		{"vantage_storage_redis_command_duration_seconds{command=hget}", 1},
		// The first EVALSHA met NOSCRIPT; the script was loaded and the pipeline run again.
		{"vantage_storage_redis_commands_total{command=evalsha,result=error}", 1},
		{"vantage_storage_redis_command_duration_seconds{command=pipeline}", 2},
		{"vantage_storage_redis_pool_timeouts_total{}", 0},
	}
	for _, tt := range tests {
		v, ok := got[tt.series]
		if !ok || v != tt.want {
			t.Errorf("%s = %v (present %v); want %v", tt.series, v, ok, tt.want)

		}
	}
	if got["vantage_storage_redis_pool_connections{state=total}"] < 1 {
		t.Errorf("pool connections total = %v; want at least 1", got["vantage_storage_redis_pool_connections{state=total}"])
	}
}
