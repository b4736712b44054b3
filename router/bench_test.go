package router

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// benchApps is the size of the benchmark snapshot.
const benchApps = 1_000_000

var (
	benchOnce   sync.Once
	benchRouter *Router
)

// millionRouter returns a router holding fillDecision(0..999,999) and a full fleet (built once per process).
func millionRouter(b *testing.B) *Router {
	benchOnce.Do(func() {
		cfg := DefaultConfig()
		cfg.PoPs = []string{"EWR"} // the ingress, as a front configures it
		r, err := New(noSource{}, cfg)
		if err != nil {
			b.Fatal(err)
		}
		ds := make([]placement.Decision, 0, benchApps)
		for i := range benchApps {
			ds = append(ds, fillDecision(i))
		}
		install(b, r, ds...)
		r.setFleet(pops(append([]string{"EWR"}, fillPoPs...)...))
		benchRouter = r
	})
	return benchRouter
}

// requests returns n (app, request id) pairs, apps drawn by pick, laid out contiguously as a front's parsed
// request would have them (hot in cache), so that the benchmark measures the snapshot, not the inputs.
func requests(n int, pick func() int) (apps, ids []string) {
	var sb strings.Builder
	var ends []int
	for i := range n {
		sb.WriteString(fillApp(pick()))
		ends = append(ends, sb.Len())
		sb.WriteString(fmt.Sprintf("%016x-EWR", uint64(i)*0x9E3779B97F4A7C15))
		ends = append(ends, sb.Len())
	}
	all := sb.String()
	start := 0
	for i := 0; i < len(ends); i += 2 {
		apps = append(apps, all[start:ends[i]])
		ids = append(ids, all[ends[i]:ends[i+1]])
		start = ends[i+1]
	}
	return apps, ids
}

// BenchmarkRoute measures Route over a snapshot of 1,000,000 applications. zipf draws applications with a
// Zipf(1.1) popularity (real traffic is skewed: the snapshot's hot part stays in cache); uniform draws them
// uniformly (every lookup likely misses the CPU caches: the worst case); same is one application.
func BenchmarkRoute(b *testing.B) {
	r := millionRouter(b)
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.1, 1, benchApps-1)
	for _, bc := range []struct {
		name string
		pick func() int
	}{
		{"zipf", func() int { return int(zipf.Uint64()) }},
		{"uniform", func() int { return rng.IntN(benchApps) }},
		{"same", func() int { return 42 }},
	} {
		const n = 1 << 16
		apps, ids := requests(n, bc.pick)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			ct := newCallTimer()
			i := 0
			var res Result
			for b.Loop() {
				if ct.timed() {
					t0 := time.Now()
					res = r.Route(apps[i], "EWR", ids[i], KindFetch)
					ct.add(time.Since(t0))
				} else {
					res = r.Route(apps[i], "EWR", ids[i], KindFetch)
				}
				if res.ExecPoP == "" {
					b.Fatal("empty result")
				}
				i = (i + 1) & (n - 1)
			}
			ct.report(b)
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(n)
				for pb.Next() {
					r.Route(apps[i], "EWR", ids[i], KindFetch)
					i = (i + 1) & (n - 1)
				}
			})
		})
	}
}

// BenchmarkBuild1M measures building a snapshot of 1,000,000 decisions already in memory (the router's share
// of a reload).
func BenchmarkBuild1M(b *testing.B) {
	r := millionRouter(b)
	ds := make([]placement.Decision, 0, benchApps)
	for i := range benchApps {
		ds = append(ds, fillDecision(i))
	}
	b.ReportAllocs()
	cpu := processCPU()
	defer func() { b.ReportMetric((processCPU()-cpu).Seconds()/float64(b.N), "cpu-s/op") }()
	for b.Loop() {
		bd := newBuilder(r, r.snapshot(), r.now())
		for _, d := range ds {
			bd.add(d)
		}
		s := bd.finish(r.now())
		if s.apps != benchApps {
			b.Fatalf("built %d apps", s.apps)
		}
		b.ReportMetric(float64(s.hotBytes())/float64(s.apps), "hot-B/app")
		b.ReportMetric(float64(s.bytes())/float64(s.apps), "table-B/app")
		b.ReportMetric(float64(len(s.profiles)/2), "profiles")
	}
}

// BenchmarkReload1M measures, over 1,000,000 decisions in a real redis-server (loading them is not timed):
// reload, the router's Reload (scan, build, swap), and scan, storage.ScanDecisions alone (Redis and decoding,
// the storage share of a reload), one after the other on the same data.
func BenchmarkReload1M(b *testing.B) {
	_, st := startStore(b, 30*time.Second)
	fill(b, st, benchApps)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		cpu, rcpu := processCPU(), redisCPU(b, st)
		defer func() {
			b.ReportMetric((processCPU()-cpu).Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric((redisCPU(b, st)-rcpu).Seconds()/float64(b.N), "redis-cpu-s/op")
		}()
		for b.Loop() {
			n := 0
			if err := st.ScanDecisions(context.Background(), func(placement.Decision) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			if n != benchApps {
				b.Fatalf("scanned %d decisions", n)
			}
		}
	})
	b.Run("reload", func(b *testing.B) {
		r, err := New(st, DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		// The peak resident memory of the reloads alone: the fill's garbage returned to the OS first, then the
		// kernel's high-water mark reset (clear_refs 5). Run with GOGC / GOMEMLIMIT to see what `vantage router
		// --gc-percent / --memory-limit` do to it.
		debug.FreeOSMemory()
		hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
		cpu, rcpu := processCPU(), redisCPU(b, st)
		for b.Loop() {
			if err := r.Reload(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((processCPU()-cpu).Seconds()/float64(b.N), "cpu-s/op")
		b.ReportMetric((redisCPU(b, st)-rcpu).Seconds()/float64(b.N), "redis-cpu-s/op")
		if hwm := procStatusKB("VmHWM"); hwmReset && hwm > 0 {
			b.ReportMetric(float64(hwm)/1024, "peak-rss-MB")
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MB")
		if got := r.Info().Apps; got != benchApps {
			b.Fatalf("snapshot holds %d apps, want %d", got, benchApps)
		}
	})
}

// procStatusKB returns a "kB" field of /proc/self/status (0 when it cannot be read).
func procStatusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// callTimer samples the time of single calls: every callSample-th call is timed on its own (time.Now before
// and after, minus the median cost of that pair, measured first), so that a median per call can be reported;
// ns/op is the mean over the run, which on a busy shared machine includes every preemption. It does not
// allocate while timing.
type callTimer struct {
	samples  []float64
	overhead time.Duration
	n        int
}

// callSample: one call in callSample is timed; the clock reads cost about as much as a Route.
const callSample = 16

func newCallTimer() *callTimer {
	t := &callTimer{samples: make([]float64, 0, 1<<20)}
	pairs := make([]float64, 0, 10001)
	for range 10001 {
		t0 := time.Now()
		pairs = append(pairs, float64(time.Since(t0)))
	}
	slices.Sort(pairs)
	t.overhead = time.Duration(pairs[len(pairs)/2])
	return t
}

// timed reports whether this call should be timed.
func (t *callTimer) timed() bool {
	t.n++
	return t.n%callSample == 0 && len(t.samples) < cap(t.samples)
}

func (t *callTimer) add(d time.Duration) { t.samples = append(t.samples, float64(d-t.overhead)) }

func (t *callTimer) report(b *testing.B) {
	if len(t.samples) == 0 {
		return
	}
	slices.Sort(t.samples)
	q := func(p float64) float64 { return t.samples[int(p*float64(len(t.samples)-1))] }
	b.ReportMetric(q(0.5), "p50-ns/call")
	b.ReportMetric(q(0.9), "p90-ns/call")
	b.ReportMetric(q(0.99), "p99-ns/call")
}

// processCPU returns the CPU time (user and system, all threads) this process has used: on a shared, busy
// machine it shows the work a reload costs apart from the time spent waiting for a core.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the CPU time redis-server has used (INFO cpu: used_cpu_user + used_cpu_sys).
func redisCPU(b *testing.B, st *storage.Store) time.Duration {
	info, err := st.Client().Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s: %q: %v", k, v, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
