package testbed

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips t unless it runs as root (namespaces and TUN devices need CAP_NET_ADMIN and CAP_SYS_ADMIN).
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("testbed: needs root for network namespaces and /dev/net/tun (CI runs as root)")
	}
}

// rawPair is a router over n bare namespaces (no Testbed): the machinery under the spec layer.
type rawPair struct {
	r     *router
	ns    []string
	addrs []netip.Addr
}

// newRawRouter creates n namespaces with TUNs in an allocated subnet and a router over them with the given
// one-way delay between every pair, all removed at cleanup.
func newRawRouter(tb testing.TB, n int, delay time.Duration) *rawPair {
	tb.Helper()
	requireRoot(tb)
	lease, err := allocate(slog.Default())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lease.release() })
	rp := &rawPair{}
	ports := make([]int, n)
	addrs := map[netip.Addr]target{}
	for i := range n {
		name := fmt.Sprintf("%sn%d", lease.nsPrefix(), i)
		a := lease.addr(i)
		fd, err := createNS(nsSetup{name: name, addrs: []netip.Addr{a}, icmp: true})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			unix.Close(fd)
			if err := deleteNS(name); err != nil {
				tb.Error(err)
			}
		})
		ports[i] = fd
		addrs[a] = target{node: i}
		rp.ns = append(rp.ns, name)
		rp.addrs = append(rp.addrs, a)
	}
	r, err := newRouter(slog.Default(), lease.prefix, ports, addrs)
	if err != nil {
		tb.Fatal(err)
	}
	for a := range n {
		for b := range n {
			r.setDelay(a, b, delay)
		}
	}
	r.start()
	tb.Cleanup(func() {
		if err := r.stop(); err != nil {
			tb.Error(err)
		}
	})
	rp.r = r
	return rp
}

func (rp *rawPair) do(tb testing.TB, i int, fn func() error) {
	tb.Helper()
	if err := inNS(filepath.Join(netnsDir, rp.ns[i]), fn); err != nil {
		tb.Fatal(err)
	}
}

// connectRTTsKernel times n TCP connects to addr with dial and also returns the kernel's own measurement of
// each handshake: TCP_INFO's RTT right after connect is the first sample, SYN sent to SYN-ACK received, in
// µs, taken in the kernel of the client's namespace (so without the test process's scheduling delays).
func connectRTTsKernel(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, n int) (app, kernel []time.Duration, err error) {
	for range n {
		t0 := time.Now()
		c, err := dial(ctx, "tcp", addr)
		d := time.Since(t0)
		if err != nil {
			return app, kernel, err
		}
		k, err := handshakeRTT(c)
		c.Close()
		if err != nil {
			return app, kernel, err
		}
		app, kernel = append(app, d), append(kernel, k)
	}
	return app, kernel, nil
}

// handshakeRTT returns the kernel's RTT estimate of a just-connected TCP socket.
func handshakeRTT(c net.Conn) (time.Duration, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, err
	}
	if ierr != nil {
		return 0, ierr
	}
	return time.Duration(info.Rtt) * time.Microsecond, nil
}

// TestRouterFixedDelay checks the bare machinery: two namespaces, a 10 ms one-way delay, a TCP handshake in the
// client's namespace takes 20 ms (assertRTT: as its kernel measures it, and the dial as timed by Go is not
// faster).
func TestRouterFixedDelay(t *testing.T) {
	const oneWay = 10 * time.Millisecond
	rp := newRawRouter(t, 2, oneWay)
	var ln net.Listener
	rp.do(t, 1, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(rp.addrs[1], 0).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go acceptAndClose(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assertRTT(t, "namespace 0 -> 1", 2*oneWay, func() (dials, kernel []time.Duration, err error) {
		rp.do(t, 0, func() error {
			d := &net.Dialer{}
			dials, kernel, err = connectRTTsKernel(ctx, d.DialContext, ln.Addr().String(), 15)
			return nil
		})
		return dials, kernel, err
	})
	t.Logf("router %+v", rp.r.snapshot())
}
