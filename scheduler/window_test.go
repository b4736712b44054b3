package scheduler

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/shareddata"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// historyPoPs are the fleet of the history tests: around a target in Frankfurt.
var historyPoPs = []string{"FRA", "AMS", "CDG", "LHR", "WAW", "MAD", "ARN", "VIE"}

// historyFleet is a real redis-server with the PoPs up and a responder standing in for their daemons: it
// answers every job with the latency model's RTT from the PoP to the target's point, plus extraMs[PoP], through
// the calls a daemon makes (ReadJobs, PutResult, AckJob).
type historyFleet struct {
	st    *storage.Store
	b     StoreBackend
	mu    sync.Mutex
	extra map[string]float64
	// chaos answers jobs that ask CHAOS questions (the daemon's prober.DNSResult JSON) with id.server
	// chaos[PoP]; params counts the jobs by their Params.
	chaos  map[string]string
	params map[string]int
}

func newHistoryFleet(t *testing.T, target geo.Point) *historyFleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rs := redistest.Start(t)
	st := openStore(t, rs.Addr(), nil)
	f := &historyFleet{st: st, b: StoreBackend{st}, extra: map[string]float64{}, chaos: map[string]string{}, params: map[string]int{}}
	for _, p := range historyPoPs {
		if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: p, DaemonID: "d-" + p, At: time.Now()}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	model := geo.DefaultModel()
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, code := range historyPoPs {
		p, ok := geo.LookupPoP(code)
		if !ok {
			t.Fatalf("PoP %s not in the catalogue", code)
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				jobs, err := st.ReadJobs(ctx, code, "responder", 10, 50*time.Millisecond)
				if err != nil {
					continue
				}
				for _, j := range jobs {
					f.mu.Lock()
					rtt := model.RTTMs(p.Point, target) + f.extra[code]
					f.params[string(j.Params)]++
					id := f.chaos[code]
					f.mu.Unlock()
					r := storage.Result{Target: j.Key, PoP: code, Kind: j.Kind, MinMs: rtt, MedianMs: rtt,
						Samples: 3, At: time.Now(), JobID: j.ID, Round: j.Round}
					if strings.Contains(string(j.Params), `"Chaos":true`) {
						r.DNS, _ = json.Marshal(prober.DNSResult{Server: j.Target, ServerID: id})
					}
					st.PutResult(ctx, r)
					st.AckJob(ctx, code, j.ID)
				}
			}
		})
	}
	return f
}

func (f *historyFleet) setExtra(pop string, ms float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.extra[pop] = ms
}

// TestDecisionSurvivesOneNoisyRound: a round with +50 ms on the best PoP leaves the decision as it was (the
// PoP's minimum over the history window), and the explanation says so; with a window of one round the same
// round moves the placement (what the window is for); three noisy rounds in a row move it (a target that really
// moved is followed).
func TestDecisionSurvivesOneNoisyRound(t *testing.T) {
	frankfurt := geo.Point{Lat: 50.11, Lon: 8.68}
	for _, tc := range []struct {
		name   string
		rounds int
		// want is the best PoP after each recheck; noisy says which rechecks see FRA +50 ms.
		noisy []bool
		want  []string
	}{
		{"default_window_one_noisy_round", 0, []bool{false, true, false}, []string{"FRA", "FRA", "FRA"}},
		{"default_window_three_noisy_rounds", 0, []bool{false, true, true, true}, []string{"FRA", "FRA", "FRA", "CDG"}},
		{"window_of_one_round", 1, []bool{false, true}, []string{"FRA", "CDG"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHistoryFleet(t, frankfurt)
			m := NewMetrics(nil)
			s, err := New(Config{Name: "history", HistoryRounds: tc.rounds, Budget: len(historyPoPs),
				ResultTimeout: 20 * time.Second, ResultPoll: 10 * time.Millisecond}, f.b, m)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			term := &Term{Ctx: ctx, Lease: "vantage-shard-000", Token: 1, Seq: 1, Start: time.Now()}
			tgt := Target{App: "db", Mode: placement.ModeHost, Target: "198.18.7.1:5432"}
			for i, noisy := range tc.noisy {
				extra := 0.0
				if noisy {
					extra = 50
				}
				f.setExtra("FRA", extra)
				dec, err := s.recheck(ctx, term, tgt)
				if err != nil {
					t.Fatalf("recheck %d: %v", i, err)
				}
				if dec.BestPoP != tc.want[i] || dec.Verdict != placement.VerdictUnicast {
					t.Errorf("recheck %d (FRA +%.0f ms): best %q, verdict %s; want %q (candidates %+v)", i, extra, dec.BestPoP, dec.Verdict, tc.want[i], dec.Candidates)
				}
				e, ok, err := f.st.Explanation(ctx, "db")
				if err != nil || !ok {
					t.Fatalf("recheck %d: explanation %v, %v", i, ok, err)
				}
				if !e.ComputedAt.Equal(dec.ComputedAt) || e.BestPoP != dec.BestPoP || e.Calibration.Kind != "fibre" ||
					e.Window.Rounds != s.cfg.HistoryRounds || e.Window.Seconds != DefaultHistoryWindow.Seconds() {
					t.Errorf("recheck %d: explanation %+v does not match the decision %+v", i, e, dec)
				}
				fromHistory := len(e.Window.FromHistory) == 1 && e.Window.FromHistory[0].PoP == "FRA" &&
					math.Abs(e.Window.FromHistory[0].LatestMs-e.Window.FromHistory[0].UsedMs-50) < 1e-6
				if wantFrom := noisy && tc.want[i] == "FRA"; fromHistory != wantFrom {
					t.Errorf("recheck %d: explanation's window %+v; want FRA's RTT from history: %v", i, e.Window, wantFrom)
				}
				t.Logf("recheck %d: FRA +%.0f ms: best %s; notes %q", i, extra, dec.BestPoP, e.Notes)
			}
			kept := 0
			for i, noisy := range tc.noisy {
				if noisy && tc.want[i] == "FRA" {
					kept++
				}
			}
			if got := counter(m.windowed); got != float64(kept) || counter(m.explanations) != float64(len(tc.noisy)) {
				t.Errorf("vantage_scheduler_windowed_rtts_total %v, explanations_total %v; want %d and %d", got, counter(m.explanations), kept, len(tc.noisy))
			}
		})
	}
}

// TestStatusServesExplanation: the status API serves the decision's explanation (validated against
// openapi.json): the history window and the PoP whose RTT came from it.
func TestStatusServesExplanation(t *testing.T) {
	f := newHistoryFleet(t, geo.Point{Lat: 50.11, Lon: 8.68})
	s, err := New(Config{Name: "explain", Budget: len(historyPoPs), ResultTimeout: 20 * time.Second,
		ResultPoll: 10 * time.Millisecond}, f.b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	term := &Term{Ctx: ctx, Lease: "vantage-shard-000", Token: 1, Seq: 1, Start: time.Now()}
	tgt := Target{App: "db", Mode: placement.ModeHost, Target: "198.18.7.2:5432"}
	s.AddTarget(SourceAPI, tgt)
	for _, extra := range []float64{0, 50} {
		f.setExtra("FRA", extra)
		if _, err := s.recheck(ctx, term, tgt); err != nil {
			t.Fatal(err)
		}
	}
	api := &API{Sched: s, Decisions: f.b, Apps: f.b, Parser: placement.DefaultParser(),
		Auth: NewAuth(map[string]string{"ops-token": "ops"}, Quota{}, nil)}
	hs := httptest.NewServer(openapitest.Handler(t, api.Handler()))
	t.Cleanup(hs.Close)
	req, _ := http.NewRequest("GET", hs.URL+"/client/v4/accounts/any/workers/services/db", nil)
	req.Header.Set("Authorization", "Bearer ops-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Result ServiceStatus `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	e := env.Result.Vantage.Explanation
	if e == nil {
		t.Fatalf("status %+v: no explanation", env.Result.Vantage)
	}
	if e.BestPoP != "FRA" || len(e.Window.FromHistory) != 1 || e.Window.FromHistory[0].PoP != "FRA" ||
		e.Window.Rounds != DefaultHistoryRounds || e.Calibration.Kind != "fibre" || len(e.Notes) == 0 {
		t.Errorf("explanation %+v; want FRA kept from the history window, fibre disks, a note", e)
	}
}

// TestChaosAnswersAreAnycastEvidence: the jobs of a host target on port 53 ask CHAOS questions, those of
// another port do not; different id.server answers from the PoPs make the target anycast (though its RTTs are
// those of one place), the same answer everywhere changes nothing; the explanation lists the answers.
func TestChaosAnswersAreAnycastEvidence(t *testing.T) {
	f := newHistoryFleet(t, geo.Point{Lat: 50.11, Lon: 8.68})
	s, err := New(Config{Name: "chaos", Budget: len(historyPoPs), ResultTimeout: 20 * time.Second,
		ResultPoll: 10 * time.Millisecond}, f.b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	term := &Term{Ctx: ctx, Lease: "vantage-shard-000", Token: 1, Seq: 1, Start: time.Now()}
	for _, tc := range []struct {
		name, target string
		ids          func(pop string) string
		verdict      placement.Verdict
		chaosJobs    bool
	}{
		{"port_53_one_site", "198.18.7.53:53", func(string) string { return "ns1.fra" }, placement.VerdictUnicast, true},
		{"port_53_sites_differ", "198.18.7.54:53", func(pop string) string { return "ns1." + strings.ToLower(pop) }, placement.VerdictAnycast, true},
		{"other_port_no_chaos", "198.18.7.55:5432", func(pop string) string { return "ns1." + pop }, placement.VerdictUnicast, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			for _, p := range historyPoPs {
				f.chaos[p] = tc.ids(p)
			}
			clear(f.params)
			f.mu.Unlock()
			dec, err := s.recheck(ctx, term, Target{App: tc.name, Mode: placement.ModeHost, Target: tc.target})
			if err != nil {
				t.Fatal(err)
			}
			if dec.Verdict != tc.verdict {
				t.Errorf("verdict %s, want %s (reason %q)", dec.Verdict, tc.verdict, dec.Reason)
			}
			f.mu.Lock()
			chaosJobs, plain := f.params[string(chaosParams)], f.params[""]
			f.mu.Unlock()
			if tc.chaosJobs && (chaosJobs != len(historyPoPs) || plain != 0) || !tc.chaosJobs && (chaosJobs != 0 || plain != len(historyPoPs)) {
				t.Errorf("jobs asking CHAOS %d, plain %d; want CHAOS on all: %v", chaosJobs, plain, tc.chaosJobs)
			}
			e, ok, err := f.st.Explanation(ctx, tc.name)
			if err != nil || !ok {
				t.Fatalf("explanation: %v %v", ok, err)
			}
			if tc.chaosJobs && (len(e.Chaos) != len(historyPoPs) || e.Chaos["FRA"] != tc.ids("FRA")) || !tc.chaosJobs && len(e.Chaos) != 0 {
				t.Errorf("explanation's CHAOS answers %v", e.Chaos)
			}
			t.Logf("%s: %s, %q; notes %q", tc.target, dec.Verdict, dec.Reason, e.Notes)
		})
	}
}

// TestGeoIPPriorIsANote: with MaxMind's test City database, a target whose address GeoIP places in London
// but which answers from Frankfurt is placed at FRA as without the database, and the decision's explanation
// notes the far-off prior; an address the database does not know has no prior.
func TestGeoIPPriorIsANote(t *testing.T) {
	g, err := geo.OpenGeoIP(shareddata.Path(t, "maxmind-test-mmdb", "GeoIP2-City-Test.mmdb"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	prior := GeoIPPrior(g)
	if p, ok := prior("81.2.69.142:5432"); !ok || geo.DistanceKm(p.Point, geo.Point{Lat: 51.5, Lon: -0.13}) > 50 {
		t.Fatalf("prior of 81.2.69.142 = %+v, %v; want London", p, ok)
	}
	for _, addr := range []string{"198.18.7.9:5432", "db.example.com:5432"} {
		if p, ok := prior(addr); ok {
			t.Errorf("prior of %s = %+v; want none", addr, p)
		}
	}
	f := newHistoryFleet(t, geo.Point{Lat: 50.11, Lon: 8.68})
	s, err := New(Config{Name: "geoip", Budget: len(historyPoPs), ResultTimeout: 20 * time.Second,
		ResultPoll: 10 * time.Millisecond, Prior: prior}, f.b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// 81.2.69.142 is data here: the responder answers for the PoPs, nothing is sent to it.
	dec, err := s.recheck(ctx, &Term{Ctx: ctx, Lease: "vantage-shard-000", Token: 1, Seq: 1, Start: time.Now()},
		Target{App: "london-by-geoip", Mode: placement.ModeHost, Target: "81.2.69.142:5432"})
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := f.st.Explanation(ctx, "london-by-geoip")
	if err != nil {
		t.Fatal(err)
	}
	if dec.BestPoP != "FRA" || dec.Verdict != placement.VerdictUnicast || !strings.Contains(strings.Join(e.Notes, ";"), "GeoIP places the target") {
		t.Errorf("decision %s %s, notes %q; want FRA, unicast and a note on the GeoIP prior", dec.BestPoP, dec.Verdict, e.Notes)
	}
	t.Logf("notes: %q", e.Notes)
}

func TestWindowed(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	res := func(ms float64, ok bool) storage.Result {
		r := storage.Result{MinMs: ms, Samples: 3, At: now}
		if !ok {
			r.Class, r.Samples = "timeout", 0
		}
		return r
	}
	smp := func(ago time.Duration, ms float64, ok bool) storage.Sample {
		return storage.Sample{At: now.Add(-ago), MinMs: ms, OK: ok}
	}
	for _, tc := range []struct {
		name    string
		latest  storage.Result
		recent  []storage.Sample
		wantMs  float64
		wantHis bool
	}{
		{"no_history", res(20, true), nil, 20, false},
		{"latest_is_min", res(20, true), []storage.Sample{smp(0, 20, true), smp(5*time.Minute, 25, true)}, 20, false},
		{"earlier_round_lower", res(60, true), []storage.Sample{smp(0, 60, true), smp(5*time.Minute, 10, true)}, 10, true},
		{"lower_but_beyond_3_rounds", res(60, true), []storage.Sample{smp(0, 60, true), smp(time.Minute, 61, true), smp(2*time.Minute, 62, true), smp(3*time.Minute, 10, true)}, 60, false},
		{"lower_but_too_old", res(60, true), []storage.Sample{smp(0, 60, true), smp(16*time.Minute, 10, true)}, 60, false},
		{"failed_sample_skipped", res(60, true), []storage.Sample{smp(0, 60, true), smp(time.Minute, 0, false), smp(2*time.Minute, 30, true)}, 30, true},
		{"latest_failed_stays_failed", res(0, false), []storage.Sample{smp(0, 0, false), smp(time.Minute, 10, true)}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, from := windowed(map[string]storage.Result{"FRA": tc.latest}, map[string][]storage.Sample{"FRA": tc.recent},
				now, DefaultHistoryRounds, DefaultHistoryWindow)
			if got := out["FRA"]; got.MinMs != tc.wantMs || succeeded(got) != succeeded(tc.latest) {
				t.Errorf("windowed = %+v; want MinMs %v, success as the latest", got, tc.wantMs)
			}
			if (len(from) == 1) != tc.wantHis {
				t.Errorf("from history = %+v; want %v", from, tc.wantHis)
			}
		})
	}
}
