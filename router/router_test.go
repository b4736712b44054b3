package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// errNoSource is what noSource answers: tests that install snapshots directly must not read anything else.
var errNoSource = errors.New("router test: no source")

// noSource is the Source of routers whose snapshots and fleet views the test installs itself.
type noSource struct{}

func (noSource) ScanDecisions(context.Context, func(placement.Decision) error) error {
	return errNoSource
}
func (noSource) WatchDecisions(context.Context, func(string)) error { return errNoSource }
func (noSource) Fleet(context.Context) ([]storage.PoPState, error)  { return nil, errNoSource }

// testLogger logs through t.Logf.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newTestRouter returns a router over src with cfg (DefaultConfig when nil) logging to t.
func newTestRouter(t testing.TB, src Source, mod func(*Config)) *Router {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = testLogger(t)
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(src, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// install swaps in a snapshot of ds, as a successful reload would, without a source.
func install(t testing.TB, r *Router, ds ...placement.Decision) {
	t.Helper()
	b := newBuilder(r, r.snapshot(), r.now())
	for _, d := range ds {
		b.add(d)
	}
	if b.skipped > 0 {
		t.Fatalf("install: %d decisions skipped, first: %v", b.skipped, b.firstErr)
	}
	now := r.now()
	r.storeSnapshot(b.finish(now))
	r.contactMs.Store(now.UnixMilli())
	r.clockMs.Store(now.UnixMilli())
}

// dec is a SUCCESS unicast decision for app with the given best PoP and candidates "POP:ms".
func dec(app, best string, cands ...string) placement.Decision {
	d := placement.Decision{App: app, Mode: placement.ModeHost, BestPoP: best, Status: placement.StatusSuccess,
		Verdict: placement.VerdictUnicast, Version: 1}
	for _, c := range cands {
		pop, ms, ok := strings.Cut(c, ":")
		if !ok {
			panic("dec: candidate " + c + " is not POP:ms")
		}
		var v float64
		if _, err := fmt.Sscan(ms, &v); err != nil {
			panic(err)
		}
		d.Candidates = append(d.Candidates, placement.Candidate{PoP: pop, RTTMs: v})
	}
	return d
}

// pops builds a fleet: "LHR" up, "LHR-" down, "LHR~" up but drained.
func pops(codes ...string) []storage.PoPState {
	var out []storage.PoPState
	for _, c := range codes {
		st := storage.PoPState{PoP: strings.TrimRight(c, "-~"), Up: true}
		switch {
		case strings.HasSuffix(c, "-"):
			st.Up = false
		case strings.HasSuffix(c, "~"):
			st.Drained = true
		}
		out = append(out, st)
	}
	return out
}

// idWhere returns the first request id "req-N" whose baseline hash (MurmurHash2) satisfies ok.
func idWhere(t testing.TB, ok func(h uint64) bool) string {
	t.Helper()
	for i := range 100000 {
		id := fmt.Sprintf("req-%d", i)
		if ok(uint64(MurmurHash2(id))) {
			return id
		}
	}
	t.Fatal("idWhere: no request id found")
	return ""
}

func TestRouteRules(t *testing.T) {
	r := newTestRouter(t, noSource{}, nil)
	with := func(d placement.Decision, f func(*placement.Decision)) placement.Decision { f(&d); return d }
	install(t, r,
		dec("api", "LHR", "LHR:10", "FRA:15", "AMS:18", "CDG:40"),
		dec("ratio", "SIN", "SIN:100", "HKG:140", "NRT:160"), // 140 <= 1.5x100; 160 > 150 and > 110
		dec("ingress-best", "EWR", "EWR:3", "IAD:8"),
		dec("ingress-second", "IAD", "IAD:3", "EWR:8"),
		dec("no-rtt", "SYD", "MEL:20"), // best PoP not among the candidates: its RTT is unknown
		with(dec("anycast", "LHR", "LHR:1"), func(d *placement.Decision) { d.Verdict = placement.VerdictAnycast }),
		with(dec("replicated", "LHR", "LHR:1"), func(d *placement.Decision) { d.Verdict = placement.VerdictReplicated }),
		with(dec("unknown-verdict", "LHR", "LHR:1"), func(d *placement.Decision) { d.Verdict = placement.VerdictUnknown }),
		with(dec("region", "IAD"), func(d *placement.Decision) { d.Mode, d.Verdict = placement.ModeRegion, "" }),
		with(dec("pending", "LHR", "LHR:1"), func(d *placement.Decision) { d.Status = placement.StatusInsufficientInvocations }),
		with(dec("none", "LHR", "LHR:1"), func(d *placement.Decision) { d.Status = placement.StatusNone }),
		with(dec("nohosts", "LHR"), func(d *placement.Decision) { d.Status = placement.StatusNoValidHosts }),
		dec("nobest", ""),
	)
	id := idWhere(t, func(h uint64) bool { return h >= r.baselineThr })
	baseID := idWhere(t, func(h uint64) bool { return h < r.baselineThr })
	all := pops("LHR", "FRA", "AMS", "CDG", "SIN", "HKG", "NRT", "EWR", "IAD", "SYD", "MEL")

	tests := []struct {
		name    string
		app     string
		ingress string
		id      string
		kind    Kind
		fleet   []storage.PoPState // nil: no fleet view loaded
		want    Result
	}{
		{"routed_to_best", "api", "EWR", id, KindFetch, all, Result{"LHR", "remote-LHR", ReasonRemote, true}},
		{"routed_without_fleet_view", "api", "EWR", id, KindFetch, nil, Result{"LHR", "remote-LHR", ReasonRemote, true}},
		{"rpc_runs_locally", "api", "EWR", id, KindRPC, all, Result{"EWR", "local-EWR", ReasonNotFetch, false}},
		{"entrypoint_runs_locally", "api", "EWR", id, KindEntrypoint, all, Result{"EWR", "local-EWR", ReasonNotFetch, false}},
		{"cron_runs_locally", "api", "EWR", id, KindCron, all, Result{"EWR", "local-EWR", ReasonNotFetch, false}},
		{"asset_runs_locally", "api", "EWR", id, KindAsset, all, Result{"EWR", "local-EWR", ReasonNotFetch, false}},
		{"baseline_runs_locally", "api", "EWR", baseID, KindFetch, all, Result{"EWR", "local-EWR", ReasonBaseline, false}},
		{"unknown_app", "nope", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonNoDecision, false}},
		{"no_best_pop", "nobest", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonNoDecision, false}},
		{"anycast", "anycast", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonVerdict, false}},
		{"replicated", "replicated", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonVerdict, false}},
		{"unknown_verdict_with_success_is_placed", "unknown-verdict", "EWR", id, KindFetch, all, Result{"LHR", "remote-LHR", ReasonRemote, true}},
		{"region_mode_without_verdict", "region", "EWR", id, KindFetch, all, Result{"IAD", "remote-IAD", ReasonRemote, true}},
		{"insufficient_invocations", "pending", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonStatus, false}},
		{"no_status_yet", "none", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonStatus, false}},
		{"no_valid_hosts", "nohosts", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonStatus, false}},
		{"best_is_ingress", "ingress-best", "EWR", id, KindFetch, all, Result{"EWR", "local-EWR", ReasonIngressBest, false}},
		{"best_is_ingress_beats_baseline", "ingress-best", "EWR", baseID, KindFetch, all, Result{"EWR", "local-EWR", ReasonIngressBest, false}},
		{"unknown_ingress", "api", "XYZ", id, KindFetch, all, Result{"LHR", "remote-LHR", ReasonRemote, true}},
		{"unknown_ingress_local", "pending", "XYZ", id, KindFetch, all, Result{"XYZ", "local-XYZ", ReasonStatus, false}},

		{"best_down_next_candidate", "api", "EWR", id, KindFetch, pops("LHR-", "FRA", "AMS", "CDG"), Result{"FRA", "remote-FRA", ReasonFailover, true}},
		{"best_drained_next_candidate", "api", "EWR", id, KindFetch, pops("LHR~", "FRA", "AMS", "CDG"), Result{"FRA", "remote-FRA", ReasonFailover, true}},
		{"best_without_heartbeat", "api", "EWR", id, KindFetch, pops("FRA", "AMS", "CDG"), Result{"FRA", "remote-FRA", ReasonFailover, true}},
		{"two_down_third_within_extra_ms", "api", "EWR", id, KindFetch, pops("LHR-", "FRA~", "AMS", "CDG"), Result{"AMS", "remote-AMS", ReasonFailover, true}},
		{"rest_beyond_budget_local", "api", "EWR", id, KindFetch, pops("LHR-", "FRA-", "AMS-", "CDG"), Result{"EWR", "local-EWR", ReasonUnavailable, false}},
		{"within_ratio_budget", "ratio", "EWR", id, KindFetch, pops("SIN-", "HKG", "NRT"), Result{"HKG", "remote-HKG", ReasonFailover, true}},
		{"beyond_ratio_budget", "ratio", "EWR", id, KindFetch, pops("SIN-", "HKG-", "NRT"), Result{"EWR", "local-EWR", ReasonUnavailable, false}},
		{"failover_to_ingress", "ingress-second", "EWR", id, KindFetch, pops("IAD-", "EWR"), Result{"EWR", "local-EWR", ReasonFailover, false}},
		{"best_rtt_unknown_no_failover", "no-rtt", "EWR", id, KindFetch, pops("SYD-", "MEL"), Result{"EWR", "local-EWR", ReasonUnavailable, false}},
		{"best_rtt_unknown_but_up", "no-rtt", "EWR", id, KindFetch, pops("SYD", "MEL"), Result{"SYD", "remote-SYD", ReasonRemote, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r.setFleet(nil)
			if tc.fleet != nil {
				r.setFleet(tc.fleet)
			}
			if got := r.Route(tc.app, tc.ingress, tc.id, tc.kind); got != tc.want {
				t.Errorf("Route(%q, %q, %q, %v) = %+v, want %+v", tc.app, tc.ingress, tc.id, tc.kind, got, tc.want)
			}
			// A proxy's table holds Route's answer for a fetch outside the baseline (the proxy applies the
			// baseline and the kind itself).
			if want := r.Route(tc.app, tc.ingress, id, KindFetch); tc.ingress == "EWR" {
				if got := r.Place(tc.app, tc.ingress); got != want {
					t.Errorf("Place(%q, %q) = %+v, want Route's %+v", tc.app, tc.ingress, got, want)
				}
			}
		})
	}
}

func TestRouteStaleAndNoSnapshot(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r := newTestRouter(t, noSource{}, func(c *Config) {
		c.MaxAge = time.Minute
		c.BaselineFraction = 0
		c.Now = func() time.Time { return now }
	})
	if got := r.Route("api", "EWR", "r1", KindFetch); got.Reason != ReasonNoSnapshot || got.Routed || got.Header != "local-EWR" {
		t.Errorf("before any snapshot: %+v, want local with %v", got, ReasonNoSnapshot)
	}
	install(t, r, dec("api", "LHR", "LHR:10"))
	steps := []struct {
		name    string
		advance time.Duration // coarse clock advance since the last contact
		want    Reason
	}{
		{"fresh", 0, ReasonRemote},
		{"just_within_max_age", time.Minute, ReasonRemote},
		{"past_max_age", time.Minute + 10*time.Millisecond, ReasonStale},
		{"long_gone", time.Hour, ReasonStale},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r.clockMs.Store(r.contactMs.Load() + s.advance.Milliseconds())
			got := r.Route("api", "EWR", "r1", KindFetch)
			if got.Reason != s.want || got.Routed != (s.want == ReasonRemote) {
				t.Errorf("after %v: %+v, want reason %v", s.advance, got, s.want)
			}
			if s.want == ReasonStale && (got.ExecPoP != "EWR" || got.Header != "local-EWR") {
				t.Errorf("stale: %+v, want local-EWR", got)
			}
			if r.Info().Stale != (s.want == ReasonStale) {
				t.Errorf("Info().Stale = %v", r.Info().Stale)
			}
		})
	}
}

// TestRouteExpiredDecision: a decision past its ExpiresAt is none: the request runs locally with
// ReasonStaleDecision, whether it expired before the snapshot was built or while the snapshot was served. The
// expiry is exact to a unit (1.024 s), never late; one beyond the cell's range waits for a reload.
func TestRouteExpiredDecision(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	reg := prometheus.NewPedanticRegistry()
	r := newTestRouter(t, noSource{}, func(c *Config) {
		c.MaxAge = 2 * time.Hour
		c.RecheckInterval = time.Hour
		c.BaselineFraction = 0
		c.Registerer = reg
		c.Now = func() time.Time { return now }
	})
	expiring := func(app string, in time.Duration) placement.Decision {
		d := dec(app, "LHR", "LHR:10")
		if in != 0 {
			d.ExpiresAt = now.Add(in)
		}
		return d
	}
	install(t, r, expiring("never", 0), expiring("gone", -time.Second), expiring("minute", time.Minute),
		expiring("far", 2*time.Hour))
	if s := r.snapshot(); s.reloadBy.IsZero() || s.reloadBy.After(now.Add(expiryRange)) {
		t.Errorf("snapshot with a decision expiring in 2 h: reloadBy %v, want within %v", s.reloadBy, expiryRange)
	}
	steps := []struct {
		name    string
		advance time.Duration // coarse clock advance since the snapshot was built
		app     string
		want    Reason
	}{
		{"no_expiry", 0, "never", ReasonRemote},
		{"no_expiry_later", time.Hour, "never", ReasonRemote},
		{"expired_before_the_load", 0, "gone", ReasonStaleDecision},
		{"before_expiry", 58 * time.Second, "minute", ReasonRemote},
		{"at_expiry", time.Minute, "minute", ReasonStaleDecision},
		{"past_expiry", 10 * time.Minute, "minute", ReasonStaleDecision},
		{"beyond_the_range", time.Hour, "far", ReasonRemote},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r.clockMs.Store(now.Add(s.advance).UnixMilli())
			got := r.Route(s.app, "EWR", "r1", KindFetch)
			if got.Reason != s.want || got.Routed != (s.want == ReasonRemote) {
				t.Errorf("%s after %v: %+v, want reason %v", s.app, s.advance, got, s.want)
			}
			if s.want == ReasonStaleDecision && got.Header != "local-EWR" {
				t.Errorf("expired: %+v, want local-EWR", got)
			}
		})
	}
	if v := gather(t, reg, "vantage_router_routes_total")["stale_decision"]; v != 3 {
		t.Errorf(`routes_total{reason="stale_decision"} = %v, want 3`, v)
	}
}

// TestBaselineShare checks that 1% ± 0.1% of 1,000,000 request ids are held back, that the choice is
// deterministic per id, and that other fractions are honoured.
func TestBaselineShare(t *testing.T) {
	const n = 1_000_000
	for _, tc := range []struct {
		name     string
		fraction float64
		ids      func(i int) string
	}{
		{"one_percent_sequential_ids", 0.01, func(i int) string { return fmt.Sprintf("req-%d", i) }},
		{"one_percent_cf_ray_ids", 0.01, func(i int) string { return fmt.Sprintf("%016x-EWR", uint64(i)*0x9E3779B97F4A7C15) }},
		{"five_percent", 0.05, func(i int) string { return fmt.Sprintf("%d", i) }},
		{"off", 0, func(i int) string { return fmt.Sprintf("%d", i) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t, noSource{}, func(c *Config) { c.BaselineFraction = tc.fraction })
			install(t, r, dec("api", "LHR", "LHR:10"))
			held := 0
			for i := range n {
				res := r.Route("api", "EWR", tc.ids(i), KindFetch)
				switch res.Reason {
				case ReasonBaseline:
					held++
				case ReasonRemote:
				default:
					t.Fatalf("id %q: unexpected %+v", tc.ids(i), res)
				}
			}
			share := float64(held) / n
			t.Logf("baseline share %.4f%% (%d of %d)", 100*share, held, n)
			if math.Abs(share-tc.fraction) > tc.fraction/10 {
				t.Errorf("baseline share %.4f, want %.4f ± %.4f", share, tc.fraction, tc.fraction/10)
			}
			// Deterministic: the same id gets the same answer again, and from another router (another snapshot
			// hash seed).
			r2 := newTestRouter(t, noSource{}, func(c *Config) { c.BaselineFraction = tc.fraction })
			install(t, r2, dec("api", "LHR", "LHR:10"))
			for i := range 10000 {
				if a, b := r.Route("api", "EWR", tc.ids(i), KindFetch), r2.Route("api", "EWR", tc.ids(i), KindFetch); a != b {
					t.Fatalf("id %q: %+v from one router, %+v from another", tc.ids(i), a, b)
				}
			}
		})
	}
}

func TestSpread(t *testing.T) {
	const n = 20000
	cands := []string{"LHR:10", "FRA:14", "AMS:15", "CDG:15.5", "MAD:30"} // ε 5 ms: LHR, FRA, AMS (CDG is 5.5 ms off)
	tests := []struct {
		name     string
		rps      float64            // SpreadAboveRPS
		capacity map[string]float64 // PoPCapacityRPS
		fleet    []storage.PoPState
		want     map[string]float64 // share of the requests after warm-up
	}{
		{"below_rate_all_best", 1e6, nil, nil, map[string]float64{"LHR": 1}},
		{"equal_weights", 100, nil, nil, map[string]float64{"LHR": 1. / 3, "FRA": 1. / 3, "AMS": 1. / 3}},
		{"headroom_weights", 100, map[string]float64{"LHR": 300000, "FRA": 100000, "AMS": 100000},
			nil, map[string]float64{"LHR": 0.6, "FRA": 0.2, "AMS": 0.2}},
		{"unknown_capacity_equal", 100, map[string]float64{"LHR": 300000, "FRA": 100000},
			nil, map[string]float64{"LHR": 1. / 3, "FRA": 1. / 3, "AMS": 1. / 3}},
		{"drained_member_skipped", 100, nil, pops("LHR", "FRA~", "AMS", "CDG", "MAD"),
			map[string]float64{"LHR": 0.5, "AMS": 0.5}},
		{"best_down_spread_among_rest", 100, nil, pops("LHR-", "FRA", "AMS", "CDG", "MAD"),
			map[string]float64{"FRA": 0.5, "AMS": 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t, noSource{}, func(c *Config) {
				c.BaselineFraction = 0
				c.SpreadAboveRPS = tc.rps
				c.SpreadEpsilonMs = 5
				c.PoPCapacityRPS = tc.capacity
				c.RateWindow = time.Second // the coarse clock does not move without Run: all in one window
			})
			install(t, r, dec("hot", "LHR", cands...))
			if tc.fleet != nil {
				r.setFleet(tc.fleet)
			}
			warm := 2*int(tc.rps) + 100 // the rate is sampled (1 request in 8): well past the threshold
			if tc.rps >= 1e6 {
				warm = 0
			}
			for i := range warm {
				r.Route("hot", "EWR", fmt.Sprintf("warm-%d", i), KindFetch)
			}
			got := map[string]int{}
			for i := range n {
				id := fmt.Sprintf("req-%d", i)
				res := r.Route("hot", "EWR", id, KindFetch)
				got[res.ExecPoP]++
				if again := r.Route("hot", "EWR", id, KindFetch); tc.capacity == nil && again != res {
					t.Fatalf("id %q: %+v then %+v: not deterministic", id, res, again)
				}
				if res.ExecPoP != "LHR" && res.Reason != ReasonSpread {
					t.Fatalf("id %q: %+v: want reason spread away from the best", id, res)
				}
			}
			for pop, c := range got {
				share := float64(c) / n
				if math.Abs(share-tc.want[pop]) > 0.03 {
					t.Errorf("%s got %.3f of the requests, want %.3f (all: %v)", pop, share, tc.want[pop], got)
				}
			}
			for pop, w := range tc.want {
				if got[pop] == 0 && w > 0 {
					t.Errorf("%s got no requests, want %.3f (all: %v)", pop, w, got)
				}
			}
		})
	}
}

func TestSpreadRateWindows(t *testing.T) {
	r := newTestRouter(t, noSource{}, func(c *Config) {
		c.BaselineFraction = 0
		c.SpreadAboveRPS = 100
		c.RateWindow = time.Second
	})
	install(t, r, dec("hot", "LHR", "LHR:10", "FRA:11"))
	t0 := r.clockMs.Load()
	burst := func(n int) (away int) {
		for i := range n {
			if r.Route("hot", "EWR", fmt.Sprintf("r%d", i), KindFetch).ExecPoP != "LHR" {
				away++
			}
		}
		return away
	}
	steps := []struct {
		name     string
		at       time.Duration
		requests int
		spread   bool
	}{
		{"quiet", 0, 40, false}, // the rate is sampled: stay well below the threshold
		{"hot_within_window", 0, 1000, true},
		{"next_window_remembers", time.Second, 50, true},
		{"two_windows_later_forgotten", 3 * time.Second, 30, false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r.clockMs.Store(t0 + s.at.Milliseconds())
			r.contactMs.Store(r.clockMs.Load())
			if away := burst(s.requests); (away > 0) != s.spread {
				t.Errorf("%d of %d requests spread away from LHR, want spreading %v", away, s.requests, s.spread)
			}
		})
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	r := newTestRouter(t, noSource{}, func(c *Config) {
		c.SpreadAboveRPS = 10
		c.PoPCapacityRPS = map[string]float64{"LHR": 1000, "FRA": 1000}
		c.PoPs = []string{"EWR"}
	})
	install(t, r, dec("api", "LHR", "LHR:10", "FRA:12"), dec("pending", ""))
	r.setFleet(pops("LHR", "FRA", "EWR"))
	for _, tc := range []struct{ name, app string }{{"routed_and_spread", "api"}, {"local", "pending"}, {"unknown", "x"}} {
		t.Run(tc.name, func(t *testing.T) {
			if a := testing.AllocsPerRun(1000, func() { r.Route(tc.app, "EWR", "cf-ray-0123456789abcdef", KindFetch) }); a != 0 {
				t.Errorf("Route allocates %.1f times per call, want 0", a)
			}
		})
	}
}

func TestSnapshotLookupAndDuplicates(t *testing.T) {
	r := newTestRouter(t, noSource{}, nil)
	const n = 50000
	var ds []placement.Decision
	for i := range n {
		ds = append(ds, dec(fmt.Sprintf("app-%d.example.com", i), "LHR", "LHR:1"))
	}
	// Later duplicates: a higher version wins whatever the order; a lower one loses.
	newer := dec("app-7.example.com", "FRA", "FRA:1")
	newer.Version = 5
	older := dec("app-7.example.com", "AMS", "AMS:1")
	older.Version = 0
	long := dec(strings.Repeat("x", 100_000), "SIN", "SIN:1")
	ds = append(ds, newer, older, long)
	install(t, r, ds...)
	s := r.snapshot()
	if s.apps != n+1 {
		t.Errorf("snapshot holds %d apps, want %d", s.apps, n+1)
	}
	for i := range n {
		if _, ok := s.lookup(fingerprint(r.seed, fmt.Sprintf("app-%d.example.com", i))); !ok {
			t.Fatalf("app-%d.example.com not found", i)
		}
	}
	for _, absent := range []string{"", "app-", "app-50000.example.com", "App-1.example.com", "app-1.example.co"} {
		if _, ok := s.lookup(fingerprint(r.seed, absent)); ok {
			t.Errorf("lookup(%q) found a record", absent)
		}
	}
	if got := r.Route("app-7.example.com", "EWR", "x", KindFetch); got.ExecPoP != "FRA" {
		t.Errorf("duplicate app: routed to %s, want the higher version's FRA", got.ExecPoP)
	}
	if got := r.Route(long.App, "EWR", "x", KindFetch); got.ExecPoP != "SIN" {
		t.Errorf("long app name: routed to %s, want SIN", got.ExecPoP)
	}
}

// TestFingerprintCollision forces two applications onto one fingerprint: the later is skipped and reported,
// the first keeps its cell.
func TestFingerprintCollision(t *testing.T) {
	r := newTestRouter(t, noSource{}, nil)
	b := newBuilder(r, nil, r.now())
	b.add(dec("first", "LHR", "LHR:1"))
	b.add(dec("second", "FRA", "FRA:1"))
	b.items[1].fp = b.items[0].fp
	s := b.finish(time.Now())
	if s.apps != 1 || b.skipped != 1 || b.firstErr == nil || !strings.Contains(b.firstErr.Error(), "two applications share fingerprint") {
		t.Fatalf("apps %d, skipped %d, err %v; want the collision reported and one app kept", s.apps, b.skipped, b.firstErr)
	}
	r.storeSnapshot(s)
	r.contactMs.Store(r.clockMs.Load())
	if got := r.Route("first", "EWR", "x", KindFetch); got.ExecPoP != "LHR" {
		t.Errorf("first: %+v, want LHR", got)
	}
}

// TestReloadKeepsRates: a reload carries the hot applications' rate estimates over, so spreading goes on.
func TestReloadKeepsRates(t *testing.T) {
	r := newTestRouter(t, noSource{}, func(c *Config) { c.SpreadAboveRPS = 100; c.BaselineFraction = 0 })
	d := dec("hot", "LHR", "LHR:10", "FRA:11")
	install(t, r, d, dec("cold", "LHR", "LHR:10", "FRA:11"))
	for i := range 2000 {
		r.Route("hot", "EWR", fmt.Sprintf("r%d", i), KindFetch)
	}
	spread := func() (away int) {
		for i := range 200 {
			if r.Route("hot", "EWR", fmt.Sprintf("s%d", i), KindFetch).ExecPoP != "LHR" {
				away++
			}
		}
		return away
	}
	if spread() == 0 {
		t.Fatal("hot app not spread before the reload")
	}
	old := r.snapshot()
	b := newBuilder(r, old, r.now())
	b.add(d)
	s := b.finish(time.Now())
	carryRates(old, s, uint64(r.clockMs.Load()/r.windowMs))
	r.storeSnapshot(s)
	if spread() == 0 {
		t.Error("hot app not spread after the reload: its rate was forgotten")
	}
}

func TestBuilderSkipsBadDecisions(t *testing.T) {
	r := newTestRouter(t, noSource{}, nil)
	b := newBuilder(r, nil, r.now())
	for _, d := range []placement.Decision{
		dec("", "LHR"),
		dec("bad-pop", "L HR"),
		dec("too-far", "LHR", "LHR:1", "FRA:-1", "AMS:3"), // a bad RTT loses that candidate only
		dec("bad-candidate", "LHR", "LHR:1", "F\nRA:2", "AMS:3"),
		dec("ok", "LHR", "LHR:1"),
	} {
		b.add(d)
	}
	s := b.finish(time.Now())
	if b.skipped != 2 || s.apps != 3 {
		t.Errorf("skipped %d, kept %d; want 2 skipped (empty name, bad best PoP), 3 kept", b.skipped, s.apps)
	}
	r.storeSnapshot(s)
	r.contactMs.Store(r.clockMs.Load())
	r.setFleet(pops("LHR-", "AMS"))
	if got := r.Route("bad-candidate", "EWR", "x", KindFetch); got.ExecPoP != "AMS" || got.Reason != ReasonFailover {
		t.Errorf("bad candidate code: %+v, want failover to AMS past the bad candidate", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; empty: valid
	}{
		{"default", func(*Config) {}, ""},
		{"zero_recheck", func(c *Config) { c.RecheckInterval = 0 }, "RecheckInterval = 0s: must be > 0"},
		{"baseline_above_one", func(c *Config) { c.BaselineFraction = 1.5 }, "BaselineFraction = 1.5: must be in [0, 1]"},
		{"nan_ratio", func(c *Config) { c.FailoverRatio = math.NaN() }, "FailoverRatio = NaN"},
		{"negative_capacity", func(c *Config) { c.PoPCapacityRPS = map[string]float64{"LHR": -1} }, `PoPCapacityRPS["LHR"] = -1`},
		{"too_many_candidates", func(c *Config) { c.MaxCandidates = 8 }, "MaxCandidates = 8: must be in [1, 7]"},
		{"negative_debounce", func(c *Config) { c.Debounce = -time.Second }, "Debounce = -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(noSource{}, Config{}); err == nil {
		t.Error("New with the zero Config succeeded")
	}
	bad := DefaultConfig()
	bad.PoPs = []string{"E W R"}
	if _, err := New(noSource{}, bad); err == nil || !strings.Contains(err.Error(), `"E W R"`) {
		t.Errorf("New with a bad PoP code: %v, want an error naming it", err)
	}
}

func TestKindAndReasonNames(t *testing.T) {
	for k := range numKinds {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseKind("websocket"); err == nil || !strings.Contains(err.Error(), `"websocket"`) {
		t.Errorf("ParseKind(websocket): %v, want an error naming it", err)
	}
	seen := map[string]bool{}
	for i := range NumReasons {
		if n := i.String(); seen[n] || strings.HasPrefix(n, "reason(") {
			t.Errorf("reason %d: name %q missing or duplicate", i, n)
		} else {
			seen[n] = true
		}
	}
}

func TestRateHit(t *testing.T) {
	var w uint64
	steps := []struct {
		name  string
		epoch uint64
		hits  int
		want  uint64 // estimate after the hits
	}{
		{"first_window", 10, 5, 5},
		{"next_window_keeps_previous", 11, 2, 5},
		{"next_window_overtakes", 11, 5, 7},
		{"skip_a_window", 13, 1, 1},
		{"epoch_wraps", rateEpochMask + 1, 3, 3}, // epoch 0 after 2^24-1 ... compared modulo 2^24
		{"saturates", rateEpochMask + 2, rateCountMax + 10, rateCountMax},
	}
	var got uint64
	for _, s := range steps {
		for range s.hits {
			got = rateHit(&w, s.epoch)
		}
		if got != s.want {
			t.Errorf("%s: estimate %d, want %d", s.name, got, s.want)
		}
		if rr := rateRead(w, s.epoch); rr != s.want {
			t.Errorf("%s: rateRead %d, want %d", s.name, rr, s.want)
		}
	}
	if rr := rateRead(w, rateEpochMask+5); rr != 0 {
		t.Errorf("rateRead long after: %d, want 0", rr)
	}
}
