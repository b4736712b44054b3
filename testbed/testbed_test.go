package testbed

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testLogger logs through t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startTestbed starts spec and registers its Close, checking afterwards that nothing of it is left.
func startTestbed(t testing.TB, spec *Spec) *Testbed {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	tb, err := Start(ctx, spec, Options{Logger: testLogger(t), Nice: -10})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testbed %s (%v) with %d nodes up in %v", tb.Name(), tb.Prefix(), len(tb.Nodes()), time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		assertGone(t, tb.Name())
	})
	return tb
}

// assertGone checks that no namespace and no state of testbed name is left, and that the host has no link
// or route of the testbed.
func assertGone(t testing.TB, name string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, name+"-") {
			t.Errorf("namespace %q is left after close", l)
		}
	}
	if _, err := os.Stat(filepath.Join(StateDir, strings.TrimPrefix(name, "vt")+".json")); err == nil {
		t.Errorf("state file of %s is left", name)
	}
	links, err := exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, links)
	}
	if strings.Contains(string(links), tunName) {
		t.Errorf("a %s link is in the host namespace:\n%s", tunName, links)
	}
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, routes)
	}
	if strings.Contains(string(routes), "198.18.") || strings.Contains(string(routes), "198.19.") {
		t.Errorf("a route to %v is in the host namespace:\n%s", WANPrefix, routes)
	}
}

func TestDefaultTestbedServices(t *testing.T) {
	tb := startTestbed(t, DefaultSpec())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !tb.Prefix().Overlaps(WANPrefix) || tb.Prefix().Bits() != SubnetBits {
		t.Fatalf("prefix %v is not a /%d of %v", tb.Prefix(), SubnetBits, WANPrefix)
	}
	fra, db, api, ns := tb.Node("FRA"), tb.Node("db"), tb.Node("api"), tb.Node("ns")
	for _, n := range []*Node{fra, db, api, ns} {
		if n == nil {
			t.Fatal("default spec lacks FRA, db, api or ns")
		}
	}
	t.Run("tcp_5432_on_db", func(t *testing.T) {
		c, err := fra.DialContext(ctx, "tcp", "db:5432")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if c, err := fra.DialContext(ctx, "tcp", "db:5433"); err == nil {
			c.Close()
			t.Error("db:5433 accepted a connection; only 5432 is served")
		}
	})
	t.Run("http_on_api", func(t *testing.T) {
		res := httpGet(t, ctx, fra, "http://"+api.Addr().String()+"/")
		if res.Header.Get(HeaderNode) != "api" || res.Header.Get(HeaderCity) != "Ashburn" {
			t.Errorf("api answered as %q in %q", res.Header.Get(HeaderNode), res.Header.Get(HeaderCity))
		}
	})
	t.Run("dns_names", func(t *testing.T) {
		dnsAddr, ok := tb.DNSServer()
		if !ok {
			t.Fatal("no DNS server")
		}
		for _, tc := range []struct {
			name  string
			q     string
			rcode int
			want  netip.Addr
		}{
			{"pop", "fra." + tb.Zone(), dns.RcodeSuccess, fra.Addr()},
			{"host", "db." + tb.Zone(), dns.RcodeSuccess, db.Addr()},
			{"anycast", "edge." + tb.Zone(), dns.RcodeSuccess, mustAnycast(t, tb, "edge")},
			{"unknown_in_zone", "nope." + tb.Zone(), dns.RcodeNameError, netip.Addr{}},
			{"outside_zone", "example.com.", dns.RcodeRefused, netip.Addr{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := dnsQuery(t, ctx, fra, dnsAddr, tc.q)
				if r.Rcode != tc.rcode {
					t.Fatalf("%s: rcode %s, want %s", tc.q, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := answerA(r); got != tc.want {
					t.Errorf("%s: A %v, want %v", tc.q, got, tc.want)
				}
			})
		}
	})
	t.Run("icmp_off_on_mumbai", func(t *testing.T) {
		out, err := fra.Command(ctx, "ping", "-c", "1", "-W", "1", tb.Node("mumbai").Addr().String()).CombinedOutput()
		if err == nil {
			t.Errorf("mumbai answered ping with icmp: false:\n%s", out)
		}
		out, err = fra.Command(ctx, "ping", "-c", "1", "-W", "2", db.Addr().String()).CombinedOutput()
		if err != nil {
			t.Errorf("db did not answer ping: %v\n%s", err, out)
		}
	})
	t.Run("unix_socket_on_host", func(t *testing.T) {
		// Unix sockets live in the file system, not in the network namespace: a node reaches the host's.
		sock := filepath.Join(t.TempDir(), "ctl.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("hello from the host\n"))
				c.Close()
			}
		}()
		var got []byte
		if err := fra.Do(func() error {
			c, err := net.Dial("unix", sock)
			if err != nil {
				return err
			}
			defer c.Close()
			got, err = io.ReadAll(c)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if string(got) != "hello from the host\n" {
			t.Errorf("read %q through the unix socket", got)
		}
	})
}

func mustAnycast(t testing.TB, tb *Testbed, name string) netip.Addr {
	t.Helper()
	a, ok := tb.AnycastAddr(name)
	if !ok {
		t.Fatalf("no anycast address %q", name)
	}
	return a
}

// httpGet fetches url from inside node n.
func httpGet(t testing.TB, ctx context.Context, n *Node, url string) *http.Response {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	return res
}

// dnsQuery asks server for the A record of name from inside node n.
func dnsQuery(t testing.TB, ctx context.Context, n *Node, server netip.AddrPort, name string) *dns.Msg {
	t.Helper()
	conn, err := n.DialContext(ctx, "udp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &dns.Client{}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := c.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: conn})
	if err != nil {
		t.Fatalf("dns %s from %s: %v", name, n.Name, err)
	}
	return r
}

func answerA(m *dns.Msg) netip.Addr {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A)
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
