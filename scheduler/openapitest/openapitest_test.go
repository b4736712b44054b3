package openapitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestValidateCatches checks that Validate fails on what it is for: an undocumented field, a field of the
// wrong type, an undocumented status or route, a request the document refuses that the server accepted; and
// passes what the document allows.
func TestValidateCatches(t *testing.T) {
	const ok = `{"success":true,"errors":[],"messages":[],"result":{"app":"a"}}`
	const refused = `{"success":false,"errors":[{"code":10002,"message":"no"}],"messages":[],"result":null}`
	const reg = `{"success":true,"errors":[],"messages":[],"result":{"app":"a","mode":"smart","target":"","deploy":"v1","deployed_at":"2026-01-02T03:04:05Z"}}`
	for _, tc := range []struct {
		name, method, path, reqCT, reqBody string
		status                             int
		ct, body                           string
		valid                              bool
	}{
		{"documented", "DELETE", "/v1/apps/a", "", "", 200, "application/json", ok, true},
		{"error", "DELETE", "/v1/apps/a", "", "", 404, "application/json", `{"success":false,"errors":[{"code":10007,"message":"no"}],"messages":[],"result":null}`, true},
		{"envelope field undocumented", "DELETE", "/v1/apps/a", "", "", 200, "application/json", `{"success":true,"errors":[],"messages":[],"result":{"app":"a"},"extra":1}`, false},
		{"result field undocumented", "DELETE", "/v1/apps/a", "", "", 200, "application/json", `{"success":true,"errors":[],"messages":[],"result":{"app":"a","x":1}}`, false},
		{"wrong type", "DELETE", "/v1/apps/a", "", "", 200, "application/json", `{"success":true,"errors":[],"messages":[],"result":{"app":1}}`, false},
		{"error without code", "DELETE", "/v1/apps/a", "", "", 404, "application/json", `{"success":false,"errors":[{"message":"no"}],"messages":[],"result":null}`, false},
		{"workers error not an envelope", "GET", "/client/v4/accounts/x/workers/scripts/a/settings", "", "", 404, "text/plain; charset=utf-8", "not found\n", false},
		{"nested wrong type", "GET", "/client/v4/accounts/x/workers/services/a", "", "", 200, "application/json", `{"success":true,"errors":[],"messages":[],"result":{"id":"a","vantage":{"confidence":"high"},"default_environment":{"environment":"production","script":{"id":"a"}}}}`, false},
		{"undocumented status", "GET", "/healthz", "", "", 500, "text/plain; charset=utf-8", "ok\n", false},
		{"undocumented route", "GET", "/v1/nope", "", "", 200, "application/json", ok, false},
		{"undocumented route not found", "GET", "/v1/nope", "", "", 404, "text/plain; charset=utf-8", "404 page not found\n", true},
		{"undocumented method refused", "PATCH", "/v1/apps", "", "", 405, "text/plain; charset=utf-8", "Method Not Allowed\n", true},
		{"refused request refused", "POST", "/v1/telemetry", "application/json", `{"app":"a"}`, 400, "text/plain; charset=utf-8", "want an array\n", true},
		{"refused request accepted", "POST", "/v1/telemetry", "application/json", `{"app":"a"}`, 204, "", "", false},
		{"undocumented request field accepted", "POST", "/v1/telemetry", "application/json", `[{"app":"a","bogus":1}]`, 204, "", "", false},
		{"telemetry accepted", "POST", "/v1/telemetry", "application/json", `[{"app":"a","ingress":"FRA","exec":"FRA","at":"2026-01-02T03:04:05Z","duration_ms":3}]`, 204, "", "", true},
		{"jsonc config", "POST", "/v1/apps", "application/json", "{\"name\": \"a\", // the app\n \"placement\": {\"mode\": \"smart\"},}", 201, "application/json", reg, true},
		{"jsonc where json is wanted", "POST", "/v1/probes", "application/json", "{\"target\": \"x:1\", // c\n}", 202, "application/json", ok, false},
		{"toml config", "POST", "/v1/apps", "application/toml", "name = \"a\"\n", 201, "application/json", reg, true},
		{"status page", "GET", "/", "", "", 200, "text/html; charset=utf-8", "<!doctype html>", true},
		{"status page state without token", "GET", "/ui/api/state", "", "", 401, "text/plain; charset=utf-8", "ui: a valid bearer token is required\n", true},
		{"status page state field undocumented", "GET", "/ui/api/state", "", "", 200, "application/json", `{"now":"2026-01-02T03:04:05Z","pops":[],"apps":[],"total_apps":0,"skipped_configs":[],"x":1}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.reqBody))
			if tc.reqCT != "" {
				req.Header.Set("Content-Type", tc.reqCT)
			}
			h := http.Header{}
			if tc.ct != "" {
				h.Set("Content-Type", tc.ct)
			}
			err := Validate(req, []byte(tc.reqBody), tc.status, h, []byte(tc.body))
			if (err == nil) != tc.valid {
				t.Errorf("valid %v, error %v", tc.valid, err)
			}
		})
	}
}

// recordTB records what Transport and Handler report.
type recordTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestTransportAndHandlerReport sends good exchanges (a JSONC config among them) and a bad one through Transport
// and Handler: each reports the bad one only, and the client still reads the body it was sent.
func TestTransportAndHandlerReport(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/apps" {
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"success":true,"errors":[],"messages":[],"result":{"app":"good","mode":"smart","target":"","deploy":"v1","deployed_at":"2026-01-02T03:04:05Z"}}`)
			return
		}
		if r.URL.Path == "/v1/apps/bad" {
			io.WriteString(w, `{"success":true,"errors":[],"messages":[],"result":{"app":"bad","extra":true}}`)
			return
		}
		io.WriteString(w, `{"success":true,"errors":[],"messages":[],"result":{"app":"good"}}`)
	})
	for _, side := range []string{"transport", "handler"} {
		t.Run(side, func(t *testing.T) {
			rec := &recordTB{TB: t}
			var h http.Handler = api
			client := http.DefaultClient
			if side == "handler" {
				h = Handler(rec, api)
			} else {
				client = &http.Client{Transport: Transport(rec, nil)}
			}
			hs := httptest.NewServer(h)
			defer hs.Close()
			for _, app := range []string{"good", "bad", ""} {
				req, _ := http.NewRequest("DELETE", hs.URL+"/v1/apps/"+app, nil)
				if app == "" { // a wrangler.jsonc: the document allows its comments
					req, _ = http.NewRequest("POST", hs.URL+"/v1/apps", strings.NewReader("{\"name\": \"good\", // c\n \"placement\": {\"mode\": \"smart\"},}"))
					req.Header.Set("Content-Type", "application/json")
					app = "good"
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(body), `"app":"`+app+`"`) {
					t.Errorf("DELETE /v1/apps/%s: body %s", app, body)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "/v1/apps/bad") || !strings.Contains(rec.errs[0], "extra") {
				t.Errorf("reported %q, want one report of /v1/apps/bad's extra field", rec.errs)
			}
		})
	}
}
