package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

const testToken = "token-for-tests-0123456789"

type apiEnv struct {
	t    *testing.T
	url  string
	b    StoreBackend
	s    *Scheduler
	run  func() // starts the scheduler's loops
	host string
	f    *fleetEnv
	api  *API
}

func newAPIEnv(t *testing.T, quota Quota) *apiEnv {
	t.Helper()
	return newAPIEnvWith(t, quota, nil)
}

// newAPIEnvWith is newAPIEnv with the scheduler's config and the API adjusted by edit (nil: none).
func newAPIEnvWith(t *testing.T, quota Quota, edit func(*Config, *API)) *apiEnv {
	t.Helper()
	srv := redistest.Start(t)
	f := &fleetEnv{t: t, addrs: []string{srv.Addr()}, log: testLogger(t)}
	for i, pop := range []string{"FRA", "IAD", "SIN"} {
		f.startDaemon(pop, "d-"+pop, loopbackProber(t, 10+i), time.Second)
	}
	st := f.open()
	b := StoreBackend{st}
	m := NewMetrics(nil)
	cfg := Config{Name: "api", RecheckInterval: testRecheck, LeaseTTL: testLease, InitialSpread: 100 * time.Millisecond,
		ResultTimeout: time.Second, ResultPoll: 50 * time.Millisecond, Logger: f.log}
	parser := placement.Parser{Policy: placement.DefaultPolicy(netip.MustParsePrefix("127.0.0.0/8"))}
	api := &API{Decisions: b, Apps: b, Metrics: m, Logger: f.log, Parser: parser,
		Auth:  NewAuth(map[string]string{testToken: "ops"}, quota, nil),
		AdHoc: &AdHoc{Backend: b, Parser: parser, Timeout: 5 * time.Second},
	}
	if edit != nil {
		edit(&cfg, api)
	}
	s, err := New(cfg, b, m)
	if err != nil {
		t.Fatal(err)
	}
	api.Sched = s
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	e := &apiEnv{t: t, url: hs.URL, b: b, s: s, host: testnet.Listen(t), f: f, api: api}
	e.run = func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	// Wait for the daemons' heartbeats.
	waitUntil(t, "three PoPs up", 10*time.Second, func() bool {
		ps, err := b.UpPoPs(context.Background())
		return err == nil && len(ps) == 3
	})
	return e
}

// second returns the URL of a second scheduler's API on the same Redis (its own Store, Auth and AdHoc, with the
// same tokens and quota), as another process would run it.
func (e *apiEnv) second(quota Quota) string {
	e.t.Helper()
	b := StoreBackend{e.f.open()}
	api := &API{Decisions: b, Apps: b, Logger: e.f.log, Parser: e.api.Parser,
		Auth:  NewAuth(map[string]string{testToken: "ops"}, quota, nil),
		AdHoc: &AdHoc{Backend: b, Parser: e.api.Parser, Timeout: 5 * time.Second},
	}
	hs := httptest.NewServer(api.Handler())
	e.t.Cleanup(hs.Close)
	return hs.URL
}

func (e *apiEnv) do(method, path, token, ctype, body string) (int, http.Header, Envelope, string) {
	e.t.Helper()
	return e.doAt(e.url, method, path, token, ctype, body)
}

func (e *apiEnv) doAt(url, method, path, token, ctype, body string) (int, http.Header, Envelope, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env Envelope
	json.Unmarshal(raw, &env)
	return resp.StatusCode, resp.Header, env, string(raw)
}

func TestAPIAppsStatusAndAuth(t *testing.T) {
	e := newAPIEnv(t, Quota{})
	hostTOML := "name = \"billing\"\n[placement]\nhost = \"" + e.host + "\"\n"
	for _, tc := range []struct {
		name, method, path, token, ctype, body string
		code                                   int
		want                                   string
	}{
		{"post_without_token", "POST", "/v1/apps", "", "application/toml", hostTOML, 401, "bearer token"},
		{"post_with_bad_token", "POST", "/v1/apps", "wrong-token-0123456789", "application/toml", hostTOML, 401, "bearer token"},
		{"post_toml", "POST", "/v1/apps?account=acc1", testToken, "application/toml", hostTOML, 201, `"app":"billing"`},
		{"post_jsonc", "POST", "/v1/apps", testToken, "application/json", `{"name": "catalog", // c
			"placement": {"region": "aws:us-east-1"}}`, 201, `"endpoint":"ec2.us-east-1.amazonaws.com:443"`},
		{"post_smart", "POST", "/v1/apps?deploy=v1", testToken, "application/json", `{"name":"s","placement":{"mode":"smart"}}`, 201, `"deploy":"v1"`},
		{"post_off_has_nothing_to_place", "POST", "/v1/apps", testToken, "application/toml", "name = \"o\"\n[placement]\nmode = \"off\"\n", 400, "nothing to place"},
		{"post_bad_deploy", "POST", "/v1/apps?deploy=a+b", testToken, "application/toml", hostTOML, 400, "deploy version"},
		{"post_denied_host", "POST", "/v1/apps", testToken, "application/toml", "name = \"x\"\n[placement]\nhost = \"10.0.0.1:5432\"\n", 400, "10.0.0.1"},
		{"post_bad_toml", "POST", "/v1/apps", testToken, "application/toml", "name = \n", 400, "request:1:8"},
		{"status_unknown", "GET", "/client/v4/accounts/acc1/workers/services/nope", testToken, "", "", 404, "service_not_found"},
		{"status_other_account", "GET", "/client/v4/accounts/acc2/workers/services/billing", testToken, "", "", 404, "service_not_found"},
		{"list", "GET", "/v1/apps", testToken, "", "", 200, `"catalog"`},
		{"delete_without_token", "DELETE", "/v1/apps/catalog", "", "", "", 401, "bearer"},
		{"delete", "DELETE", "/v1/apps/catalog", testToken, "", "", 200, `"catalog"`},
		{"delete_again", "DELETE", "/v1/apps/catalog", testToken, "", "", 404, "not registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, env, raw := e.do(tc.method, tc.path, tc.token, tc.ctype, tc.body)
			if code != tc.code || !strings.Contains(raw, tc.want) {
				t.Fatalf("%s %s: %d %s, want %d containing %q", tc.method, tc.path, code, raw, tc.code, tc.want)
			}
			if env.Success != (code < 300) || env.Errors == nil || env.Messages == nil {
				t.Errorf("envelope %+v: success must match the status and errors/messages be arrays", env)
			}
		})
	}
	apps, err := e.b.Apps(context.Background())
	if err != nil || len(apps) != 2 || apps[0].Name != "billing" || apps[0].Account != "acc1" || apps[1].Name != "s" ||
		apps[1].Mode != placement.ModeSmart || apps[1].DeployVersion != "v1" || apps[1].DeployGenerated {
		t.Fatalf("app registry in Redis: %+v, %v; want billing of acc1 and s (smart, deploy v1)", apps, err)
	}

	// Before the analysis the platform's field is absent.
	code, _, _, raw := e.do("GET", "/client/v4/accounts/acc1/workers/services/billing", testToken, "", "")
	if code != 200 || strings.Contains(raw, "placement_status") || !strings.Contains(raw, `"placement_mode":"host"`) {
		t.Fatalf("status before analysis: %d %s; want 200, mode host, no placement_status", code, raw)
	}
	e.run()
	var st ServiceStatus
	waitUntil(t, "the status to show the analysis", 15*time.Second, func() bool {
		_, _, env, _ := e.do("GET", "/client/v4/accounts/acc1/workers/services/billing", testToken, "", "")
		b, _ := json.Marshal(env.Result)
		st = ServiceStatus{}
		json.Unmarshal(b, &st)
		return st.PlacementStatus != ""
	})
	// Loopback answers in microseconds from three continents: anycast, not placeable.
	if st.PlacementStatus != placement.StatusUnsupportedApplication || st.Vantage.Verdict != placement.VerdictAnycast ||
		len(st.Vantage.Candidates) != 3 || st.Vantage.LastChecked.IsZero() || st.Placement == nil || st.Placement.Host != e.host {
		t.Errorf("status after analysis: %+v", st)
	}
}

func TestAPIAdHocProbesAndQuota(t *testing.T) {
	e := newAPIEnv(t, Quota{PerMinute: 6, Burst: 3}) // one every 10 s after a burst of three
	req := `{"target":"` + e.host + `","kind":"tcp","pops":"all","count":2}`
	code, hdr, env, raw := e.do("POST", "/v1/probes", testToken, "application/json", req)
	if code != 202 {
		t.Fatalf("POST /v1/probes: %d %s", code, raw)
	}
	id := env.Result.(map[string]any)["id"].(string)
	if hdr.Get("Location") != "/v1/probes/"+id {
		t.Errorf("Location %q", hdr.Get("Location"))
	}
	var st AdHocStatus
	waitUntil(t, "the ad-hoc probe to finish", 15*time.Second, func() bool {
		_, _, env, _ := e.do("GET", "/v1/probes/"+id, testToken, "", "")
		b, _ := json.Marshal(env.Result)
		st = AdHocStatus{}
		json.Unmarshal(b, &st)
		return st.Done
	})
	if len(st.Results) != 3 || len(st.Pending) != 0 || st.Verdict == nil {
		t.Fatalf("ad-hoc status %+v: want three results and a verdict", st)
	}
	for pop, r := range st.Results {
		if r.Samples != 2 || r.Class != "" || len(r.Detail) == 0 {
			t.Errorf("PoP %s result %+v: want 2 samples, success, the prober's detail", pop, r)
		}
	}
	if st.Verdict.Verdict != placement.VerdictAnycast || len(st.Verdict.Candidates) != 3 {
		t.Errorf("verdict %+v: want anycast over three candidates (loopback from three continents)", st.Verdict)
	}
	if rec, ok, err := e.b.AdHocProbe(context.Background(), id); err != nil || !ok || !rec.Done || len(rec.Verdict) == 0 || len(rec.Results) != 3 {
		t.Errorf("stored ad-hoc record %+v (%v, %v): want done, with the verdict and the three results", rec, ok, err)
	}

	// The quota (a burst of three, one used above) is kept in Redis: after one more on this scheduler a second
	// scheduler takes the third, and then neither has one left. Refusals of bad requests (but an unknown PoP,
	// which needs Redis) come first and cost no quota.
	second := e.second(Quota{PerMinute: 6, Burst: 3})
	long := strings.Repeat("a", 5000)
	for _, tc := range []struct {
		name, token, body string
		onSecond          bool
		code              int
		want              string
	}{
		{"no_token", "", req, false, 401, "bearer"},
		{"target_5000_bytes", testToken, `{"target":"` + long + `:80","kind":"tcp"}`, false, 400, `target "aaaaaaaaaaaaaaaa`},
		{"target_5000_bytes_says_why", testToken, `{"target":"` + long + `","kind":"icmp"}`, false, 400, `(5000 bytes): 5000 bytes, more than 253`},
		{"target_not_echoed", testToken, `{"target":"x:` + long + `","kind":"tcp"}`, true, 400, `(5002 bytes)`},
		{"target_url_too_long", testToken, `{"target":"http://example.com/` + long + `","kind":"http"}`, false, 400, `more than 2048`},
		{"target_bad_name", testToken, `{"target":"a..b:80","kind":"tcp"}`, false, 400, `target "a..b:80": empty label`},
		{"target_denied", testToken, `{"target":"[64:ff9b::a9fe:a9fe]:80","kind":"tcp"}`, false, 400, `169.254.169.254`},
		{"target_empty", testToken, `{"target":"","kind":"tcp"}`, false, 400, `target "": empty`},
		{"kind", testToken, `{"target":"x:1","kind":"udp"}`, false, 400, `kind "udp": want one of`},
		{"count_over_cap", testToken, `{"target":"x:1","kind":"tcp","count":21}`, false, 400, `count 21: want 1..20`},
		{"count_negative", testToken, `{"target":"x:1","kind":"tcp","count":-1}`, false, 400, `count -1`},
		{"timeout_over_cap", testToken, `{"target":"x:1","kind":"tcp","timeout_ms":60000}`, false, 400, `timeout_ms 60000: want 1..10000`},
		{"count_times_timeout", testToken, `{"target":"x:1","kind":"tcp","count":20,"timeout_ms":2000}`, false, 400, `count × timeout_ms 40000: 40s per PoP, more than 20s`},
		{"count_times_default_timeout", testToken, `{"target":"x:1","kind":"tcp","count":11}`, false, 400, `count × timeout_ms 22000`},
		{"pops_too_many", testToken, `{"target":"x:1","kind":"tcp","pops":"` + strings.Repeat("FRA,", 401) + `FRA"}`, false, 400, `pops 402: more than 400 codes`},
		{"pops_bad_code", testToken, `{"target":"x:1","kind":"tcp","pops":["` + long + `"]}`, false, 400, `(5000 bytes): not a PoP code`},
		{"pops_empty_code", testToken, `{"target":"x:1","kind":"tcp","pops":["FRA",""]}`, false, 400, `pops "": not a PoP code`},
		{"unknown_field", testToken, `{"target":"x:1","kind":"tcp","cuont":2}`, false, 400, `unknown field`},
		{"unknown_pop", testToken, `{"target":"x:1","kind":"tcp","pops":["ZZZ"]}`, false, 400, `pops "ZZZ": no live daemon`},
		{"quota_shared_second_scheduler", testToken, req, true, 202, `"id"`},
		{"quota_exhausted", testToken, req, false, 429, "quota"},
		{"quota_exhausted_second_scheduler", testToken, req, true, 429, "quota"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := e.url
			if tc.onSecond {
				url = second
			}
			code, hdr, env, raw := e.doAt(url, "POST", "/v1/probes", tc.token, "application/json", tc.body)
			msg := raw
			if len(env.Errors) > 0 {
				msg = env.Errors[0].Message
			}
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Fatalf("%d %.300s, want %d containing %q", code, raw, tc.code, tc.want)
			}
			if len(raw) > 1024 {
				t.Errorf("a %d-byte answer: a refusal must not echo the request", len(raw))
			}
			if code == 429 {
				ra, err := strconv.Atoi(hdr.Get("Retry-After"))
				if err != nil || ra < 1 || ra > 10 {
					t.Errorf("Retry-After %q: want 1..10 s", hdr.Get("Retry-After"))
				}
			}
		})
	}
	if code, _, _, raw := e.do("GET", "/v1/probes/ffffffffffffffff", testToken, "", ""); code != 404 {
		t.Errorf("unknown probe: %d %s", code, raw)
	}
}

func TestAuthTokenBucket(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAuth(map[string]string{"t": "ops"}, Quota{PerMinute: 60, Burst: 3}, func() time.Time { return now })
	steps := []struct {
		name    string
		advance time.Duration
		ok      bool
		wait    time.Duration
	}{
		{"burst_1", 0, true, 0},
		{"burst_2", 0, true, 0},
		{"burst_3", 0, true, 0},
		{"empty", 0, false, time.Second},
		{"half_refilled", 500 * time.Millisecond, false, 500 * time.Millisecond},
		{"refilled_one", 500 * time.Millisecond, true, 0},
		{"idle_refills_to_burst_only", time.Hour, true, 0},
		{"second_after_idle", 0, true, 0},
		{"third_after_idle", 0, true, 0},
		{"fourth_after_idle", 0, false, time.Second},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		ok, wait := a.Allow("ops")
		if ok != s.ok || (wait-s.wait).Abs() > time.Millisecond {
			t.Errorf("%s: Allow = %v, %v; want %v, %v", s.name, ok, wait, s.ok, s.wait)
		}
	}
	if ok, _ := a.Allow("other"); !ok {
		t.Error("buckets are per token: another token must start full")
	}
}

func TestParseTokens(t *testing.T) {
	toks, err := ParseTokens(bytes.NewBufferString("# ops\nabcdefghijklmnop ops\n\nqrstuvwxyz0123456789\n"), "tokens")
	if err != nil || toks["abcdefghijklmnop"] != "ops" || toks["qrstuvwxyz0123456789"] != "token-4" {
		t.Fatalf("ParseTokens = %v, %v", toks, err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"short", "abc\n", "tokens:1: token shorter than 16 characters"},
		{"three_fields", "abcdefghijklmnop a b\n", "tokens:1: want \"token [name]\", got 3 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseTokens(strings.NewReader(tc.in), "tokens"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRegionEndpoints(t *testing.T) {
	r := RegionEndpoints{Overrides: map[string]string{"aws:eu-central-1": "198.18.0.9:443"}}
	for _, tc := range []struct{ name, region, want, err string }{
		{"override", "aws:eu-central-1", "198.18.0.9:443", ""},
		{"aws_template", "aws:us-east-1", "ec2.us-east-1.amazonaws.com:443", ""},
		{"gcp_template", "gcp:europe-west3", "europe-west3-run.googleapis.com:443", ""},
		{"azure_template", "azure:westeurope", "westeurope.api.cognitive.microsoft.com:443", ""},
		{"unknown_provider", "oracle:eu-frankfurt-1", "", ""},
		{"syntax", "useast1", "", `region "useast1": want provider:region`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Endpoint(tc.region)
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Endpoint(%q) = %q, %v; want %q, %q", tc.region, got, err, tc.want, tc.err)
			}
		})
	}
	m, err := ParseRegionEndpoints(strings.NewReader("# x\naws:us-east-1 198.18.0.3:443\ngcp:asia-northeast1=198.18.0.4:80\n"), "f")
	if err != nil || m["aws:us-east-1"] != "198.18.0.3:443" || m["gcp:asia-northeast1"] != "198.18.0.4:80" {
		t.Fatalf("ParseRegionEndpoints = %v, %v", m, err)
	}
	if _, err := ParseRegionEndpoints(strings.NewReader("aws:us-east-1 nope\n"), "f"); err == nil || !strings.Contains(err.Error(), "f:1") {
		t.Errorf("bad endpoint error %v, want it located at f:1", err)
	}
}

func TestRegionWithoutAnsweringEndpointIsEstimated(t *testing.T) {
	e := newAPIEnv(t, Quota{})
	// Port 1 of loopback: nobody listens, every PoP's probe is refused.
	e.s.AddTarget("test", Target{App: "closed", Mode: placement.ModeRegion, Target: "aws:ap-northeast-1", Endpoint: "127.0.0.1:1"})
	e.s.AddTarget("test", Target{App: "none", Mode: placement.ModeRegion, Target: "aws:us-east-1"})
	e.run()
	for app, want := range map[string]string{"closed": "SIN", "none": "IAD"} {
		var d placement.Decision
		waitUntil(t, "a decision for "+app, 15*time.Second, func() bool {
			var ok bool
			d, ok, _ = e.b.Decision(context.Background(), app)
			return ok
		})
		if d.BestPoP != want || !d.Estimated || d.Status != placement.StatusSuccess {
			t.Errorf("%s: %+v; want %s from the latency model, estimated", app, d, want)
		}
	}
}

// TestSharedEndpointFirstDecisions registers a host app and a region app probing the same host:port back to
// back: both rechecks probe the same result key at once, and each must get its first decision from that
// recheck, not after a result timeout (set here far beyond the test's deadline) or a recheck interval.
func TestSharedEndpointFirstDecisions(t *testing.T) {
	var e *apiEnv
	host := testnet.Listen(t)
	e = newAPIEnvWith(t, Quota{}, func(c *Config, a *API) {
		c.RecheckInterval, c.ResultTimeout = 10*time.Minute, 5*time.Minute
		a.Regions = RegionEndpoints{Overrides: map[string]string{"gcp:asia-northeast1": host}}
	})
	e.run()
	for round := range 3 { // the race is between two rechecks: try it a few times
		hostApp, regionApp := "tokyo-host-"+strconv.Itoa(round), "tokyo-region-"+strconv.Itoa(round)
		for _, body := range []string{
			"name = \"" + hostApp + "\"\n[placement]\nhost = \"" + host + "\"\n",
			"name = \"" + regionApp + "\"\n[placement]\nregion = \"gcp:asia-northeast1\"\n",
		} {
			if code, _, _, raw := e.do("POST", "/v1/apps", testToken, "application/toml", body); code != 201 {
				t.Fatalf("POST %q: %d %s", body, code, raw)
			}
		}
		took := waitUntil(t, "first decisions of "+hostApp+" and "+regionApp, 20*time.Second, func() bool {
			_, ok1, _ := e.b.Decision(context.Background(), hostApp)
			_, ok2, _ := e.b.Decision(context.Background(), regionApp)
			return ok1 && ok2
		})
		t.Logf("round %d: both decided %v after registration", round, took)
	}
}

// TestAPISmartAppsAndDeploys registers a smart application through the API, reads its status and the list,
// tells Vantage of deploys (a version given, a version generated) and deletes it.
func TestAPISmartAppsAndDeploys(t *testing.T) {
	e := newAPIEnv(t, Quota{})
	ctx := context.Background()
	smartTOML := "name = \"shop\"\n[unsafe.metadata.placement]\nmode = \"smart\"\n" // the legacy form: smart
	if code, _, _, raw := e.do("POST", "/v1/apps?account=acc1", testToken, "application/toml", smartTOML); code != 201 ||
		!strings.Contains(raw, `"mode":"smart"`) || !strings.Contains(raw, `"deploy_generated":true`) {
		t.Fatalf("POST smart app: %d %s; want 201, mode smart, a generated deploy", code, raw)
	}
	app, ok, err := e.b.App(ctx, "shop")
	if err != nil || !ok || app.Mode != placement.ModeSmart || app.Source != SourceAPI || !app.DeployGenerated ||
		app.DeployVersion == "" || app.DeployedAt.IsZero() {
		t.Fatalf("registry entry %+v (%v, %v); want smart, from the API, a generated deploy", app, ok, err)
	}
	if _, ok := e.s.Target("shop"); ok {
		t.Error("a smart application has a probe target")
	}
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"status_before_analysis", "GET", "/client/v4/accounts/acc1/workers/services/shop", "", 200, `"placement":{"mode":"smart"}`},
		{"status_other_account", "GET", "/client/v4/accounts/acc2/workers/services/shop", "", 404, "service_not_found"},
		{"list", "GET", "/v1/apps", "", 200, `"app":"shop","account":"acc1","mode":"smart"`},
		{"deploy_with_version", "POST", "/v1/apps/shop/deploys", `{"version": "v7"}`, 201, `"deploy":"v7"`},
		{"deploy_query_version", "POST", "/v1/apps/shop/deploys?version=v8", "", 201, `"deploy":"v8"`},
		{"deploy_bad_body", "POST", "/v1/apps/shop/deploys", `{"versoin": "v9"}`, 400, "unknown field"},
		{"deploy_unknown_app", "POST", "/v1/apps/nope/deploys", "", 404, "not registered"},
		{"deploy_generated", "POST", "/v1/apps/shop/deploys", "", 201, `"deploy_generated":true`},
		{"delete", "DELETE", "/v1/apps/shop", "", 200, `"shop"`},
		{"delete_again", "DELETE", "/v1/apps/shop", "", 404, "not registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _, _ := e.b.App(ctx, "shop")
			code, _, _, raw := e.do(tc.method, tc.path, testToken, "application/json", tc.body)
			if code != tc.code || !strings.Contains(raw, tc.want) {
				t.Fatalf("%s %s: %d %s, want %d containing %q", tc.method, tc.path, code, raw, tc.code, tc.want)
			}
			if tc.method == "POST" && code == 201 {
				after, _, _ := e.b.App(ctx, "shop")
				if after.DeployVersion == before.DeployVersion || !after.DeployedAt.After(before.DeployedAt) || after.Mode != placement.ModeSmart {
					t.Errorf("deploy: registry %+v after %+v; want a new version deployed later", after, before)
				}
			}
		})
	}
}

// TestNoValidHostsReason checks that a target nothing listens on is NO_VALID_HOSTS with the probes' failure in
// words, in the decision and in the status API.
func TestNoValidHostsReason(t *testing.T) {
	e := newAPIEnv(t, Quota{})
	// Port 1 of loopback: nobody listens, every PoP's probe is refused.
	body := "name = \"closed\"\n[placement]\nhost = \"127.0.0.1:1\"\n"
	if code, _, _, raw := e.do("POST", "/v1/apps", testToken, "application/toml", body); code != 201 {
		t.Fatalf("POST: %d %s", code, raw)
	}
	e.run()
	var st ServiceStatus
	waitUntil(t, "the status to show the analysis", 15*time.Second, func() bool {
		_, _, env, _ := e.do("GET", "/client/v4/accounts/any/workers/services/closed", testToken, "", "")
		b, _ := json.Marshal(env.Result)
		st = ServiceStatus{}
		json.Unmarshal(b, &st)
		return st.PlacementStatus != ""
	})
	want := "every PoP's probe of 127.0.0.1:1 failed: refused: "
	if st.PlacementStatus != placement.StatusNoValidHosts || !strings.HasPrefix(st.Vantage.Reason, want) ||
		!strings.HasSuffix(st.Vantage.Reason, "(FRA, IAD, SIN)") {
		t.Errorf("status %s, reason %q; want NO_VALID_HOSTS and a reason starting %q, naming the three PoPs", st.PlacementStatus, st.Vantage.Reason, want)
	}
	if d, _, err := e.b.Decision(context.Background(), "closed"); err != nil || d.Reason != st.Vantage.Reason {
		t.Errorf("stored decision's reason %q (%v), want the status API's", d.Reason, err)
	}
}

func TestFailureReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		rs   map[string]storage.Result
		want string
	}{
		{"no_results", nil, "no PoP returned a result for h:80 within 30s"},
		{"one_pop", map[string]storage.Result{"FRA": {Class: "timeout", Error: "i/o timeout"}},
			"the only PoP's probe of h:80 failed: timeout: i/o timeout (FRA)"},
		{"grouped", map[string]storage.Result{
			"FRA": {Class: "refused", Error: "connection refused"}, "IAD": {Class: "refused", Error: "connection refused"},
			"SIN": {Class: "timeout"}, "SYD": {}},
			"every PoP's probe of h:80 failed: no sample answered (SYD); refused: connection refused (FRA, IAD); timeout (SIN)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := failureReason("h:80", tc.rs, 30*time.Second); got != tc.want {
				t.Errorf("failureReason = %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestLeaseHoldersUnique: two schedulers given the same name on one Redis are two holders: one leads, the other
// stands by, and the holder in Redis is the name with a random part.
func TestLeaseHoldersUnique(t *testing.T) {
	srv := redistest.Start(t)
	f := &fleetEnv{t: t, addrs: []string{srv.Addr()}, log: testLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	var ls []*leadership
	var done []chan struct{}
	for range 2 {
		l := newLeadership(StoreBackend{f.open()}, DefaultLeaseName, "same", 2*time.Second, RealClock{}, f.log)
		ls = append(ls, l)
		ch := make(chan struct{})
		done = append(done, ch)
		go func() { defer close(ch); l.run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for _, ch := range done {
			<-ch
		}
	})
	if ls[0].holder == ls[1].holder || !strings.HasPrefix(ls[0].holder, "same~") {
		t.Fatalf("holders %q and %q: want two, each \"same~\" and a random part", ls[0].holder, ls[1].holder)
	}
	leaders := func() (n int, token int64) {
		for _, l := range ls {
			if term, _ := l.current(); term != nil {
				n++
				token = term.Token
			}
		}
		return n, token
	}
	waitUntil(t, "a leader", 10*time.Second, func() bool { n, _ := leaders(); return n == 1 })
	for range 10 { // over several renewals and standby polls (every 200 ms): never two leaders
		if n, _ := leaders(); n != 1 {
			t.Fatalf("%d schedulers named \"same\" lead at once", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, token := leaders()
	lease, held, err := f.open().LeaseInfo(context.Background(), DefaultLeaseName)
	if err != nil || !held || !strings.HasPrefix(lease.Holder, "same~") || lease.Token != token {
		t.Errorf("lease in Redis %+v (%v, %v): want a \"same~\" holder with the leader's token %d", lease, held, err, token)
	}
}
