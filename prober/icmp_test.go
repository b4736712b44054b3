package prober

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/placement"
)

func TestICMPProbeRaw(t *testing.T) {
	needRoot(t, "a raw ICMP socket")
	targets := []string{"127.0.0.1"}
	if hasIPv6Loopback() {
		targets = append(targets, "::1")
	} else {
		t.Log("no ::1 on this host: IPv6 echo not tested")
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			e := newEngine(t, nil)
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeICMP, Addr: target, Count: 3})
			if !r.Success || r.Sent != 3 || len(r.Samples) != 3 || r.Loss != 0 {
				t.Fatalf("success %v sent %d samples %d loss %v err %v", r.Success, r.Sent, len(r.Samples), r.Loss, r.Err)
			}
			for _, s := range r.Samples {
				if s <= 0 || s > Duration(1e9) {
					t.Errorf("sample %v out of (0, 1s]", s)
				}
			}
		})
	}
}

// TestICMPProbeUnprivileged forces a datagram ICMP socket: it works when our group is inside
// net.ipv4.ping_group_range, and otherwise fails with an error that says why.
func TestICMPProbeUnprivileged(t *testing.T) {
	allowed, rng := pingGroupAllows(t, os.Getegid())
	no := false
	e := newEngine(t, func(c *Config) { c.ICMPPrivileged = &no })
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeICMP, Addr: "127.0.0.1", Count: 2})
	if allowed {
		if !r.Success || len(r.Samples) != 2 {
			t.Fatalf("group %d is in ping_group_range %q but the unprivileged probe failed: %v", os.Getegid(), rng, r.Err)
		}
		return
	}
	if r.Success || !errors.Is(r.Err, ErrICMPNotPermitted) || !strings.Contains(r.Error, "ping_group_range") {
		t.Fatalf("success %v err %v, want ErrICMPNotPermitted naming ping_group_range", r.Success, r.Err)
	}
	t.Logf("clear error, as wanted: %s", r.Error)
}

func TestICMPProbeUnreachable(t *testing.T) {
	enter := emptyNetns(t)
	e := newEngine(t, func(c *Config) {
		c.Enter = enter
		c.Allow = append(c.Allow, netip.MustParsePrefix("198.18.0.0/15")) // as probed on the emulated WAN
	})
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeICMP, Addr: "198.18.0.1", Count: 2, Timeout: 200e6})
	if r.Success || r.Class != ClassUnreachable || len(r.Samples) != 0 {
		t.Fatalf("class %q samples %d err %v, want unreachable and no samples", r.Class, len(r.Samples), r.Err)
	}
}

// pingGroupAllows reports whether gid is inside net.ipv4.ping_group_range, and the range.
func pingGroupAllows(t *testing.T, gid int) (bool, string) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		t.Skipf("skipping: no ping_group_range: %v", err)
	}
	f := strings.Fields(string(b))
	lo, _ := strconv.Atoi(f[0])
	hi, _ := strconv.Atoi(f[1])
	return lo <= gid && gid <= hi, strings.Join(f, " ")
}

func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
