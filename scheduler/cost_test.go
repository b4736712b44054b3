package scheduler

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/prober/simulate"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// costFleetEnv names the Redis address a re-executed test binary runs BenchmarkRecheckCost's fleet on.
const costFleetEnv = "VANTAGE_RECHECK_COST_FLEET"

var (
	costPoPs     = flag.Int("recheckcost.pops", 60, "BenchmarkRecheckCost: PoPs up (45 of them probed per recheck)")
	costInFlight = flag.Int("recheckcost.inflight", 256, "BenchmarkRecheckCost: rechecks in flight at once")
)

// modelProber answers a probe with the latency model's RTT between its PoP and the target's hashed location,
// never touching the network: BenchmarkRecheckCost's fleet is about Redis, not probing.
type modelProber struct {
	at    geo.Point
	model *geo.LatencyModel
}

func (p modelProber) Probe(_ context.Context, t prober.Target) prober.Result {
	host := t.Addr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	d := prober.Duration(p.model.RTTMs(p.at, simulate.TargetPoint(host)) * float64(time.Millisecond))
	return prober.Result{Kind: t.Kind, Target: t.Addr, Start: time.Now(), Samples: []prober.Duration{d, d, d},
		Min: d, Median: d, Sent: 3, Received: 3, Success: true}
}

// TestRecheckCostFleet is not a test: BenchmarkRecheckCost runs the test binary again with it, in its own
// process, as the fleet: one probed.Daemon per PoP on a storage.Store, probing with modelProber. Each line
// read on stdin is answered on stdout with the Redis commands the fleet sent so far; EOF stops it.
func TestRecheckCostFleet(t *testing.T) {
	addr := os.Getenv(costFleetEnv)
	if addr == "" {
		t.Skip("helper process of BenchmarkRecheckCost")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{addr}, PoolSize: 4 * *costPoPs})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var cmds redistest.Commands
	st.Client().AddHook(&cmds)
	model := geo.DefaultModel()
	var wg sync.WaitGroup
	for _, p := range geo.PoPs()[:*costPoPs] {
		q := &probed.StoreQueue{DB: st, PoP: p.Code, DaemonID: "cost-" + p.Code}
		d, err := probed.New(probed.Config{PoP: p.Code, DaemonID: q.DaemonID, Concurrency: 512, Logger: quietLogger()},
			q, modelProber{at: p.Point, model: model}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { d.Run(ctx) })
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Printf("cmds %d\n", cmds.Total())
	}
	cancel()
	wg.Wait()
}

// redisOps returns the server's total_commands_processed (commands run inside scripts included).
func redisOps(ctx context.Context, c redis.UniversalClient) int64 {
	info, _ := c.Info(ctx, "stats").Result()
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkRecheckCost measures what one recheck costs Redis and the scheduler: rechecks of distinct host
// targets, 45 PoPs probed each (Config.Budget) of -recheckcost.pops up, -recheckcost.inflight at once, on a
// real redis-server, with the fleet's daemons in another process (TestRecheckCostFleet) so that this
// process's CPU is the scheduler's alone. It reports
//
//	redis-cmds/recheck     commands sent by every client (scheduler and daemons), counted by go-redis hooks
//	redis-ops/recheck      the server's total_commands_processed delta (commands inside scripts included)
//	sched-cpu-us/recheck   this process's user+system CPU (getrusage)
//
// Background traffic (heartbeats, idle reads, reclaims) is counted too. Run it with
//
//	go test ./scheduler -run '^$' -bench RecheckCost -benchtime 3000x
func BenchmarkRecheckCost(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, PoolSize: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var cmds redistest.Commands
	st.Client().AddHook(&cmds)

	fleet := exec.Command(os.Args[0], "-test.run=^TestRecheckCostFleet$", fmt.Sprintf("-recheckcost.pops=%d", *costPoPs))
	fleet.Env = append(os.Environ(), costFleetEnv+"="+srv.Addr())
	fleet.Stderr = os.Stderr
	toFleet, err := fleet.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	fromFleet, err := fleet.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := fleet.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { toFleet.Close(); fleet.Wait() }()
	replies := bufio.NewScanner(fromFleet)
	fleetCmds := func() int64 {
		io.WriteString(toFleet, "count\n")
		for replies.Scan() {
			if v, ok := strings.CutPrefix(replies.Text(), "cmds "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		b.Fatalf("the fleet process stopped: %v", replies.Err())
		return 0
	}

	s, err := New(Config{Name: "cost", Budget: 45, ResultTimeout: 20 * time.Second, Logger: quietLogger()}, StoreBackend{st}, nil)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		up, err := StoreBackend{st}.UpPoPs(ctx)
		if err == nil && len(up) >= *costPoPs {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d PoPs up after 30 s, want %d (err %v)", len(up), *costPoPs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	term := &Term{Ctx: ctx, Lease: "vantage-shard-000", Token: 1, Seq: 1, Start: time.Now()}
	var seq atomic.Int64
	run := func(n int) {
		next := make(chan int)
		var wg sync.WaitGroup
		for range min(n, *costInFlight) {
			wg.Go(func() {
				for range next {
					i := seq.Add(1)
					t := Target{App: fmt.Sprintf("app-%07d", i), Mode: placement.ModeHost, Target: fmt.Sprintf("h%07d.bench.example:5432", i)}
					dec, err := s.recheck(ctx, term, t)
					if err != nil {
						b.Errorf("recheck %s: %v", t.App, err)
					} else if dec.Status != placement.StatusSuccess {
						b.Errorf("recheck %s: status %s (%s)", t.App, dec.Status, dec.Reason)
					}
				}
			})
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	run(2 * *costInFlight) // warm-up: connections, scripts, engines
	ops0, cmds0, fleet0, cpu0 := redisOps(ctx, st.Client()), cmds.Total(), fleetCmds(), cpuTime()
	b.ResetTimer()
	run(b.N)
	b.StopTimer()
	cpu1, fleet1, cmds1, ops1 := cpuTime(), fleetCmds(), cmds.Total(), redisOps(ctx, st.Client())
	n := float64(b.N)
	b.ReportMetric(float64(cmds1-cmds0+fleet1-fleet0)/n, "redis-cmds/recheck")
	b.ReportMetric(float64(ops1-ops0-1)/n, "redis-ops/recheck")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/n, "sched-cpu-us/recheck")
	b.ReportMetric(float64(cmds1-cmds0)/n, "sched-cmds/recheck")
}
