package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// countingListener counts the connections accepted from it.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startUpstream starts a loopback worker serving h on a counting listener.
func startUpstream(t *testing.T, h http.Handler) (*url.URL, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := &http.Server{Handler: h}
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, cl
}

// TestFrontReusesUpstreamConnections sends waves of concurrent requests through the front (both servers use
// the same pool of worker connections); every wave holds `conc` requests at the worker at once (the worker
// answers only when all have arrived), so each wave needs `conc` connections. With a pool of at least `conc` the worker accepts exactly `conc` connections over all
// waves; with a smaller pool the connections returned past its size are closed and dialled again (the churn
// that left thousands of sockets in TIME_WAIT).
func TestFrontReusesUpstreamConnections(t *testing.T) {
	forEachServer(t, testFrontReusesUpstreamConnections)
}

func testFrontReusesUpstreamConnections(t *testing.T, server string) {
	const conc, waves = 8, 5
	tests := []struct {
		name       string
		pool       int
		wantMax    int64 // accepted connections at most
		wantMinExc int64 // accepted connections more than this (0: no lower bound)
	}{
		{"pool_at_concurrency", conc, conc, 0},
		{"pool_above_concurrency", 4 * conc, conc, 0},
		{"pool_below_concurrency_churns", 2, waves * conc, 2 * conc},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			arrived, gate := 0, make(chan struct{})
			u, ln := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				arrived++
				g := gate
				if arrived == conc {
					close(gate)
					arrived, gate = 0, make(chan struct{})
				}
				mu.Unlock()
				select {
				case <-g:
				case <-r.Context().Done():
				}
				io.WriteString(w, "ok")
			}))
			r := newTestRouter(t, noSource{}, nil)
			front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u},
				MaxIdlePerWorker: tc.pool, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			base, _ := serveFront(t, front, server)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
			t.Cleanup(client.CloseIdleConnections)
			for wave := range waves {
				var wg sync.WaitGroup
				errs := make(chan error, conc)
				for range conc {
					wg.Go(func() {
						resp, err := client.Get(base + "/x")
						if err != nil {
							errs <- err
							return
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 || string(body) != "ok" {
							errs <- fmt.Errorf("status %d body %q", resp.StatusCode, body)
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatalf("wave %d: %v", wave, err)
				}
			}
			got := ln.accepted.Load()
			t.Logf("%d requests, %d in flight, pool %d: the worker accepted %d connections", waves*conc, conc, tc.pool, got)
			if got > tc.wantMax || got <= tc.wantMinExc {
				t.Errorf("worker accepted %d connections, want (%d, %d]", got, tc.wantMinExc, tc.wantMax)
			}
		})
	}
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFrontCanceledClient cancels requests while the worker holds them, through each server, on the HTTP/1.1
// path and with a body of unknown length (net/http: the ReverseProxy path; fasthttp: streamed on its own
// path): each is counted in vantage_router_requests_canceled_total, logged at debug level, never at WARN, and
// the front drops its exchange with the worker (the worker sees its request canceled).
func TestFrontCanceledClient(t *testing.T) { forEachServer(t, testFrontCanceledClient) }

func testFrontCanceledClient(t *testing.T, server string) {
	tests := []struct {
		name    string
		chunked bool // a body of unknown length: the ReverseProxy path
	}{
		{"http1_path", false},
		{"reverse_proxy_path", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			arrived, workerSawCancel := make(chan struct{}, 1), make(chan struct{}, 1)
			u, _ := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body) // the worker's server sees a closed connection once the body is read
				arrived <- struct{}{}
				select {
				case <-r.Context().Done():
					workerSawCancel <- struct{}{}
				case <-time.After(30 * time.Second):
					io.WriteString(w, "too late")
				}
			}))
			var logs lockedBuffer
			reg := prometheus.NewPedanticRegistry()
			r := newTestRouter(t, noSource{}, nil)
			front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Registerer: reg,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			if got := gather(t, reg, "vantage_router_requests_canceled_total")[""]; got != 0 {
				t.Fatalf("canceled before any request = %v, want 0", got)
			}
			base, client := serveFront(t, front, server)
			ctx, cancel := context.WithCancel(context.Background())
			var body io.Reader
			if tc.chunked {
				body = io.MultiReader(strings.NewReader("part")) // not a known type: sent chunked
			}
			req, _ := http.NewRequestWithContext(ctx, "POST", base, body)
			done := make(chan error, 1)
			go func() {
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			<-arrived
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("client: %v, want context.Canceled", err)
			}
			select {
			case <-workerSawCancel:
			case <-time.After(20 * time.Second):
				t.Fatal("the worker's request was not canceled: the front kept the exchange going")
			}
			deadline := time.Now().Add(20 * time.Second) // a bound for a stuck test, not a speed assertion
			for gather(t, reg, "vantage_router_requests_canceled_total")[""] != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("vantage_router_requests_canceled_total = %v, want 1; logs:\n%s",
						gather(t, reg, "vantage_router_requests_canceled_total")[""], logs.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			out := logs.String()
			if strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
				t.Errorf("a canceled request was logged at WARN or above:\n%s", out)
			}
			if !strings.Contains(out, "client canceled the request") {
				t.Errorf("no debug line for the canceled request:\n%s", out)
			}
		})
	}
}

// TestFrontRetriesStaleConnection: a worker that closes every connection after one response, without saying
// so (no Connection: close), leaves a dead connection in the pool; the next request, which has no body, is
// sent again on a new connection instead of failing.
func TestFrontRetriesStaleConnection(t *testing.T) { forEachServer(t, testFrontRetriesStaleConnection) }

func testFrontRetriesStaleConnection(t *testing.T, server string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": {Scheme: "http", Host: ln.Addr().String()}},
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)
	for i := range 3 {
		resp, err := client.Get(base)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: status %d body %q, want 200 ok", i, resp.StatusCode, body)
		}
	}
	if got := accepted.Load(); got != 3 {
		t.Errorf("worker accepted %d connections, want 3 (one per request)", got)
	}
}

// TestFrontForwarding checks what the HTTP/1.1 path sends and returns: the request body (no Content-Type
// added), the forwarding headers, hop-by-hop headers (and those Connection names) removed both ways, a chunked
// response with a trailer, and HEAD.
func TestFrontForwarding(t *testing.T) { forEachServer(t, testFrontForwarding) }

func testFrontForwarding(t *testing.T, server string) {
	u, _ := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		w.Header().Set("X-Up", "1")
		w.WriteHeader(201)
		if r.Method == "HEAD" {
			return
		}
		fmt.Fprintf(w, "%s %s body=%s len=%d xff=%s xfh=%s xfp=%s proxyauth=%q ct=%q hop=%q", r.Method, r.URL.RequestURI(), b,
			r.ContentLength, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Proxy-Authorization"), r.Header["Content-Type"], r.Header["X-Hop"])
		w.(http.Flusher).Flush() // chunked
		w.Header().Set("X-Sum", "42")
	}))
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)

	req, _ := http.NewRequest("POST", base+"/p/a?q=1&r=%20", strings.NewReader("hello"))
	req.Host = "app.example.com"
	req.Header.Set("Proxy-Authorization", "secret")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Connection", "keep-alive, X-Hop") // X-Hop is hop-by-hop: not forwarded
	req.Header.Set("X-Hop", "1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `POST /p/a?q=1&r=%20 body=hello len=5 xff=127.0.0.1 xfh=app.example.com xfp=http proxyauth="" ct=[] hop=[]`
	if resp.StatusCode != 201 || string(body) != want {
		t.Errorf("got %d %q\nwant 201 %q", resp.StatusCode, body, want)
	}
	if resp.Header.Get("X-Up") != "1" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Secret") != "" || resp.Trailer.Get("X-Sum") != "42" ||
		resp.Header.Get(HeaderPlacement) != "local-EWR" || resp.Header.Get(HeaderReason) != "no_snapshot" {
		t.Errorf("response headers %v trailers %v: want X-Up, no Keep-Alive or X-Secret (named in Connection), trailer X-Sum 42, local-EWR/no_snapshot",
			resp.Header, resp.Trailer)
	}

	req, _ = http.NewRequest("HEAD", base+"/h", nil)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get(HeaderPlacement) != "local-EWR" {
		t.Errorf("HEAD: %d %v, want 201 with local-EWR", resp.StatusCode, resp.Header)
	}
}

// TestFrontOtherPaths sends through each server the requests the HTTP/1.1 paths hand to the reverse proxy: one
// to an https worker that speaks HTTP/2, a protocol upgrade whose connection then carries bytes both ways, and
// an absolute-form target.
func TestFrontOtherPaths(t *testing.T) { forEachServer(t, testFrontOtherPaths) }

func testFrontOtherPaths(t *testing.T, server string) {
	tlsWorker := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "LHR %s host=%s reason=%s", r.Proto, r.Host, r.Header.Get(HeaderReason))
	}))
	tlsWorker.EnableHTTP2 = true
	tlsWorker.StartTLS()
	t.Cleanup(tlsWorker.Close)
	plain, _ := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "EWR not upgraded")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	tu, _ := url.Parse(tlsWorker.URL)
	r := newTestRouter(t, noSource{}, nil)
	install(t, r, dec("api.example.com", "LHR", "LHR:10"))
	tr := tlsWorker.Client().Transport.(*http.Transport).Clone() // trusts the worker's certificate
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": plain, "LHR": tu},
		Transport: tr, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)

	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "api.example.com"
	req.Header.Set("cf-ray", idWhere(t, func(h uint64) bool { return h >= r.baselineThr }))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "LHR HTTP/2.0 host=api.example.com reason=remote"; string(body) != want || resp.Header.Get(HeaderPlacement) != "remote-LHR" {
		t.Errorf("https worker: %q, cf-placement %q; want %q, remote-LHR", body, resp.Header.Get(HeaderPlacement), want)
	}

	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: other.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get(HeaderPlacement) != "local-EWR" {
		t.Fatalf("upgrade: %d, cf-placement %q; want 101, local-EWR", resp.StatusCode, resp.Header.Get(HeaderPlacement))
	}
	io.WriteString(c, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Errorf("upgraded connection: %q, %v; want the worker's echo", line, err)
	}

	// An absolute-form target names the application by its host, not the Host header (RFC 9112 3.2.2).
	c2, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET http://api.example.com/abs HTTP/1.1\r\nHost: other.example.com\r\nCf-Ray: %s\r\n\r\n",
		idWhere(t, func(h uint64) bool { return h >= r.baselineThr }))
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get(HeaderPlacement) != "remote-LHR" || !strings.HasPrefix(string(body), "LHR HTTP/2.0 host=api.example.com") {
		t.Errorf("absolute-form target: cf-placement %q, body %q; want remote-LHR from the LHR worker", resp.Header.Get(HeaderPlacement), body)
	}
}

// TestFastFrontRefusesLargeHeads: a request head over ServerLimits.MaxHeaderBytes is refused with 431 and
// never reaches the worker; one under it is forwarded.
func TestFastFrontRefusesLargeHeads(t *testing.T) {
	var got atomic.Int64
	u, _ := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		fmt.Fprintf(w, "cookie %d bytes", len(r.Header.Get("Cookie")))
	}))
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, "fasthttp")
	for _, tc := range []struct {
		cookie     int
		wantStatus int
	}{{DefaultMaxHeaderBytes / 2, 200}, {DefaultMaxHeaderBytes + 1, http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Header.Set("Cookie", strings.Repeat("a", tc.cookie))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus {
			t.Errorf("a %d-byte cookie: status %d (%q), want %d", tc.cookie, resp.StatusCode, body, tc.wantStatus)
		}
	}
	if got.Load() != 1 {
		t.Errorf("the worker got %d requests, want 1 (the large head refused at the front)", got.Load())
	}
}

// TestFrontUpstreamTimeout: a worker that never answers gets the request once; the front answers 502 with
// the placement after UpstreamTimeout (no retry of a timed-out request on either server). The timeout is a
// second, not less: on a busy machine the request must reach the worker before it expires.
func TestFrontUpstreamTimeout(t *testing.T) { forEachServer(t, testFrontUpstreamTimeout) }

func testFrontUpstreamTimeout(t *testing.T, server string) {
	var arrived atomic.Int64
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	u, _ := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u},
		UpstreamTimeout: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)
	resp, err := client.Get(base + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(HeaderPlacement) != "local-EWR" {
		t.Errorf("status %d, cf-placement %q; want 502, local-EWR", resp.StatusCode, resp.Header.Get(HeaderPlacement))
	}
	if n := arrived.Load(); n != 1 {
		t.Errorf("the worker got the request %d times, want 1", n)
	}
}

// TestFastFrontAdaptedBodies: a request the fasthttp front hands to the reverse proxy (here an absolute-form
// target) has its body bounded and checked before the proxy sees it: one cut short by its client never reaches
// the worker, one over maxAdaptedBody is refused with 413, a whole one is forwarded.
func TestFastFrontAdaptedBodies(t *testing.T) {
	got := make(chan string, 4)
	u, _ := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		got <- fmt.Sprintf("%s %d bytes err=%v", r.Host, len(b), err)
	}))
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serveFront(t, front, "fasthttp")
	send := func(declared, sent int, closeAfter bool) string {
		t.Helper()
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST http://app.example.com/up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: %d\r\n\r\n", declared)
		c.Write(bytes.Repeat([]byte("a"), sent))
		if closeAfter {
			c.(*net.TCPConn).CloseWrite() // the client gives up mid-body
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "no response: " + err.Error()
		}
		resp.Body.Close()
		return resp.Status
	}
	if st := send(100_000, 50_000, true); strings.HasPrefix(st, "200") {
		t.Errorf("a body cut short: %s, want it refused", st)
	}
	if st := send(maxAdaptedBody+1, maxAdaptedBody+1, false); !strings.HasPrefix(st, "413") {
		t.Errorf("a body over %d bytes: %s, want 413", maxAdaptedBody, st)
	}
	if st := send(1000, 1000, false); !strings.HasPrefix(st, "200") {
		t.Errorf("a whole body: %s, want 200", st)
	}
	if w := <-got; w != "app.example.com 1000 bytes err=<nil>" {
		t.Errorf("the worker got %q, want the whole body only", w)
	}
	select {
	case w := <-got:
		t.Errorf("the worker got another request: %q", w)
	default:
	}
}

// TestFastFrontHTTP10Client: HTTP/1.0 clients (and "Connection: close") take the fast path; each client's
// connection closes after its response, while the worker's connection is kept alive and reused (the worker
// sees HTTP/1.1).
func TestFastFrontHTTP10Client(t *testing.T) {
	u, ln := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s conn=%q", r.Proto, r.Header["Connection"])
	}))
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serveFront(t, front, "fasthttp")
	for i, head := range []string{"GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", "GET / HTTP/1.0\r\nHost: a.example\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, head)
		all, err := io.ReadAll(c) // to EOF: the front closes the client's connection
		c.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !strings.HasSuffix(string(all), `HTTP/1.1 conn=[]`) {
			t.Errorf("request %d: %q, want the worker to see HTTP/1.1 without Connection", i, all)
		}
	}
	if got := ln.accepted.Load(); got != 1 {
		t.Errorf("the worker accepted %d connections, want 1 (kept alive across the clients)", got)
	}
}

// TestFrontNoContentType: a worker's response without a Content-Type reaches the client without one (neither
// server adds its default).
func TestFrontNoContentType(t *testing.T) { forEachServer(t, testFrontNoContentType) }

func testFrontNoContentType(t *testing.T, server string) {
	u, _ := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // no sniffing either
		w.Write([]byte{0, 1, 2})
	}))
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, client := serveFront(t, front, server)
	resp, err := client.Get(base + "/bin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("Content-Type %q, want none (the worker sent none)", ct)
	}
}

// recordingWorker is a raw loopback worker that answers every request with its own body and records each
// request it read. With dropSecond, its first connection reads its second request in full and closes without
// answering (the worker may have acted on it).
func recordingWorker(t *testing.T, dropSecond bool) (*url.URL, func() []string) {
	var mu sync.Mutex
	var seen []string
	var conns atomic.Int64
	addr := rawServer(t, func(c net.Conn) {
		first := conns.Add(1) == 1
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s %s body=%q", r.Method, r.RequestURI, b))
			mu.Unlock()
			if dropSecond && first && i == 1 {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		}
	})
	return &url.URL{Scheme: "http", Host: addr}, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// TestFrontNoReplay: a request the worker read and then dropped its connection on is sent again only when it
// is idempotent and has no body (a stale pooled connection); a POST, with a streamed body or none, is not.
// (The net/http front sends a body of unknown length through the reverse proxy's own connections, not the
// pooled one the worker drops: there it is answered.)
func TestFrontNoReplay(t *testing.T) { forEachServer(t, testFrontNoReplay) }

func testFrontNoReplay(t *testing.T, server string) {
	for _, tc := range []struct {
		name     string
		method   string
		body     io.Reader
		wantSeen []string // after the warm-up request
		wantCode int
	}{
		{"get_replayed", "GET", nil, []string{`GET /op body=""`, `GET /op body=""`}, 200},
		{"post_without_body", "POST", nil, []string{`POST /op body=""`}, http.StatusBadGateway},
		{"post_streamed_body", "POST", io.MultiReader(strings.NewReader("amount=100")), []string{`POST /op body="amount=100"`}, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if server == "net/http" && tc.name == "post_streamed_body" {
				tc.wantCode = http.StatusOK
			}
			u, seen := recordingWorker(t, true)
			r := newTestRouter(t, noSource{}, nil)
			front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			base, client := serveFront(t, front, server)
			resp, err := client.Get(base + "/warm") // pools the worker's first connection
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			req, _ := http.NewRequest(tc.method, base+"/op", tc.body)
			resp, err = client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := seen()[1:]
			if resp.StatusCode != tc.wantCode || !slices.Equal(got, tc.wantSeen) {
				t.Errorf("status %d, the worker saw %q; want %d and %q", resp.StatusCode, got, tc.wantCode, tc.wantSeen)
			}
		})
	}
}

// TestFrontKeepsTarget: the request target reaches the worker as the client sent it (no path normalizing:
// an encoded slash or a dot segment can name another resource to the worker).
func TestFrontKeepsTarget(t *testing.T) { forEachServer(t, testFrontKeepsTarget) }

func testFrontKeepsTarget(t *testing.T, server string) {
	u, seen := recordingWorker(t, false)
	r := newTestRouter(t, noSource{}, nil)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serveFront(t, front, server)
	targets := []string{"/a/../b", "/x%2Fy", "//dbl/./p", "/q?x=%2F&y=a+b", "/%7Euser", "/a%20b"}
	for _, target := range targets {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n", target)
		io.ReadAll(c)
		c.Close()
	}
	var want []string
	for _, target := range targets {
		want = append(want, fmt.Sprintf("GET %s body=%q", target, ""))
	}
	if got := seen(); !slices.Equal(got, want) {
		t.Errorf("the worker saw\n%q\nwant\n%q", got, want)
	}
}

// scriptedWorker is a raw loopback worker that answers the i-th request of each connection with script[i],
// verbatim, and closes the connection after the last (or after each, with closeAfter).
func scriptedWorker(t *testing.T, closeAfter bool, script ...string) *url.URL {
	addr := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for _, answer := range script {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, r.Body)
			io.WriteString(c, answer)
			if closeAfter {
				return
			}
		}
	})
	return &url.URL{Scheme: "http", Host: addr}
}

// TestFrontWorkerQuirks: responses of workers that bend HTTP/1.1 reach the client whole, and the connection
// they leave is not reused when it cannot be: an HTTP/1.0 worker's body delimited by its closing the
// connection, and a body sent on a HEAD response (the next request on the front's pooled connection would
// read it as its response).
func TestFrontWorkerQuirks(t *testing.T) { forEachServer(t, testFrontWorkerQuirks) }

func testFrontWorkerQuirks(t *testing.T, server string) {
	client := &http.Client{Timeout: 30 * time.Second} // a bound for a stuck test, not a speed assertion
	t.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct {
		name   string
		worker *url.URL
		method []string
		want   []string // per request: status and body
	}{
		{"http10_close_delimited", scriptedWorker(t, true, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"),
			[]string{"GET", "GET"}, []string{"200 hello", "200 hello"}},
		{"body_on_head", scriptedWorker(t, false, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok2"),
			[]string{"HEAD", "GET"}, []string{"200 ", "200 hello"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t, noSource{}, nil)
			front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": tc.worker}, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			base, _ := serveFront(t, front, server)
			for i, m := range tc.method {
				req, _ := http.NewRequest(m, base+"/", nil)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", m, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if got := fmt.Sprintf("%d %s", resp.StatusCode, b); got != tc.want[i] {
					t.Errorf("request %d (%s): %q, want %q", i, m, got, tc.want[i])
				}
			}
		})
	}
}
