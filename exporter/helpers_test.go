package exporter

import (
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/prober"
)

// BlackboxBin is Debian's blackbox_exporter (package prometheus-blackbox-exporter).
const BlackboxBin = "/usr/bin/prometheus-blackbox-exporter"

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// newExporter returns an Exporter of the configuration text cfg, allowed to probe loopback, serving /probe on
// a loopback httptest server; it returns the server's URL.
func newExporter(t *testing.T, cfg string, mod func(*prober.Config)) (*Exporter, string) {
	t.Helper()
	f, err := Parse("test.yml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	pc := prober.DefaultConfig()
	pc.Allow = loopback
	if mod != nil {
		mod(&pc)
	}
	x, err := New(Config{File: f, Prober: pc, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	mux := http.NewServeMux()
	mux.Handle("GET /probe", x)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return x, srv.URL
}

// startBlackbox runs Debian's blackbox_exporter with the configuration text cfg on a loopback port until the
// test ends, and returns its URL; the test is skipped when it is not installed.
func startBlackbox(t *testing.T, cfg string) string {
	t.Helper()
	if _, err := os.Stat(BlackboxBin); err != nil {
		t.Skipf("skipping: blackbox_exporter is not installed (%v): apt-get install prometheus-blackbox-exporter", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "blackbox.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(BlackboxBin, "--config.file="+path, "--web.listen-address="+addr, "--log.level=warn")
	out, err := os.Create(filepath.Join(dir, "blackbox.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr, cmd.Dir = out, out, dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("blackbox_exporter's log:\n%s", b)
		}
	})
	url := "http://" + addr
	testwait.Eventually(t, 30*time.Second, "blackbox_exporter answering /-/healthy", func() bool {
		resp, err := http.Get(url + "/-/healthy")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return url
}

// scrape GETs url and parses the Prometheus text it answers.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %q", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: parsing the answer: %v\n%s", url, err, body)
	}
	return mfs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// names returns the metric names of mfs, sorted; with labels, each name carries its label names too, e.g.
// probe_http_duration_seconds{phase}.
func names(mfs map[string]*dto.MetricFamily, labels bool) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(mfs)) {
		if !labels {
			out = append(out, n)
			continue
		}
		var ls []string
		for _, m := range mfs[n].Metric {
			for _, l := range m.Label {
				if !slices.Contains(ls, l.GetName()) {
					ls = append(ls, l.GetName())
				}
			}
		}
		slices.Sort(ls)
		if len(ls) > 0 {
			n += "{" + strings.Join(ls, ",") + "}"
		}
		out = append(out, n)
	}
	return out
}

// value returns the value of the first series of name in mfs, or NaN-like -1 when missing.
func value(mfs map[string]*dto.MetricFamily, name string) float64 {
	mf, ok := mfs[name]
	if !ok || len(mf.Metric) == 0 {
		return -1
	}
	return mf.Metric[0].GetGauge().GetValue()
}

// dnsServer serves example.test (A 192.0.2.1, data only) and an SOA for test. on 127.0.0.1, UDP and TCP on
// one port, until the test ends; it returns the address.
func dnsServer(t *testing.T) string {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		switch {
		case q.Name == "example.test." && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			rr, _ := dns.NewRR("example.test. 300 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case q.Name == "test." && q.Qtype == dns.TypeSOA:
			rr, _ := dns.NewRR("test. 300 IN SOA ns.test. admin.test. 2026120301 3600 600 86400 60")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	return testnet.DNSServer(t, h)
}
