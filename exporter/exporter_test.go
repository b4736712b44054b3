package exporter

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/prober"
)

// TestParseDebianConfig: the blackbox.yml Debian ships loads as is; the modules the exporter cannot run are
// exactly those with a prober or an option it lacks, each with its reason.
func TestParseDebianConfig(t *testing.T) {
	files := []string{"testdata/debian-blackbox.yml"}
	if _, err := os.Stat("/etc/prometheus/blackbox.yml"); err == nil {
		files = append(files, "/etc/prometheus/blackbox.yml") // the installed one too, when there is one
	}
	want := map[string]string{
		"grpc":         `prober "grpc" is not supported`,
		"grpc_plain":   `prober "grpc" is not supported`,
		"icmp_ttl5":    "icmp.ttl 5 is not supported",
		"irc_banner":   "tcp.query_response is not supported",
		"pop3s_banner": "tcp.query_response is not supported; tcp.tls is not supported",
		"ssh_banner":   "tcp.query_response is not supported",
	}
	for _, path := range files {
		f, err := Load(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		x, err := New(Config{File: f})
		if err != nil {
			t.Fatal(err)
		}
		x.Close()
		got := x.Unsupported()
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
			t.Fatalf("%s: unsupported modules %v, want %v", path, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
		for m, why := range want {
			if !strings.Contains(got[m], why) {
				t.Errorf("%s: module %s: %q, want it to say %q", path, m, got[m], why)
			}
		}
		for _, m := range []string{"http_2xx", "http_post_2xx", "tcp_connect", "icmp"} {
			if _, ok := f.Modules[m]; !ok || got[m] != "" {
				t.Errorf("%s: module %s missing or unsupported (%q)", path, m, got[m])
			}
		}
	}
}

// TestParseAllOptions: every key blackbox_exporter 0.23 accepts is accepted (blackbox_exporter's own
// --config.check agrees when it is installed).
func TestParseAllOptions(t *testing.T) {
	const path = "testdata/all-options.yml"
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(BlackboxBin); err != nil {
		t.Logf("blackbox_exporter not installed: not cross-checked (%v)", err)
		return
	}
	if out, err := exec.Command(BlackboxBin, "--config.check", "--config.file="+path).CombinedOutput(); err != nil {
		t.Errorf("blackbox_exporter --config.check refuses %s: %v\n%s", path, err, out)
	}
}

// TestParseInvalid: what blackbox_exporter refuses (unknown keys, bad types, a dns module without a name) and
// what it would silently misread is an error naming the file, the module and the key.
func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name, yml, want string
	}{
		{"unknown_key", "modules:\n  m:\n    prober: tcp\n    tcp:\n      bogus: 1\n", "line 5: field bogus not found"},
		{"unknown_top_key", "module:\n  m:\n    prober: tcp\n", "field module not found"},
		{"bad_duration", "modules:\n  m:\n    prober: tcp\n    timeout: soon\n", "soon"},
		{"bad_status_code", "modules:\n  m:\n    prober: http\n    http:\n      valid_status_codes: [ok]\n", "line 5"},
		{"dns_without_name", "modules:\n  d:\n    prober: dns\n", `module "d": invalid blackbox_exporter configuration: query name must be set for DNS module`},
		{"ip_protocol", "modules:\n  m:\n    prober: tcp\n    tcp:\n      preferred_ip_protocol: ipv4\n", `tcp.preferred_ip_protocol "ipv4": want ip4 or ip6`},
		{"source_address", "modules:\n  m:\n    prober: icmp\n    icmp:\n      source_ip_address: here\n", `icmp.source_ip_address "here"`},
		{"ttl", "modules:\n  m:\n    prober: icmp\n    icmp:\n      ttl: 300\n", "icmp.ttl 300: want 0 to 255"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bb.yml", []byte(tc.yml))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "exporter: config bb.yml: ") {
				t.Errorf("error %v, want ErrConfig naming bb.yml and saying %q", err, tc.want)
			}
		})
	}
}

// sideBySide are the modules both exporters run in TestSideBySide: Debian's file, and these.
const sideBySideExtra = `
  https_2xx:
    prober: http
    http:
      valid_status_codes: [200]
      headers:
        X-Probe: "yes"
      tls_config:
        ca_file: %s
  dns_a:
    prober: dns
    dns:
      query_name: example.test
      query_type: A
  dns_tcp:
    prober: dns
    dns:
      query_name: example.test
      query_type: A
      transport_protocol: tcp
  dns_soa:
    prober: dns
    timeout: 5s
    dns:
      query_name: test
      query_type: SOA
      preferred_ip_protocol: ip4
`

// TestSideBySide runs blackbox_exporter (Debian's) and the exporter with the same configuration on the same
// loopback targets: per module, the same metric names (and label names), and probe_success 1 from both.
func TestSideBySide(t *testing.T) {
	debian, err := os.ReadFile("testdata/debian-blackbox.yml")
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		fmt.Fprintln(w, "hello")
	}))
	t.Cleanup(web.Close)
	tlsWeb := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "yes" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(tlsWeb.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsWeb.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.TrimRight(string(debian), "\n") + "\n" + fmt.Sprintf(sideBySideExtra, ca)
	bb := startBlackbox(t, cfg)
	_, vx := newExporter(t, cfg, nil)
	dnsAddr := dnsServer(t)
	tests := []struct{ module, target string }{
		{"tcp_connect", testnet.Listen(t)},
		{"http_2xx", web.URL},
		{"http_post_2xx", web.URL + "/post"},
		{"https_2xx", tlsWeb.URL},
		{"dns_a", dnsAddr},
		{"dns_tcp", dnsAddr},
		{"dns_soa", dnsAddr},
		{"icmp", "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.module, func(t *testing.T) {
			if tc.module == "icmp" {
				testnet.NeedRoot(t, "ICMP side by side (blackbox_exporter opens a raw socket)")
			}
			q := "/probe?module=" + tc.module + "&target=" + url.QueryEscape(tc.target)
			want, got := scrape(t, bb+q), scrape(t, vx+q)
			if value(want, "probe_success") != 1 || value(got, "probe_success") != 1 {
				t.Fatalf("probe_success: blackbox_exporter %v, vantage %v; want 1 and 1", value(want, "probe_success"), value(got, "probe_success"))
			}
			if w, g := names(want, true), names(got, true); !slices.Equal(w, g) {
				t.Errorf("metric names differ:\nblackbox_exporter %v\nvantage           %v", w, g)
			}
			for _, n := range []string{"probe_ip_protocol", "probe_ip_addr_hash", "probe_http_status_code",
				"probe_http_version", "probe_http_ssl", "probe_http_content_length", "probe_dns_answer_rrs",
				"probe_dns_serial", "probe_icmp_reply_hop_limit"} {
				if value(want, n) != value(got, n) {
					t.Errorf("%s: blackbox_exporter %v, vantage %v", n, value(want, n), value(got, n))
				}
			}
		})
	}
}

// TestProbeRequests: the 400s and 500 blackbox_exporter answers, grpc's 400 saying it is not supported, the
// default module, and debug=true's three parts.
func TestProbeRequests(t *testing.T) {
	debian, err := os.ReadFile("testdata/debian-blackbox.yml")
	if err != nil {
		t.Fatal(err)
	}
	_, base := newExporter(t, string(debian), nil)
	target := testnet.Listen(t)
	web := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(web.Close)
	tests := []struct {
		name   string
		query  string
		header string
		code   int
		has    []string
	}{
		{name: "grpc", query: "module=grpc&target=" + target, code: 400,
			has: []string{`Module "grpc" is not supported by vantage exporter: prober "grpc" is not supported (vantage exporter runs tcp, http, icmp, dns)`}},
		{name: "ssh_banner", query: "module=ssh_banner&target=" + target, code: 400, has: []string{"tcp.query_response is not supported"}},
		{name: "unknown_module", query: "module=nope&target=x", code: 400, has: []string{`Unknown module "nope"`}},
		{name: "no_target", query: "module=tcp_connect", code: 400, has: []string{"Target parameter is missing"}},
		{name: "bad_timeout_header", query: "module=tcp_connect&target=" + target, header: "soon", code: 500,
			has: []string{"Failed to parse timeout from Prometheus header"}},
		{name: "default_module_is_http_2xx", query: "target=" + url.QueryEscape(web.URL), code: 200,
			has: []string{"probe_http_status_code 200", "probe_success 1"}},
		{name: "debug", query: "module=tcp_connect&debug=true&target=" + target, code: 200,
			has: []string{"Logs for the probe:\n", "msg=\"Beginning probe\"", "msg=\"Probe succeeded\"",
				"Metrics that would have been returned:\n", "probe_success 1", "Module configuration:\nprober: tcp\n"}},
		{name: "refused_is_probe_success_0", query: "module=tcp_connect&debug=true&target=" + closedPort(t), code: 200,
			has: []string{"probe_success 0", "class=refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base+"/probe?"+tc.query, nil)
			if tc.header != "" {
				req.Header.Set(ScrapeTimeoutHeader, tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b strings.Builder
			if _, err := io.Copy(&b, resp.Body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.code {
				t.Fatalf("%d %q, want %d", resp.StatusCode, b.String(), tc.code)
			}
			for _, h := range tc.has {
				if !strings.Contains(b.String(), h) {
					t.Errorf("answer lacks %q:\n%s", h, b.String())
				}
			}
		})
	}
}

// closedPort returns a loopback host:port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestProbeTimeout(t *testing.T) {
	tests := []struct {
		name   string
		header string
		module time.Duration
		want   time.Duration
	}{
		{"no_header_no_module", "", 0, 119500 * time.Millisecond},
		{"header_only", "10", 0, 9500 * time.Millisecond},
		{"module_shorter", "10", 5 * time.Second, 5 * time.Second},
		{"module_longer", "10", 15 * time.Second, 9500 * time.Millisecond},
		{"header_below_offset", "0.2", 5 * time.Second, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/probe", nil)
			if tc.header != "" {
				r.Header.Set(ScrapeTimeoutHeader, tc.header)
			}
			got, err := probeTimeout(r, tc.module)
			if err != nil || got != tc.want {
				t.Errorf("%v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestDenyPolicy: a target at the metadata address is probe_success 0 without a packet sent, for tcp, http
// and icmp modules; --allow lifts the policy and the same probe reaches it. Inside a new network namespace
// whose only interface is loopback (holding 169.254.169.254), so nothing could leave the host either way.
func TestDenyPolicy(t *testing.T) {
	metadata := netip.MustParseAddr("169.254.169.254")
	ns := testnet.NewLoopbackNS(t, metadata)
	var ln net.Listener
	if err := ns.Enter(func() (err error) { ln, err = net.Listen("tcp", "169.254.169.254:80"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	const cfg = "modules:\n  tcp_connect:\n    prober: tcp\n  http_2xx:\n    prober: http\n  icmp:\n    prober: icmp\n    timeout: 2s\n"
	_, denied := newExporter(t, cfg, func(c *prober.Config) { c.Enter = ns.Enter })
	_, allowed := newExporter(t, cfg, func(c *prober.Config) {
		c.Enter = ns.Enter
		c.Allow = append(c.Allow, netip.MustParsePrefix("169.254.0.0/16"))
	})
	for _, q := range []string{"module=tcp_connect&target=169.254.169.254:80", "module=http_2xx&target=http://169.254.169.254/",
		"module=icmp&target=169.254.169.254"} {
		t.Run(strings.SplitN(strings.TrimPrefix(q, "module="), "&", 2)[0], func(t *testing.T) {
			before := ns.Packets(t)
			_, body := get(t, denied+"/probe?debug=true&"+q)
			if !strings.Contains(body, "probe_success 0") || !strings.Contains(body, "class=policy") {
				t.Errorf("denied: want probe_success 0 refused by policy:\n%s", body)
			}
			if after := ns.Packets(t); after != before {
				t.Errorf("denied: %d packets sent, want none", after-before)
			}
			if v := value(scrape(t, allowed+"/probe?"+q), "probe_success"); v != 1 {
				t.Errorf("with --allow 169.254.0.0/16: probe_success %v, want 1", v)
			}
			if after := ns.Packets(t); after == before {
				t.Errorf("with --allow: no packet sent")
			}
		})
	}
}
