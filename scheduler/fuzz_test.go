package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/scheduler/smartrun"
	"github.com/vantage-edge/vantage/storage"
)

// The API fuzzers post arbitrary bodies to the handlers, on an embedded miniredis (no Redis server needed) with
// in-process fakes where a request would otherwise pile data up, and check what a hostile client must never
// get: a panic, a 500, an answer that is not the API's envelope, an answer much larger than the request, or
// work past the bounds (an ad-hoc job beyond MaxAdHocCount, MaxAdHocProbeTime or MaxURLLen). Seeds are in
// testdata/fuzz/<FuzzName>/; run one with
//
//	go test -run='^$' -fuzz='^FuzzAPIProbes$' -fuzztime=60s ./scheduler

// fuzzBackend is the Backend of the API fuzzers: the embedded store for the calls a request makes rarely, and
// fakes for the ones that would store something per request. It checks every job it is given.
type fuzzBackend struct {
	StoreBackend
	t    *testing.T
	mu   sync.Mutex
	jobs int
}

func (b *fuzzBackend) UpPoPs(context.Context) ([]string, error) { return []string{"FRA", "SIN"}, nil }

func (b *fuzzBackend) PutAdHocProbe(context.Context, storage.AdHocProbe, time.Duration) error {
	return nil
}

func (b *fuzzBackend) EnqueueJob(_ context.Context, pop string, j storage.Job) (string, error) {
	if pop != "FRA" && pop != "SIN" {
		b.t.Errorf("job enqueued for PoP %q, which is not up", pop)
	}
	if len(j.Target) > placement.MaxURLLen || j.Count < 1 || j.Count > MaxAdHocCount || j.TimeoutMs < 1 ||
		time.Duration(j.Count)*time.Duration(j.TimeoutMs)*time.Millisecond > MaxAdHocProbeTime || j.Deadline.IsZero() {
		b.t.Errorf("job past the bounds: target of %d bytes, count %d, timeout %d ms, deadline %v",
			len(j.Target), j.Count, j.TimeoutMs, j.Deadline)
	}
	b.mu.Lock()
	b.jobs++
	b.mu.Unlock()
	return "1-0", nil
}

// TakeQuota never refuses: the fuzzers test the handlers, not the quota.
func (b *fuzzBackend) TakeQuota(context.Context, string, string, float64, float64) (bool, time.Duration, error) {
	return true, 0, nil
}

// fuzzApps is an in-memory app registry that checks every app it is given.
type fuzzApps struct{ t *testing.T }

func (a fuzzApps) RegisterApp(_ context.Context, app storage.App) error {
	if app.Mode != placement.ModeSmart {
		t := Target{App: app.Name, Account: app.Account, Mode: app.Mode, Target: app.Target}
		if err := t.Validate(); err != nil {
			a.t.Errorf("API registered an invalid app %+v: %v", app, err)
		}
	} else if app.Name == "" {
		a.t.Errorf("API registered a smart app without a name: %+v", app)
	}
	return nil
}
func (a fuzzApps) App(context.Context, string) (storage.App, bool, error) {
	return storage.App{}, false, nil
}
func (a fuzzApps) DeleteApp(context.Context, string) error { return nil }

// testToken is the bearer token the fuzzed API accepts.
const testToken = "token-for-tests-0123456789"

// fuzzAPI returns the API's handler over an embedded store, with the fakes above.
func fuzzAPI(f *testing.F) http.Handler {
	f.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := storage.OpenEmbedded(ctx, f.TempDir(), storage.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	b := &fuzzBackend{StoreBackend: StoreBackend{st}}
	log := slog.New(slog.DiscardHandler)
	s, err := New(Config{Name: "fuzz", Logger: log}, b, nil)
	if err != nil {
		f.Fatal(err)
	}
	parser := placement.Parser{Policy: placement.DefaultPolicy(netip.MustParsePrefix("198.18.0.0/15"))}
	api := &API{Sched: s, Decisions: b, Logger: log, Parser: parser,
		Auth:  NewAuth(map[string]string{testToken: "ops"}, Quota{}, nil),
		AdHoc: &AdHoc{Backend: b, Parser: parser},
		Telemetry: smartrun.IngestHandler(func(_ context.Context, b storage.TelemetryBatch) error {
			if err := b.Validate(); err != nil {
				panic("telemetry handler stored an invalid batch: " + err.Error())
			}
			return nil
		}, log),
	}
	h := api.Handler()
	api.Apps = fuzzApps{}
	return &fuzzHandler{h: h, api: api, b: b}
}

// fuzzHandler points the fakes at the running fuzz test before each request.
type fuzzHandler struct {
	h   http.Handler
	api *API
	b   *fuzzBackend
}

func (h *fuzzHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

func (h *fuzzHandler) bind(t *testing.T) {
	h.b.mu.Lock()
	h.b.t = t
	h.b.mu.Unlock()
	h.api.Apps = fuzzApps{t}
}

// post sends body to path with a valid token and returns the status and the answer.
func post(t *testing.T, h http.Handler, path, ctype string, body []byte) (int, []byte) {
	t.Helper()
	if fh, ok := h.(*fuzzHandler); ok {
		fh.bind(t)
	}
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", ctype)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out, _ := io.ReadAll(rec.Result().Body)
	if err := openapitest.Validate(req, body, rec.Code, rec.Header(), out); err != nil {
		t.Error(err)
	}
	return rec.Code, out
}

// checkEnvelope fails unless out is the API's JSON envelope, its success matching code.
func checkEnvelope(t *testing.T, code int, out []byte) {
	t.Helper()
	var env Envelope
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatalf("%d answer is not JSON (%v): %.200q", code, err, out)
	}
	if env.Success != (code < 300) || env.Errors == nil || env.Messages == nil || (code >= 300) != (len(env.Errors) > 0) {
		t.Fatalf("%d answer is not a well-formed envelope: %.200q", code, out)
	}
}

func FuzzAPIProbes(f *testing.F) {
	for _, s := range []string{
		`{"target":"198.18.0.9:443","kind":"tcp","pops":"all","count":3}`,
		`{"target":"https://api.example.com/health","kind":"http","pops":["FRA"],"count":2,"timeout_ms":500}`,
		`{"target":"example.com","kind":"dns","pops":"FRA,SIN"}`,
		`{"target":"[64:ff9b::a9fe:a9fe]:80","kind":"tcp"}`,
		`{"target":"1.1.1.1","kind":"icmp","count":20,"timeout_ms":1000}`,
		`{"target":"x:1","kind":"tcp","count":21}`,
		`{"target":"x:1","kind":"udp"}`,
		`{"target":"x:1","kind":"tcp","pops":["ZZZ"]}`,
		`{"target":"x:1","kind":"tcp","pops":[""]}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		code, out := post(t, h, "/v1/probes", "application/json", body)
		switch code {
		case http.StatusAccepted, http.StatusBadRequest:
		default:
			t.Fatalf("POST /v1/probes answered %d: %.300q", code, out)
		}
		checkEnvelope(t, code, out)
		if limit := placement.MaxURLLen + 2048; len(out) > limit {
			t.Fatalf("POST /v1/probes answered %d bytes (more than %d): a refusal must not echo the request", len(out), limit)
		}
	})
}

func FuzzAPIApps(f *testing.F) {
	for _, s := range []struct {
		body string
		toml bool
	}{
		{"name = \"billing\"\n[placement]\nhost = \"198.18.0.9:5432\"\n", true},
		{"name = \"web\"\n[placement]\nmode = \"targeted\"\nhostname = \"api.example.com\"\n", true},
		{"name = \"x\"\n[placement]\nhost = \"10.0.0.1:5432\"\n", true},
		{"name = \n", true},
		{`{"name": "catalog", // c
			"placement": {"region": "aws:us-east-1"}}`, false},
		{`{"name":"s","placement":{"mode":"smart"}}`, false},
		{`{"name":"h","placement":{"hostname":"[64:ff9b::7f00:1]"}}`, false},
		{`{"name":"d","placement":{"region":"gcp:europe-west3","host":"a:1"}}`, false},
	} {
		f.Add([]byte(s.body), s.toml)
	}
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte, toml bool) {
		ctype := "application/json"
		if toml {
			ctype = "application/toml"
		}
		code, out := post(t, h, "/v1/apps", ctype, body)
		switch code {
		case http.StatusCreated, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("POST /v1/apps answered %d: %.300q", code, out)
		}
		checkEnvelope(t, code, out)
		// Config errors quote the values they refuse (up to 10 errors a file), escaped: bounded by the body.
		if limit := 8*len(body) + 8192; len(out) > limit {
			t.Fatalf("POST /v1/apps answered %d bytes to a %d-byte body", len(out), len(body))
		}
	})
}

func FuzzAPITelemetry(f *testing.F) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
	for _, s := range []string{
		`[{"app":"shop","ingress":"FRA","exec":"FRA","at":"` + at + `","duration_ms":12.5,"sub":[{"host":"db.example.com:5432","duration_ms":3}]}]`,
		`[{"app":"shop","deploy":"v2","ingress":"FRA","exec":"SIN","routed":true,"reason":"remote","at":"` + at + `","duration_ms":40}]`,
		`[{"app":"","ingress":"FRA","exec":"FRA","at":"` + at + `","duration_ms":1}]`,
		`[{"app":"shop","ingress":"FRA","exec":"FRA","at":"` + at + `","duration_ms":-1}]`,
		`[{"app":"shop","bogus":1}]`,
		`[]`, `{}`, `null`, `[`,
	} {
		f.Add([]byte(s))
	}
	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		code, out := post(t, h, "/v1/telemetry", "application/json", body)
		switch code {
		case http.StatusNoContent, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("POST /v1/telemetry answered %d: %.300q", code, out)
		}
	})
}
