package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
)

// TestMeshOnEmulatedWAN runs the probe daemons of every PoP of the emulated WAN, each answering mesh probes in
// its namespace, and a scheduler whose catalogue lists FRA in Sydney. The real daemons measure the whole mesh
// (RTTs matching the emulated ones); the mesh flags FRA within one mesh interval of the scheduler's start
// (the API, the metric), and FRA is set aside: a back end in Frankfurt is placed at the nearest other PoP.
func TestMeshOnEmulatedWAN(t *testing.T) {
	needRoot(t, "the PoP mesh on the emulated WAN")
	skipShort(t, "the PoP mesh on the emulated WAN")
	log := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tb, st, redis, pops := startWANFleet(ctx, t, log)
	testwait.Eventually(t, 30*time.Second, "every PoP up and answering mesh probes", func() bool {
		fleet, err := st.Fleet(ctx)
		n := 0
		for _, p := range fleet {
			if p.Up && len(p.Daemons) > 0 && p.Daemons[0].MeshAddr != "" {
				n++
			}
		}
		return err == nil && n == len(pops)
	})

	// The scheduler's catalogue lists FRA in Sydney; the testbed (the truth) has it in Frankfurt.
	cat := geo.PoPs()
	wrongAt := geo.Point{Lat: -33.9, Lon: 151.2}
	for i := range cat {
		if cat[i].Code == "FRA" {
			cat[i].Point = wrongAt
		}
	}
	const (
		token    = "e2e-mesh-token-0123456789"
		interval = 8 * time.Second
	)
	cfg := daemon.DefaultSchedulerConfig()
	cfg.Listen, cfg.Logger = "127.0.0.1:0", log
	cfg.Scheduler.Name = "s1"
	cfg.Scheduler.PoPs = cat
	cfg.Scheduler.MeshInterval = interval
	cfg.Tokens = scheduler.Tokens{token: scheduler.Operator("e2e")}
	cfg.Allow = []netip.Prefix{tb.Prefix()}
	s, err := daemon.NewScheduler(cfg, openStore(t, []string{redis}, log))
	if err != nil {
		t.Fatal(err)
	}
	api := s.URL()
	started := time.Now()
	start(t, "scheduler", s.Run)

	testwait.Eventually(t, 2*interval, "FRA flagged mislocated by the mesh", func() bool { return s.Scheduler().Mislocated("FRA") })
	flagged := time.Since(started)
	t.Logf("FRA flagged %v after the scheduler started (mesh interval %v)", flagged.Round(10*time.Millisecond), interval)
	// One interval spreads the round's probes; the slack covers the lease, the last probes' RTTs and one
	// read of the mesh back (meshRefresh, 1 s).
	if limit := interval + 4*time.Second; flagged > limit {
		t.Errorf("FRA flagged %v after the start, want within one mesh interval (%v, %v with slack)", flagged, interval, limit)
	}

	// The mesh was measured by the real daemons: every ordered pair, at the emulated RTTs.
	n := len(pops)
	testwait.Eventually(t, 2*interval, "every ordered pair of PoPs measured", func() bool { return len(s.Scheduler().Mesh().Pairs) == n*(n-1) })
	view := fetchMesh(t, api, token)
	if len(view.Pairs) != n*(n-1) || len(view.Mislocated) != 1 || view.Mislocated[0].PoP != "FRA" || view.Mislocated[0].Reason == "" {
		t.Fatalf("GET /v1/mesh: %d pairs, mislocated %+v; want %d pairs and FRA", len(view.Pairs), view.Mislocated, n*(n-1))
	}
	// Never early beyond the emulator's timer slack; late by the user-space router's scheduling on a busy
	// machine (tens of ms for a few of the 72 pairs measured at once), but typically by a few ms.
	var late []float64
	for _, p := range view.Pairs {
		truth, err := tb.RTT(p.Src, p.Dst)
		if err != nil {
			t.Fatal(err)
		}
		want := truth.Seconds() * 1000
		if p.RTTMs < want-max(1, want/10) || p.RTTMs > want+50 {
			t.Errorf("mesh %s>%s: %.2f ms, emulated %.2f ms", p.Src, p.Dst, p.RTTMs, want)
		}
		late = append(late, p.RTTMs-want)
	}
	slices.Sort(late)
	t.Logf("mesh RTTs late by %.2f ms (median), %.2f ms (max)", late[len(late)/2], late[len(late)-1])
	if med := late[len(late)/2]; med > 5 {
		t.Errorf("mesh RTTs late by %.2f ms (median), want a few ms", med)
	}
	if cal := s.Scheduler().Calibration(); cal == nil || !cal.Suspect("FRA") || len(cal.Suspects) != 1 {
		t.Errorf("the engine's calibration: %+v, want FRA its only suspect", cal)
	}
	if m := fetch(t, api+"/metrics", token); !strings.Contains(m, `vantage_mesh_pop_mislocated{pop="FRA"} 1`) {
		t.Error("/metrics has no vantage_mesh_pop_mislocated{pop=\"FRA\"} 1")
	}

	// Set aside: the database in Frankfurt is placed at the nearest PoP the scheduler trusts, and FRA is no
	// candidate.
	db, ok := tb.Resolve("db")
	if !ok {
		t.Fatal("testbed has no db")
	}
	if err := demo.PostApp(ctx, api, token, wrangler("billing", placement.ModeHost, db.String()+":5432"), ""); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 30*time.Second, "a decision for billing", func() bool { d, ok := decision(st, "billing"); return ok && d.Status != "" })
	d, _ := decision(st, "billing")
	t.Logf("billing: best %s verdict %s status %s candidates %v", d.BestPoP, d.Verdict, d.Status, d.Candidates)
	if d.BestPoP != "LHR" || slices.ContainsFunc(d.Candidates, func(c placement.Candidate) bool { return c.PoP == "FRA" }) {
		t.Errorf("billing (db in Frankfurt): best %q, candidates %v; want LHR, FRA set aside", d.BestPoP, d.Candidates)
	}
}

// fetchMesh reads GET /v1/mesh.
func fetchMesh(t *testing.T, api, token string) scheduler.MeshView {
	t.Helper()
	var v scheduler.MeshView
	if err := json.Unmarshal([]byte(fetch(t, api+"/v1/mesh", token)), &v); err != nil {
		t.Fatalf("GET /v1/mesh: %v", err)
	}
	return v
}

// fetch GETs url with the bearer token and returns the body of a 200.
func fetch(t *testing.T, url, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
