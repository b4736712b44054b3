package scheduler

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// multipartBody encodes fields (name -> value, in order of the pairs) as a multipart form.
func multipartBody(t *testing.T, pairs ...string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := mw.WriteField(pairs[i], pairs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	mw.Close()
	return buf.String(), mw.FormDataContentType()
}

func (e *accountsEnv) doCT(method, path, token, ct, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ct)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestWorkersScriptSettings(t *testing.T) {
	e := newAccountsEnv(t, Limits{})
	base := "/client/v4/accounts/" + acctA + "/workers/scripts/"
	jsonCT := "application/json"
	for _, tc := range []struct {
		name      string
		ct, body  string
		multipart []string
		want      int
		wantIn    []string
	}{
		{name: "smart, SDK form", multipart: []string{"settings[placement][mode]", "smart"}, want: 200,
			wantIn: []string{`"placement":{"mode":"smart"}`}},
		{name: "region, settings JSON part", multipart: []string{"settings", `{"placement":{"region":"aws:us-east-1"}}`}, want: 200,
			wantIn: []string{`"mode":"targeted","region":"aws:us-east-1"`}},
		{name: "host, plain JSON", ct: jsonCT, body: `{"placement":{"host":"db.shop.example:5432"}}`, want: 200,
			wantIn: []string{`"mode":"targeted","host":"db.shop.example:5432"`}},
		{name: "hostname with mode targeted", ct: jsonCT, body: `{"placement":{"mode":"targeted","hostname":"api.shop.example"}}`, want: 200,
			wantIn: []string{`"mode":"targeted","hostname":"api.shop.example"`}},
		{name: "bad mode", ct: jsonCT, body: `{"placement":{"mode":"fast"}}`, want: 400, wantIn: []string{"placement.mode"}},
		{name: "two targets", ct: jsonCT, body: `{"placement":{"host":"a.example:1","hostname":"b.example"}}`, want: 400, wantIn: []string{"exclusive"}},
		{name: "unknown field", ct: jsonCT, body: `{"placement":{"hint":"x"}}`, want: 400, wantIn: []string{"placement.hint"}},
		{name: "empty region", ct: jsonCT, body: `{"placement":{"region":""}}`, want: 400, wantIn: []string{"placement.region"}},
		{name: "host without port", ct: jsonCT, body: `{"placement":{"host":"db.shop.example"}}`, want: 400, wantIn: []string{"placement"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := tc.body, tc.ct
			if tc.multipart != nil {
				body, ct = multipartBody(t, tc.multipart...)
			}
			code, raw := e.doCT("PATCH", base+"shop/settings", tokA, ct, body)
			if code != tc.want {
				t.Fatalf("PATCH: %d %s, want %d", code, raw, tc.want)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(raw, s) {
					t.Errorf("PATCH: %s lacks %s", raw, s)
				}
			}
			if code == 200 {
				got := e.must(200, "GET", base+"shop/settings", tokA, "")
				var env struct{ Result ScriptSettings }
				json.Unmarshal([]byte(got), &env)
				if env.Result.Placement == nil || !strings.Contains(got, tc.wantIn[0]) {
					t.Errorf("GET settings: %s, want %s", got, tc.wantIn[0])
				}
			}
		})
	}
	// The last good placement holds after the bad ones.
	if got := e.must(200, "GET", base+"shop/settings", tokA, ""); !strings.Contains(got, `"hostname":"api.shop.example"`) {
		t.Errorf("after refused PATCHes: %s", got)
	}
	// Another account's script is not found, and B cannot reach it under A's path either.
	e.must(404, "GET", "/client/v4/accounts/"+acctB+"/workers/scripts/shop/settings", tokB, "")
	e.must(404, "GET", base+"shop/settings", tokB, "")
	e.must(401, "GET", base+"shop/settings", "not-a-token-0123456789", "")

	// The list, the service as wrangler reads it, the delete.
	e.must(200, "PATCH", base+"cart/settings", tokA, `{"placement":{"mode":"smart"}}`)
	list := e.must(200, "GET", "/client/v4/accounts/"+acctA+"/workers/scripts", tokA, "")
	var l struct{ Result []WorkerScript }
	if err := json.Unmarshal([]byte(list), &l); err != nil || len(l.Result) != 2 || l.Result[0].ID != "cart" || l.Result[0].PlacementMode != "smart" ||
		l.Result[1].ID != "shop" || l.Result[1].Placement == nil || l.Result[1].Placement.Hostname != "api.shop.example" {
		t.Errorf("list: %s (%v)", list, err)
	}
	if other := e.must(200, "GET", "/client/v4/accounts/"+acctB+"/workers/scripts", tokB, ""); strings.Contains(other, "shop") {
		t.Errorf("B's list shows A's script: %s", other)
	}
	svc := e.must(200, "GET", "/client/v4/accounts/"+acctA+"/workers/services/shop", tokA, "")
	var s struct{ Result ServiceStatus }
	json.Unmarshal([]byte(svc), &s)
	if sc := s.Result.DefaultEnvironment.Script; sc.PlacementMode != "targeted" || sc.Placement == nil || sc.Placement.Hostname != "api.shop.example" || sc.Vantage != nil {
		t.Errorf("service: %s", svc)
	}
	e.must(404, "DELETE", "/client/v4/accounts/"+acctB+"/workers/scripts/shop", tokB, "")
	e.must(200, "DELETE", base+"cart", tokA, "")
	e.must(404, "GET", base+"cart/settings", tokA, "")
	e.must(404, "DELETE", base+"cart", tokA, "")
}

func TestWorkersScriptUpload(t *testing.T) {
	e := newAccountsEnv(t, Limits{})
	path := "/client/v4/accounts/" + acctA + "/workers/scripts/"
	deployOf := func(raw string) (WorkerScript, string) {
		t.Helper()
		var env struct{ Result WorkerScript }
		if err := json.Unmarshal([]byte(raw), &env); err != nil || env.Result.Vantage == nil || env.Result.Vantage.Deploy == "" {
			t.Fatalf("upload answer %s: no deploy (%v)", raw, err)
		}
		return env.Result, env.Result.Vantage.Deploy
	}
	// A new script without a placement has nothing for Vantage to place.
	body, ct := multipartBody(t, "metadata", `{"main_module":"index.js"}`, "index.js", "export default {}")
	if code, raw := e.doCT("PUT", path+"shop", tokA, ct, body); code != 400 || !strings.Contains(raw, "metadata.placement") {
		t.Fatalf("upload without placement: %d %s", code, raw)
	}
	// wrangler's JSON metadata part.
	body, ct = multipartBody(t, "metadata", `{"main_module":"index.js","placement":{"mode":"smart"}}`, "index.js", "export default {}")
	code, raw := e.doCT("PUT", path+"shop", tokA, ct, body)
	if code != 200 {
		t.Fatalf("upload: %d %s", code, raw)
	}
	s1, d1 := deployOf(raw)
	if s1.PlacementMode != "smart" {
		t.Errorf("upload: %s", raw)
	}
	// Again without a placement: the placement holds, the deploy is new.
	body, ct = multipartBody(t, "metadata", `{"main_module":"index.js"}`)
	code, raw = e.doCT("PUT", path+"shop", tokA, ct, body)
	if code != 200 {
		t.Fatalf("second upload: %d %s", code, raw)
	}
	s2, d2 := deployOf(raw)
	if s2.PlacementMode != "smart" || d2 == d1 {
		t.Errorf("second upload: %s, first deploy %s", raw, d1)
	}
	app, found, err := e.st.App(t.Context(), "shop")
	if err != nil || !found || app.DeployVersion != d2 {
		t.Errorf("registry: %+v %v %v, want deploy %s", app, found, err, d2)
	}
	// The SDK's metadata[...] fields change the placement; a bad one is refused naming the field.
	body, ct = multipartBody(t, "metadata[main_module]", "index.js", "metadata[placement][host]", targetA)
	code, raw = e.doCT("PUT", path+"shop", tokA, ct, body)
	if s3, _ := deployOf(raw); code != 200 || s3.Placement == nil || s3.Placement.Host != targetA || s3.PlacementMode != "targeted" {
		t.Errorf("SDK-style upload: %d %s", code, raw)
	}
	body, ct = multipartBody(t, "metadata[placement][mode]", "fast")
	if code, raw := e.doCT("PUT", path+"shop", tokA, ct, body); code != 400 || !strings.Contains(raw, "placement.mode") {
		t.Errorf("bad placement upload: %d %s", code, raw)
	}
	// Another account cannot take the name.
	body, ct = multipartBody(t, "metadata", `{"placement":{"mode":"smart"}}`)
	if code, raw := e.doCT("PUT", "/client/v4/accounts/"+acctB+"/workers/scripts/shop", tokB, ct, body); code != 409 {
		t.Errorf("B uploading A's name: %d %s", code, raw)
	}
}

// Once analysed, a script's placement carries the analysis's status and time, in the settings, the list and
// the service as wrangler reads it; Vantage's detail stays under "vantage".
func TestWorkersAnalysedPlacement(t *testing.T) {
	e := newAccountsEnv(t, Limits{})
	base := "/client/v4/accounts/" + acctA + "/workers/"
	got := e.must(200, "PATCH", base+"scripts/shop/settings", tokA, `{"placement":{"mode":"smart"}}`)
	if strings.Contains(got, "status") || strings.Contains(got, "last_analyzed_at") {
		t.Errorf("before analysis: %s", got)
	}
	at := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
	if _, err := e.st.PutDecision(t.Context(), placement.Decision{App: "shop", Mode: placement.ModeSmart, BestPoP: "FRA",
		Status: placement.StatusSuccess, ComputedAt: at, Version: 1}); err != nil {
		t.Fatal(err)
	}
	want := `"placement":{"mode":"smart","status":"SUCCESS","last_analyzed_at":"2026-11-02T03:04:05Z"}`
	for _, path := range []string{"scripts/shop/settings", "scripts", "services/shop"} {
		got := e.must(200, "GET", base+path, tokA, "")
		if !strings.Contains(got, want) {
			t.Errorf("GET %s: %s lacks %s", path, got, want)
		}
		if path != "scripts" && !strings.Contains(got, `"vantage":{`) || strings.Contains(got, `"placement":{"mode":"smart","status":"SUCCESS","last_analyzed_at":"2026-11-02T03:04:05Z","best_pop"`) {
			t.Errorf("GET %s: %s: Vantage's detail misplaced", path, got)
		}
	}
	if got := e.must(200, "GET", base+"services/shop", tokA, ""); !strings.Contains(got, `"default_environment":{"environment":"production","script":{"id":"shop","placement":`) ||
		!strings.Contains(got, `"placement_mode":"smart","placement_status":"SUCCESS"`) {
		t.Errorf("service: %s", got)
	}
}
