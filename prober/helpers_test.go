package prober

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vantage-edge/vantage/internal/testnet"
)

var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
)

// newEngine returns an Engine allowed to probe loopback, with short timeouts and intervals; mod edits the
// Config first.
func newEngine(t *testing.T, mod func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Allow = []netip.Prefix{loopback4, loopback6}
	// Generous: a TLS handshake under -race on a busy 2-core machine took over 2 s. Every test that wants a
	// timeout sets its own short one.
	cfg.Timeout = 15 * time.Second
	cfg.Interval = time.Millisecond
	cfg.Resolver = newFakeResolver(nil) // never the system resolver: no test may send DNS off the host
	cfg.DNSConfig = func() ([]string, error) { return nil, errors.New("no resolv.conf in tests") }
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// acceptor is a loopback TCP listener that accepts every connection and hands it to handle (default: close).
type acceptor struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
}

// listenTCP starts an acceptor on addr ("127.0.0.1:0", "[::1]:0"); it is closed, and its goroutines waited
// for, in t.Cleanup.
func listenTCP(t testing.TB, addr string, handle func(net.Conn)) *acceptor {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	a := &acceptor{ln: ln}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			a.accepted++
			a.mu.Unlock()
			if handle == nil {
				c.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return a
}

func (a *acceptor) addr() string { return a.ln.Addr().String() }

func (a *acceptor) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted
}

// closedPort returns a loopback address with nothing listening (a port just released).
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fullBacklog returns the address of a loopback listener created with listen(fd, 0) that never accepts, with
// its accept queue filled: the kernel drops further SYNs, so a connect times out.
func fullBacklog(t *testing.T) string {
	t.Helper()
	addr, _ := fullBacklogFD(t)
	return addr
}

// rawListener returns the address ("127.0.0.1:port") and the socket of a raw loopback listener with the
// given backlog; setup, when not nil, sets options between bind and listen. The socket is closed in tb's
// Cleanup (register cleanups that must run before that one after calling rawListener).
func rawListener(tb testing.TB, backlog int, setup func(fd int) error) (string, int) {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	if setup != nil {
		if err := setup(fd); err != nil {
			tb.Fatal(err)
		}
	}
	if err := unix.Listen(fd, backlog); err != nil {
		tb.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String(), fd
}

// fullBacklogFD is fullBacklog, also returning the listening socket (accept from it to free a slot).
func fullBacklogFD(t *testing.T) (string, int) {
	t.Helper()
	addr, fd := rawListener(t, 0, nil)
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr, fd // the queue is full
			}
			t.Fatalf("filling backlog of %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("accept queue of %s never filled", addr)
	return "", 0
}

func isRoot() bool { return os.Geteuid() == 0 }

func needRoot(t *testing.T, why string) { t.Helper(); testnet.NeedRoot(t, why) }

// emptyNetns is testnet.EmptyNetns, as the prober's EnterFunc.
func emptyNetns(t *testing.T) EnterFunc { t.Helper(); return testnet.EmptyNetns(t) }

// fakeResolver answers names from a table; the n-th lookup of a name gets answers[name][n] (the last entry
// once they run out), so a test can make the second resolution differ (DNS rebinding).
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newFakeResolver(answers map[string][][]netip.Addr) *fakeResolver {
	return &fakeResolver{answers: answers, calls: map[string]int{}}
}

func (f *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := f.calls[host]
	f.calls[host]++
	return a[min(n, len(a)-1)], nil
}

func (f *fakeResolver) lookups(host string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[host]
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// fakeClock is a Clock that moves only when advanced; a timer fires when the clock passes its deadline.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// fakeTimer is a fakeClock's Timer.
type fakeTimer struct {
	clock *fakeClock
	at    time.Time
	ch    chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.timers, t); i >= 0 {
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
	return false
}

// pending returns the number of timers not yet fired or stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		t.ch <- c.now
		return true
	})
}
