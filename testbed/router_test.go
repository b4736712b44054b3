package testbed

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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

// connectRTTs times n TCP connects from node a to a listener on node b.
func connectRTTs(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		c, err := dial(ctx, "tcp", addr)
		d := time.Since(t0)
		if err != nil {
			return out, err
		}
		c.Close()
		out = append(out, d)
	}
	return out, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestRouterFixedDelay checks the bare machinery: two namespaces, a 10 ms one-way delay, a TCP handshake timed
// inside the client's namespace takes 20 ms.
func TestRouterFixedDelay(t *testing.T) {
	const oneWay = 10 * time.Millisecond
	rp := newRawRouter(t, 2, oneWay)
	var ln net.Listener
	rp.do(t, 1, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(rp.addrs[1], 0).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rtts []time.Duration
	rp.do(t, 0, func() (err error) {
		d := &net.Dialer{}
		rtts, err = connectRTTs(ctx, d.DialContext, ln.Addr().String(), 15)
		return err
	})
	med := median(rtts)
	t.Logf("connect RTTs %v: median %v; router %+v", rtts, med, rp.r.snapshot())
	if diff := med - 2*oneWay; diff < -300*time.Microsecond || diff > 300*time.Microsecond {
		t.Errorf("median TCP connect %v, want %v ± 0.3 ms", med, 2*oneWay)
	}
}
