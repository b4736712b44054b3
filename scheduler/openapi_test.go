package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

var (
	openAPIOnce   sync.Once
	openAPIRouter routers.Router
	openAPIErr    error
)

// openAPI loads and checks the embedded document and returns its router.
func openAPI(t testing.TB) routers.Router {
	t.Helper()
	openAPIOnce.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(OpenAPIDocument)
		if err != nil {
			openAPIErr = err
			return
		}
		if openAPIErr = doc.Validate(context.Background()); openAPIErr != nil {
			return
		}
		openAPIRouter, openAPIErr = legacy.NewRouter(doc)
	})
	if openAPIErr != nil {
		t.Fatalf("openapi.json: %v", openAPIErr)
	}
	return openAPIRouter
}

// checkResponse validates one response (status, header, body) to req against the document.
func checkResponse(router routers.Router, req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := router.FindRoute(req)
	if err != nil {
		return err
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	return openapi3filter.ValidateResponse(req.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	})
}

// validated wraps h: every response it gives is validated against the OpenAPI document, a mismatch failing t.
func validated(t testing.TB, h http.Handler) http.Handler {
	router := openAPI(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		if r.URL.Path == "/openapi.json" {
			return
		}
		if err := checkResponse(router, r, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("%s %s: %d %s: the response does not match openapi.json: %v", r.Method, r.URL.Path, rec.Code, strings.TrimSpace(rec.Body.String()), err)
		}
	})
}

// TestOpenAPIDocumentsEveryRoute compares Handler's route table with the document's paths, both ways.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	var served, documented []string
	for _, rt := range (&API{Telemetry: http.NotFoundHandler()}).routes() {
		served = append(served, rt.pattern)
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Errorf("routes served:\n%s\nroutes documented:\n%s", strings.Join(served, "\n"), strings.Join(documented, "\n"))
	}
}

// TestOpenAPIServed reads /openapi.json without a token.
func TestOpenAPIServed(t *testing.T) {
	hs := httptest.NewServer((&API{}).Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d, %v", resp.StatusCode, err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Paths["/v1/apps"] == nil {
		t.Errorf("GET /openapi.json: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
}

// TestOpenAPIValidationCatches checks that the validation fails on what it is for: an undocumented field, a
// field of the wrong type, an undocumented status.
func TestOpenAPIValidationCatches(t *testing.T) {
	router := openAPI(t)
	const ok = `{"success":true,"errors":[],"messages":[],"result":{"app":"a"}}`
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		valid              bool
	}{
		{"documented", "DELETE", "/v1/apps/a", 200, ok, true},
		{"error", "DELETE", "/v1/apps/a", 404, `{"success":false,"errors":[{"code":10007,"message":"no"}],"messages":[],"result":null}`, true},
		{"envelope field undocumented", "DELETE", "/v1/apps/a", 200, `{"success":true,"errors":[],"messages":[],"result":{"app":"a"},"extra":1}`, false},
		{"result field undocumented", "DELETE", "/v1/apps/a", 200, `{"success":true,"errors":[],"messages":[],"result":{"app":"a","x":1}}`, false},
		{"wrong type", "DELETE", "/v1/apps/a", 200, `{"success":true,"errors":[],"messages":[],"result":{"app":1}}`, false},
		{"error without code", "DELETE", "/v1/apps/a", 404, `{"success":false,"errors":[{"message":"no"}],"messages":[],"result":null}`, false},
		{"nested wrong type", "GET", "/client/v4/accounts/x/workers/services/a", 200, `{"success":true,"errors":[],"messages":[],"result":{"id":"a","vantage":{"confidence":"high"},"default_environment":{"environment":"production","script":{"id":"a"}}}}`, false},
		{"undocumented status", "GET", "/healthz", 500, "ok\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			ct := "application/json"
			if tc.path == "/healthz" {
				ct = "text/plain; charset=utf-8"
			}
			err := checkResponse(router, req, tc.status, http.Header{"Content-Type": {ct}}, []byte(tc.body))
			if (err == nil) != tc.valid {
				t.Errorf("valid %v, error %v", tc.valid, err)
			}
		})
	}
}
