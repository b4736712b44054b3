package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/scheduler/smartrun"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// Two accounts and an operator on one scheduler. Account ids are not substrings of any application's name, so
// that a response can be searched for them.
const (
	acctA    = "a1c0ffee"
	acctB    = "b2deadbeef"
	tokA     = "token-of-account-a-0123456789"
	tokA2    = "second-token-of-a-0123456789"
	tokB     = "token-of-account-b-0123456789"
	tokOps   = "token-of-the-operator-0123456789"
	targetA  = "db.shop.example:5432"
	targetB  = "api.rival.example"
	probeOfA = "probe.shop.example:443"
)

// accountsEnv is an API on a real redis-server with a scheduler that is not running (its targets are held,
// not rechecked) and one PoP up by its heartbeat (ad-hoc jobs are enqueued, never run).
type accountsEnv struct {
	t      *testing.T
	url    string
	client *http.Client // validates every exchange against openapi.json
	st     *storage.Store
	s      *Scheduler
	api    *API
}

func newAccountsEnv(t *testing.T, limits Limits) *accountsEnv {
	t.Helper()
	ctx := context.Background()
	rs := redistest.Start(t)
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{rs.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: "FRA", DaemonID: "d-FRA", At: time.Now()}, time.Hour); err != nil {
		t.Fatal(err)
	}
	b := StoreBackend{st}
	s, err := New(Config{Name: "accounts"}, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokens := Tokens{
		tokA:   {Name: "a-ci", Account: acctA},
		tokA2:  {Name: "a-laptop", Account: acctA},
		tokB:   {Name: "b-ci", Account: acctB},
		tokOps: Operator("ops"),
	}
	api := &API{Sched: s, Decisions: b, Apps: b, Parser: placement.DefaultParser(), Gatherer: prometheus.NewRegistry(),
		Auth:   NewScopedAuth(tokens, Quota{PerMinute: 600, Burst: 100}, nil),
		AdHoc:  &AdHoc{Backend: b, Parser: placement.DefaultParser(), Timeout: time.Minute},
		Limits: limits, Quotas: b,
	}
	api.Telemetry = smartrun.IngestHandler(api.GuardTelemetry(st.AddTelemetryBatch), nil)
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return &accountsEnv{t: t, url: hs.URL, client: openapitest.Client(t), st: st, s: s, api: api}
}

// do sends one request; token "" sends none.
func (e *accountsEnv) do(method, path, token, body string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // every body of these tests is JSON
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// must sends a request that has to answer want.
func (e *accountsEnv) must(want int, method, path, token, body string) string {
	e.t.Helper()
	code, _, raw := e.do(method, path, token, body)
	if code != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
	}
	return raw
}

func hostConfig(app, host string) string {
	return fmt.Sprintf(`{"name": %q, "placement": {"host": %q}}`, app, host)
}

func telemetry(app string, n int) string {
	recs := make([]storage.Telemetry, n)
	for i := range recs {
		recs[i] = storage.Telemetry{App: app, Ingress: "FRA", Exec: "FRA", At: time.Now(), DurationMs: 3}
	}
	b, _ := json.Marshal(recs)
	return string(b)
}

// aggregatedTelemetry is a batch of n requests of app folded into windows, as a worker host that aggregates
// sends it.
func aggregatedTelemetry(app string, n int) string {
	recs := make([]storage.Telemetry, n)
	for i := range recs {
		recs[i] = storage.Telemetry{App: app, Ingress: "FRA", Exec: "FRA", At: time.Now(), DurationMs: 3,
			Subrequests: []storage.Subrequest{{Host: "db:5432", DurationMs: 1}}}
	}
	b, _ := json.Marshal(storage.TelemetryBatch{Windows: storage.FoldTelemetry(recs)})
	return string(b)
}

// TestAccountsIsolation: two accounts on one scheduler: neither can list, read, change, delete or probe-read
// the other's things, through the API or the Workers-shaped routes; nothing is read without a token; a refusal
// says nothing of the other account's application, target or account that the request did not name.
func TestAccountsIsolation(t *testing.T) {
	e := newAccountsEnv(t, Limits{})
	ctx := context.Background()

	// Account A: a host app through the API, a smart app through the Workers-shaped route, an ad-hoc probe, a
	// decision; a config file's app in A. Account B: one app of its own.
	e.must(201, "POST", "/v1/apps", tokA, hostConfig("shop-db", targetA))
	e.must(201, "PUT", "/client/v4/accounts/"+acctA+"/workers/services/shop-smart", tokA, `{"name": "shop-smart", "placement": {"mode": "smart"}}`)
	e.must(201, "POST", "/v1/apps?account="+acctB, tokB, fmt.Sprintf(`{"name": "rival-api", "placement": {"hostname": %q}}`, targetB))
	var rec struct{ Result AdHocRecord }
	json.Unmarshal([]byte(e.must(202, "POST", "/v1/probes", tokA, fmt.Sprintf(`{"target": %q, "kind": "tcp", "pops": ["FRA"]}`, probeOfA))), &rec)
	probeA := rec.Result.ID
	if probeA == "" || rec.Result.Account != acctA {
		t.Fatalf("ad-hoc probe record %+v: want an id and account %s", rec.Result, acctA)
	}
	if _, err := e.st.PutDecision(ctx, placement.Decision{App: "shop-db", Mode: placement.ModeHost, Target: targetA, BestPoP: "FRA",
		Status: placement.StatusSuccess, ComputedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shop-file.toml"), []byte("name = \"shop-file\"\naccount_id = \""+acctA+"\"\n[placement]\nhost = \"files.shop.example:443\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.LoadDir(dir, placement.DefaultParser(), RegionEndpoints{}); err != nil {
		t.Fatal(err)
	}

	svc := func(acct, app string) string { return "/client/v4/accounts/" + acct + "/workers/services/" + app }
	attacks := []struct {
		name         string
		method, path string
		token, body  string
		code         int
	}{
		// No token, a wrong one, a token in the wrong place: nothing is read.
		{"list_without_token", "GET", "/v1/apps", "", "", 401},
		{"list_with_unknown_token", "GET", "/v1/apps", "not-a-token-at-all-0123456789", "", 401},
		{"status_api_without_token", "GET", svc(acctA, "shop-db"), "", "", 401},
		{"probe_read_without_token", "GET", "/v1/probes/" + probeA, "", "", 401},
		{"probe_start_without_token", "POST", "/v1/probes", "", `{"target": "x.example:1", "kind": "tcp"}`, 401},
		{"metrics_without_token", "GET", "/metrics", "", "", 401},
		{"telemetry_without_token", "POST", "/v1/telemetry", "", telemetry("shop-db", 1), 401},
		{"register_without_token", "POST", "/v1/apps", "", hostConfig("evil", "evil.example:1"), 401},
		// B lists, reads, changes, deletes and probe-reads A's things.
		{"b_lists_only_its_own", "GET", "/v1/apps", tokB, "", 200},
		{"b_reads_a_status_under_a", "GET", svc(acctA, "shop-db"), tokB, "", 404},
		{"b_reads_a_status_under_b", "GET", svc(acctB, "shop-db"), tokB, "", 404},
		{"b_reads_a_smart_status", "GET", svc(acctA, "shop-smart"), tokB, "", 404},
		{"b_reads_a_file_app_status", "GET", svc(acctA, "shop-file"), tokB, "", 404},
		{"b_deletes_a_app", "DELETE", "/v1/apps/shop-db", tokB, "", 404},
		{"b_deletes_a_smart_app", "DELETE", "/v1/apps/shop-smart", tokB, "", 404},
		{"b_deletes_a_file_app", "DELETE", "/v1/apps/shop-file", tokB, "", 404},
		{"b_deletes_through_the_workers_route", "DELETE", svc(acctA, "shop-db"), tokB, "", 404},
		{"b_deletes_under_its_own_account", "DELETE", svc(acctB, "shop-db"), tokB, "", 404},
		{"b_deploys_a_app", "POST", "/v1/apps/shop-db/deploys", tokB, `{"version": "evil"}`, 404},
		{"b_takes_over_a_name", "POST", "/v1/apps", tokB, hostConfig("shop-db", "evil.example:1"), 409},
		{"b_takes_over_through_the_workers_route", "PUT", svc(acctB, "shop-smart"), tokB, hostConfig("shop-smart", "evil.example:1"), 409},
		{"b_registers_into_a_by_query", "POST", "/v1/apps?account=" + acctA, tokB, hostConfig("planted", "evil.example:1"), 403},
		{"b_registers_into_a_by_path", "PUT", svc(acctA, "planted"), tokB, hostConfig("planted", "evil.example:1"), 403},
		{"b_registers_into_a_by_account_id", "POST", "/v1/apps", tokB, `{"name": "planted", "account_id": "` + acctA + `", "placement": {"host": "evil.example:1"}}`, 403},
		{"b_reads_a_probe", "GET", "/v1/probes/" + probeA, tokB, "", 404},
		{"history_without_token", "GET", "/v1/apps/shop-db/history", "", "", 401},
		{"b_reads_a_history", "GET", "/v1/apps/shop-db/history", tokB, "", 404},
		{"b_reads_a_file_app_history", "GET", "/v1/apps/shop-file/history", tokB, "", 404},
		{"a_reads_its_history", "GET", "/v1/apps/shop-db/history", tokA2, "", 200},
		{"operator_reads_a_history", "GET", "/v1/apps/shop-db/history", tokOps, "", 200},
		{"b_sends_a_telemetry", "POST", "/v1/telemetry", tokB, telemetry("shop-smart", 1), 404},
		{"b_sends_mixed_telemetry", "POST", "/v1/telemetry", tokB, `[` + strings.Trim(telemetry("rival-api", 1), "[]") + `,` + strings.Trim(telemetry("shop-smart", 1), "[]") + `]`, 404},
		{"b_reads_metrics", "GET", "/metrics", tokB, "", 403},
		// A may not replace what a config file owns, even in its own account.
		{"a_replaces_its_file_app", "POST", "/v1/apps", tokA, hostConfig("shop-file", "evil.example:1"), 409},
		{"a_deletes_its_file_app", "DELETE", "/v1/apps/shop-file", tokA, "", 409},
		// What must keep working: the owner (any of its tokens, any case of "Bearer"), and the operator.
		{"a_reads_its_status", "GET", svc(acctA, "shop-db"), tokA2, "", 200},
		{"a_reads_its_probe_with_another_token", "GET", "/v1/probes/" + probeA, tokA2, "", 200},
		{"a_sends_its_telemetry", "POST", "/v1/telemetry", tokA, telemetry("shop-smart", 2), 204},
		{"a_sends_its_aggregated_telemetry", "POST", "/v1/telemetry", tokA, aggregatedTelemetry("shop-smart", 3), 204},
		{"b_sends_aggregated_telemetry", "POST", "/v1/telemetry", tokB, aggregatedTelemetry("shop-smart", 3), 404},
		{"b_reads_its_status", "GET", svc(acctB, "rival-api"), tokB, "", 200},
		{"operator_reads_a_status", "GET", svc(acctA, "shop-db"), tokOps, "", 200},
		{"operator_reads_a_probe", "GET", "/v1/probes/" + probeA, tokOps, "", 200},
		{"operator_reads_metrics", "GET", "/metrics", tokOps, "", 200},
		{"operator_lists_all", "GET", "/v1/apps", tokOps, "", 200},
	}
	// secrets of account A: a response may not show one its request did not name (the operator's may).
	secrets := []string{acctA, "shop-db", "shop-smart", "shop-file", targetA, probeOfA}
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.url+tc.path, strings.NewReader(tc.body))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.token != "" {
				scheme := "Bearer "
				if tc.token == tokA2 {
					scheme = "bEaReR " // the scheme is case-insensitive (RFC 9110)
				}
				req.Header.Set("Authorization", scheme+tc.token)
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, raw, tc.code)
			}
			if tc.token == tokOps || tc.token == tokA || tc.token == tokA2 {
				return
			}
			for _, s := range secrets {
				if !strings.Contains(tc.path+tc.body, s) && strings.Contains(string(raw), s) {
					t.Errorf("response mentions %q, which the request did not name: %.300s", s, raw)
				}
			}
		})
	}

	// Nothing changed hands: A's apps are A's, with their targets, the decision is there.
	var list struct{ Result []Target }
	json.Unmarshal([]byte(e.must(200, "GET", "/v1/apps", tokA, "")), &list)
	got := map[string]Target{}
	for _, tg := range list.Result {
		got[tg.App] = tg
		if tg.Account != acctA {
			t.Errorf("A lists %+v: not its account's", tg)
		}
	}
	if got["shop-db"].Target != targetA || got["shop-smart"].Mode != placement.ModeSmart || got["shop-file"].Target == "" || len(got) != 3 {
		t.Errorf("A's apps after the attacks: %+v", list.Result)
	}
	if app, ok, err := e.st.App(ctx, "shop-db"); err != nil || !ok || app.Account != acctA || app.Target != targetA || app.DeployVersion == "evil" {
		t.Errorf("registry shop-db after the attacks: %+v %v %v", app, ok, err)
	}
	if _, ok, err := e.st.Decision(ctx, "shop-db"); err != nil || !ok {
		t.Errorf("decision of shop-db after the attacks: %v %v", ok, err)
	}
	for _, planted := range []string{"planted", "evil"} {
		if _, ok, _ := e.st.App(ctx, planted); ok {
			t.Errorf("app %q was registered", planted)
		}
	}
	json.Unmarshal([]byte(e.must(200, "GET", "/v1/apps", tokOps, "")), &list)
	if len(list.Result) != 4 {
		t.Errorf("the operator lists %d apps, want all 4: %+v", len(list.Result), list.Result)
	}
}

// TestAccountsCaps: an account's applications stop at --max-apps-per-account (a replacement is not a new one,
// other accounts are not affected), and its telemetry at --telemetry-per-second with its burst, shared through
// Redis.
func TestAccountsCaps(t *testing.T) {
	e := newAccountsEnv(t, Limits{MaxAppsPerAccount: 2, TelemetryPerSecond: 1, TelemetryBurst: 20})
	e.must(201, "POST", "/v1/apps", tokA, hostConfig("a-one", "one.example:443"))
	e.must(201, "POST", "/v1/apps", tokA, `{"name": "a-two", "placement": {"mode": "smart"}}`)
	code, _, raw := e.do("POST", "/v1/apps", tokA, hostConfig("a-three", "three.example:443"))
	if code != http.StatusForbidden || !strings.Contains(raw, "max apps per account 2") || !strings.Contains(raw, acctA) {
		t.Errorf("third app: %d %s, want 403 naming the cap and the account", code, raw)
	}
	e.must(201, "POST", "/v1/apps?deploy=v2", tokA, hostConfig("a-one", "one.example:8443")) // a replacement
	e.must(201, "POST", "/v1/apps", tokB, hostConfig("b-one", "b.example:443"))              // another account
	e.must(200, "DELETE", "/v1/apps/a-one", tokA, "")
	e.must(201, "POST", "/v1/apps", tokA, hostConfig("a-three", "three.example:443"))

	// Telemetry: 20 records at once, then about one a second.
	e.must(204, "POST", "/v1/telemetry", tokA, telemetry("a-two", 15))
	code, hdr, raw := e.do("POST", "/v1/telemetry", tokA, telemetry("a-two", 10))
	if code != http.StatusTooManyRequests || !strings.Contains(raw, "telemetry per second 1") || hdr.Get("Retry-After") == "" {
		t.Errorf("over the rate: %d %q %s, want 429 naming the cap with Retry-After", code, hdr.Get("Retry-After"), raw)
	}
	code, _, raw = e.do("POST", "/v1/telemetry", tokA, telemetry("a-two", 21))
	if code != http.StatusTooManyRequests || !strings.Contains(raw, "more than its burst") {
		t.Errorf("a batch above the burst: %d %s, want 429 saying so", code, raw)
	}
	e.must(204, "POST", "/v1/telemetry", tokB, telemetry("b-one", 20)) // B's bucket is its own
	e.must(204, "POST", "/v1/telemetry", tokA, telemetry("a-two", 5))  // what is left of A's
	// The operator's records count against the application's account.
	e.must(429, "POST", "/v1/telemetry", tokOps, telemetry("a-two", 10))
	n, err := e.st.FreshTelemetry(context.Background())
	if err != nil || n["a-two"] != 20 || n["b-one"] != 20 {
		t.Errorf("stored telemetry %v %v: want 20 of a-two and 20 of b-one", n, err)
	}
}

// TestReadTokens: the tokens file's lines with accounts, operators and the old form; the bad lines' errors.
func TestReadTokens(t *testing.T) {
	in := "# tokens\nabcdefghijklmnop ci " + acctA + "\nqrstuvwxyz0123456789 ops *\n\nold-form-token-0123456789\nold-named-token-0123456789 legacy\n"
	toks, err := ReadTokens(strings.NewReader(in), "tokens")
	if err != nil {
		t.Fatal(err)
	}
	want := Tokens{
		"abcdefghijklmnop":           {Name: "ci", Account: acctA},
		"qrstuvwxyz0123456789":       {Name: "ops", Account: AllAccounts},
		"old-form-token-0123456789":  {Name: "token-5", Account: AllAccounts, LegacyLine: 5},
		"old-named-token-0123456789": {Name: "legacy", Account: AllAccounts, LegacyLine: 6},
	}
	if len(toks) != len(want) {
		t.Errorf("tokens %v, want %v", toks, want)
	}
	for k, v := range want {
		if toks[k] != v {
			t.Errorf("token %s: %+v, want %+v", k, toks[k], v)
		}
	}
	if l := toks.LegacyLines(); len(l) != 2 || l[0] != 5 || l[1] != 6 {
		t.Errorf("LegacyLines %v, want [5 6]", l)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"short", "abc\n", "tokens:1: token shorter than 16 characters"},
		{"four_fields", "abcdefghijklmnop a b c\n", `tokens:1: want "TOKEN NAME ACCOUNT", got 4 fields`},
		{"bad_account", "abcdefghijklmnop a acme/corp\n", `tokens:1: account "acme/corp": invalid account id: character '/'`},
		{"duplicate", "abcdefghijklmnop a x\nabcdefghijklmnop b y\n", "tokens:2: the token of an earlier line again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadTokens(strings.NewReader(tc.in), "tokens"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
