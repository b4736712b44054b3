package ui

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/scheduler/openapi"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// env is a real redis-server with a fleet, results and decisions written through the store, a scheduler
// holding the targets (not running: the page reads its target list), and the page in front of an API stub.
type env struct {
	client *http.Client // validates every exchange with the page against openapi.json
	st     *storage.Store
	sched  *scheduler.Scheduler
	srv    *httptest.Server
	now    time.Time
}

func pop(t *testing.T, code string) geo.PoP {
	t.Helper()
	p, ok := geo.LookupPoP(code)
	if !ok {
		t.Fatalf("no PoP %s", code)
	}
	return p
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	rs := redistest.Start(t)
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{rs.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, now: time.Now()}

	// The fleet: four PoPs up, one drained, one silent for long enough to be down.
	for _, p := range []string{"FRA", "LHR", "IAD", "SIN", "SYD", "GRU"} {
		at := e.now
		if p == "GRU" {
			at = e.now.Add(-time.Minute)
		}
		if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: p, DaemonID: "d-" + p, At: at}, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetDrained(ctx, "SYD", true); err != nil {
		t.Fatal(err)
	}

	s, err := scheduler.New(scheduler.Config{Name: "ui-test"}, scheduler.StoreBackend{Store: st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	targets := []scheduler.Target{
		{App: "frankfurt-db", Mode: placement.ModeHost, Target: "db.example.com:5432", Account: "acme"},
		{App: "edge-anycast", Mode: placement.ModeHost, Target: "edge.example.com:443"},
		{App: "tokyo-app", Mode: placement.ModeRegion, Target: "gcp:asia-northeast1", Account: "globex"},
	}
	s.SetTargets(scheduler.SourceAPI, targets)
	e.sched = s

	// Results as the probe daemons store them: a host in Frankfurt (RTTs from the latency model), and an
	// address answering 1 ms from three continents (anycast).
	frankfurt := pop(t, "FRA").Point
	model := geo.DefaultModel()
	put := func(target scheduler.Target, p string, rtt float64) {
		t.Helper()
		r := storage.Result{Target: storage.TargetKey(target.Kind(), target.ProbeAddr()), PoP: p, Kind: target.Kind(),
			MinMs: rtt, MedianMs: rtt + 0.1, Samples: 3, At: e.now, JobID: "j-" + p}
		if _, err := st.PutResult(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"FRA", "LHR", "IAD", "SIN", "SYD"} {
		put(targets[0], p, model.RTTMs(pop(t, p).Point, frankfurt))
	}
	stale := storage.Result{Target: storage.TargetKey(placement.ProbeTCP, "db.example.com:5432"), PoP: "GRU", Kind: placement.ProbeTCP,
		MinMs: 190, Samples: 3, At: e.now.Add(-2 * DefaultMaxResultAge), JobID: "j-GRU"}
	if _, err := st.PutResult(ctx, stale); err != nil {
		t.Fatal(err)
	}
	failed := storage.Result{Target: storage.TargetKey(placement.ProbeTCP, "db.example.com:5432"), PoP: "SIN", Kind: placement.ProbeTCP,
		Class: "timeout", Error: "timeout", At: e.now.Add(time.Second), JobID: "j-SIN-2"}
	if _, err := st.PutResult(ctx, failed); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"FRA", "IAD", "SIN"} {
		put(targets[1], p, 1)
	}

	decisions := []placement.Decision{
		{App: "frankfurt-db", Mode: placement.ModeHost, Target: "db.example.com:5432", BestPoP: "FRA", Verdict: placement.VerdictUnicast,
			Status: placement.StatusSuccess, Confidence: 0.9, ComputedAt: e.now, NextRecheck: e.now.Add(time.Minute),
			Candidates: []placement.Candidate{{PoP: "FRA", RTTMs: 0.7}, {PoP: "LHR", RTTMs: 13.7}}},
		{App: "edge-anycast", Mode: placement.ModeHost, Target: "edge.example.com:443", Verdict: placement.VerdictAnycast,
			Status: placement.StatusUnsupportedApplication, Confidence: 1, ComputedAt: e.now, Reason: "edge.example.com:443 answers as anycast"},
		{App: "tokyo-app", Mode: placement.ModeRegion, Target: "gcp:asia-northeast1", BestPoP: "SIN", Verdict: placement.VerdictUnicast,
			Status: placement.StatusSuccess, Estimated: true, ComputedAt: e.now, Candidates: []placement.Candidate{{PoP: "SIN", RTTMs: 70}}},
	}
	// An application in mode smart: in the registry, not among the scheduler's targets.
	if err := st.PutApp(ctx, storage.App{Name: "sydney-smart", Mode: placement.ModeSmart, DeployVersion: "v1", Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	decisions = append(decisions, placement.Decision{App: "sydney-smart", Mode: placement.ModeSmart, BestPoP: "FRA",
		Status: placement.StatusSuccess, ComputedAt: e.now, Candidates: []placement.Candidate{{PoP: "FRA", RTTMs: 168}}})
	for _, d := range decisions {
		if _, err := st.PutDecision(ctx, d); err != nil {
			t.Fatal(err)
		}
	}

	// The scheduler's explanation of frankfurt-db's decision.
	if err := st.PutExplanation(ctx, storage.Explanation{App: "frankfurt-db", ComputedAt: e.now, BestPoP: "FRA",
		SetAside:    []storage.SetAside{{PoP: "SIN", Reason: "probe failed: timeout"}},
		Calibration: storage.ExplainCalibration{Kind: "fibre"}, Window: storage.ExplainWindow{Rounds: 3, Seconds: 900}}, time.Hour); err != nil {
		t.Fatal(err)
	}

	// A config dir with a file the scheduler skips.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.toml"), []byte("name = \"broken\"\n[placement]\nhost = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.LoadDir(dir, placement.DefaultParser(), scheduler.RegionEndpoints{})

	auth := scheduler.NewScopedAuth(scheduler.Tokens{opsToken: scheduler.Operator("ops"),
		acmeToken: {Name: "acme-ci", Account: "acme"}}, scheduler.Quota{}, nil)
	h, err := New(Config{Sched: s, Store: st, Authenticate: auth.Authenticate, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "api "+r.Method+" "+r.URL.Path)
	})
	e.srv = httptest.NewServer(Wrap(api, h))
	t.Cleanup(e.srv.Close)
	e.client = openapitest.Client(t)
	return e
}

// Tokens of the page's Authenticate: an operator's, and one of account acme.
const (
	opsToken  = "ops-token-0123456789"
	acmeToken = "acme-token-0123456789"
)

// get requests path with the operator's token.
func (e *env) get(t *testing.T, method, path string) (*http.Response, string) {
	t.Helper()
	return e.getAs(t, method, path, opsToken)
}

// getAs requests path with token ("": none).
func (e *env) getAs(t *testing.T, method, path, token string) (*http.Response, string) {
	t.Helper()
	return e.send(t, e.client, method, path, token)
}

// send requests path with token ("": none) through client.
func (e *env) send(t *testing.T, client *http.Client, method, path, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestRoutes checks what Wrap sends to the page and what to the API.
func TestRoutes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, method, path string
		code               int
		ctype, body        string
	}{
		{"page", "GET", "/", 200, "text/html", "<title>Vantage"},
		{"page under ui", "GET", "/ui/", 200, "text/html", "probe-form"},
		{"script", "GET", "/ui/static/app.js", 200, "javascript", "/v1/probes"},
		{"style", "GET", "/ui/static/style.css", 200, "text/css", "#map"},
		{"state", "GET", PathState, 200, "application/json", `"apps"`},
		{"catalogue", "GET", PathCatalogue, 200, "application/json", `"FRA"`},
		{"app page", "GET", "/ui/app/frankfurt-db", 200, "text/html", "app-card"},
		{"the mesh's heat map and mislocated PoPs", "GET", "/", 200, "text/html", `<ul id="mislocated"`},
		{"script reads the mesh", "GET", "/ui/static/app.js", 200, "javascript", `getJSON("/v1/mesh", { headers: auth() })`},
		{"heat map style", "GET", "/ui/static/style.css", 200, "text/css", "#heatmap .cell"},
		{"app page without a name", "GET", "/ui/app/", 404, "", ""},
		{"vendored map data", "GET", "/ui/static/vendor/countries-110m.json", 200, "application/json", `"countries"`},
		{"vendored d3-geo", "GET", "/ui/static/vendor/d3-geo.min.js", 200, "javascript", "geoNaturalEarth1"},
		{"unknown ui path", "GET", "/ui/nope", 404, "", ""},
		{"state by POST", "POST", PathState, 405, "", ""},
		{"api route", "GET", "/v1/apps", 418, "", "api GET /v1/apps"},
		{"api probe", "POST", "/v1/probes", 418, "", "api POST /v1/probes"},
		{"api metrics", "GET", "/metrics", 418, "", "api GET /metrics"},
		{"POST to the root is the API's", "POST", "/", 418, "", "api POST /"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := e.client
			if tc.code == http.StatusTeapot {
				client = http.DefaultClient // the API stub's answers are not the API's
			}
			resp, body := e.send(t, client, tc.method, tc.path, opsToken)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d, want %d (%q)", tc.method, tc.path, resp.StatusCode, tc.code, body)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body does not contain %q: %.200q", tc.body, body)
			}
			if tc.code == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("no same-origin Content-Security-Policy: %q", resp.Header.Get("Content-Security-Policy"))
			}
		})
	}
}

// TestState checks the JSON the page draws: the fleet's states and coordinates, each application's decision,
// its disks (fresh, successful results only, smallest first), location and anycast instances.
func TestState(t *testing.T) {
	e := newEnv(t)
	_, body := e.get(t, "GET", PathState)
	var st State
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	states := map[string]string{}
	for _, p := range st.PoPs {
		states[p.Code] = p.State
		if !p.Located || p.Lat == 0 {
			t.Errorf("PoP %s not located: %+v", p.Code, p)
		}
	}
	want := map[string]string{"FRA": "up", "LHR": "up", "IAD": "up", "SIN": "up", "SYD": "drained", "GRU": "down"}
	for p, s := range want {
		if states[p] != s {
			t.Errorf("PoP %s: state %q, want %q (all: %v)", p, states[p], s, states)
		}
	}
	apps := map[string]App{}
	for _, a := range st.Apps {
		apps[a.App] = a
	}
	if len(apps) != 4 || st.TotalApps != 4 {
		t.Fatalf("apps %v (total %d), want 4", st.Apps, st.TotalApps)
	}
	if sm := apps["sydney-smart"]; sm.Mode != placement.ModeSmart || sm.BestPoP != "FRA" || sm.Status != placement.StatusSuccess || len(sm.Disks) != 0 {
		t.Errorf("sydney-smart: %+v", sm)
	}

	db := apps["frankfurt-db"]
	if db.Status != placement.StatusSuccess || db.BestPoP != "FRA" || db.BestRTTMs != 0.7 || db.Mode != placement.ModeHost {
		t.Errorf("frankfurt-db: %+v", db)
	}
	var disks []string
	for i, d := range db.Disks {
		disks = append(disks, d.PoP)
		if i > 0 && d.RTTMs < db.Disks[i-1].RTTMs {
			t.Errorf("disks not sorted by RTT: %v", db.Disks)
		}
		if d.RadiusKm != float64(int(geo.MaxDistanceKm(d.RTTMs)+0.5)) {
			t.Errorf("disk %s: radius %v km for %v ms, want the fibre bound %v", d.PoP, d.RadiusKm, d.RTTMs, geo.MaxDistanceKm(d.RTTMs))
		}
	}
	// SIN's latest result failed and GRU's is stale: neither is drawn.
	if strings.Join(disks, ",") != "FRA,LHR,IAD,SYD" {
		t.Errorf("frankfurt-db disks %v, want FRA,LHR,IAD,SYD", disks)
	}
	if ex := db.Explanation; ex == nil || len(ex.SetAside) != 1 || ex.SetAside[0].PoP != "SIN" || ex.Window.Rounds != 3 {
		t.Errorf("frankfurt-db: explanation %+v, want the stored one", ex)
	}
	if edge := apps["edge-anycast"]; edge.Explanation != nil {
		t.Errorf("edge-anycast: explanation %+v, none stored", edge.Explanation)
	}
	if db.Location == nil {
		t.Fatal("frankfurt-db: no location")
	}
	if d := geo.DistanceKm(geo.Point{Lat: db.Location.Lat, Lon: db.Location.Lon}, pop(t, "FRA").Point); d > 500 {
		t.Errorf("frankfurt-db located %.0f km from Frankfurt: %+v", d, db.Location)
	}

	if sk := st.SkippedConfigs; len(sk) != 1 || !strings.HasSuffix(sk[0].Path, "broken.toml") || sk[0].State != scheduler.ConfigSkipped ||
		!strings.Contains(sk[0].Error, "broken.toml:3") {
		t.Errorf("skipped configs %+v, want broken.toml with its error", sk)
	}
	edge := apps["edge-anycast"]
	if edge.Status != placement.StatusUnsupportedApplication || edge.BestPoP != "" || edge.Location != nil || edge.Reason != "edge.example.com:443 answers as anycast" {
		t.Errorf("edge-anycast: %+v", edge)
	}
	if len(edge.Instances) < 2 {
		t.Errorf("edge-anycast: instances %v, want at least 2", edge.Instances)
	}

	tokyo := apps["tokyo-app"]
	reg, err := geo.LookupRegion("gcp:asia-northeast1")
	if err != nil {
		t.Fatal(err)
	}
	if tokyo.Location == nil || tokyo.Location.Lat != reg.Lat || tokyo.Location.Lon != reg.Lon || !tokyo.Estimated {
		t.Errorf("tokyo-app: location %+v estimated %v, want the region's coordinates %v", tokyo.Location, tokyo.Estimated, reg.Point)
	}
}

// TestMaxApps checks the cap on the applications of one state read.
func TestMaxApps(t *testing.T) {
	e := newEnv(t)
	h, err := New(Config{Sched: e.sched, Store: e.st, MaxApps: 2, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.State(context.Background(), scheduler.Operator("ops"))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Apps) != 2 || st.TotalApps != 4 || st.Apps[0].App != "edge-anycast" || st.Apps[1].App != "frankfurt-db" {
		t.Errorf("apps %v total %d, want the first 2 by name of 4", st.Apps, st.TotalApps)
	}
}

// TestStateByAccount: the state needs a token and shows a token of one account that account's applications
// only, without the config dir's files; the page itself and its static files need none (the page asks for the
// token).
func TestStateByAccount(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, token string
		code        int
		apps        []string
		skipped     int
	}{
		{"no_token", "", http.StatusUnauthorized, nil, 0},
		{"unknown_token", "not-a-token-0123456789", http.StatusUnauthorized, nil, 0},
		{"account_acme", acmeToken, http.StatusOK, []string{"frankfurt-db", "sydney-smart"}, 0},
		{"operator", opsToken, http.StatusOK, []string{"edge-anycast", "frankfurt-db", "sydney-smart", "tokyo-app"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.getAs(t, "GET", PathState, tc.token)
			if resp.StatusCode != tc.code {
				t.Fatalf("state: %d %s, want %d", resp.StatusCode, body, tc.code)
			}
			if tc.code != http.StatusOK {
				if strings.Contains(body, "frankfurt") || strings.Contains(body, "tokyo") {
					t.Errorf("refusal mentions an application: %s", body)
				}
				return
			}
			var st State
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			var apps []string
			for _, a := range st.Apps {
				apps = append(apps, a.App)
			}
			if strings.Join(apps, ",") != strings.Join(tc.apps, ",") || st.TotalApps != len(tc.apps) {
				t.Errorf("apps %v (total %d), want %v", apps, st.TotalApps, tc.apps)
			}
			if len(st.SkippedConfigs) != tc.skipped {
				t.Errorf("skipped configs %v, want %d", st.SkippedConfigs, tc.skipped)
			}
			// The shards this scheduler leads: an operator's read only.
			if operator := tc.skipped > 0; (st.Shards != nil) != operator || operator && st.Shards.Shards != scheduler.DefaultShards {
				t.Errorf("shards %+v, want them shown to an operator only", st.Shards)
			}
		})
	}
	for _, path := range []string{"/", "/ui/static/app.js"} {
		if resp, body := e.getAs(t, "GET", path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s without a token: %d %.100s, want 200", path, resp.StatusCode, body)
		}
	}
}

var externalURL = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)

// TestNoExternalResources checks that the embedded files load nothing from elsewhere (no CDN, no fonts).
func TestNoExternalResources(t *testing.T) {
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		text := string(b)
		if strings.HasPrefix(path, "static/vendor/") && strings.HasPrefix(text, "// ") {
			// A vendored library's banner names its home page (a comment, never fetched).
			_, text, _ = strings.Cut(text, "\n")
		}
		for _, m := range externalURL.FindAllString(text, -1) {
			if m != "http://www.w3.org" { // the SVG namespace, an identifier, never fetched
				t.Errorf("%s refers to %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a scheduler and a store: no error")
	}
}

// TestStateSkipsCorruptData: an undecodable registry entry and an undecodable decision do not make the page
// fail: the entry is skipped, the decision's app shows the error on its row, and the other apps are served.
func TestStateSkipsCorruptData(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.st.Client().HSet(ctx, storage.KeyApps, "garbage", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	key := storage.KeyDecisions(storage.DecisionBucket("tokyo-app"))
	if err := e.st.Client().HSet(ctx, key, "tokyo-app", "1|ab|\x09garbage").Err(); err != nil {
		t.Fatal(err)
	}
	resp, body := e.get(t, "GET", PathState)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("state with corrupt data: %d %s", resp.StatusCode, body)
	}
	var st State
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	apps := map[string]App{}
	for _, a := range st.Apps {
		apps[a.App] = a
	}
	if len(apps) != 4 || apps["frankfurt-db"].BestPoP != "FRA" {
		t.Errorf("apps %v, want the 4 good ones with their decisions", st.Apps)
	}
	if tokyo := apps["tokyo-app"]; !strings.Contains(tokyo.LastError, "corrupt value") || tokyo.BestPoP != "" {
		t.Errorf("tokyo-app with a corrupt decision: %+v, want the error on its row", tokyo)
	}
}

// TestOpenAPIDocumentsThePage compares the page's routes with the document's operations tagged "status page",
// both ways (scheduler's TestOpenAPIDocumentsEveryRoute compares the others with the API's routes).
func TestOpenAPIDocumentsThePage(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	var served, documented []string
	for _, p := range routes {
		method, path, _ := strings.Cut(p, " ")
		path = strings.TrimSuffix(path, "{$}") // "/{$}" is "/" exactly, as the document's "/" is
		served = append(served, method+" "+path)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if slices.Contains(op.Tags, "status page") {
				documented = append(documented, method+" "+path)
			}
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Errorf("routes served:\n%s\nroutes documented:\n%s", strings.Join(served, "\n"), strings.Join(documented, "\n"))
	}
}

// TestVendoredAssets checks the embedded map libraries and data against the sums vendor.sh recorded (a
// hand-edited or truncated file fails), that every vendored file is listed, and that the page loads them.
func TestVendoredAssets(t *testing.T) {
	sums, err := fs.ReadFile(static, "static/vendor/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		want, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q: want \"<sum>  <file>\"", line)
		}
		b, err := fs.ReadFile(static, "static/vendor/"+name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != want {
			t.Errorf("%s: sha256 %s, want %s (re-run make ui-assets)", name, got, want)
		}
		listed[name] = true
	}
	ents, err := fs.ReadDir(static, "static/vendor")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "SHA256SUMS" && !listed[e.Name()] {
			t.Errorf("static/vendor/%s is not in SHA256SUMS", e.Name())
		}
	}
	for _, f := range []string{"d3-array.min.js", "d3-geo.min.js", "topojson-client.min.js", "countries-110m.json",
		"LICENSE.d3-geo", "LICENSE.world-atlas"} {
		if !listed[f] {
			t.Errorf("%s is not vendored", f)
		}
	}
	index, err := fs.ReadFile(static, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"d3-array.min.js", "d3-geo.min.js", "topojson-client.min.js"} {
		if !strings.Contains(string(index), `src="/ui/static/vendor/`+s+`"`) {
			t.Errorf("index.html does not load %s", s)
		}
	}
}
