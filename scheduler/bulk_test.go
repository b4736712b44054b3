package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// bulk posts lines to /v1/apps/bulk with token and returns the status and the decoded envelope.
func (e *accountsEnv) bulk(token, query string, lines ...string) (int, Envelope, BulkResult) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/v1/apps/bulk"+query, strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env Envelope
	var res BulkResult
	env.Result = &res
	if err := json.Unmarshal(raw, &env); err != nil {
		e.t.Fatalf("POST /v1/apps/bulk: %d %s: %v", resp.StatusCode, raw, err)
	}
	return resp.StatusCode, env, res
}

// TestAPIAppsBulk: POST /v1/apps/bulk registers every valid line of a JSON Lines body in the registry and the
// scheduler, and refuses the others by line number with the codes POST /v1/apps gives (bad config, a name
// given twice, another account's name, the account's cap), on a real redis-server.
func TestAPIAppsBulk(t *testing.T) {
	e := newAccountsEnv(t, Limits{MaxAppsPerAccount: 3})
	ctx := context.Background()
	e.must(http.StatusCreated, "POST", "/v1/apps", tokB, hostConfig("b-owned", "b.rival.example:5432"))

	type lineErr struct {
		code int
		text string
	}
	for _, tc := range []struct {
		name       string
		token      string
		lines      []string
		registered []string
		errs       []lineErr
	}{
		{"operator_mixed", tokOps, []string{
			hostConfig("bulk-1", "h1.example:5432"),
			`{"name": "bulk-bad", "placement": {`,
			hostConfig("bulk-1", "h9.example:5432"),
			"",
			hostConfig("bulk-2", "h2.example:5432"),
		}, []string{"bulk-1", "bulk-2"}, []lineErr{
			{10002, "line 2"},
			{10002, `line 3: app "bulk-1": given on line 1 already`},
		}},
		{"account_cap_and_taken_name", tokA, []string{
			hostConfig("a-1", "a1.example:5432"),
			hostConfig("b-owned", "a2.example:5432"),
			hostConfig("a-2", "a2.example:5432"),
			hostConfig("a-3", "a3.example:5432"),
			hostConfig("a-4", "a4.example:5432"),
		}, []string{"a-1", "a-2", "a-3"}, []lineErr{
			{10009, `line 2: app "b-owned": the name is not available`},
			{10012, `line 5: app "a-4": account "` + acctA + `" has 3 applications, its cap`},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, env, res := e.bulk(tc.token, "", tc.lines...)
			if code != http.StatusOK || res.Registered != len(tc.registered) || res.Failed != len(tc.errs) || env.Success != (len(tc.errs) == 0) {
				t.Fatalf("status %d, envelope %+v, result %+v; want 200, %d registered, %d failed", code, env, res, len(tc.registered), len(tc.errs))
			}
			for i, want := range tc.errs {
				if i >= len(env.Errors) || env.Errors[i].Code != want.code || !strings.Contains(env.Errors[i].Message, want.text) {
					t.Errorf("error %d: %+v, want code %d with %q", i, env.Errors, want.code, want.text)
				}
			}
			for _, name := range tc.registered {
				app, ok, err := e.st.App(ctx, name)
				if err != nil || !ok || app.Source != SourceAPI || app.DeployVersion == "" {
					t.Errorf("registry: %s: %+v %v %v", name, app, ok, err)
				}
				if _, held := e.s.Target(name); !held {
					t.Errorf("the scheduler does not hold %s", name)
				}
			}
		})
	}
	if app, _, _ := e.st.App(ctx, "b-owned"); app.Account != acctB || app.Target != "b.rival.example:5432" {
		t.Errorf("b-owned changed by account A's bulk request: %+v", app)
	}
	t.Run("too_many_lines", func(t *testing.T) {
		lines := make([]string, MaxBulkApps+1)
		for i := range lines {
			lines[i] = hostConfig(fmt.Sprintf("many-%05d", i), "m.example:5432")
		}
		code, env, _ := e.bulk(tokOps, "", lines...)
		if code != http.StatusRequestEntityTooLarge || len(env.Errors) != 1 || !strings.Contains(env.Errors[0].Message, fmt.Sprintf("more than %d applications", MaxBulkApps)) {
			t.Errorf("status %d %+v, want 413", code, env)
		}
		if _, ok, _ := e.st.App(ctx, "many-00000"); ok {
			t.Error("a refused request registered many-00000")
		}
	})
}
