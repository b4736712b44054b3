package router

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vantage-edge/vantage/internal/testwait"
)

// startWorkers starts one loopback worker per PoP; each answers "POP app=HOST id=ID ingress=EWR reason=R"
// (R: the placement reason the front passed on) and sets a
// cf-placement header of its own, which the front must replace.
func startWorkers(t *testing.T, popCodes ...string) map[string]*url.URL {
	t.Helper()
	out := map[string]*url.URL{}
	for _, pop := range popCodes {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderPlacement, "worker-must-not-leak")
			fmt.Fprintf(w, "%s app=%s id=%s ingress=%s reason=%s", pop, r.Host, r.Header.Get("cf-ray"),
				r.Header.Get(HeaderIngress), r.Header.Get(HeaderReason))
		}))
		t.Cleanup(srv.Close)
		u, err := url.Parse(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		out[pop] = u
	}
	return out
}

// frontServers are the servers of the front under test: fasthttp (ServeFastHTTP, `vantage router`'s default
// for a cleartext listener) and net/http (ServeHTTP: TLS and HTTP/2 from clients).
var frontServers = []string{"fasthttp", "net/http"}

// forEachServer runs test as a subtest per front server.
func forEachServer(t *testing.T, test func(t *testing.T, server string)) {
	for _, server := range frontServers {
		t.Run(strings.ReplaceAll(server, "/", ""), func(t *testing.T) { test(t, server) })
	}
}

// serveFront serves f with server on a loopback listener until the test ends; it returns the front's URL and a
// client of its own.
func serveFront(t *testing.T, f *Front, server string) (string, *http.Client) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	if server == "net/http" {
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		return srv.URL, client
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, done := f.FastServer(ServerLimits{}), make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown()
		if err := <-done; err != nil {
			t.Errorf("fasthttp server: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), client
}

func TestFront(t *testing.T) { forEachServer(t, testFront) }

func testFront(t *testing.T, server string) {
	reg := prometheus.NewPedanticRegistry()
	r := newTestRouter(t, noSource{}, func(c *Config) { c.Registerer = reg })
	install(t, r,
		dec("api.example.com", "LHR", "LHR:10", "FRA:12"),
		dec("near.example.com", "EWR", "EWR:1"),
		dec("tokyo.example.com", "NRT", "NRT:1"), // no worker for NRT
	)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: startWorkers(t, "EWR", "LHR", "FRA"),
		Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)
	routedID := idWhere(t, func(h uint64) bool { return h >= r.baselineThr })
	baseID := idWhere(t, func(h uint64) bool { return h < r.baselineThr })

	tests := []struct {
		name       string
		host, id   string
		kind       string
		fleet      []string
		wantStatus int
		wantHeader string
		wantReason string
		wantBody   string // prefix
	}{
		{"routed", "api.example.com", routedID, "", nil, 200, "remote-LHR", "remote", "LHR app=api.example.com id=" + routedID + " ingress=EWR"},
		{"host_with_port_and_case", "API.example.com:8443", routedID, "", nil, 200, "remote-LHR", "remote", "LHR app=API.example.com:8443"},
		{"baseline", "api.example.com", baseID, "", nil, 200, "local-EWR", "baseline", "EWR app=api.example.com"},
		{"rpc_local", "api.example.com", routedID, "rpc", nil, 200, "local-EWR", "not_fetch", "EWR "},
		{"best_is_ingress", "near.example.com", routedID, "", nil, 200, "local-EWR", "ingress_best", "EWR "},
		{"unknown_app", "other.example.com", routedID, "", nil, 200, "local-EWR", "no_decision", "EWR "},
		{"failover", "api.example.com", routedID, "", []string{"LHR-", "FRA", "EWR"}, 200, "remote-FRA", "failover", "FRA "},
		{"no_worker_for_pop", "tokyo.example.com", routedID, "", nil, 200, "local-EWR", "no_worker", "EWR "},
		{"generated_request_id", "api.example.com", "", "", nil, 200, "", "", ""},
		{"bad_kind", "api.example.com", routedID, "websocket", nil, 400, "", "", "router: kind \"websocket\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r.setFleet(nil)
			if tc.fleet != nil {
				r.setFleet(pops(tc.fleet...))
			}
			req, err := http.NewRequest("GET", base+"/path?q=1", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			if tc.id != "" {
				req.Header.Set("cf-ray", tc.id)
			}
			if tc.kind != "" {
				req.Header.Set(DefaultKindHeader, tc.kind)
			}
			req.Header.Set(HeaderReason, "spoofed") // the client's value must never reach the worker
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.name == "generated_request_id" { // a random id: routed or baseline, but the worker saw it
				i := strings.Index(string(body), "id=")
				if i < 0 || len(body) < i+3+16 || strings.HasPrefix(string(body[i+3:]), " ") {
					t.Errorf("worker did not get a generated request id: %q", body)
				}
				if h := resp.Header.Values(HeaderPlacement); len(h) != 1 || (h[0] != "remote-LHR" && h[0] != "local-EWR") {
					t.Errorf("cf-placement %q", h)
				}
				return
			}
			if !strings.HasPrefix(string(body), tc.wantBody) {
				t.Errorf("body %q, want prefix %q", body, tc.wantBody)
			}
			if tc.wantHeader != "" {
				if h := resp.Header.Values(HeaderPlacement); len(h) != 1 || h[0] != tc.wantHeader {
					t.Errorf("cf-placement %q, want exactly [%q]", h, tc.wantHeader)
				}
				if got := resp.Header.Get(HeaderReason); got != tc.wantReason {
					t.Errorf("%s %q, want %q", HeaderReason, got, tc.wantReason)
				}
				if tc.wantStatus == 200 && !strings.Contains(string(body), " reason="+tc.wantReason) {
					t.Errorf("the worker saw %q, want the reason %q passed on", body, tc.wantReason)
				}
			}
		})
	}
	// The durations were recorded by placement; every label exists.
	counts := gather(t, reg, "vantage_router_request_duration_seconds")
	if len(counts) != 3 {
		t.Errorf("request duration series: %v, want 3 (routed, baseline, local)", counts)
	}
	for _, p := range []string{"routed", "baseline", "local"} {
		if counts[p] == 0 {
			t.Errorf("no request recorded as %s (all: %v)", p, counts)
		}
	}
	if got := gather(t, reg, "vantage_router_routes_total")["no_worker"]; got != 1 {
		t.Errorf("routes_total{reason=no_worker} = %v, want 1", got)
	}
}

// gather returns the series of metric name by the value of its first label ("" without labels): a counter's
// or gauge's value, a histogram's sample count.
func gather(t testing.TB, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := ""
			if l := m.GetLabel(); len(l) > 0 {
				label = l[0].GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				out[label] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[label] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[label] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestFrontWorkerDown(t *testing.T) { forEachServer(t, testFrontWorkerDown) }

func testFrontWorkerDown(t *testing.T, server string) {
	r := newTestRouter(t, noSource{}, nil)
	install(t, r, dec("api.example.com", "LHR", "LHR:10"))
	workers := startWorkers(t, "EWR")
	workers["LHR"] = &url.URL{Scheme: "http", Host: closedPort(t)}
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: workers, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)
	req, _ := http.NewRequest("GET", base, nil)
	req.Host = "api.example.com"
	req.Header.Set("cf-ray", idWhere(t, func(h uint64) bool { return h >= r.baselineThr }))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(HeaderPlacement) != "remote-LHR" {
		t.Errorf("status %d, cf-placement %q; want 502 with remote-LHR", resp.StatusCode, resp.Header.Get(HeaderPlacement))
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}

func TestNewFrontErrors(t *testing.T) {
	r := newTestRouter(t, noSource{}, nil)
	w := startWorkers(t, "EWR")
	tests := []struct {
		name string
		cfg  FrontConfig
		want string
	}{
		{"no_ingress", FrontConfig{Workers: w}, `ingress PoP ""`},
		{"no_ingress_worker", FrontConfig{Ingress: "LHR", Workers: w}, "no worker endpoint for the ingress PoP LHR"},
		{"bad_worker_url", FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": w["EWR"], "LHR": {Scheme: "ftp", Host: "x"}}}, "worker of LHR: URL ftp://x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewFront(r, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewFront: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseWorkers(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
		err  string
	}{
		{"flag", "EWR=http://127.0.0.1:9001,LHR=http://127.0.0.1:9002", map[string]string{"EWR": "http://127.0.0.1:9001", "LHR": "http://127.0.0.1:9002"}, ""},
		{"file", "# workers\nEWR=http://127.0.0.1:9001  # local\n\nFRA=https://fra.internal:8443\n", map[string]string{"EWR": "http://127.0.0.1:9001", "FRA": "https://fra.internal:8443"}, ""},
		{"empty", "", map[string]string{}, ""},
		{"no_equals", "EWR", nil, `worker "EWR": want POP=URL`},
		{"bad_scheme", "EWR=127.0.0.1:9001", nil, `URL "127.0.0.1:9001"`},
		{"duplicate", "EWR=http://a,EWR=http://b", nil, "PoP EWR given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseWorkers(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseWorkers(%q): %v, want error containing %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k].String() != v {
					t.Errorf("%s: %v, want %s", k, got[k], v)
				}
			}
		})
	}
}

func TestAdminHandler(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r := newTestRouter(t, noSource{}, func(c *Config) { c.Registerer = reg })
	srv := httptest.NewServer(AdminHandler(r, reg))
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 {
		t.Errorf("/readyz before a snapshot: %d %q, want 503", code, body)
	}
	install(t, r, dec("api", "LHR", "LHR:1"))
	r.Route("api", "EWR", "x", KindRPC)
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "1 applications") {
		t.Errorf("/readyz after a snapshot: %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		`vantage_router_routes_total{reason="not_fetch"} 1`,
		`vantage_router_routes_total{reason="stale"} 0`,
		`vantage_router_stale 0`,
		`vantage_router_snapshot_age_seconds`,
		`vantage_router_reload_duration_seconds_count 0`,
		`vantage_router_reloads_total{result="error"} 0`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
}

// TestFrontStripsInternalHeaders: the headers the front sets (towards the worker or the client) are never
// taken from the client, and X-Forwarded-* carry the front's view, not the client's; the request id, by design
// an input of the edge in front, reaches the worker.
func TestFrontStripsInternalHeaders(t *testing.T) { forEachServer(t, testFrontStripsInternalHeaders) }

func testFrontStripsInternalHeaders(t *testing.T, server string) {
	r := newTestRouter(t, noSource{}, nil)
	install(t, r, dec("api.example.com", "LHR", "LHR:10"))
	seen := make(chan http.Header, 1)
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		seen <- req.Header.Clone()
		w.Header().Set(HeaderReason, "worker-must-not-leak")
	}))
	t.Cleanup(worker.Close)
	u, _ := url.Parse(worker.URL)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u, "LHR": u}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)
	routedID := idWhere(t, func(h uint64) bool { return h >= r.baselineThr })

	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "api.example.com"
	req.Header.Set("cf-ray", routedID)
	for _, h := range internalHeaders {
		req.Header.Add(h, "spoofed-1")
		req.Header.Add(h, "spoofed-2")
	}
	req.Header.Set("X-Forwarded-For", "203.0.113.66")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "for=203.0.113.66")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := <-seen
	want := map[string][]string{
		HeaderIngress:      {"EWR"},
		HeaderReason:       {"remote"},
		HeaderPlacement:    nil,
		"X-Forwarded-For":  {"127.0.0.1"},
		"X-Forwarded-Host": {"api.example.com"},
		"Forwarded":        nil,
		"Cf-Ray":           {routedID},
	}
	for h, w := range want {
		if v := got.Values(h); strings.Join(v, "|") != strings.Join(w, "|") {
			t.Errorf("the worker got %s %q; want %q", h, v, w)
		}
	}
	if v := resp.Header.Values(HeaderReason); len(v) != 1 || v[0] != "remote" {
		t.Errorf("the client got %s %q; want [remote]", HeaderReason, v)
	}
}

func TestFrontDurationToBodyEnd(t *testing.T) { forEachServer(t, testFrontDurationToBodyEnd) }

// testFrontDurationToBodyEnd: a request's duration runs to the end of the worker's body, on both servers: a
// worker that sends its head at once and the rest of its body 300 ms later takes at least 300 ms.
func testFrontDurationToBodyEnd(t *testing.T, server string) {
	const pause = 300 * time.Millisecond
	reg := prometheus.NewPedanticRegistry()
	r := newTestRouter(t, noSource{}, nil)
	install(t, r, dec("slow.example.com", "LHR", "LHR:10"))
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Write([]byte("head "))
		w.(http.Flusher).Flush()
		time.Sleep(pause)
		w.Write([]byte("tail"))
	}))
	t.Cleanup(worker.Close)
	u, _ := url.Parse(worker.URL)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u, "LHR": u},
		Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "slow.example.com"
	req.Header.Set("cf-ray", idWhere(t, func(h uint64) bool { return h >= r.baselineThr }))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "head tail" || resp.Header.Get(HeaderPlacement) != "remote-LHR" {
		t.Fatalf("answer %q, %q, %v; want the worker's whole body, routed to LHR", body, resp.Header.Get(HeaderPlacement), err)
	}
	// The client has the body: the fasthttp server observes once it has written it, just before or after.
	var count uint64
	var sum float64
	testwait.Eventually(t, 5*time.Second, "the request's duration observed", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "vantage_router_request_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "routed" {
					count, sum = m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
				}
			}
		}
		return count > 0
	})
	if count != 1 || sum < pause.Seconds() {
		t.Errorf("routed requests observed: %d, taking %.3f s in all; want 1 of at least %v (to the end of the body)", count, sum, pause)
	}
}
