package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
	"github.com/vantage-edge/vantage/testbed"
)

// nearestRuns is how many times every target of TestEveryPoPAndRegionPlacedNearest is placed afresh.
const nearestRuns = 3

// nearestTarget is one target of TestEveryPoPAndRegionPlacedNearest: the host that answers it on the emulated
// WAN and how an application names it.
type nearestTarget struct {
	host   string // the testbed host behind the target
	mode   placement.Mode
	target string // host:port, or a region probed at its endpoint (an alias of host)
}

// nearestSpec returns the demo's WAN (demo.Spec) with a target host in the city of every PoP ("at-<pop>", TCP
// 443), and a host answering on TCP 443 to the endpoint of every region the demo names (its hosts' and its
// anycast instances' regions), added where the demo has none; and the targets that name them: one host
// target per PoP, one region target per region.
func nearestSpec(t *testing.T) (*testbed.Spec, []nearestTarget) {
	t.Helper()
	spec := demo.Spec()
	var targets []nearestTarget
	for _, pop := range spec.PoPs {
		name := "at-" + strings.ToLower(pop)
		spec.Hosts = append(spec.Hosts, testbed.HostSpec{Name: name, Location: testbed.Location{PoP: pop},
			Services: testbed.Services{TCP: []int{443}}})
		targets = append(targets, nearestTarget{host: name, mode: placement.ModeHost, target: name + ".{zone}:443"})
	}
	var regions []string
	for _, h := range spec.Hosts {
		if h.Region != "" {
			regions = append(regions, h.Region)
		}
	}
	for _, a := range spec.Anycast {
		for _, in := range a.Instances {
			if in.Region != "" {
				regions = append(regions, in.Region)
			}
		}
	}
	slices.Sort(regions)
	for _, region := range slices.Compact(regions) {
		ep, err := (scheduler.RegionEndpoints{}).Endpoint(region)
		if err != nil {
			t.Fatalf("region %s: %v", region, err)
		}
		epHost, _, err := net.SplitHostPort(ep)
		if err != nil {
			t.Fatalf("region %s: endpoint %q: %v", region, ep, err)
		}
		// The demo's own host serving the endpoint (demo.Spec gave it the alias), else one added here.
		i := slices.IndexFunc(spec.Hosts, func(h testbed.HostSpec) bool { return slices.Contains(h.Aliases, epHost) })
		if i < 0 {
			name := "region-" + strings.NewReplacer(":", "-", "_", "-").Replace(region)
			spec.Hosts = append(spec.Hosts, testbed.HostSpec{Name: name, Location: testbed.Location{Region: region},
				Services: testbed.Services{TCP: []int{443}}, Aliases: []string{epHost}})
			i = len(spec.Hosts) - 1
		}
		if !slices.Contains(spec.Hosts[i].TCP, 443) {
			t.Fatalf("region %s: host %s serves the endpoint %s but not TCP 443", region, spec.Hosts[i].Name, ep)
		}
		targets = append(targets, nearestTarget{host: spec.Hosts[i].Name, mode: placement.ModeRegion, target: region})
	}
	return spec, targets
}

// warnLogger logs warnings and errors to t until the test ends: 26 probe daemons' info lines would drown
// the test's own.
func warnLogger(t testing.TB) *slog.Logger {
	mu, on := &sync.Mutex{}, true
	t.Cleanup(func() { mu.Lock(); on = false; mu.Unlock() })
	return slog.New(slog.NewTextHandler(tLog{t, mu, &on}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// forgetHistory deletes every target's history window (storage.KeyRecent) so that the next run's decisions
// rest on that run's own probes only: the window can only keep a slow round out, so each run on its own is
// the harder case, and the three runs are three independent placements of every target.
func forgetHistory(ctx context.Context, t *testing.T, rc *redis.Client) {
	t.Helper()
	keys, err := rc.Keys(ctx, storage.KeyRecent("*")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatalf("no history window matches %s: the key schema changed", storage.KeyRecent("*"))
	}
	if err := rc.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
}

// windowedRTTs reads vantage_scheduler_windowed_rtts_total on the scheduler's /metrics: the PoP RTTs
// decisions took from an earlier round of their history window.
func windowedRTTs(t *testing.T, api, token string) float64 {
	t.Helper()
	const series = "vantage_scheduler_windowed_rtts_total "
	for _, line := range strings.Split(fetch(t, api+"/metrics", token), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %s%q: %v", series, v, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

// TestEveryPoPAndRegionPlacedNearest is the "Must show" on the emulated WAN: the demo's topology (26
// PoPs) with a target host in the city of every PoP and at every region the demo names, a probe daemon per PoP
// and a scheduler built by the one assembly with the shipped defaults (the default planner budget, the PoP
// mesh, the history window), every target registered through the API as a user does, three full runs (new
// applications each run: a first decision each, no previous decision for hysteresis to hold; the history
// window of the earlier runs deleted, so that each run rests on its own probes), and not one decision may name
// a PoP other than the emulator's nearest.
//
// The emulator's nearest is demo.NearestPoP, as TestDemoOnce uses it: the lowest RTT of the latency model the
// testbed's delays are made of, ties (equal model RTT) broken by the spec's order of PoPs. The emulator adds
// no jitter here; the test logs each target's margin to the runner-up PoP, and asserts the model's nearest
// whatever the margin.
func TestEveryPoPAndRegionPlacedNearest(t *testing.T) {
	needRoot(t, "every PoP and region of the demo placed at the nearest PoP")
	skipShort(t, "every PoP and region of the demo placed at the nearest PoP")
	spec, targets := nearestSpec(t)
	want := make([]demo.Nearest, len(targets))
	minMargin, minAt := 1e9, ""
	for i, tg := range targets {
		n, err := demo.NearestPoP(spec, tg.host)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = n
		if m := n.NextMs - n.RTTMs; m < minMargin {
			minMargin, minAt = m, fmt.Sprintf("%s: %s %.2f ms, %s %.2f ms", tg.target, n.PoP, n.RTTMs, n.Next, n.NextMs)
		}
	}
	t.Logf("%d targets (%d PoPs, %d regions); the closest call between nearest and runner-up: %.2f ms (%s)",
		len(targets), len(spec.PoPs), len(targets)-len(spec.PoPs), minMargin, minAt)

	log := warnLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	t0 := time.Now()
	tb, err := testbed.Start(ctx, spec, testbed.Options{Logger: log, Nice: -10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Errorf("testbed close: %v", err)
		}
	})
	srv := redistest.Start(t)
	// Every daemon with connections of its own, as separate `vantage probed` processes have.
	for _, pop := range spec.PoPs {
		cfg := demo.ProbedConfig(tb, pop)
		cfg.Listen, cfg.Logger, cfg.Daemon.DaemonID = "127.0.0.1:0", log.With("pop", pop), "d-"+pop
		d, err := daemon.NewProbed(cfg, openStore(t, []string{srv.Addr()}, log))
		if err != nil {
			t.Fatalf("probe daemon of %s: %v", pop, err)
		}
		start(t, "probed "+pop, d.Run)
	}
	const token = "e2e-nearest-token-0123456789"
	cfg := daemon.DefaultSchedulerConfig()
	cfg.Listen, cfg.Logger = "127.0.0.1:0", log
	cfg.Scheduler.Name = "s1"
	cfg.Tokens = scheduler.Tokens{token: scheduler.Operator("e2e")}
	cfg.Allow = []netip.Prefix{tb.Prefix()}
	st := openStore(t, []string{srv.Addr()}, log)
	s, err := daemon.NewScheduler(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	api := s.URL() // before Run: URL races with Run's start
	start(t, "scheduler", s.Run)
	testwait.Eventually(t, time.Minute, "every PoP up", func() bool {
		fleet, err := st.Fleet(ctx)
		up := 0
		for _, p := range fleet {
			if p.Up {
				up++
			}
		}
		return err == nil && up == len(spec.PoPs)
	})
	t.Logf("fleet up in %v (testbed %s, %d nodes)", time.Since(t0).Round(time.Millisecond), tb.Name(), len(tb.Nodes()))

	zone := strings.TrimSuffix(tb.Zone(), ".")
	misplaced, decided := 0, 0
	tRuns := time.Now()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rc.Close() })
	for run := 1; run <= nearestRuns; run++ {
		if run > 1 {
			forgetHistory(ctx, t, rc)
		}
		t1 := time.Now()
		apps := make([]string, len(targets))
		for i, tg := range targets {
			apps[i] = fmt.Sprintf("n%d-%s-%s", run, tg.mode, tg.host)
			target := strings.ReplaceAll(tg.target, "{zone}", zone)
			if err := demo.PostApp(ctx, api, token, wrangler(apps[i], tg.mode, target), ""); err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
		}
		testwait.Eventually(t, 2*time.Minute, fmt.Sprintf("run %d: a decision for each of %d applications", run, len(apps)), func() bool {
			for _, app := range apps {
				if d, ok := decision(st, app); !ok || d.Status == "" {
					return false
				}
			}
			return true
		})
		runMisplaced, estimated := 0, 0
		var measured []int
		slowest, slowestApp := time.Duration(0), ""
		for i, app := range apps {
			d, _ := decision(st, app)
			decided++
			if el := d.ComputedAt.Sub(t1); el > slowest {
				slowest, slowestApp = el, fmt.Sprintf("%s (candidates %v)", app, d.Candidates)
			}
			measured = append(measured, len(d.Candidates))
			if d.Estimated {
				estimated++
			}
			w := want[i]
			if d.Status != placement.StatusSuccess || d.BestPoP != w.PoP {
				runMisplaced++
				t.Errorf("run %d: %s (%s %s): status %s best %q verdict %s estimated %v confidence %.2f candidates %v; the emulator's nearest is %s (model %.2f ms; next %s %.2f ms)",
					run, app, targets[i].mode, targets[i].target, d.Status, d.BestPoP, d.Verdict, d.Estimated, d.Confidence,
					d.Candidates, w.PoP, w.RTTMs, w.Next, w.NextMs)
			}
		}
		misplaced += runMisplaced
		slices.Sort(measured)
		w := windowedRTTs(t, api, token)
		t.Logf("run %d: slowest decision %v after the first registration: %s", run, slowest.Round(time.Millisecond), slowestApp)
		t.Logf("run %d: %d targets decided in %v, %d placed anywhere but the emulator's nearest PoP; %d estimated from the model; PoPs measured per decision: median %d, max %d; RTTs taken from an earlier round of the history window (this run's, earlier runs' are deleted) so far: %.0f",
			run, len(apps), time.Since(t1).Round(time.Millisecond), runMisplaced, estimated, measured[len(measured)/2], measured[len(measured)-1], w)
	}
	t.Logf("every PoP and region of the demo: %d targets x %d runs = %d decisions, %d placed anywhere but the emulator's nearest PoP; runs took %v, %v in all",
		len(targets), nearestRuns, decided, misplaced, time.Since(tRuns).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}
