package prober

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/vantage-edge/vantage/placement"
)

// connects returns the Engine's counts of TCP connects on new and on reused sockets.
func connects(e *Engine) (created, reused int) {
	value := func(c prometheus.Counter) int {
		var m dto.Metric
		if err := c.Write(&m); err != nil {
			panic(err)
		}
		return int(m.GetCounter().GetValue())
	}
	return value(e.metrics.tcpConnects.created), value(e.metrics.tcpConnects.reused)
}

// idleCount returns the number of sockets kept for k.
func (p *socketPool) idleCount(k socketKey) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[k])
}

// peers records, per accepted connection, the peer's address and how the prober ended the connection (the
// error of a read: ECONNRESET for a RST, io.EOF for a FIN).
type peers struct {
	mu    sync.Mutex
	addrs []netip.AddrPort
	ends  []error
}

func listenPeers(t *testing.T) (*acceptor, *peers) {
	p := &peers{}
	a := listenTCP(t, "127.0.0.1:0", func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		p.mu.Lock()
		defer p.mu.Unlock()
		p.addrs = append(p.addrs, netip.MustParseAddrPort(c.RemoteAddr().String()))
		p.ends = append(p.ends, err)
	})
	return a, p
}

func (p *peers) wait(t *testing.T, n int) ([]netip.AddrPort, []error) {
	t.Helper()
	testwait.Eventually(t, 5*time.Second, "the listener's reads", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.ends) >= n })
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]netip.AddrPort(nil), p.addrs...), append([]error(nil), p.ends...)
}

func TestTCPSocketReuse(t *testing.T) {
	src := netip.MustParseAddr("127.0.0.2") // any address of lo's 127.0.0.0/8
	tests := []struct {
		name                string
		mod                 func(*Config)
		wantNew, wantReused int
		wantIdle            int
		wantEnd             func(error) bool
		wantSrc             netip.Addr
	}{
		{name: "rst_reuses_one_socket", wantNew: 1, wantReused: 2, wantIdle: 1,
			wantEnd: func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }, wantSrc: netip.MustParseAddr("127.0.0.1")},
		{name: "bound_source_stays_bound", mod: func(c *Config) { c.Sources = []netip.Addr{src} }, wantNew: 1, wantReused: 2, wantIdle: 1,
			wantEnd: func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }, wantSrc: src},
		{name: "fin_never_reuses", mod: func(c *Config) { c.Close = CloseFIN }, wantNew: 3,
			wantEnd: func(err error) bool { return err != nil && err.Error() == "EOF" }, wantSrc: netip.MustParseAddr("127.0.0.1")},
		{name: "idle_sockets_off", mod: func(c *Config) { c.IdleSockets = -1 }, wantNew: 3,
			wantEnd: func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }, wantSrc: netip.MustParseAddr("127.0.0.1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, p := listenPeers(t)
			e := newEngine(t, tc.mod)
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 3})
			if !r.Success || r.Received != 3 || r.Source != tc.wantSrc {
				t.Fatalf("success %v received %d source %v err %v, want 3 samples from %v", r.Success, r.Received, r.Source, r.Err, tc.wantSrc)
			}
			if created, reused := connects(e); created != tc.wantNew || reused != tc.wantReused {
				t.Errorf("connects on new sockets %d, reused %d; want %d, %d", created, reused, tc.wantNew, tc.wantReused)
			}
			idle := 0
			if e.sockets != nil {
				idle = e.sockets.idleCount(socketKey{family: unix.AF_INET, src: e.cfg.sourceFor(t, r.IP)})
			}
			if idle != tc.wantIdle {
				t.Errorf("%d idle sockets, want %d", idle, tc.wantIdle)
			}
			if idle > 0 {
				// The idle socket keeps its bound address but holds no port: disconnect released it (getsockname
				// still shows the last one), so another socket can bind it.
				k := socketKey{family: unix.AF_INET, src: e.cfg.sourceFor(t, r.IP)}
				s := e.sockets.get(k)
				sa, err := unix.Getsockname(s.fd)
				if err != nil {
					t.Fatal(err)
				}
				in4 := sa.(*unix.SockaddrInet4)
				if k.src.IsValid() && netip.AddrFrom4(in4.Addr) != k.src {
					t.Errorf("idle socket bound to %v, want %v", netip.AddrFrom4(in4.Addr), k.src)
				}
				other, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				if err := unix.Bind(other, &unix.SockaddrInet4{Addr: tc.wantSrc.As4(), Port: in4.Port}); err != nil {
					// On a busy machine another process may have taken the ephemeral port since: only a port
					// nobody else is seen holding (listening or connected) counts against the idle socket.
					if holder, ok := portHolder(t, in4.Port, s.fd); ok {
						t.Logf("port %d taken since by socket %s of another connection: not checked", in4.Port, holder)
					} else {
						t.Errorf("binding %v:%d, the idle socket's last port: %v (the idle socket still holds it)", tc.wantSrc, in4.Port, err)
					}
				}
				unix.Close(other)
				e.sockets.put(k, s)
			}
			addrs, ends := p.wait(t, 3)
			seen := map[uint16]bool{}
			for i, ap := range addrs {
				if ap.Addr() != tc.wantSrc {
					t.Errorf("connection %d came from %v, want %v", i, ap, tc.wantSrc)
				}
				if seen[ap.Port()] {
					t.Errorf("connection %d reused source port %d: every connect must pick its own", i, ap.Port())
				}
				seen[ap.Port()] = true
				if !tc.wantEnd(ends[i]) {
					t.Errorf("connection %d ended with %v at the listener", i, ends[i])
				}
			}
		})
	}
}

// sourceFor returns the pool key's source for a probe of ip: the configured source of its family, or none.
func (c Config) sourceFor(t *testing.T, ip netip.Addr) netip.Addr {
	t.Helper()
	for _, s := range c.Sources {
		if s.Is4() == ip.Is4() {
			return s
		}
	}
	return netip.Addr{}
}

// TestTCPSocketReuseAfterOutcomes: a refused connect leaves a socket that serves the next probe; a timed-out
// one is closed; a socket that waited on the netpoller (a slow handshake) is reused with its registration,
// and waits again correctly.
func TestTCPSocketReuseAfterOutcomes(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	e := newEngine(t, nil)
	ctx := context.Background()
	key := socketKey{family: unix.AF_INET}
	probe := func(addr string, timeout time.Duration) Result {
		return e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: addr, Count: 1, Timeout: timeout})
	}

	if r := probe(closedPort(t), 0); r.Class != ClassRefused {
		t.Fatalf("closed port: class %q err %v, want refused", r.Class, r.Err)
	}
	if n := e.sockets.idleCount(key); n != 1 {
		t.Fatalf("%d idle sockets after a refused connect, want 1", n)
	}
	if r := probe(a.addr(), 0); !r.Success {
		t.Fatalf("probe after a refused one: %v", r.Err)
	}
	if created, reused := connects(e); created != 1 || reused != 1 {
		t.Errorf("connects on new sockets %d, reused %d; want 1, 1", created, reused)
	}

	if r := probe(fullBacklog(t), 200*time.Millisecond); r.Class != ClassTimeout {
		t.Fatalf("full backlog: class %q err %v, want timeout", r.Class, r.Err)
	}
	if n := e.sockets.idleCount(key); n != 0 {
		t.Errorf("%d idle sockets after a timeout, want 0: a socket with a SYN out must be closed", n)
	}

	// Two slow handshakes in a row on one socket: the second must wait for its own SYN-ACK, not return on the
	// first's stale readiness or deadline.
	addr, fd := fullBacklogFD(t)
	for i := range 2 {
		done := make(chan Result, 1)
		go func() { done <- probe(addr, 5*time.Second) }()
		testwait.Eventually(t, 5*time.Second, "the probe's SYN to "+addr, func() bool { return synSent(t, addr) })
		time.Sleep(100 * time.Millisecond)
		select {
		case r := <-done:
			t.Fatalf("slow handshake %d returned before its SYN-ACK: success %v err %v", i, r.Success, r.Err)
		default:
		}
		c, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC) // frees one slot; the SYN retransmission completes
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(c)
		if r := <-done; !r.Success || time.Duration(r.Samples[0]) < 900*time.Millisecond {
			t.Fatalf("slow handshake %d: success %v samples %v err %v, want one of about 1 s", i, r.Success, r.Samples, r.Err)
		}
		if n := e.sockets.idleCount(key); n != 1 {
			t.Fatalf("%d idle sockets after slow handshake %d, want 1", n, i)
		}
		if i == 0 {
			if s := e.sockets.get(key); s.f == nil {
				t.Fatal("the slow handshake's socket has no netpoller registration")
			} else {
				e.sockets.put(key, s)
			}
		}
	}
	if r := probe(a.addr(), 0); !r.Success {
		t.Fatalf("fast probe on the netpoller-registered socket: %v", r.Err)
	}
	if created, reused := connects(e); created != 2 || reused != 4 {
		t.Errorf("connects on new sockets %d, reused %d; want 2, 4", created, reused)
	}
}

func TestEngineCloseClosesIdleSockets(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	e := newEngine(t, nil)
	ctx := context.Background()
	tgt := Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 1}
	if r := e.Probe(ctx, tgt); !r.Success {
		t.Fatal(r.Err)
	}
	key := socketKey{family: unix.AF_INET}
	s := e.sockets.get(key)
	if s == nil {
		t.Fatal("no idle socket after a probe")
	}
	e.sockets.put(key, s)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(s.fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("idle socket's fd after Close: fcntl %v, want EBADF", err)
	}
	// Probes still work after Close; their sockets are closed after use, not kept.
	if r := e.Probe(ctx, tgt); !r.Success {
		t.Fatalf("probe after Close: %v", r.Err)
	}
	if n := e.sockets.idleCount(key); n != 0 {
		t.Errorf("%d idle sockets after Close, want 0", n)
	}
}

func TestSocketPoolKeepsAtMostMax(t *testing.T) {
	p := newSocketPool(2)
	k := socketKey{family: unix.AF_INET}
	var socks []*probeSocket
	for range 3 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, &probeSocket{fd: fd})
	}
	for i, s := range socks {
		if kept := p.put(k, s); kept != (i < 2) {
			t.Errorf("put %d: kept %v", i, kept)
		}
	}
	if _, err := unix.FcntlInt(uintptr(socks[2].fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("the socket over max is still open (fcntl: %v)", err)
	}
	if got := p.get(socketKey{family: unix.AF_INET6}); got != nil {
		t.Error("a v4 socket served a v6 key")
	}
	if got := p.get(k); got != socks[1] {
		t.Error("get did not return the socket put back last")
	}
	p.close()
	if _, err := unix.FcntlInt(uintptr(socks[0].fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("close left an idle socket open (fcntl: %v)", err)
	}
	socks[1].close()
}

func TestEngineDroppedClosesIdleSockets(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	cfg := DefaultConfig()
	cfg.Allow = []netip.Prefix{loopback4}
	cfg.Resolver = newFakeResolver(nil)
	e, err := New(cfg) // not newEngine: its Cleanup would keep e reachable
	if err != nil {
		t.Fatal(err)
	}
	if r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 1}); !r.Success {
		t.Fatal(r.Err)
	}
	p := e.sockets
	if p.idleCount(socketKey{family: unix.AF_INET}) != 1 {
		t.Fatal("no idle socket after a probe")
	}
	e = nil
	closed := func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.closed }
	for deadline := time.Now().Add(5 * time.Second); !closed() && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		runtime.GC()
	}
	if !closed() {
		t.Error("the idle sockets of an unreachable Engine were not closed")
	}
}

// portHolder returns the inode of a socket other than fd's that the kernel's TCP tables (/proc/net/tcp and
// tcp6: listening and connected sockets) show on local port.
func portHolder(t *testing.T, port, fd int) (string, bool) {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	own := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		table, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(table), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[9] == own {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				return f[9], true
			}
		}
	}
	return "", false
}
