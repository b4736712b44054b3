package prober

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vantage-edge/vantage/placement"
)

func TestMetrics(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	s := newHTTPServer(t, false, ok)
	e := newEngine(t, nil)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(e.Collector()); err != nil {
		t.Fatal(err)
	}
	families := gather(t, reg)
	if n := len(families["vantage_probes_total"]); n != len(Registry)*(len(Classes)+1) {
		t.Errorf("%d vantage_probes_total series before any probe, want every kind x outcome (%d)", n, len(Registry)*(len(Classes)+1))
	}

	ctx := context.Background()
	e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 2})
	e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: closedPort(t), Count: 1})
	e.Probe(ctx, Target{Kind: placement.ProbeHTTP, Addr: s.URL, Count: 1})
	e.Probe(ctx, Target{Kind: "smtp", Addr: "x"}) // unknown kinds add no label values
	families = gather(t, reg)

	tests := []struct {
		name   string
		family string
		labels map[string]string
		want   float64
	}{
		{"tcp_success_counted", "vantage_probes_total", map[string]string{"kind": "tcp", "outcome": "success"}, 1},
		{"tcp_refused_counted", "vantage_probes_total", map[string]string{"kind": "tcp", "outcome": "refused"}, 1},
		{"tcp_last_failed", "vantage_probe_success", map[string]string{"kind": "tcp"}, 0},
		{"http_last_succeeded", "vantage_probe_success", map[string]string{"kind": "http"}, 1},
		{"tcp_rtt_samples", "vantage_probe_rtt_seconds", map[string]string{"kind": "tcp"}, 2},
		{"tcp_durations", "vantage_probe_duration_seconds", map[string]string{"kind": "tcp"}, 2},
		{"http_connect_phase", "vantage_probe_http_duration_seconds", map[string]string{"phase": "connect"}, 1},
		// The first sample opens the one socket; the second sample and the refused probe reuse it.
		{"tcp_socket_opened", "vantage_probe_tcp_connects_total", map[string]string{"socket": "new"}, 1},
		{"tcp_socket_reused", "vantage_probe_tcp_connects_total", map[string]string{"socket": "reused"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := find(families[tc.family], tc.labels)
			if m == nil {
				t.Fatalf("no %s%v", tc.family, tc.labels)
			}
			got := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			if got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.family, tc.labels, got, tc.want)
			}
		})
	}
	if m := find(families["vantage_probes_total"], map[string]string{"kind": "smtp"}); m != nil {
		t.Error("an unknown kind became a label value")
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string][]*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*dto.Metric{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()
	}
	return out
}

// find returns the metric whose labels include all of want.
func find(ms []*dto.Metric, want map[string]string) *dto.Metric {
	for _, m := range ms {
		n := 0
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
				n++
			}
		}
		if n == len(want) {
			return m
		}
	}
	return nil
}
