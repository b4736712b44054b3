// Package openapitest validates HTTP requests and responses against the scheduler's embedded OpenAPI document
// (scheduler/openapi), for tests: as a client's transport, as a server's middleware, or one exchange at a time.
package openapitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/tailscale/hujson"

	"github.com/vantage-edge/vantage/scheduler/openapi"
)

// MaxBody caps the bytes of one request or response body the validator reads (the API's bodies are a few
// KiB; the state of a status page with its maximum of applications, a few MiB).
const MaxBody = 64 << 20

var (
	loadOnce sync.Once
	router   routers.Router
	loadErr  error
)

func init() {
	// The status page's HTML, style sheet and script, TOML configs and the SDK's upload (a multipart form sent as
	// application/javascript) are strings like text/plain: their schemas say so.
	for _, ct := range []string{"text/html", "text/css", "text/javascript", "application/toml", "text/x-toml", "application/javascript",
		"application/x-ndjson", "application/jsonl"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

// Router loads and checks the embedded document (once) and returns its router.
func Router() (routers.Router, error) {
	loadOnce.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
		if err != nil {
			loadErr = fmt.Errorf("openapi.json: %w", err)
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			loadErr = fmt.Errorf("openapi.json: %w", err)
			return
		}
		if router, err = legacy.NewRouter(doc); err != nil {
			loadErr = fmt.Errorf("openapi.json: %w", err)
		}
	})
	return router, loadErr
}

// Validate checks one exchange against the document: req (whose body was reqBody; req.Body is not read) and the
// response it got (status, header, body). An exchange fails when:
//   - its route is not documented, unless the answer is 404 or 405 (what the server says of a route it lacks);
//   - the document refuses the request but the server accepted it (a 2xx): one of the two is wrong (a refused
//     request that the server refused too is a test of the refusal, not a mismatch);
//   - the response's status is undocumented, or its body does not match the schema of its status and content
//     type (an undocumented field, a wrong type, a missing required field).
//
// HEAD responses are not checked (they have no body).
func Validate(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	rt, err := Router()
	if err != nil {
		return err
	}
	route, params, err := rt.FindRoute(req)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return nil
		}
		return fmt.Errorf("%s %s: not in openapi.json: %w", req.Method, req.URL.Path, err)
	}
	reqBody = standardizeJSONC(route, req.Header, reqBody)
	vreq := req.Clone(req.Context())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	vreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil } // kin-openapi reads this first
	vreq.ContentLength = int64(len(reqBody))
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil && status/100 == 2 {
		return fmt.Errorf("%s %s: the server accepted (%d) a request openapi.json refuses: %w", req.Method, req.URL.Path, status, err)
	}
	err = openapi3filter.ValidateResponse(req.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	})
	if err != nil {
		return fmt.Errorf("%s %s: %d %.300s: the response does not match openapi.json: %w", req.Method, req.URL.Path, status, strings.TrimSpace(string(body)), err)
	}
	return nil
}

// standardizeJSONC returns body as standard JSON when the operation's application/json request body is marked
// "x-jsonc": true in the document (a wrangler config, whose comments and trailing commas the API accepts) and the
// request is such a body; otherwise body unchanged.
func standardizeJSONC(route *routers.Route, header http.Header, body []byte) []byte {
	rb := route.Operation.RequestBody
	if rb == nil || rb.Value == nil {
		return body
	}
	mt := rb.Value.Content.Get("application/json")
	if ct, _, _ := mime.ParseMediaType(header.Get("Content-Type")); ct != "application/json" || mt == nil || mt.Extensions["x-jsonc"] != true {
		return body
	}
	std, err := hujson.Standardize(bytes.Clone(body))
	if err != nil {
		return body // not JSONC either: the validation says why
	}
	return std
}

// Transport returns a RoundTripper that sends each request with next (nil: http.DefaultTransport) and validates
// the exchange (Validate), reporting a mismatch with tb.Errorf. The response's body is read in full and
// replaced, so the caller reads it as usual.
func Transport(tb testing.TB, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if _, err := Router(); err != nil {
		tb.Fatal(err)
	}
	return &transport{tb: tb, next: next}
}

// Client returns an HTTP client whose transport is Transport(tb, nil).
func Client(tb testing.TB) *http.Client {
	return &http.Client{Transport: Transport(tb, nil)}
}

type transport struct {
	tb   testing.TB
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, MaxBody))
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("openapitest: reading the request body: %w", err)
		}
		reqBody = b
		// RoundTrip must not modify req: send a copy with the body read.
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("openapitest: reading the response body: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := Validate(req, reqBody, resp.StatusCode, resp.Header, body); err != nil {
		t.tb.Errorf("openapitest: %v", err)
	}
	return resp, nil
}

// Handler wraps h: each exchange it serves is validated (Validate), a mismatch reported with tb.Errorf. It
// buffers each response, so it suits API calls, not streams. For a server whose clients the test does not
// control (a node program, a browser).
func Handler(tb testing.TB, h http.Handler) http.Handler {
	if _, err := Router(); err != nil {
		tb.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var reqBody []byte
		if r.Body != nil {
			b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
			if err != nil {
				http.Error(w, "openapitest: reading the request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			reqBody = b
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		if err := Validate(r, reqBody, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			tb.Errorf("openapitest: %v", err)
		}
	})
}
