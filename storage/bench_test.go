package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// benchDecision returns a realistic decision: a host target, five ranked candidates.
func benchDecision(i int) placement.Decision {
	pops := []string{"LHR", "AMS", "FRA", "CDG", "MAD", "EWR", "IAD", "ORD", "NRT", "SIN"}
	d := placement.Decision{
		App: fmt.Sprintf("app-%07d", i), Mode: placement.ModeHost, Target: fmt.Sprintf("db-%d.example.com:5432", i),
		Verdict: placement.VerdictUnicast, Status: placement.StatusSuccess, Confidence: 0.87, Version: 1,
		ComputedAt: t0, NextRecheck: t0.Add(time.Hour),
	}
	for k := range 5 {
		d.Candidates = append(d.Candidates, placement.Candidate{PoP: pops[(i+k)%len(pops)], RTTMs: 1.5 + float64(k)*7.25})
	}
	d.BestPoP = d.Candidates[0].PoP
	return d
}

// loadDecisions writes n decisions straight into the buckets with pipelined multi-field HSETs, in the exact
// format PutDecision stores (it is ~20x faster than a script call each, and the benchmark is about reading).
func loadDecisions(tb testing.TB, s *Store, n int) {
	tb.Helper()
	ctx := context.Background()
	const perHSET = 1000
	fields := make([][]any, DecisionBuckets)
	p := s.Client().Pipeline()
	queued := 0
	flushBucket := func(bk int) {
		p.HSet(ctx, KeyDecisions(bk), fields[bk]...)
		fields[bk] = fields[bk][:0]
		if queued++; queued == 64 {
			if _, err := p.Exec(ctx); err != nil {
				tb.Fatalf("load decisions: %v", err)
			}
			queued = 0
		}
	}
	for i := range n {
		d := benchDecision(i)
		bk := DecisionBucket(d.App)
		v := "1|" + fingerprint(&d) + "|" + string(encodeDecision(&d))
		fields[bk] = append(fields[bk], d.App, v)
		if len(fields[bk]) == 2*perHSET {
			flushBucket(bk)
		}
	}
	for bk := range fields {
		if len(fields[bk]) > 0 {
			flushBucket(bk)
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		tb.Fatalf("load decisions: %v", err)
	}
}

// BenchmarkScanDecisions1M loads 1,000,000 decisions into a real redis-server and times ScanDecisions reading
// them all. Run:
//
//	go test -run '^$' -bench ScanDecisions1M -benchtime 3x ./storage/
func BenchmarkScanDecisions1M(b *testing.B) {
	if testing.Short() {
		b.Skip("loads 1,000,000 decisions into redis-server; skipped with -short")
	}
	const n = 1_000_000
	srv := redistest.Start(b)
	ctx := context.Background()
	s, err := Open(ctx, Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	loadDecisions(b, s, n)
	b.Logf("loaded %d decisions in %v; redis used_memory: %s", n, time.Since(start), usedMemory(ctx, s.Client()))
	b.Run("scan", func(b *testing.B) {
		// CPU seconds spent by redis-server and by this process: robust where wall time is not, on a busy machine.
		redis0, self0 := redisCPU(ctx, b, s.Client()), selfCPU()
		for b.Loop() {
			count := 0
			err := s.ScanDecisions(ctx, func(d placement.Decision) error {
				if d.BestPoP == "" {
					return fmt.Errorf("decision %s without a best PoP", d.App)
				}
				count++
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if count != n {
				b.Fatalf("scanned %d decisions; want %d", count, n)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		b.ReportMetric((redisCPU(ctx, b, s.Client())-redis0)/float64(b.N), "redis-cpu-s/op")
		b.ReportMetric((selfCPU()-self0)/float64(b.N), "client-cpu-s/op")
	})
}

// redisCPU returns redis-server's used_cpu_user + used_cpu_sys, in seconds.
func redisCPU(ctx context.Context, tb testing.TB, c redis.UniversalClient) float64 {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	total := 0.0
	for _, l := range strings.Split(info, "\n") {
		l = strings.TrimSpace(l)
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(l, k); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatalf("INFO cpu %s: %v", l, err)
				}
				total += f
			}
		}
	}
	return total
}

// selfCPU returns the CPU time (user + system) this process has used, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func usedMemory(ctx context.Context, c redis.UniversalClient) string {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return err.Error()
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory_human:"); ok {
			return v
		}
	}
	return "?"
}

// BenchmarkDecodeDecision compares the stored binary payload with JSON, the encoding it replaced.
func BenchmarkDecodeDecision(b *testing.B) {
	d := benchDecision(42)
	v := "1|" + fingerprint(&d) + "|" + string(encodeDecision(&d))
	js, _ := json.Marshal(d)
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeDecision("bench", v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out placement.Decision
			if err := json.Unmarshal(js, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
