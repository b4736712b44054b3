package testbed

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

func TestAnycast(t *testing.T) {
	tb := startTestbed(t, DefaultSpec())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	edge := mustAnycast(t, tb, "edge")
	for _, tc := range []struct {
		name, from, want, city string
	}{
		{"from_SYD_to_sydney", "SYD", "edge-syd", "Sydney"},
		{"from_FRA_to_frankfurt", "FRA", "edge-fra", "Frankfurt"},
		{"from_ORD_to_ashburn", "ORD", "edge-iad", "Ashburn"},
		{"from_HKG_to_singapore", "HKG", "edge-sin", "Singapore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := tb.Node(tc.from)
			truth, err := tb.AnycastInstance("edge", tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if truth.Name != tc.want {
				t.Fatalf("AnycastInstance(edge, %s) = %s, want %s", tc.from, truth.Name, tc.want)
			}
			res := httpGet(t, ctx, from, "http://"+edge.String()+"/")
			if got := res.Header.Get(HeaderNode); got != tc.want || res.Header.Get(HeaderCity) != tc.city {
				t.Errorf("anycast %v from %s answered by %q in %q, want %s in %s", edge, tc.from, got, res.Header.Get(HeaderCity), tc.want, tc.city)
			}
			// The handshake's RTT is the one to the nearest instance: a reply from a farther one could not be
			// this fast, since the next nearest instance is beyond the tolerance.
			want, err := tb.RTT(tc.from, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			next := nextInstanceRTT(t, tb, "edge", tc.from, tc.want)
			if next-delayTolerance(next) <= want+delayTolerance(want) {
				t.Fatalf("the next instance from %s is %v away, %s %v: the tolerance cannot tell them apart", tc.from, next, tc.want, want)
			}
			t.Logf("%s: nearest instance %s at %v, the next nearest at %v", tc.from, tc.want, want, next)
			addr := net.JoinHostPort(edge.String(), "443")
			assertRTT(t, tc.from+" -> edge ("+tc.want+")", want, func() ([]time.Duration, []time.Duration, error) {
				return connectRTTsKernel(ctx, from.DialContext, addr, 7)
			})
		})
	}
	t.Run("failover_when_sydney_is_down", func(t *testing.T) {
		if err := tb.SetDown("edge-syd", true); err != nil {
			t.Fatal(err)
		}
		defer tb.SetDown("edge-syd", false)
		next, err := tb.AnycastInstance("edge", "SYD")
		if err != nil {
			t.Fatal(err)
		}
		if next.Name == "edge-syd" {
			t.Fatal("AnycastInstance still chooses the down instance")
		}
		res := httpGet(t, ctx, tb.Node("SYD"), "http://"+edge.String()+"/")
		if got := res.Header.Get(HeaderNode); got != next.Name {
			t.Errorf("with edge-syd down, SYD reached %q, want %q", got, next.Name)
		}
	})
}

// nextInstanceRTT returns the emulated RTT from node from to the nearest instance of anycast name other than
// nearest.
func nextInstanceRTT(t testing.TB, tb *Testbed, name, from, nearest string) time.Duration {
	t.Helper()
	var next time.Duration
	for _, ac := range tb.AnycastTargets() {
		if ac.Name != name {
			continue
		}
		for _, in := range ac.Instances {
			if in.Name == nearest {
				continue
			}
			rtt, err := tb.RTT(from, in.Name)
			if err != nil {
				t.Fatal(err)
			}
			if next == 0 || rtt < next {
				next = rtt
			}
		}
	}
	if next == 0 {
		t.Fatalf("anycast %s has no instance besides %s", name, nearest)
	}
	return next
}

func TestGeoDNS(t *testing.T) {
	tb := startTestbed(t, DefaultSpec())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	server, _ := tb.DNSServer()
	name := "www." + tb.Zone()
	for _, tc := range []struct{ from, want string }{
		{"FRA", "web-eu"}, {"LHR", "web-eu"}, {"IAD", "web-us"}, {"ORD", "web-us"}, {"SIN", "web-ap"}, {"SYD", "web-ap"},
	} {
		t.Run("from_"+tc.from, func(t *testing.T) {
			truth, err := tb.GeoDNS("www", tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if truth.Name != tc.want {
				t.Fatalf("GeoDNS(www, %s) = %s, want %s", tc.from, truth.Name, tc.want)
			}
			r := dnsQuery(t, ctx, tb.Node(tc.from), server, name)
			if got := answerA(r); got != truth.Addr() {
				t.Errorf("www from %s: A %v (%v), want %v (%s)", tc.from, got, tb.NodeByAddr(got), truth.Addr(), tc.want)
			}
		})
	}
	t.Run("replica_down", func(t *testing.T) {
		if err := tb.SetDown("web-eu", true); err != nil {
			t.Fatal(err)
		}
		defer tb.SetDown("web-eu", false)
		r := dnsQuery(t, ctx, tb.Node("FRA"), server, name)
		got := tb.NodeByAddr(answerA(r))
		if got == nil || got.Name == "web-eu" {
			t.Errorf("with web-eu down, www from FRA is %v", got)
		}
	})
}

func TestRuntimeControl(t *testing.T) {
	tb := startTestbed(t, DefaultSpec())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fra, db := tb.Node("FRA"), tb.Node("db")
	addr := net.JoinHostPort(db.Addr().String(), "5432")

	t.Run("set_delay", func(t *testing.T) {
		if err := tb.SetDelay("FRA", "db", 15*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if rtt, _ := tb.RTT("FRA", "db"); rtt != 30*time.Millisecond {
			t.Fatalf("RTT(FRA, db) = %v after SetDelay 15 ms", rtt)
		}
		assertRTT(t, "FRA -> db after SetDelay(15 ms)", 30*time.Millisecond, func() ([]time.Duration, []time.Duration, error) {
			return connectRTTsKernel(ctx, fra.DialContext, addr, 7)
		})
	})
	t.Run("loss", func(t *testing.T) {
		before := tb.Stats().DroppedLoss
		if err := tb.SetLoss("FRA", "db", 1); err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		c, err := fra.DialContext(dctx, "tcp", addr)
		dcancel()
		if err == nil {
			c.Close()
			t.Fatal("connected through 100% loss")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("dial through 100%% loss: %v, want a timeout", err)
		}
		// The SYN reached the router before the dial gave up; poll for the count rather than assume the
		// router's loop has already run on a busy machine.
		for deadline := time.Now().Add(5 * time.Second); tb.Stats().DroppedLoss == before && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if tb.Stats().DroppedLoss == before {
			t.Error("no loss drop counted")
		}
		if err := tb.SetLoss("FRA", "db", 0); err != nil {
			t.Fatal(err)
		}
		c, err = fra.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("after loss 0: %v", err)
		}
		c.Close()
	})
	t.Run("down_and_up", func(t *testing.T) {
		if err := tb.SetDown("db", true); err != nil {
			t.Fatal(err)
		}
		if !tb.IsDown("db") {
			t.Fatal("IsDown(db) is false after SetDown")
		}
		out, err := fra.Command(ctx, "ping", "-c", "1", "-W", "1", db.Addr().String()).CombinedOutput()
		if err == nil {
			t.Errorf("ping to a down host answered:\n%s", out)
		}
		if err := tb.SetDown("db", false); err != nil {
			t.Fatal(err)
		}
		if out, err := fra.Command(ctx, "ping", "-c", "1", "-W", "2", db.Addr().String()).CombinedOutput(); err != nil {
			t.Errorf("ping after up: %v\n%s", err, out)
		}
	})
	t.Run("bad_arguments", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			err  error
			want string
		}{
			{"unknown_node", tb.SetDelay("FRA", "nope", time.Millisecond), `no node "nope"`},
			{"negative_delay", tb.SetDelay("FRA", "db", -time.Millisecond), "is negative"},
			{"loss_above_1", tb.SetLoss("FRA", "db", 1.5), "outside [0, 1]"},
			{"self", tb.SetLoss("FRA", "FRA", 0.5), "loopback"},
			{"down_unknown", tb.SetDown("XXX", true), `no node "XXX"`},
		} {
			if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one containing %q", tc.name, tc.err, tc.want)
			}
		}
	})
}

// TestNothingLeavesTheTestbed checks that a namespace has no route outside WANPrefix and that the router drops
// and counts packets whose source or destination is outside the testbed's subnet.
func TestNothingLeavesTheTestbed(t *testing.T) {
	tb := startTestbed(t, DefaultSpec())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fra, db := tb.Node("FRA"), tb.Node("db")

	t.Run("no_route_out", func(t *testing.T) {
		// `ip route get` asks the kernel's routing decision without sending anything.
		out, err := fra.Command(ctx, "ip", "-4", "route", "get", "203.0.113.7").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unreachable") {
			t.Errorf("route to 203.0.113.7 from a node: %v: %s", err, out)
		}
		out, err = fra.Command(ctx, "ip", "-4", "route", "show", "table", "all").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			// Only the WAN route and the kernel's own local/broadcast entries for the node's addresses.
			if !strings.HasPrefix(l, WANPrefix.String()+" dev "+tunName) && !strings.HasPrefix(l, "local ") && !strings.HasPrefix(l, "broadcast ") {
				t.Errorf("unexpected route in %s: %q", fra.NS, l)
			}
		}
	})
	t.Run("outside_subnet_dropped", func(t *testing.T) {
		before := tb.Stats().DroppedOutside
		// Another testbed's share of WANPrefix: routed into the TUN, refused by this testbed's router.
		other := subnet((tb.lease.id + 1) % MaxTestbeds).Addr().Next()
		if err := fra.Do(func() error {
			c, err := net.Dial("udp4", net.JoinHostPort(other.String(), "9"))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("must not leave"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// A spoofed source outside the subnet, sent through a raw socket.
		if err := fra.Do(func() error { return sendSpoofed(netip.MustParseAddr("192.0.2.1"), db.Addr()) }); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for tb.Stats().DroppedOutside < before+2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := tb.Stats().DroppedOutside - before; got != 2 {
			t.Errorf("router counted %d packets outside %v, want 2", got, tb.Prefix())
		}
	})
}

// sendSpoofed sends one UDP packet with source src to dst through a raw socket (IP_HDRINCL) of the calling
// thread's namespace.
func sendSpoofed(src, dst netip.Addr) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	pkt := ipv4(src, dst, 42)
	pkt[22], pkt[23] = 0, 9 // UDP destination port 9
	pkt[24], pkt[25] = 0, 8 // UDP length
	return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
}

func TestMetrics(t *testing.T) {
	spec, err := ParseSpec(strings.NewReader(hygieneSpec), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	tb := startTestbed(t, spec)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(tb.Collector()); err != nil {
		t.Fatal(err)
	}
	if err := tb.SetDown("db", true); err != nil {
		t.Fatal(err)
	}
	if out, err := tb.Node("FRA").Command(context.Background(), "ping", "-c", "1", "-W", "1", tb.Node("db").Addr().String()).CombinedOutput(); err == nil {
		t.Fatalf("ping to a down node answered: %s", out)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					key += "{" + l.GetValue() + "}"
				}
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if len(got) != 5+len(dropReasons) {
		t.Errorf("%d series, want %d: %v", len(got), 5+len(dropReasons), got)
	}
	if got["vantage_testbed_packets_dropped_total{down}"] < 1 || got["vantage_testbed_nodes_down"] != 1 {
		t.Errorf("down drops %v, nodes down %v; want >= 1 and 1", got["vantage_testbed_packets_dropped_total{down}"], got["vantage_testbed_nodes_down"])
	}
}
