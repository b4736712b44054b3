package smart

import (
	"math"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/smart/smarttest"
	"github.com/vantage-edge/vantage/storage"
)

var now = smarttest.Now

func rtt(t *testing.T, a, b string) float64 { t.Helper(); return smarttest.RTT(t, a, b) }

func newGen(t *testing.T) *smarttest.Gen { return smarttest.NewGen(t) }

func verdicts(m map[string]placement.Verdict) func(string) (placement.Verdict, bool) {
	return func(h string) (placement.Verdict, bool) { v, ok := m[h]; return v, ok }
}

func success(best string) placement.Decision {
	return placement.Decision{App: "shop", Mode: placement.ModeSmart, Status: placement.StatusSuccess, BestPoP: best}
}

// analyzeCase is one scenario of TestAnalyze, also run on aggregates by TestAggregatesDecideLikeRecords.
type analyzeCase struct {
	name        string
	cfg         func(*Config)
	in          func(t *testing.T) Input
	lk          Lookups
	wantStatus  placement.Status
	wantBest    string
	wantMark    bool
	wantExclude map[Exclusion]int
	check       func(t *testing.T, a Analysis)
}

func (tt analyzeCase) config(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	if tt.cfg != nil {
		tt.cfg(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestAnalyze(t *testing.T) {
	for _, tt := range analyzeCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.config(t)
			in := tt.in(t)
			a := Analyze(cfg, in, tt.lk)
			d := a.Decision
			if d.Status != tt.wantStatus || d.BestPoP != tt.wantBest || a.MarkUnsupported != tt.wantMark {
				t.Fatalf("status %q best %q mark %v, want %q %q %v\nanalysis %+v", d.Status, d.BestPoP, a.MarkUnsupported,
					tt.wantStatus, tt.wantBest, tt.wantMark, a)
			}
			if d.App != "shop" || d.Mode != placement.ModeSmart || !d.ComputedAt.Equal(in.Now) {
				t.Errorf("decision %+v: want app shop, mode smart, computed at %v", d, in.Now)
			}
			for why, n := range tt.wantExclude {
				if a.Excluded[why] != n {
					t.Errorf("excluded %v: %d, want %d (all: %v)", why, a.Excluded[why], n, a.Excluded)
				}
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}

func analyzeCases(t *testing.T) []analyzeCase {
	sydFRA := rtt(t, "SYD", "FRA")
	local := 2 + 6*rtt(t, "SYD", "db") // a Sydney request run in Sydney
	return []analyzeCase{
		{
			name:       "no_telemetry",
			in:         func(t *testing.T) Input { return Input{App: "shop", Now: now} },
			wantStatus: placement.StatusInsufficientInvocations,
		},
		{
			name: "too_few_requests",
			in: func(t *testing.T) Input {
				return Input{App: "shop", Now: now, Records: newGen(t).Add(10, "SYD", "SYD", 5).Add(9, "FRA", "FRA", 5).Recs}
			},
			wantStatus: placement.StatusInsufficientInvocations,
		},
		{
			name: "one_location",
			in: func(t *testing.T) Input {
				return Input{App: "shop", Now: now, Records: newGen(t).Add(40, "SYD", "SYD", 5).Recs}
			},
			wantStatus: placement.StatusInsufficientInvocations,
		},
		{
			name: "old_records_outside_the_window",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(30, "SYD", "SYD", 5).Add(30, "FRA", "FRA", 5)
				return Input{App: "shop", Now: now.Add(time.Hour), Records: g.Recs}
			},
			wantStatus: placement.StatusInsufficientInvocations,
		},
		{
			name: "other_deploy_ignored",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(30, "SYD", "SYD", 5).Add(30, "FRA", "FRA", 5)
				return Input{App: "shop", Deploy: "v2", Now: now, Records: g.Recs}
			},
			wantStatus: placement.StatusInsufficientInvocations,
		},
		{
			name: "no_subrequests",
			in: func(t *testing.T) Input {
				return Input{App: "shop", Now: now, Records: newGen(t).Add(20, "SYD", "SYD", 0).Add(20, "FRA", "FRA", 0).Recs}
			},
			wantStatus: placement.StatusNoValidHosts,
		},
		{
			name: "only_analytics_hosts",
			in: func(t *testing.T) Input {
				extra := []storage.Subrequest{{Host: "www.google-analytics.com", DurationMs: 40}, {Host: "o1.ingest.sentry.io:443", DurationMs: 90}, {Host: "http-intake.logs.datadoghq.com", DurationMs: 30}}
				return Input{App: "shop", Now: now, Records: newGen(t).Add(20, "SYD", "SYD", 0, extra...).Add(20, "FRA", "FRA", 0, extra...).Recs}
			},
			wantStatus:  placement.StatusNoValidHosts,
			wantExclude: map[Exclusion]int{ExcludedAnalytics: 120},
		},
		{
			name: "only_wait_until",
			in: func(t *testing.T) Input {
				extra := []storage.Subrequest{{Host: "logs.example.com", DurationMs: 200, WaitUntil: true}}
				return Input{App: "shop", Now: now, Records: newGen(t).Add(20, "SYD", "SYD", 0, extra...).Add(20, "FRA", "FRA", 0, extra...).Recs}
			},
			wantStatus:  placement.StatusNoValidHosts,
			wantExclude: map[Exclusion]int{ExcludedWaitUntil: 40},
		},
		{
			name: "anycast_database",
			in: func(t *testing.T) Input {
				return Input{App: "shop", Now: now, Records: newGen(t).Add(20, "SYD", "SYD", 5).Add(20, "FRA", "FRA", 5).Recs}
			},
			lk:          Lookups{Verdict: verdicts(map[string]placement.Verdict{"db:5432": placement.VerdictAnycast})},
			wantStatus:  placement.StatusNoValidHosts,
			wantExclude: map[Exclusion]int{ExcludedAnycast: 200},
		},
		{
			name: "replicated_api_and_analytics",
			in: func(t *testing.T) Input {
				extra := []storage.Subrequest{{Host: "api.example.com", DurationMs: 20}, {Host: "api.segment.io", DurationMs: 5}}
				return Input{App: "shop", Now: now, Records: newGen(t).Add(20, "SYD", "SYD", 0, extra...).Add(20, "FRA", "FRA", 0, extra...).Recs}
			},
			lk:          Lookups{Verdict: verdicts(map[string]placement.Verdict{"api.example.com": placement.VerdictReplicated})},
			wantStatus:  placement.StatusNoValidHosts,
			wantExclude: map[Exclusion]int{ExcludedReplicated: 40, ExcludedAnalytics: 40},
		},
		{
			name: "half_a_subrequest_per_request",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(10, "SYD", "SYD", 1).Add(10, "SYD", "SYD", 0).Add(10, "FRA", "FRA", 1).Add(10, "FRA", "FRA", 0)
				return Input{App: "shop", Now: now, Records: g.Recs}
			},
			wantStatus: placement.StatusInsufficientSubrequests,
		},
		{
			name: "excluded_subrequests_do_not_make_up_the_count",
			in: func(t *testing.T) Input {
				extra := []storage.Subrequest{{Host: "sentry.io", DurationMs: 50}, {Host: "db:5432", DurationMs: 50, WaitUntil: true}}
				g := newGen(t).Add(20, "SYD", "SYD", 0, extra...).Add(10, "FRA", "FRA", 1).Add(10, "FRA", "FRA", 0)
				return Input{App: "shop", Now: now, Records: g.Recs}
			},
			wantStatus:  placement.StatusInsufficientSubrequests,
			wantExclude: map[Exclusion]int{ExcludedAnalytics: 20, ExcludedWaitUntil: 20},
		},
		{
			name: "sydney_user_frankfurt_database",
			in: func(t *testing.T) Input {
				return Input{App: "shop", Now: now, Records: newGen(t).Add(30, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Recs}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
			check: func(t *testing.T, a Analysis) {
				// 30 Sydney requests at FRA cost 2 + 6 x 0.8 + RTT(SYD, FRA); 10 Frankfurt ones 2 + 6 x 0.8.
				fra := 2 + 6*rtt(t, "FRA", "db")
				want := (30*(fra+sydFRA) + 10*fra) / 40
				if e := a.Estimates[0]; e.PoP != "FRA" || !e.Observed || math.Abs(e.MeanMs-want) > 0.01 {
					t.Errorf("best estimate %+v, want FRA observed %.2f ms", e, want)
				}
				if wantLocal := (30*local + 10*fra) / 40; math.Abs(a.LocalMs-wantLocal) > 0.01 {
					t.Errorf("LocalMs %.2f, want %.2f", a.LocalMs, wantLocal)
				}
				if a.Decision.Estimated || a.Decision.Confidence != 1 || len(a.Decision.Candidates) != 2 || a.Decision.Candidates[1].PoP != "SYD" {
					t.Errorf("decision %+v: want measured, confidence 1, candidates FRA then SYD", a.Decision)
				}
				if len(a.Hosts) != 1 || a.Hosts[0].PerRequest != 6 || !a.Hosts[0].HasLoc {
					t.Errorf("hosts %+v: want db:5432, 6 per request, located", a.Hosts)
				}
			},
		},
		{
			name: "analytics_and_wait_until_ignored_when_placing",
			in: func(t *testing.T) Input {
				extra := []storage.Subrequest{{Host: "api.segment.io", DurationMs: 300}, {Host: "audit.example.com", DurationMs: 500, WaitUntil: true}}
				return Input{App: "shop", Now: now, Records: newGen(t).Add(30, "SYD", "SYD", 6, extra...).Add(10, "FRA", "FRA", 6, extra...).Recs}
			},
			wantStatus:  placement.StatusSuccess,
			wantBest:    "FRA",
			wantExclude: map[Exclusion]int{ExcludedAnalytics: 40, ExcludedWaitUntil: 40},
		},
		{
			name: "database_near_the_users_stays_local",
			in: func(t *testing.T) Input {
				// One query per request: Sydney's users wait one RTT to the database either way.
				return Input{App: "shop", Now: now, Records: newGen(t).Add(30, "FRA", "FRA", 1).Add(10, "SYD", "SYD", 1).Recs}
			},
			wantStatus: placement.StatusSuccess,
			check: func(t *testing.T, a Analysis) {
				if a.Decision.BestPoP != "" || len(a.Decision.Candidates) == 0 {
					t.Errorf("decision %+v: want no best PoP but ranked candidates", a.Decision)
				}
			},
		},
		{
			name: "relative_margin_not_met",
			in: func(t *testing.T) Input {
				// One query per request: LHR 13.7 ms from FRA, 1 query; users in LHR gain < 20 %.
				return Input{App: "shop", Now: now, Records: newGen(t).Add(30, "LHR", "LHR", 1).Add(5, "FRA", "FRA", 1).Recs}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "",
		},
		{
			name: "relative_margin_met_when_lowered",
			cfg:  func(c *Config) { c.MarginRel, c.MarginAbsMs = 0.01, 0 },
			in: func(t *testing.T) Input {
				return Input{App: "shop", Now: now, Records: newGen(t).Add(30, "LHR", "LHR", 3).Add(5, "FRA", "FRA", 3).Recs}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
		},
		{
			name: "absolute_margin_not_met",
			cfg:  func(c *Config) { c.MarginRel, c.MarginAbsMs = 0.01, 50 },
			in: func(t *testing.T) Input {
				// LHR users: 2 + 3 x 13.9 = 43.7 ms locally, 2 + 3 x 0.8 + 13.7 = 18.1 at FRA: 58 % faster, 25 ms.
				return Input{App: "shop", Now: now, Records: newGen(t).Add(30, "LHR", "LHR", 3).Add(5, "FRA", "FRA", 3).Recs}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "",
		},
		{
			name: "modelled_backend_where_rarely_run",
			in: func(t *testing.T) Input {
				// Two executions at FRA only (< MinObserved): its back-end time is modelled from the
				// subrequests' RTT there.
				return Input{App: "shop", Now: now, Records: newGen(t).Add(30, "SYD", "SYD", 6).Add(2, "FRA", "FRA", 6).Recs}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
			check: func(t *testing.T, a Analysis) {
				e := a.Estimates[0]
				want := 2 + 6*rtt(t, "FRA", "db") // overhead (2 ms of CPU) + 6 x the smallest RTT seen at FRA
				if e.Observed || math.Abs(e.BackendMs-want) > 0.01 || !a.Decision.Estimated || a.Decision.Confidence >= 1 {
					t.Errorf("estimate %+v, decision %+v: want modelled back end %.2f ms, estimated", e, a.Decision, want)
				}
			},
		},
		{
			name: "fleet_rtts_model_a_pop_without_observations",
			in: func(t *testing.T) Input {
				// IAD ran once, with its subrequest lost from the record (e.g. sampled out); the fleet
				// probed db:5432 from IAD, and that RTT models IAD.
				g := newGen(t).Add(30, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Add(1, "IAD", "IAD", 0)
				return Input{App: "shop", Now: now, Records: g.Recs}
			},
			lk:         Lookups{HostRTTs: func(h string) map[string]float64 { return map[string]float64{"IAD": 97, "FRA": 0.8} }},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
			check: func(t *testing.T, a Analysis) {
				var iad *Estimate
				for i := range a.Estimates {
					if a.Estimates[i].PoP == "IAD" {
						iad = &a.Estimates[i]
					}
				}
				// 41 requests, 240 db subrequests: 240/41 per request x 97 ms + 2 ms overhead.
				if want := 2 + 240.0/41*97; iad == nil || iad.Observed || math.Abs(iad.BackendMs-want) > 0.01 {
					t.Errorf("IAD estimate %+v, want modelled %.2f ms from the fleet RTT", iad, want)
				}
				if !a.Hosts[0].Fleet {
					t.Errorf("host %+v: want Fleet", a.Hosts[0])
				}
			},
		},
		{
			name: "ingress_never_run_locally_is_triangulated",
			in: func(t *testing.T) Input {
				// Tokyo's users have always been routed to FRA: their local time is modelled from the
				// database's location, triangulated from the subrequest RTTs seen at SYD, FRA, SIN and IAD.
				g := newGen(t).Add(10, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Add(10, "SIN", "SIN", 6).Add(10, "IAD", "IAD", 6).Add(10, "NRT", "FRA", 6)
				return Input{App: "shop", Now: now, Records: g.Recs, Previous: success("FRA")}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
			check: func(t *testing.T, a Analysis) {
				h := a.Hosts[0]
				if !h.HasLoc {
					t.Fatalf("db not located: %+v", h)
				}
				p, _ := geo.LookupPoP("NRT")
				got := geo.DefaultModel().RTTMs(p.Point, h.Location)
				if want := rtt(t, "NRT", "db"); math.Abs(got-want) > 0.15*want {
					t.Errorf("modelled RTT NRT-db %.1f ms, want within 15 %% of %.1f (location %v)", got, want, h.Location)
				}
			},
		},
		{
			name: "one_vantage_point_relay_bound",
			in: func(t *testing.T) Input {
				// The database was only ever reached from SYD: one RTT cannot locate it, so FRA's RTT to it
				// is bounded by relaying through SYD (274 + 274 ms), and FRA is not chosen.
				g := newGen(t).Add(30, "SYD", "SYD", 6).Add(2, "FRA", "FRA", 0)
				return Input{App: "shop", Now: now, Records: g.Recs}
			},
			wantStatus: placement.StatusSuccess,
			check: func(t *testing.T, a Analysis) {
				if a.Hosts[0].HasLoc {
					t.Errorf("host located from one PoP: %+v", a.Hosts[0])
				}
				var fra *Estimate
				for i := range a.Estimates {
					if a.Estimates[i].PoP == "FRA" {
						fra = &a.Estimates[i]
					}
				}
				want := 2 + 180.0/32*(rtt(t, "SYD", "db")+sydFRA)
				if fra == nil || fra.Observed || math.Abs(fra.BackendMs-want) > 0.01 {
					t.Errorf("FRA estimate %+v, want the relay bound %.1f ms", fra, want)
				}
			},
		},
		{
			name: "previous_choice_kept_when_close",
			cfg:  func(c *Config) { c.MinObserved = 1000 }, // every back-end time modelled from the fleet's RTTs
			in: func(t *testing.T) Input {
				// The database is 5 ms from FRA and 6 ms from AMS: FRA is faster, by less than 20 %, and the
				// previous AMS stays.
				g := newGen(t).Add(30, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Add(10, "AMS", "AMS", 6)
				return Input{App: "shop", Now: now, Records: g.Recs, Previous: success("AMS")}
			},
			lk:         Lookups{HostRTTs: func(string) map[string]float64 { return map[string]float64{"FRA": 5, "AMS": 6, "SYD": 280} }},
			wantStatus: placement.StatusSuccess,
			wantBest:   "AMS",
		},
		{
			name: "close_without_previous_takes_the_fastest",
			cfg:  func(c *Config) { c.MinObserved = 1000 },
			in: func(t *testing.T) Input {
				g := newGen(t).Add(30, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Add(10, "AMS", "AMS", 6)
				return Input{App: "shop", Now: now, Records: g.Recs}
			},
			lk:         Lookups{HostRTTs: func(string) map[string]float64 { return map[string]float64{"FRA": 5, "AMS": 6, "SYD": 280} }},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
		},
		{
			name: "placed_but_slower_than_baseline",
			in: func(t *testing.T) Input {
				// Routed to FRA, Sydney's requests take 2 s there (the database moved): slower than the
				// baseline held back in Sydney.
				g := newGen(t).Add(20, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Add(10, "SYD", "FRA", 6).
					Edit(10, func(r *storage.Telemetry) { r.DurationMs = 2000 })
				return Input{App: "shop", Now: now, Records: g.Recs, Previous: success("FRA")}
			},
			wantStatus: placement.StatusUnsupportedApplication,
			wantMark:   true,
			check: func(t *testing.T, a Analysis) {
				if want := 2000 + sydFRA; math.Abs(a.RoutedMs-want) > 0.01 || math.Abs(a.BaselineMs-local) > 0.01 {
					t.Errorf("routed %.1f baseline %.1f, want %.1f and %.1f", a.RoutedMs, a.BaselineMs, want, local)
				}
				if a.Decision.BestPoP != "" {
					t.Errorf("best PoP %q, want none (run locally)", a.Decision.BestPoP)
				}
			},
		},
		{
			name: "baseline_by_reason_only",
			in: func(t *testing.T) Input {
				// With reasons passed on, only "baseline" requests are the baseline: the fast local ones
				// (reason "not_fetch", 5 ms) are not, and routing is not found slower.
				g := newGen(t).Add(10, "SYD", "SYD", 6).Edit(10, func(r *storage.Telemetry) { r.Reason = "baseline" }).
					Add(10, "SYD", "SYD", 0).Edit(10, func(r *storage.Telemetry) { r.Reason, r.DurationMs = "not_fetch", 5 }).
					Add(10, "FRA", "FRA", 6).Add(10, "SYD", "FRA", 6).Edit(10, func(r *storage.Telemetry) { r.Reason = "remote" })
				return Input{App: "shop", Now: now, Records: g.Recs, Previous: success("FRA")}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
			check: func(t *testing.T, a Analysis) {
				if math.Abs(a.BaselineMs-local) > 0.01 {
					t.Errorf("baseline %.1f ms, want the 'baseline' requests' %.1f", a.BaselineMs, local)
				}
			},
		},
		{
			name: "placed_and_faster_stays",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(20, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Add(10, "SYD", "FRA", 6)
				return Input{App: "shop", Now: now, Records: g.Recs, Previous: success("FRA")}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
		},
		{
			name: "too_few_baseline_requests_to_judge",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(3, "SYD", "SYD", 6).Add(20, "FRA", "FRA", 6).Add(10, "SYD", "FRA", 6).
					Edit(10, func(r *storage.Telemetry) { r.DurationMs = 2000 })
				return Input{App: "shop", Now: now, Records: g.Recs, Previous: success("FRA")}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
			check: func(t *testing.T, a Analysis) {
				if a.RoutedMs != 0 {
					t.Errorf("slower check ran with 3 baseline requests: routed %.1f", a.RoutedMs)
				}
			},
		},
		{
			name: "unsupported_deploy_stays_unsupported",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(30, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6)
				return Input{App: "shop", Now: now, Records: g.Recs, Unsupported: true, UnsupportedDeploy: "v1"}
			},
			wantStatus: placement.StatusUnsupportedApplication,
		},
		{
			name: "unsupported_without_deploy_versions_stays_unsupported",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(30, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Edit(40, func(r *storage.Telemetry) { r.Deploy = "" })
				return Input{App: "shop", Now: now, Records: g.Recs, Unsupported: true}
			},
			wantStatus: placement.StatusUnsupportedApplication,
		},
		{
			name: "next_deploy_is_analysed_again",
			in: func(t *testing.T) Input {
				g := newGen(t).Add(30, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6).Edit(40, func(r *storage.Telemetry) { r.Deploy = "v2" })
				return Input{App: "shop", Now: now, Records: g.Recs, Unsupported: true, UnsupportedDeploy: "v1"}
			},
			wantStatus: placement.StatusSuccess,
			wantBest:   "FRA",
		},
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"window", func(c *Config) { c.Window = 0 }, "smart: config Window = 0s: want > 0"},
		{"min_requests", func(c *Config) { c.MinRequests = 0 }, "smart: config MinRequests = 0: want >= 1"},
		{"margin_rel", func(c *Config) { c.MarginRel = 1 }, "smart: config MarginRel = 1: want in [0, 1)"},
		{"margin_abs_nan", func(c *Config) { c.MarginAbsMs = math.NaN() }, "smart: config MarginAbsMs = NaN: want a finite number >= 0"},
		{"location_radius", func(c *Config) { c.MaxLocationRadiusKm = 0 }, "smart: config MaxLocationRadiusKm = 0: want a finite number > 0"},
		{"analytics_host_with_port", func(c *Config) { c.AnalyticsHosts = []string{"sentry.io:443"} }, `smart: config AnalyticsHosts = "sentry.io:443": want host names without port, scheme or spaces`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			if err := c.Validate(); err == nil || err.Error() != tt.want {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// BenchmarkAnalyze analyses a 15-minute window of 10,000 requests from 8 PoPs, each with 6 database queries and
// an analytics call.
func BenchmarkAnalyze(b *testing.B) {
	t := &testing.T{}
	g := newGen(t)
	pops := []string{"SYD", "FRA", "SIN", "IAD", "LHR", "NRT", "GRU", "JNB"}
	for i := range 10_000 {
		p := pops[i%len(pops)]
		g.SetClock(now.Add(-time.Duration(10_000-i) * 80 * time.Millisecond))
		g.Add(1, p, p, 6, storage.Subrequest{Host: "www.google-analytics.com", DurationMs: 20})
	}
	cfg := DefaultConfig()
	in := Input{App: "shop", Records: g.Recs, Now: now}
	b.ReportAllocs()
	for b.Loop() {
		if a := Analyze(cfg, in, Lookups{}); a.Decision.Status != placement.StatusSuccess {
			b.Fatalf("status %s", a.Decision.Status)
		}
	}
}

// TestForwardFromMeshWithModelFallback: the forwarding RTT between two PoPs is the mesh's measurement
// (Lookups.PoPRTT, the scheduler's MeshRTT) when there is one, the latency model's otherwise.
func TestForwardFromMeshWithModelFallback(t *testing.T) {
	mesh := map[[2]string]float64{{"SYD", "SIN"}: 93.5}
	lk := Lookups{PoPRTT: func(a, b string) float64 {
		if v, ok := mesh[[2]string{a, b}]; ok {
			return v
		}
		return math.NaN()
	}}.withDefaults()
	if got := lk.forward("SYD", "SIN"); got != 93.5 {
		t.Errorf("forward(SYD, SIN) = %v, want the mesh's 93.5", got)
	}
	syd, _ := geo.LookupPoP("SYD")
	nrt, _ := geo.LookupPoP("NRT")
	if got, want := lk.forward("SYD", "NRT"), lk.Model.RTTMs(syd.Point, nrt.Point); got != want || math.IsNaN(got) {
		t.Errorf("forward(SYD, NRT) = %v, want the model's %v", got, want)
	}
	if got := lk.forward("SYD", "SYD"); got != 0 {
		t.Errorf("forward(SYD, SYD) = %v, want 0", got)
	}
}
