package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// The scheduler's bearer tokens: an operator's, and one of each of the accounts acc1 and acc2.
const (
	apiToken  = "token-for-tests-0123456789"
	acc1Token = "token-of-acc1-0123456789"
	acc2Token = "token-of-acc2-0123456789"
)

// apiEnv is a scheduler as `vantage scheduler` runs it (API, status page, telemetry ingest, smart runner) with
// an operator's token and one token of each of two accounts, on a real redis-server; the probe daemons of FRA, IAD and SIN start when the test says so.
type apiEnv struct {
	t     *testing.T
	f     *fleet
	s     *sched
	quota scheduler.Quota
	obs   *storage.Store
	b     scheduler.StoreBackend // obs, read as the scheduler reads Redis
	host  string                 // a loopback service that accepts connections
}

// newAPIEnv starts the scheduler "api" with quota on each token, its config adjusted by edit (nil: none).
func newAPIEnv(t *testing.T, quota scheduler.Quota, edit func(*daemon.SchedulerConfig)) *apiEnv {
	t.Helper()
	srv := redistest.Start(t)
	f := &fleet{t: t, addrs: []string{srv.Addr()}, log: testLogger(t), hosts: map[string]netip.Addr{}}
	obs := openStore(t, f.addrs, f.log)
	e := &apiEnv{t: t, f: f, quota: quota, obs: obs, b: scheduler.StoreBackend{Store: obs}, host: testnet.Listen(t)}
	cfg := e.config("api")
	if edit != nil {
		edit(&cfg)
	}
	e.s = f.startScheduler(cfg)
	return e
}

// config returns the config of a scheduler named name accepting the test's tokens with the env's quota.
func (e *apiEnv) config(name string) daemon.SchedulerConfig {
	cfg := e.f.schedulerConfig(name)
	cfg.Tokens, cfg.Quota, cfg.AdHocTimeout = scheduler.Tokens{apiToken: scheduler.Operator("ops"),
		acc1Token: {Name: "acc1-ci", Account: "acc1"}, acc2Token: {Name: "acc2-ci", Account: "acc2"}}, e.quota, 5*time.Second
	return cfg
}

// startFleet starts the probe daemons of FRA, IAD and SIN on loopback and waits for their heartbeats.
func (e *apiEnv) startFleet() { e.f.startPoPs(e.obs, 10, "FRA", "IAD", "SIN") }

// second starts a second scheduler on the same Redis with the same tokens and quota, as another process would
// run it, and returns its URL.
func (e *apiEnv) second() string {
	e.t.Helper()
	return e.f.startScheduler(e.config("api-2")).url
}

func (e *apiEnv) do(method, path, token, ctype, body string) (int, http.Header, scheduler.Envelope, string) {
	e.t.Helper()
	return e.doAt(e.s.url, method, path, token, ctype, body)
}

func (e *apiEnv) doAt(url, method, path, token, ctype, body string) (int, http.Header, scheduler.Envelope, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := apiClient(e.t).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env scheduler.Envelope
	json.Unmarshal(raw, &env)
	return resp.StatusCode, resp.Header, env, string(raw)
}

// metric returns the value of series (its name and labels as /metrics writes them) on the scheduler's /metrics,
// failing the test when it is absent.
func (e *apiEnv) metric(series string) float64 {
	e.t.Helper()
	code, _, _, raw := e.do("GET", "/metrics", apiToken, "", "")
	if code != 200 {
		e.t.Fatalf("GET /metrics: %d %.300s", code, raw)
	}
	for sc := bufio.NewScanner(strings.NewReader(raw)); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatalf("/metrics: %s %q: %v", series, v, err)
			}
			return f
		}
	}
	e.t.Fatalf("/metrics has no %s", series)
	return 0
}

// status polls app's status in account, read with token, until the fleet's analysis shows in it.
func (e *apiEnv) status(token, account, app string) scheduler.ServiceStatus {
	e.t.Helper()
	var st scheduler.ServiceStatus
	testwait.Eventually(e.t, 15*time.Second, "the status to show the analysis", func() bool {
		_, _, env, _ := e.do("GET", "/client/v4/accounts/"+account+"/workers/services/"+app, token, "", "")
		b, _ := json.Marshal(env.Result)
		st = scheduler.ServiceStatus{}
		json.Unmarshal(b, &st)
		return st.PlacementStatus != ""
	})
	return st
}

// TestAPIAppsStatusAndAuth registers, lists and deletes apps through the API with and without the token, and
// follows an app's status from registration to the fleet's analysis.
func TestAPIAppsStatusAndAuth(t *testing.T) {
	e := newAPIEnv(t, scheduler.Quota{}, nil)
	hostTOML := "name = \"billing\"\n[placement]\nhost = \"" + e.host + "\"\n"
	for _, tc := range []struct {
		name, method, path, token, ctype, body string
		code                                   int
		want                                   string
	}{
		{"post_without_token", "POST", "/v1/apps", "", "application/toml", hostTOML, 401, "bearer token"},
		{"post_with_bad_token", "POST", "/v1/apps", "wrong-token-0123456789", "application/toml", hostTOML, 401, "bearer token"},
		{"post_toml", "POST", "/v1/apps?account=acc1", apiToken, "application/toml", hostTOML, 201, `"app":"billing"`},
		{"post_jsonc", "POST", "/v1/apps", apiToken, "application/json", `{"name": "catalog", // c
			"placement": {"region": "aws:us-east-1"}}`, 201, `"endpoint":"ec2.us-east-1.amazonaws.com:443"`},
		{"post_smart", "POST", "/v1/apps?deploy=v1", apiToken, "application/json", `{"name":"s","placement":{"mode":"smart"}}`, 201, `"deploy":"v1"`},
		{"post_off_has_nothing_to_place", "POST", "/v1/apps", apiToken, "application/toml", "name = \"o\"\n[placement]\nmode = \"off\"\n", 400, "nothing to place"},
		{"post_bad_deploy", "POST", "/v1/apps?deploy=a+b", apiToken, "application/toml", hostTOML, 400, "deploy version"},
		{"post_denied_host", "POST", "/v1/apps", apiToken, "application/toml", "name = \"x\"\n[placement]\nhost = \"10.0.0.1:5432\"\n", 400, "10.0.0.1"},
		{"post_bad_toml", "POST", "/v1/apps", apiToken, "application/toml", "name = \n", 400, "request:1:8"},
		{"status_without_token", "GET", "/client/v4/accounts/acc1/workers/services/billing", "", "", "", 401, "bearer token"},
		{"status_unknown", "GET", "/client/v4/accounts/acc1/workers/services/nope", acc1Token, "", "", 404, "service_not_found"},
		{"status_other_account", "GET", "/client/v4/accounts/acc2/workers/services/billing", acc2Token, "", "", 404, "service_not_found"},
		{"list", "GET", "/v1/apps", apiToken, "", "", 200, `"catalog"`},
		{"delete_without_token", "DELETE", "/v1/apps/catalog", "", "", "", 401, "bearer"},
		{"delete", "DELETE", "/v1/apps/catalog", apiToken, "", "", 200, `"catalog"`},
		{"delete_again", "DELETE", "/v1/apps/catalog", apiToken, "", "", 404, "not registered"},
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

	// Before the analysis (no probe daemon is up yet) the platform's field is absent.
	code, _, _, raw := e.do("GET", "/client/v4/accounts/acc1/workers/services/billing", acc1Token, "", "")
	if code != 200 || strings.Contains(raw, "placement_status") || !strings.Contains(raw, `"placement_mode":"host"`) {
		t.Fatalf("status before analysis: %d %s; want 200, mode host, no placement_status", code, raw)
	}
	e.startFleet()
	st := e.status(acc1Token, "acc1", "billing")
	// Loopback answers in microseconds from three continents: anycast, not placeable.
	if st.PlacementStatus != placement.StatusUnsupportedApplication || st.Vantage.Verdict != placement.VerdictAnycast ||
		len(st.Vantage.Candidates) != 3 || st.Vantage.LastChecked.IsZero() || st.Placement == nil || st.Placement.Host != e.host {
		t.Errorf("status after analysis: %+v", st)
	}
}

// TestAPIAdHocProbesAndQuota runs an ad-hoc probe from every PoP through the API, then checks the refusals of
// bad requests and the token's quota, shared by two schedulers through Redis.
func TestAPIAdHocProbesAndQuota(t *testing.T) {
	e := newAPIEnv(t, scheduler.Quota{PerMinute: 6, Burst: 3}, nil) // one every 10 s after a burst of three
	e.startFleet()
	req := `{"target":"` + e.host + `","kind":"tcp","pops":"all","count":2}`
	code, hdr, env, raw := e.do("POST", "/v1/probes", apiToken, "application/json", req)
	if code != 202 {
		t.Fatalf("POST /v1/probes: %d %s", code, raw)
	}
	id := env.Result.(map[string]any)["id"].(string)
	if hdr.Get("Location") != "/v1/probes/"+id {
		t.Errorf("Location %q", hdr.Get("Location"))
	}
	var st scheduler.AdHocStatus
	testwait.Eventually(t, 15*time.Second, "the ad-hoc probe to finish", func() bool {
		_, _, env, _ := e.do("GET", "/v1/probes/"+id, apiToken, "", "")
		b, _ := json.Marshal(env.Result)
		st = scheduler.AdHocStatus{}
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
	second := e.second()
	long := strings.Repeat("a", 5000)
	for _, tc := range []struct {
		name, token, body string
		onSecond          bool
		code              int
		want              string
	}{
		{"no_token", "", req, false, 401, "bearer"},
		{"target_5000_bytes", apiToken, `{"target":"` + long + `:80","kind":"tcp"}`, false, 400, `target "aaaaaaaaaaaaaaaa`},
		{"target_5000_bytes_says_why", apiToken, `{"target":"` + long + `","kind":"icmp"}`, false, 400, `(5000 bytes): 5000 bytes, more than 253`},
		{"target_not_echoed", apiToken, `{"target":"x:` + long + `","kind":"tcp"}`, true, 400, `(5002 bytes)`},
		{"target_url_too_long", apiToken, `{"target":"http://example.com/` + long + `","kind":"http"}`, false, 400, `more than 2048`},
		{"target_bad_name", apiToken, `{"target":"a..b:80","kind":"tcp"}`, false, 400, `target "a..b:80": empty label`},
		{"target_denied", apiToken, `{"target":"[64:ff9b::a9fe:a9fe]:80","kind":"tcp"}`, false, 400, `169.254.169.254`},
		{"target_empty", apiToken, `{"target":"","kind":"tcp"}`, false, 400, `target "": empty`},
		{"kind", apiToken, `{"target":"x:1","kind":"udp"}`, false, 400, `kind "udp": want one of`},
		{"count_over_cap", apiToken, `{"target":"x:1","kind":"tcp","count":21}`, false, 400, `count 21: want 1..20`},
		{"count_negative", apiToken, `{"target":"x:1","kind":"tcp","count":-1}`, false, 400, `count -1`},
		{"timeout_over_cap", apiToken, `{"target":"x:1","kind":"tcp","timeout_ms":60000}`, false, 400, `timeout_ms 60000: want 1..10000`},
		{"count_times_timeout", apiToken, `{"target":"x:1","kind":"tcp","count":20,"timeout_ms":2000}`, false, 400, `count × timeout_ms 40000: 40s per PoP, more than 20s`},
		{"count_times_default_timeout", apiToken, `{"target":"x:1","kind":"tcp","count":11}`, false, 400, `count × timeout_ms 22000`},
		{"pops_too_many", apiToken, `{"target":"x:1","kind":"tcp","pops":"` + strings.Repeat("FRA,", 401) + `FRA"}`, false, 400, `pops 402: more than 400 codes`},
		{"pops_bad_code", apiToken, `{"target":"x:1","kind":"tcp","pops":["` + long + `"]}`, false, 400, `(5000 bytes): not a PoP code`},
		{"pops_empty_code", apiToken, `{"target":"x:1","kind":"tcp","pops":["FRA",""]}`, false, 400, `pops "": not a PoP code`},
		{"unknown_field", apiToken, `{"target":"x:1","kind":"tcp","cuont":2}`, false, 400, `unknown field`},
		{"unknown_pop", apiToken, `{"target":"x:1","kind":"tcp","pops":["ZZZ"]}`, false, 400, `pops "ZZZ": no live daemon`},
		{"quota_shared_second_scheduler", apiToken, req, true, 202, `"id"`},
		{"quota_exhausted", apiToken, req, false, 429, "quota"},
		{"quota_exhausted_second_scheduler", apiToken, req, true, 429, "quota"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := e.s.url
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
	if code, _, _, raw := e.do("GET", "/v1/probes/ffffffffffffffff", apiToken, "", ""); code != 404 {
		t.Errorf("unknown probe: %d %s", code, raw)
	}
}

// TestRegionWithoutAnsweringEndpointIsEstimated places a region whose endpoint refuses every PoP, and one with
// no endpoint, from the latency model.
func TestRegionWithoutAnsweringEndpointIsEstimated(t *testing.T) {
	e := newAPIEnv(t, scheduler.Quota{}, nil)
	e.startFleet()
	// Port 1 of loopback: nobody listens, every PoP's probe is refused.
	e.s.k.Scheduler().AddTarget("test", scheduler.Target{App: "closed", Mode: placement.ModeRegion, Target: "aws:ap-northeast-1", Endpoint: "127.0.0.1:1"})
	e.s.k.Scheduler().AddTarget("test", scheduler.Target{App: "none", Mode: placement.ModeRegion, Target: "aws:us-east-1"})
	for app, want := range map[string]string{"closed": "SIN", "none": "IAD"} {
		var d placement.Decision
		testwait.Eventually(t, 15*time.Second, "a decision for "+app, func() bool {
			var ok bool
			d, ok = decision(e.obs, app)
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
	host := testnet.Listen(t)
	e := newAPIEnv(t, scheduler.Quota{}, func(c *daemon.SchedulerConfig) {
		c.Scheduler.RecheckInterval, c.Scheduler.ResultTimeout = 10*time.Minute, 5*time.Minute
		c.Scheduler.Regions = scheduler.RegionEndpoints{Overrides: map[string]string{"gcp:asia-northeast1": host}}
	})
	e.startFleet()
	for round := range 3 { // the race is between two rechecks: try it a few times
		hostApp, regionApp := "tokyo-host-"+strconv.Itoa(round), "tokyo-region-"+strconv.Itoa(round)
		for _, body := range []string{
			"name = \"" + hostApp + "\"\n[placement]\nhost = \"" + host + "\"\n",
			"name = \"" + regionApp + "\"\n[placement]\nregion = \"gcp:asia-northeast1\"\n",
		} {
			if code, _, _, raw := e.do("POST", "/v1/apps", apiToken, "application/toml", body); code != 201 {
				t.Fatalf("POST %q: %d %s", body, code, raw)
			}
		}
		took := testwait.Eventually(t, 20*time.Second, "first decisions of "+hostApp+" and "+regionApp, func() bool {
			_, ok1 := decision(e.obs, hostApp)
			_, ok2 := decision(e.obs, regionApp)
			return ok1 && ok2
		})
		t.Logf("round %d: both decided %v after registration", round, took)
	}
}

// TestAPISmartAppsAndDeploys registers a smart application through the API, reads its status and the list,
// tells Vantage of deploys (a version given, a version generated) and deletes it. A smart app is not probed:
// no probe daemon is needed.
func TestAPISmartAppsAndDeploys(t *testing.T) {
	e := newAPIEnv(t, scheduler.Quota{}, func(c *daemon.SchedulerConfig) { c.Smart.Interval = 200 * time.Millisecond })
	ctx := context.Background()
	smartTOML := "name = \"shop\"\n[unsafe.metadata.placement]\nmode = \"smart\"\n" // the legacy form: smart
	if code, _, _, raw := e.do("POST", "/v1/apps?account=acc1", apiToken, "application/toml", smartTOML); code != 201 ||
		!strings.Contains(raw, `"mode":"smart"`) || !strings.Contains(raw, `"deploy_generated":true`) {
		t.Fatalf("POST smart app: %d %s; want 201, mode smart, a generated deploy", code, raw)
	}
	app, ok, err := e.b.App(ctx, "shop")
	if err != nil || !ok || app.Mode != placement.ModeSmart || app.Source != scheduler.SourceAPI || !app.DeployGenerated ||
		app.DeployVersion == "" || app.DeployedAt.IsZero() {
		t.Fatalf("registry entry %+v (%v, %v); want smart, from the API, a generated deploy", app, ok, err)
	}
	if _, ok := e.s.k.Scheduler().Target("shop"); ok {
		t.Error("a smart application has a probe target")
	}
	// The smart runner (every 200 ms here, every minute by default) decides the app at once: too few
	// invocations yet. The statuses below are served with that decision.
	testwait.Eventually(t, 10*time.Second, "the smart runner's first decision", func() bool { _, ok := decision(e.obs, "shop"); return ok })
	for _, tc := range []struct {
		name, method, path, token, body string
		code                            int
		want                            string
	}{
		{"status_before_analysis", "GET", "/client/v4/accounts/acc1/workers/services/shop", acc1Token, "", 200, `"placement":{"mode":"smart"}`},
		{"status_other_account", "GET", "/client/v4/accounts/acc2/workers/services/shop", acc2Token, "", 404, "service_not_found"},
		{"list", "GET", "/v1/apps", apiToken, "", 200, `"app":"shop","account":"acc1","mode":"smart"`},
		{"deploy_with_version", "POST", "/v1/apps/shop/deploys", apiToken, `{"version": "v7"}`, 201, `"deploy":"v7"`},
		{"deploy_query_version", "POST", "/v1/apps/shop/deploys?version=v8", apiToken, "", 201, `"deploy":"v8"`},
		{"deploy_bad_body", "POST", "/v1/apps/shop/deploys", apiToken, `{"versoin": "v9"}`, 400, "unknown field"},
		{"deploy_unknown_app", "POST", "/v1/apps/nope/deploys", apiToken, "", 404, "not registered"},
		{"deploy_generated", "POST", "/v1/apps/shop/deploys", apiToken, "", 201, `"deploy_generated":true`},
		{"delete", "DELETE", "/v1/apps/shop", apiToken, "", 200, `"shop"`},
		{"delete_again", "DELETE", "/v1/apps/shop", apiToken, "", 404, "not registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _, _ := e.b.App(ctx, "shop")
			code, _, _, raw := e.do(tc.method, tc.path, tc.token, "application/json", tc.body)
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
	e := newAPIEnv(t, scheduler.Quota{}, nil)
	e.startFleet()
	// Port 1 of loopback: nobody listens, every PoP's probe is refused.
	body := "name = \"closed\"\n[placement]\nhost = \"127.0.0.1:1\"\n"
	if code, _, _, raw := e.do("POST", "/v1/apps", apiToken, "application/toml", body); code != 201 {
		t.Fatalf("POST: %d %s", code, raw)
	}
	st := e.status(apiToken, "any", "closed")
	want := "every PoP's probe of 127.0.0.1:1 failed: refused: "
	if st.PlacementStatus != placement.StatusNoValidHosts || !strings.HasPrefix(st.Vantage.Reason, want) ||
		!strings.HasSuffix(st.Vantage.Reason, "(FRA, IAD, SIN)") {
		t.Errorf("status %s, reason %q; want NO_VALID_HOSTS and a reason starting %q, naming the three PoPs", st.PlacementStatus, st.Vantage.Reason, want)
	}
	if d, _, err := e.b.Decision(context.Background(), "closed"); err != nil || d.Reason != st.Vantage.Reason {
		t.Errorf("stored decision's reason %q (%v), want the status API's", d.Reason, err)
	}
}
