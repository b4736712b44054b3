package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// Simulated traffic of BenchmarkWorkerTelemetry: one worker host's share of 100,000 requests/s over 30 hosts
// (storage's BenchmarkTelemetryIngest), one second of it per iteration.
const (
	benchHostReqPerSec = 100_000 / 30
	benchApps          = 100 // Zipf-popular
	benchIngresses     = 30  // PoPs where requests enter; a third run where they enter
	benchRecordBatch   = 100 // the records path's batch (the worker's batch size before it aggregated)
)

// benchTraffic returns one second of one FRA worker host's requests, from start.
func benchTraffic(start time.Time) []storage.Telemetry {
	r := rand.New(rand.NewPCG(7, 11))
	zipf := rand.NewZipf(r, 1.1, 1, benchApps-1)
	var recs []storage.Telemetry
	for i := range benchHostReqPerSec {
		app := int(zipf.Uint64())
		in := fmt.Sprintf("P%02d", r.IntN(benchIngresses))
		if r.IntN(3) == 0 {
			in = "FRA"
		}
		one := math.Exp(r.NormFloat64()*0.3 + 3) // ~20 ms back-end RTT
		t := storage.Telemetry{App: fmt.Sprintf("app-%03d", app), Deploy: "v1", Ingress: in, Exec: "FRA", Routed: in != "FRA",
			Reason: "remote", At: start.Add(time.Duration(i) * time.Second / benchHostReqPerSec), DurationMs: 2}
		if !t.Routed {
			t.Reason = "no_decision"
		}
		for q := range 3 {
			host := "db-" + strconv.Itoa(app) + ".example.com:5432"
			if q == 2 {
				host = "api-" + strconv.Itoa(app%7) + ".example.com"
			}
			t.Subrequests = append(t.Subrequests, storage.Subrequest{Host: host, DurationMs: one})
			t.DurationMs += one
		}
		recs = append(recs, t)
	}
	return recs
}

// benchInfo reads one numeric field of INFO (redistest.InfoFloat).
func benchInfo(b *testing.B, c redis.UniversalClient, section, field string) float64 {
	b.Helper()
	v, err := redistest.InfoFloat(context.Background(), c, section, field)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkWorkerTelemetry measures the telemetry cost per request of the worker's path, into a real
// redis-server through (*storage.Store).AddTelemetryBatch (what POST /v1/telemetry calls): one iteration is one
// simulated second of one worker host's requests (3,333: 100,000 requests/s over 30 hosts, 100 Zipf-popular
// applications, 30 ingress PoPs, 3 subrequests to 2 back ends each). "windows": the worker as it is, every
// request added to its aggregator (record) and sent at each 10 s window's end (flush) with its 1 % sample.
// "records": the worker before it aggregated, one record per request in batches of 100. Reported per request:
// JSON bytes a worker posts (post-B/req), commands Redis executed, scripts' inner calls included
// (redis-server-cmds/req), bytes Redis received (redis-in-B/req) and Redis memory added (redis-mem-B/req).
// Run with -benchtime=30x (three windows).
func BenchmarkWorkerTelemetry(b *testing.B) {
	srv := redistest.Start(b)
	recs := benchTraffic(time.Now().UTC().Truncate(storage.TelemetryAggWindow))
	for _, mode := range []string{"windows", "records"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			if err := st.Client().FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			var posted int
			report := func(ctx context.Context, batch storage.TelemetryBatch) error {
				j, err := json.Marshal(&batch)
				if err != nil {
					return err
				}
				posted += len(j)
				return st.AddTelemetryBatch(ctx, batch)
			}
			w, err := New(Config{PoP: "FRA", Apps: []App{{Name: "a", DB: "db:1"}}, Report: report})
			if err != nil {
				b.Fatal(err)
			}
			c := st.Client()
			cmds0 := benchInfo(b, c, "stats", "total_commands_processed")
			in0 := benchInfo(b, c, "stats", "total_net_input_bytes")
			mem0 := benchInfo(b, c, "memory", "used_memory")
			b.ResetTimer()
			for i := range b.N {
				shift := time.Duration(i) * time.Second
				for k := 0; k < len(recs); k += benchRecordBatch {
					batch := make([]storage.Telemetry, 0, benchRecordBatch)
					for _, r := range recs[k:min(k+benchRecordBatch, len(recs))] {
						r.At = r.At.Add(shift)
						batch = append(batch, r)
					}
					if mode == "records" {
						if err := report(ctx, storage.TelemetryBatch{Records: batch}); err != nil {
							b.Fatal(err)
						}
						continue
					}
					for j := range batch {
						w.record(&batch[j])
					}
				}
				if mode == "windows" && ((i+1)%int(storage.TelemetryAggWindow/time.Second) == 0 || i == b.N-1) {
					w.flush(ctx)
				}
			}
			b.StopTimer()
			if f := counter(b, w.telReqs.WithLabelValues("failed")); f > 0 {
				b.Fatalf("%v requests' telemetry failed", f)
			}
			n := float64(b.N * len(recs))
			b.ReportMetric(float64(posted)/n, "post-B/req")
			b.ReportMetric((benchInfo(b, c, "stats", "total_commands_processed")-cmds0)/n, "redis-server-cmds/req")
			b.ReportMetric((benchInfo(b, c, "stats", "total_net_input_bytes")-in0)/n, "redis-in-B/req")
			b.ReportMetric((benchInfo(b, c, "memory", "used_memory")-mem0)/n, "redis-mem-B/req")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/req")
		})
	}
}
