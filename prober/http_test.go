package prober

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// httpServer is an httptest server that counts new connections and records the Host headers and SNI names
// it saw.
type httpServer struct {
	*httptest.Server
	mu    sync.Mutex
	conns int
	hosts []string
	snis  []string
}

func (s *httpServer) stats() (conns int, hosts, snis []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, append([]string(nil), s.hosts...), append([]string(nil), s.snis...)
}

// newHTTPServer starts a loopback server running h (with TLS when tlsOn), closed in t.Cleanup.
func newHTTPServer(t *testing.T, tlsOn bool, h http.HandlerFunc) *httpServer {
	t.Helper()
	s := &httpServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hosts = append(s.hosts, r.Host)
		s.mu.Unlock()
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	if tlsOn {
		s.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.snis = append(s.snis, hello.ServerName)
			s.mu.Unlock()
			return nil, nil
		}}
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// caFile writes the server's certificate as a PEM CA file.
func caFile(t *testing.T, s *httpServer) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func TestHTTPProbeKeepAliveSamples(t *testing.T) {
	const delay = 30 * time.Millisecond
	s := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		w.WriteHeader(http.StatusNoContent)
	})
	e := newEngine(t, nil)
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeHTTP, Addr: s.URL, Count: 3})
	if !r.Success || r.HTTP == nil || r.HTTP.Status != http.StatusNoContent {
		t.Fatalf("success %v err %v http %+v", r.Success, r.Err, r.HTTP)
	}
	if r.Sent != 3 || len(r.Samples) != 3 || r.HTTP.Reused != 3 {
		t.Errorf("sent %d samples %d reused %d, want 3 timed HEADs on the kept-alive connection",
			r.Sent, len(r.Samples), r.HTTP.Reused)
	}
	for _, smp := range r.Samples {
		if time.Duration(smp) < delay || time.Duration(smp) > 2*time.Second {
			t.Errorf("sample %v: want >= the server's %v delay and well under the timeout", smp, delay)
		}
	}
	ph := r.HTTP.Phases
	if ph.Connect <= 0 || ph.TLS != 0 || time.Duration(ph.Processing) < delay || ph.FirstByte < ph.Processing {
		t.Errorf("phases %+v: want connect > 0, no TLS, processing >= %v, first byte >= processing", ph, delay)
	}
	if conns, hosts, _ := s.stats(); conns != 1 || len(hosts) != 4 {
		t.Errorf("%d connections and %d requests, want 1 connection carrying 4 HEADs", conns, len(hosts))
	}
	if r.IP != netip.MustParseAddr("127.0.0.1") || r.Source != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("ip %v source %v", r.IP, r.Source)
	}
}

func TestHTTPSProbeSNIAndVerification(t *testing.T) {
	s := newHTTPServer(t, true, ok)
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	ca := caFile(t, s)
	res := newFakeResolver(map[string][][]netip.Addr{"example.com": {addrs("127.0.0.1")}})
	tests := []struct {
		name     string
		addr     string
		opts     HTTPOptions
		class    Class
		wantSNI  string
		wantHost string
	}{
		{name: "ca_file_and_sni_from_url", addr: "https://example.com:" + port + "/", opts: HTTPOptions{CAFile: ca},
			wantSNI: "example.com", wantHost: "example.com:" + port},
		{name: "host_override_sets_sni_and_host", addr: "https://127.0.0.1:" + port + "/",
			opts: HTTPOptions{CAFile: ca, Host: "example.com"}, wantSNI: "example.com", wantHost: "example.com"},
		{name: "server_name_sets_sni_only", addr: "https://127.0.0.1:" + port + "/",
			opts: HTTPOptions{CAFile: ca, ServerName: "example.com"}, wantSNI: "example.com", wantHost: "127.0.0.1:" + port},
		{name: "unknown_ca_is_tls_error", addr: "https://example.com:" + port + "/", class: ClassTLS},
		{name: "insecure_skip_verify", addr: "https://example.com:" + port + "/",
			opts: HTTPOptions{InsecureSkipVerify: true}, wantSNI: "example.com"},
		{name: "wrong_name_is_tls_error", addr: "https://127.0.0.1:" + port + "/",
			opts: HTTPOptions{CAFile: ca, Host: "other.example"}, class: ClassTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, before := s.stats()
			e := newEngine(t, func(c *Config) { c.Resolver = res })
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeHTTP, Addr: tc.addr, Count: 2, HTTP: tc.opts})
			if r.Class != tc.class {
				t.Fatalf("class %q err %v, want %q", r.Class, r.Err, tc.class)
			}
			if tc.class != ClassNone {
				return
			}
			if r.HTTP.Phases.TLS <= 0 || !strings.HasPrefix(r.HTTP.TLSVersion, "TLS 1.") || len(r.Samples) != 2 {
				t.Errorf("tls phase %v version %q samples %d", r.HTTP.Phases.TLS, r.HTTP.TLSVersion, len(r.Samples))
			}
			_, hosts, snis := s.stats()
			if got := snis[len(before):]; len(got) != 1 || got[0] != tc.wantSNI {
				t.Errorf("SNI seen %q, want one handshake with %q", got, tc.wantSNI)
			}
			if tc.wantHost != "" && hosts[len(hosts)-1] != tc.wantHost {
				t.Errorf("Host header %q, want %q", hosts[len(hosts)-1], tc.wantHost)
			}
		})
	}
}

func TestHTTPProbeStatusAndRedirects(t *testing.T) {
	s := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/", http.StatusFound)
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	tests := []struct {
		name    string
		path    string
		follow  bool
		status  int
		class   Class
		locHas  string
		samples int
	}{
		{name: "redirect_not_followed", path: "/moved", status: http.StatusFound, locHas: "/", samples: 2},
		{name: "redirect_followed", path: "/moved", follow: true, status: http.StatusOK, samples: 2},
		{name: "not_found_keeps_samples", path: "/missing", status: http.StatusNotFound, class: ClassHTTPStatus, samples: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, nil)
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeHTTP, Addr: s.URL + tc.path, Count: 2,
				HTTP: HTTPOptions{FollowRedirects: tc.follow}})
			if r.Class != tc.class || r.HTTP.Status != tc.status {
				t.Fatalf("class %q status %d err %v, want %q %d", r.Class, r.HTTP.Status, r.Err, tc.class, tc.status)
			}
			if len(r.Samples) != tc.samples {
				t.Errorf("%d samples, want %d (a status error still measures the RTT)", len(r.Samples), tc.samples)
			}
			if !strings.Contains(r.HTTP.Location, tc.locHas) {
				t.Errorf("location %q lacks %q", r.HTTP.Location, tc.locHas)
			}
		})
	}
}

// TestHTTPProbeSingleRequest: blackbox_exporter's way, one request (here a GET with headers) timed phase by
// phase and counted as the sample; the body is read and measured; valid status codes and followed redirects
// are reported.
func TestHTTPProbeSingleRequest(t *testing.T) {
	s := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("X-Probe") != "yes" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/twice", http.StatusFound)
		case "/twice":
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
		default:
			io.WriteString(w, "hello")
		}
	})
	tests := []struct {
		name      string
		path      string
		valid     []int
		follow    bool
		class     Class
		redirects int
	}{
		{name: "get_200", path: "/"},
		{name: "200_not_valid", path: "/", valid: []int{201}, class: ClassHTTPStatus},
		{name: "two_redirects_followed", path: "/moved", follow: true, redirects: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, nil)
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeHTTP, Addr: s.URL + tc.path, Count: 5,
				HTTP: HTTPOptions{Single: true, Method: "get", Headers: map[string]string{"X-Probe": "yes"},
					ValidStatus: tc.valid, FollowRedirects: tc.follow}})
			if r.Class != tc.class || r.HTTP.Status != http.StatusOK {
				t.Fatalf("class %q status %d err %v, want %q 200", r.Class, r.HTTP.Status, r.Err, tc.class)
			}
			h := r.HTTP
			if r.Sent != 1 || len(r.Samples) != 1 || r.Samples[0] != h.Phases.Processing {
				t.Errorf("sent %d samples %v, want the one request's processing time %v", r.Sent, r.Samples, h.Phases.Processing)
			}
			if h.BodyBytes != 5 || h.ContentLength != 5 || h.Proto != "HTTP/1.1" || h.Redirects != tc.redirects || h.TLS != nil {
				t.Errorf("body %d length %d proto %q redirects %d tls %v, want 5 5 HTTP/1.1 %d nil",
					h.BodyBytes, h.ContentLength, h.Proto, h.Redirects, h.TLS != nil, tc.redirects)
			}
			if r.Resolve != h.Phases.Resolve {
				t.Errorf("resolve %v, phases say %v", r.Resolve, h.Phases.Resolve)
			}
		})
	}
}

func TestHTTPProbeFailures(t *testing.T) {
	slow := newHTTPServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	tests := []struct {
		name   string
		addr   string
		class  Class
		errHas string
	}{
		{name: "refused", addr: "http://" + closedPort(t) + "/", class: ClassRefused, errHas: "refused"},
		{name: "server_too_slow", addr: slow.URL, class: ClassTimeout},
		{name: "bad_scheme", addr: "ftp://127.0.0.1/", class: ClassOther, errHas: `scheme "ftp"`},
		{name: "policy", addr: "http://10.0.0.1/", class: ClassPolicy, errHas: "rule rfc1918"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, nil)
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeHTTP, Addr: tc.addr, Count: 1,
				Timeout: 300 * time.Millisecond})
			if r.Class != tc.class || r.Success {
				t.Fatalf("class %q err %v, want %q", r.Class, r.Err, tc.class)
			}
			if !strings.Contains(r.Error, tc.errHas) {
				t.Errorf("error %q lacks %q", r.Error, tc.errHas)
			}
		})
	}
}

// TestHTTPRebinding: the transport dials the address checked at the start of the probe; it never resolves
// the name again (the fake resolver's second answer would be a different, denied address).
func TestHTTPRebinding(t *testing.T) {
	s := newHTTPServer(t, false, ok)
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	res := newFakeResolver(map[string][][]netip.Addr{"rebind.test": {addrs("127.0.0.1"), addrs("10.0.0.1")}})
	e := newEngine(t, func(c *Config) { c.Resolver = res })
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeHTTP, Addr: "http://rebind.test:" + port + "/", Count: 3})
	if !r.Success || r.IP != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("success %v ip %v err %v", r.Success, r.IP, r.Err)
	}
	if n := res.lookups("rebind.test"); n != 1 {
		t.Errorf("%d resolutions for one probe, want 1", n)
	}
	if _, hosts, _ := s.stats(); hosts[0] != "rebind.test:"+port {
		t.Errorf("Host header %q, want the name", hosts[0])
	}
	r = e.Probe(context.Background(), Target{Kind: placement.ProbeHTTP, Addr: "http://rebind.test:" + port + "/"})
	if r.Class != ClassPolicy || !strings.Contains(r.Error, "denied by policy (rfc1918)") || strings.Contains(r.Error, "10.0.0.1") {
		t.Errorf("rebound name: class %q err %q, want policy naming rfc1918, not the address", r.Class, r.Error)
	}
}
