package testbed

import (
	"github.com/prometheus/client_golang/prometheus"
)

// dropReasons are the values of the reason label of vantage_testbed_packets_dropped_total.
var dropReasons = []string{"outside", "malformed", "no_route", "down", "loss", "queue_full", "write_error"}

var (
	descRead = prometheus.NewDesc("vantage_testbed_packets_read_total",
		"Packets the router read from the nodes' TUN interfaces.", []string{"testbed"}, nil)
	descForwarded = prometheus.NewDesc("vantage_testbed_packets_forwarded_total",
		"Packets the router delivered after their delay.", []string{"testbed"}, nil)
	descDropped = prometheus.NewDesc("vantage_testbed_packets_dropped_total",
		"Packets the router dropped, by reason (outside: source or destination outside the testbed's subnet).",
		[]string{"testbed", "reason"}, nil)
	descLateMax = prometheus.NewDesc("vantage_testbed_delivery_lateness_max_seconds",
		"Largest delay of a delivery past its due time since the start.", []string{"testbed"}, nil)
	descSpin = prometheus.NewDesc("vantage_testbed_router_spin_seconds_total",
		"CPU time the router spent polling over the last stretch before due times.", []string{"testbed"}, nil)
	descDown = prometheus.NewDesc("vantage_testbed_nodes_down",
		"Nodes taken down with SetDown.", []string{"testbed"}, nil)
)

// Collector returns a Prometheus collector of the router's counters, labelled with the testbed's name.
func (tb *Testbed) Collector() prometheus.Collector { return collector{tb} }

type collector struct{ tb *Testbed }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRead, descForwarded, descDropped, descLateMax, descSpin, descDown} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	name := c.tb.Name()
	st := c.tb.Stats()
	ch <- prometheus.MustNewConstMetric(descRead, prometheus.CounterValue, float64(st.Read), name)
	ch <- prometheus.MustNewConstMetric(descForwarded, prometheus.CounterValue, float64(st.Forwarded), name)
	for i, v := range []uint64{st.DroppedOutside, st.DroppedMalformed, st.DroppedNoRoute, st.DroppedDown, st.DroppedLoss,
		st.DroppedQueueFull, st.WriteErrors} {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(v), name, dropReasons[i])
	}
	ch <- prometheus.MustNewConstMetric(descLateMax, prometheus.GaugeValue, st.LateMax.Seconds(), name)
	ch <- prometheus.MustNewConstMetric(descSpin, prometheus.CounterValue, st.Spin.Seconds(), name)
	down := 0
	for _, n := range c.tb.nodes {
		if c.tb.r.down[n.idx].Load() {
			down++
		}
	}
	ch <- prometheus.MustNewConstMetric(descDown, prometheus.GaugeValue, float64(down), name)
}
