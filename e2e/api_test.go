package e2e_test

import (
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
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage/redistest"
)

const apiToken = "token-for-tests-0123456789"

// apiEnv is a scheduler as `vantage scheduler` assembles it (API, status page, ingest, smart runner) with one
// bearer token, on a real redis-server; its probe daemons start when the test says so.
type apiEnv struct {
	t    *testing.T
	url  string
	b    scheduler.StoreBackend
	k    *daemon.Scheduler
	f    *fleet
	host string // a loopback service that accepts connections
}

func newAPIEnv(t *testing.T, quota scheduler.Quota) *apiEnv {
	t.Helper()
	srv := redistest.Start(t)
	f := &fleet{t: t, addrs: []string{srv.Addr()}, log: testLogger(t), hosts: map[string]netip.Addr{}}
	st := openStore(t, f.addrs, f.log)
	cfg := daemon.DefaultSchedulerConfig()
	cfg.Listen, cfg.Logger = "127.0.0.1:0", f.log
	cfg.Scheduler.Name = "api"
	cfg.Scheduler.RecheckInterval, cfg.Scheduler.LeaseTTL = fleetRecheck, fleetLease
	cfg.Scheduler.InitialSpread = 100 * time.Millisecond
	cfg.Scheduler.ResultTimeout, cfg.Scheduler.ResultPoll = time.Second, 50*time.Millisecond
	cfg.Tokens, cfg.Quota, cfg.AdHocTimeout = map[string]string{apiToken: "ops"}, quota, 5*time.Second
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	k, err := daemon.NewScheduler(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	start(t, "scheduler", k.Run)
	return &apiEnv{t: t, url: k.URL(), b: scheduler.StoreBackend{Store: st}, k: k, f: f, host: testnet.Listen(t)}
}

// startFleet starts the probe daemons of FRA, IAD and SIN and waits for their heartbeats.
func (e *apiEnv) startFleet() {
	e.t.Helper()
	for i, pop := range []string{"FRA", "IAD", "SIN"} {
		e.f.startProbed(pop, "d-"+pop, 10+i, newGate(e.f.hosts, true), time.Second)
	}
	eventually(e.t, 10*time.Second, "three PoPs up", func() bool {
		ps, err := e.b.UpPoPs(context.Background())
		return err == nil && len(ps) == 3
	})
}

func (e *apiEnv) do(method, path, token, ctype, body string) (int, http.Header, scheduler.Envelope, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
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
	var env scheduler.Envelope
	json.Unmarshal(raw, &env)
	return resp.StatusCode, resp.Header, env, string(raw)
}

// TestAPIAppsStatusAndAuth registers, lists and deletes apps through the API with and without the token, and
// follows an app's status from registration to the fleet's analysis.
func TestAPIAppsStatusAndAuth(t *testing.T) {
	skipShort(t, "the scheduler's API with a fleet")
	e := newAPIEnv(t, scheduler.Quota{})
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
		{"post_smart_has_no_target", "POST", "/v1/apps", apiToken, "application/json", `{"name":"s","placement":{"mode":"smart"}}`, 400, "no target to probe"},
		{"post_denied_host", "POST", "/v1/apps", apiToken, "application/toml", "name = \"x\"\n[placement]\nhost = \"10.0.0.1:5432\"\n", 400, "10.0.0.1"},
		{"post_bad_toml", "POST", "/v1/apps", apiToken, "application/toml", "name = \n", 400, "request:1:8"},
		{"status_unknown", "GET", "/client/v4/accounts/acc1/workers/services/nope", "", "", "", 404, "service_not_found"},
		{"status_other_account", "GET", "/client/v4/accounts/acc2/workers/services/billing", "", "", "", 404, "service_not_found"},
		{"list", "GET", "/v1/apps", "", "", "", 200, `"catalog"`},
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
	if err != nil || len(apps) != 1 || apps[0].Name != "billing" || apps[0].Account != "acc1" {
		t.Fatalf("app registry in Redis: %+v, %v; want billing of acc1 only", apps, err)
	}

	// Before the analysis (no probe daemon is up yet) the platform's field is absent.
	code, _, _, raw := e.do("GET", "/client/v4/accounts/acc1/workers/services/billing", "", "", "")
	if code != 200 || strings.Contains(raw, "placement_status") || !strings.Contains(raw, `"placement_mode":"host"`) {
		t.Fatalf("status before analysis: %d %s; want 200, mode host, no placement_status", code, raw)
	}
	e.startFleet()
	var st scheduler.ServiceStatus
	eventually(t, 15*time.Second, "the status to show the analysis", func() bool {
		_, _, env, _ := e.do("GET", "/client/v4/accounts/acc1/workers/services/billing", "", "", "")
		b, _ := json.Marshal(env.Result)
		st = scheduler.ServiceStatus{}
		json.Unmarshal(b, &st)
		return st.PlacementStatus != ""
	})
	// Loopback answers in microseconds from three continents: anycast, not placeable.
	if st.PlacementStatus != placement.StatusUnsupportedApplication || st.Vantage.Verdict != placement.VerdictAnycast ||
		len(st.Vantage.Candidates) != 3 || st.Vantage.LastChecked.IsZero() || st.Placement == nil || st.Placement.Host != e.host {
		t.Errorf("status after analysis: %+v", st)
	}
}

// TestAPIAdHocProbesAndQuota runs an ad-hoc probe from every PoP through the API, then checks its errors and
// the token's quota.
func TestAPIAdHocProbesAndQuota(t *testing.T) {
	skipShort(t, "the scheduler's API with a fleet")
	e := newAPIEnv(t, scheduler.Quota{PerMinute: 6, Burst: 2}) // one every 10 s after a burst of two
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
	eventually(t, 15*time.Second, "the ad-hoc probe to finish", func() bool {
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

	for _, tc := range []struct {
		name, token, body string
		code              int
		want              string
	}{
		{"no_token", "", req, 401, "bearer"},
		{"unknown_pop", apiToken, `{"target":"x:1","kind":"tcp","pops":["ZZZ"]}`, 400, `ZZZ\" has no live daemon`},
		{"quota_exhausted", apiToken, req, 429, "quota"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, _, raw := e.do("POST", "/v1/probes", tc.token, "application/json", tc.body)
			if code != tc.code || !strings.Contains(raw, tc.want) {
				t.Fatalf("%d %s, want %d containing %q", code, raw, tc.code, tc.want)
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
	skipShort(t, "the scheduler with a fleet")
	e := newAPIEnv(t, scheduler.Quota{})
	e.startFleet()
	// Port 1 of loopback: nobody listens, every PoP's probe is refused.
	e.k.Scheduler().AddTarget("test", scheduler.Target{App: "closed", Mode: placement.ModeRegion, Target: "aws:ap-northeast-1", Endpoint: "127.0.0.1:1"})
	e.k.Scheduler().AddTarget("test", scheduler.Target{App: "none", Mode: placement.ModeRegion, Target: "aws:us-east-1"})
	for app, want := range map[string]string{"closed": "SIN", "none": "IAD"} {
		var d placement.Decision
		eventually(t, 15*time.Second, "a decision for "+app, func() bool {
			var ok bool
			d, ok, _ = e.b.Decision(context.Background(), app)
			return ok
		})
		if d.BestPoP != want || !d.Estimated || d.Status != placement.StatusSuccess {
			t.Errorf("%s: %+v; want %s from the latency model, estimated", app, d, want)
		}
	}
}
