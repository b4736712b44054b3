package storage

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/storage/redistest"
)

// Simulated traffic of BenchmarkTelemetryIngest: one second of it per iteration.
const (
	benchReqPerSec   = 100_000
	benchApps        = 100 // Zipf-popular
	benchExecPoPs    = 10
	benchHostsPerPoP = 3  // worker hosts, each flushing its own aggregator once per second
	benchIngresses   = 30 // PoPs where requests enter; a third run where they enter
)

// benchTraffic returns one second of requests starting at start, each assigned to a worker host.
func benchTraffic(start time.Time) (recs []Telemetry, host []int) {
	r := rand.New(rand.NewPCG(7, 11))
	zipf := rand.NewZipf(r, 1.1, 1, benchApps-1)
	pops := []string{"FRA", "AMS", "LHR", "CDG", "IAD", "EWR", "ORD", "SIN", "NRT", "SYD"}
	ingress := make([]string, benchIngresses)
	for i := range ingress {
		ingress[i] = pops[i%len(pops)]
		if i >= len(pops) {
			ingress[i] = fmt.Sprintf("P%02d", i)
		}
	}
	for i := range benchReqPerSec {
		app := int(zipf.Uint64())
		h := r.IntN(benchExecPoPs * benchHostsPerPoP)
		exec := pops[h/benchHostsPerPoP]
		in := ingress[r.IntN(len(ingress))]
		if r.IntN(3) == 0 {
			in = exec
		}
		one := math.Exp(r.NormFloat64()*0.3 + 3) // ~20 ms back-end RTT
		t := Telemetry{App: fmt.Sprintf("app-%03d", app), Deploy: "v1", Ingress: in, Exec: exec, Routed: in != exec, Reason: "remote",
			At: start.Add(time.Duration(i) * time.Second / benchReqPerSec), DurationMs: 2}
		if !t.Routed {
			t.Reason = "no_decision"
		}
		for q := range 3 {
			host := "db-" + strconv.Itoa(app) + ".example.com:5432"
			if q == 2 {
				host = "api-" + strconv.Itoa(app%7) + ".example.com"
			}
			t.Subrequests = append(t.Subrequests, Subrequest{Host: host, DurationMs: one})
			t.DurationMs += one
		}
		recs, host = append(recs, t), append(host, h)
	}
	return recs, host
}

// countHook counts the commands a client sends.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// infoInt reads one numeric field of INFO (redistest.InfoFloat).
func infoInt(b *testing.B, c redis.UniversalClient, section, field string) float64 {
	b.Helper()
	v, err := redistest.InfoFloat(context.Background(), c, section, field)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkTelemetryIngest measures what 100,000 requests/s of simulated telemetry cost Redis (a real
// redis-server): one iteration is one second of traffic from 30 worker hosts (10 PoPs) over 100 Zipf-popular
// applications. "aggregated_flush_1s" and "_10s": each host folds its requests into windows
// (TelemetryAggregator) and writes them with AddTelemetryWindows every 1 or 10 s, and its 1 % sample
// (AddTelemetrySample) every second;
// "records": every request on its stream, as before aggregation (AddTelemetrySample of all). Reported per
// request: commands sent (redis-cmds/req), commands Redis executed, scripts' inner calls included
// (redis-server-cmds/req), bytes Redis received (redis-in-B/req) and Redis memory added (redis-mem-B/req).
// Run with -benchtime=30x (three 10 s windows) or more: memory per request falls as windows fill.
func BenchmarkTelemetryIngest(b *testing.B) {
	srv := redistest.Start(b)
	start := time.Now().UTC().Truncate(TelemetryAggWindow)
	recs, hostOf := benchTraffic(start)
	for _, mode := range []string{"aggregated_flush_1s", "aggregated_flush_10s", "records"} {
		flushEvery := 1
		if mode == "aggregated_flush_10s" {
			flushEvery = 10
		}
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, Options{Addrs: []string{srv.Addr()}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			if err := s.Client().FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			hook := &countHook{}
			s.Client().AddHook(hook)
			cmds0 := infoInt(b, s.Client(), "stats", "total_commands_processed")
			in0 := infoInt(b, s.Client(), "stats", "total_net_input_bytes")
			mem0 := infoInt(b, s.Client(), "memory", "used_memory")
			sent0 := hook.n.Load()
			aggs := make([]*TelemetryAggregator, benchExecPoPs*benchHostsPerPoP)
			for i := range aggs {
				aggs[i] = NewTelemetryAggregator()
			}
			b.ResetTimer()
			for i := range b.N {
				shift := time.Duration(i) * time.Second
				batches := make([][]Telemetry, len(aggs))
				for k := range recs {
					r := recs[k]
					r.At = r.At.Add(shift)
					batches[hostOf[k]] = append(batches[hostOf[k]], r)
				}
				for h, batch := range batches {
					var err error
					if mode == "records" {
						err = s.AddTelemetrySample(ctx, batch)
					} else {
						for k := range batch {
							aggs[h].Add(&batch[k])
						}
						if (i+1)%flushEvery == 0 || i == b.N-1 {
							err = s.AddTelemetryWindows(ctx, aggs[h].Drain())
						}
						if err == nil {
							err = s.AddTelemetrySample(ctx, sampled(batch, DefaultTelemetrySampleRate))
						}
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			n := float64(b.N * len(recs))
			sent := float64(hook.n.Load() - sent0)
			// The INFO calls themselves are a few commands and bytes: negligible over 100,000 requests.
			b.ReportMetric(sent/n, "redis-cmds/req")
			b.ReportMetric((infoInt(b, s.Client(), "stats", "total_commands_processed")-cmds0)/n, "redis-server-cmds/req")
			b.ReportMetric((infoInt(b, s.Client(), "stats", "total_net_input_bytes")-in0)/n, "redis-in-B/req")
			b.ReportMetric((infoInt(b, s.Client(), "memory", "used_memory")-mem0)/n, "redis-mem-B/req")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/req")
		})
	}
}
