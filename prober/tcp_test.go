package prober

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vantage-edge/vantage/internal/testwait"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"golang.org/x/sys/unix"
)

func TestTCPProbeSuccess(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	e := newEngine(t, nil)
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 3})
	if !r.Success || r.Class != ClassNone || r.Err != nil {
		t.Fatalf("probe failed: class %q, err %v", r.Class, r.Err)
	}
	if r.Sent != 3 || r.Received != 3 || len(r.Samples) != 3 || r.Loss != 0 {
		t.Errorf("sent %d received %d samples %d loss %v, want 3/3/3/0", r.Sent, r.Received, len(r.Samples), r.Loss)
	}
	if r.IP != netip.MustParseAddr("127.0.0.1") || r.Source != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("ip %v source %v, want 127.0.0.1 both", r.IP, r.Source)
	}
	for _, s := range r.Samples {
		// A loopback handshake takes microseconds; a second means the timing is measuring something else.
		if s <= 0 || time.Duration(s) > time.Second {
			t.Errorf("sample %v out of (0, 1s]", s)
		}
		if s < r.Min {
			t.Errorf("sample %v below min %v", s, r.Min)
		}
	}
	if r.Median < r.Min {
		t.Errorf("median %v < min %v", r.Median, r.Min)
	}
	testwait.Eventually(t, 5*time.Second, "3 accepted connections", func() bool { return a.count() == 3 })

	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if back.Kind != r.Kind || back.IP != r.IP || len(back.Samples) != 3 || back.Median != r.Median ||
		!back.Start.Equal(r.Start) || back.Success != true {
		t.Errorf("JSON round trip lost data:\n%s\n%+v", b, back)
	}
	if !strings.Contains(string(b), `"samples_ms":[`) || !strings.Contains(string(b), `"kind":"tcp"`) {
		t.Errorf("JSON %s lacks samples_ms or kind", b)
	}
}

func TestTCPProbeFailures(t *testing.T) {
	unreachable := emptyNetnsOrNil(t)
	tests := []struct {
		name    string
		addr    string
		mod     func(*Config)
		timeout time.Duration
		class   Class
		errHas  string
	}{
		{name: "refused", addr: closedPort(t), class: ClassRefused, errHas: "connection refused"},
		{name: "timeout_full_backlog", addr: fullBacklog(t), timeout: 300 * time.Millisecond, class: ClassTimeout},
		{name: "policy_loopback_without_allow", addr: "127.0.0.1:80", mod: func(c *Config) { c.Allow = nil },
			class: ClassPolicy, errHas: "rule loopback"},
		{name: "no_port", addr: "127.0.0.1", class: ClassOther, errHas: "want host:port"},
		{name: "bad_port", addr: "127.0.0.1:99999", class: ClassOther, errHas: `port "99999"`},
		{name: "bad_host", addr: "exa mple:80", class: ClassOther, errHas: "not an IP address or a host name"},
		{name: "dns_not_found", addr: "nowhere.invalid:80", class: ClassDNS, errHas: "nowhere.invalid",
			mod: func(c *Config) { c.Resolver = newFakeResolver(nil) }},
	}
	if unreachable != nil {
		tests = append(tests, struct {
			name    string
			addr    string
			mod     func(*Config)
			timeout time.Duration
			class   Class
			errHas  string
		}{name: "unreachable_emulated_wan_no_route", addr: "198.18.0.1:80",
			mod: func(c *Config) {
				c.Enter = unreachable
				c.Allow = append(c.Allow, netip.MustParsePrefix("198.18.0.0/15")) // as probed on the emulated WAN
			}, class: ClassUnreachable, errHas: "unreachable"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, tc.mod)
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: tc.addr, Count: 2, Timeout: tc.timeout})
			if r.Success || r.Class != tc.class {
				t.Fatalf("class %q (success %v, err %v), want %q", r.Class, r.Success, r.Err, tc.class)
			}
			if r.Error == "" || !strings.Contains(r.Error, tc.errHas) {
				t.Errorf("error %q does not contain %q", r.Error, tc.errHas)
			}
			if len(r.Samples) != 0 || (r.Sent > 0 && r.Loss != 1) {
				t.Errorf("samples %v loss %v on a failed probe", r.Samples, r.Loss)
			}
		})
	}
}

// emptyNetnsOrNil is emptyNetns, or nil when not root (the unreachable case is then left out).
func emptyNetnsOrNil(t *testing.T) EnterFunc {
	t.Helper()
	if !isRoot() {
		t.Log("not root: the unreachable case (needs a network namespace) is skipped")
		return nil
	}
	return emptyNetns(t)
}

func TestTCPCloseModes(t *testing.T) {
	tests := []struct {
		name  string
		close CloseMode
		want  func(error) bool
	}{
		{"rst_default", CloseRST, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{"fin", CloseFIN, func(err error) bool { return errors.Is(err, io.EOF) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan error, 1)
			a := listenTCP(t, "127.0.0.1:0", func(c net.Conn) {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := c.Read(make([]byte, 1))
				got <- err
			})
			e := newEngine(t, func(c *Config) { c.Close = tc.close })
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 1})
			if !r.Success {
				t.Fatalf("probe failed: %v", r.Err)
			}
			if err := <-got; !tc.want(err) {
				t.Errorf("server read after the probe closed: %v", err)
			}
		})
	}
}

func TestTCPProbeSourceAddress(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	e := newEngine(t, func(c *Config) { c.Sources = addrs("127.0.0.1") })
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 1})
	if !r.Success || r.Source != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("success %v source %v err %v, want success from 127.0.0.1", r.Success, r.Source, r.Err)
	}
	// A v6 target with only a v4 source configured cannot be probed.
	r = e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: "[::1]:9", Count: 1})
	if r.Success || !strings.Contains(r.Error, "no source address") {
		t.Errorf("v6 target with a v4 source: success %v err %q", r.Success, r.Error)
	}
}

func TestTCPProbeCancelled(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	e := newEngine(t, func(c *Config) { c.Interval = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 3})
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("probe ignored ctx: took %v", el)
	}
	// The first sample was answered before the hour-long pause was cut short: a partial result, not a failure.
	if !r.Success || r.Received != 1 || r.Sent != 1 {
		t.Errorf("success %v sent %d received %d err %v, want the one sample taken", r.Success, r.Sent, r.Received, r.Err)
	}
}

func TestUnknownKind(t *testing.T) {
	e := newEngine(t, nil)
	r := e.Probe(context.Background(), Target{Kind: "smtp", Addr: "127.0.0.1:25"})
	if r.Success || r.Class != ClassOther || !strings.Contains(r.Error, `"smtp"`) {
		t.Errorf("unknown kind: success %v class %q err %q", r.Success, r.Class, r.Error)
	}
}

func TestStartFromInjectedClock(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	clk := newFakeClock()
	e := newEngine(t, func(c *Config) { c.Clock = clk; c.Interval = -1 })
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 2})
	if !r.Success {
		t.Fatal(r.Err)
	}
	if !r.Start.Equal(clk.Now()) || r.Duration != 0 {
		t.Errorf("start %v duration %v, want the fake clock's %v and 0", r.Start, r.Duration, clk.Now())
	}
	for _, s := range r.Samples {
		if s != 0 {
			t.Errorf("sample %v timed on the real clock, want 0 from the frozen fake clock", s)
		}
	}
}

// TestTCPSlowHandshake takes the netpoller path: the first SYN is dropped by a full accept queue, a slot is
// freed, and the kernel's SYN retransmission (1 s later) completes the handshake.
func TestTCPSlowHandshake(t *testing.T) {
	addr, fd := fullBacklogFD(t)
	e := newEngine(t, nil)
	done := make(chan Result, 1)
	go func() {
		done <- e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: addr, Count: 1, Timeout: 5 * time.Second})
	}()
	// Free the slot only once the probe's SYN is out (and dropped): a probe goroutine slow to start on a
	// loaded machine would otherwise find the slot free and complete at once.
	testwait.Eventually(t, 5*time.Second, "the probe's SYN to "+addr, func() bool { return synSent(t, addr) })
	time.Sleep(200 * time.Millisecond)
	c, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC) // frees one slot of the accept queue
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(c)
	r := <-done
	if !r.Success || len(r.Samples) != 1 {
		t.Fatalf("success %v samples %v err %v", r.Success, r.Samples, r.Err)
	}
	// The initial RTO is 1 s: the RTT measured includes the retransmission, as it should.
	if got := time.Duration(r.Samples[0]); got < 900*time.Millisecond || got > 4*time.Second {
		t.Errorf("handshake took %v, want about 1 s (one SYN retransmission)", got)
	}
}

func TestTCPWaitHonoursContext(t *testing.T) {
	addr := fullBacklog(t)
	e := newEngine(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: addr, Count: 1, Timeout: 10 * time.Second})
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("probe took %v: the connect wait ignored ctx", el)
	}
	if r.Success || r.Class != ClassTimeout || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Errorf("class %q err %v, want timeout from the context deadline", r.Class, r.Err)
	}
}

func TestTCPProbeIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("skipping: no ::1 on this host")
	}
	a := listenTCP(t, "[::1]:0", nil)
	res := newFakeResolver(map[string][][]netip.Addr{"v6.test": {addrs("::1", "127.0.0.1")}})
	e := newEngine(t, func(c *Config) { c.Resolver = res; c.IPProtocol = IP6; c.Sources = addrs("127.0.0.1", "::1") })
	_, port, _ := net.SplitHostPort(a.addr())
	for _, target := range []string{a.addr(), "v6.test:" + port} {
		r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: target, Count: 2})
		if !r.Success || r.IP != netip.MustParseAddr("::1") || r.Source != netip.MustParseAddr("::1") {
			t.Errorf("%s: success %v ip %v source %v err %v, want ::1 from ::1", target, r.Success, r.IP, r.Source, r.Err)
		}
	}
}

// synSent reports whether a socket of this network namespace is in SYN_SENT towards the IPv4 addr
// ("ip:port"), from /proc/net/tcp.
func synSent(t *testing.T, addr string) bool {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	ip := ap.Addr().As4()
	// /proc/net/tcp prints the address as the host-order integer of its network-order bytes.
	want := fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip[:]), ap.Port())
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// sl local_address rem_address st ...; st 02 is SYN_SENT.
		if f := strings.Fields(line); len(f) > 3 && f[2] == want && f[3] == "02" {
			return true
		}
	}
	return false
}
