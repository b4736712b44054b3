package testbed

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockRouter is a router whose ports are Unix seqpacket socket pairs: the router logic without namespaces
// (no root needed). The test end of port i is peer[i].
type sockRouter struct {
	r    *router
	peer []int
	base netip.Addr
}

func newSockRouter(t testing.TB, n int, anycast map[netip.Addr][]int) *sockRouter {
	t.Helper()
	prefix := netip.MustParsePrefix("198.19.254.0/24")
	sr := &sockRouter{base: prefix.Addr()}
	ports := make([]int, n)
	addrs := map[netip.Addr]target{}
	for i := range n {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		for _, fd := range fds { // room for a benchmark's packets in flight
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		}
		ports[i] = fds[0]
		sr.peer = append(sr.peer, fds[1])
		addrs[sr.addr(i)] = target{node: i}
	}
	for a, inst := range anycast {
		addrs[a] = target{node: -1, anycast: inst}
	}
	r, err := newRouter(slog.Default(), prefix, ports, addrs)
	if err != nil {
		t.Fatal(err)
	}
	r.realtime = false // unit tests need no real-time priority
	r.start()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Error(err)
		}
	})
	sr.r = r
	return sr
}

func (sr *sockRouter) addr(i int) netip.Addr { return u32Addr(addrU32(sr.base) + 1 + uint32(i)) }

// ipv4 returns a minimal IPv4 packet (UDP protocol number, no checksum needed by the router) with an id.
func ipv4(src, dst netip.Addr, id uint16) []byte {
	b := make([]byte, 28)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	b[8], b[9] = 64, 17
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	return b
}

// recv waits up to wait for a packet on the test end of port i and returns its id.
func (sr *sockRouter) recv(t testing.TB, i int, wait time.Duration) (uint16, bool) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(sr.peer[i]), Events: unix.POLLIN}}
	ts := unix.NsecToTimespec(int64(wait))
	for {
		n, err := unix.Ppoll(fds, &ts, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return 0, false
		}
		buf := make([]byte, 2048)
		nr, err := unix.Read(sr.peer[i], buf)
		if err != nil {
			t.Fatal(err)
		}
		return binary.BigEndian.Uint16(buf[4:nr]), true
	}
}

// waitRead waits until the router has read n packets in all.
func (sr *sockRouter) waitRead(t testing.TB, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); sr.r.snapshot().Read < n; {
		if time.Now().After(deadline) {
			t.Fatalf("router read %d packets, want %d", sr.r.snapshot().Read, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (sr *sockRouter) send(t testing.TB, from int, pkt []byte) {
	t.Helper()
	if _, err := unix.Write(sr.peer[from], pkt); err != nil {
		t.Fatal(err)
	}
}

func TestRouterLogic(t *testing.T) {
	any := netip.MustParseAddr("198.19.254.200")
	sr := newSockRouter(t, 4, map[netip.Addr][]int{any: {2, 3}})
	r := sr.r
	const d01 = 5 * time.Millisecond
	r.setDelay(0, 1, d01)
	r.setDelay(0, 2, 30*time.Millisecond)
	r.setDelay(0, 3, 10*time.Millisecond)
	r.setDelay(1, 2, 2*time.Millisecond)
	r.setDelay(1, 3, 40*time.Millisecond)

	t.Run("delay", func(t *testing.T) {
		// Never early, and on time at the best of 5: one late wake-up of this test process (or of the router,
		// which runs without real-time priority here) on a loaded machine is not a wrong delay. A packet may
		// leave up to routerHopAllowance before its delay and, when it woke the router, be backdated by the
		// router's learnt wake-up latency (at most routerWakeEarlyMax): earlier than that is a bug.
		const early = routerHopAllowance + routerWakeEarlyMax
		var took []time.Duration
		for id := uint16(1); id <= 5; id++ {
			t0 := time.Now()
			sr.send(t, 0, ipv4(sr.addr(0), sr.addr(1), id))
			got, ok := sr.recv(t, 1, time.Second)
			d := time.Since(t0)
			if !ok || got != id {
				t.Fatalf("packet %d not delivered (got %d, %v)", id, got, ok)
			}
			if d < d01-early {
				t.Errorf("packet %d delivered after %v, before the %v delay (- %v)", id, d, d01, early)
			}
			took = append(took, d)
		}
		// A delay applied twice (10 ms) is later than this, a missing one earlier than the check above.
		if fastest := slices.Min(took); fastest > d01+d01/2 {
			t.Errorf("delivered after %v at the fastest (all %v), want about %v", fastest, took, d01)
		}
	})
	t.Run("fifo_per_pair_with_jitter", func(t *testing.T) {
		r.setJitter(0, 1, 3*time.Millisecond)
		defer r.setJitter(0, 1, 0)
		for id := uint16(100); id < 150; id++ {
			sr.send(t, 0, ipv4(sr.addr(0), sr.addr(1), id))
		}
		for want := uint16(100); want < 150; want++ {
			id, ok := sr.recv(t, 1, time.Second)
			if !ok || id != want {
				t.Fatalf("got packet %d (%v), want %d: the pair's order changed", id, ok, want)
			}
		}
	})
	t.Run("anycast_nearest_instance", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			from     int
			wantNode int
		}{{"node0_to_3", 0, 3}, {"node1_to_2", 1, 2}} {
			t.Run(tc.name, func(t *testing.T) {
				sr.send(t, tc.from, ipv4(sr.addr(tc.from), any, 7))
				if id, ok := sr.recv(t, tc.wantNode, time.Second); !ok || id != 7 {
					t.Fatalf("anycast packet from %d did not reach instance %d", tc.from, tc.wantNode)
				}
			})
		}
		r.setDown(3, true)
		defer r.setDown(3, false)
		sr.send(t, 0, ipv4(sr.addr(0), any, 8))
		if id, ok := sr.recv(t, 2, time.Second); !ok || id != 8 {
			t.Fatal("with instance 3 down, anycast from 0 did not fail over to instance 2")
		}
	})
	t.Run("drops_are_counted", func(t *testing.T) {
		before := r.snapshot()
		outside := netip.MustParseAddr("198.18.0.1") // in WANPrefix, not in this router's subnet
		sr.send(t, 0, ipv4(outside, sr.addr(1), 1))
		sr.send(t, 0, ipv4(sr.addr(0), outside, 2))
		sr.send(t, 0, ipv4(netip.MustParseAddr("10.0.0.1"), sr.addr(1), 3))
		sr.send(t, 0, ipv4(sr.addr(0), netip.MustParseAddr("8.8.8.8"), 4))
		sr.send(t, 0, ipv4(sr.addr(0), netip.MustParseAddr("198.19.254.99"), 5)) // no such node
		sr.send(t, 0, []byte{0x60, 0, 0, 0})                                     // IPv6 / runt
		r.setLoss(0, 1, 1)
		sr.send(t, 0, ipv4(sr.addr(0), sr.addr(1), 6))
		sr.waitRead(t, before.Read+7)
		r.setLoss(0, 1, 0)
		r.setDown(1, true)
		sr.send(t, 0, ipv4(sr.addr(0), sr.addr(1), 7))
		sr.send(t, 1, ipv4(sr.addr(1), sr.addr(0), 8))
		sr.waitRead(t, before.Read+9)
		if id, ok := sr.recv(t, 1, 50*time.Millisecond); ok {
			t.Errorf("packet %d reached node 1", id)
		}
		if id, ok := sr.recv(t, 0, 10*time.Millisecond); ok {
			t.Errorf("packet %d from a down node reached node 0", id)
		}
		r.setDown(1, false)
		after := r.snapshot()
		for _, c := range []struct {
			name      string
			got, want uint64
		}{
			{"outside", after.DroppedOutside - before.DroppedOutside, 4},
			{"noroute", after.DroppedNoRoute - before.DroppedNoRoute, 1},
			{"malformed", after.DroppedMalformed - before.DroppedMalformed, 1},
			{"loss", after.DroppedLoss - before.DroppedLoss, 1},
			{"down", after.DroppedDown - before.DroppedDown, 2},
			{"forwarded", after.Forwarded - before.Forwarded, 0},
		} {
			if c.got != c.want {
				t.Errorf("%s: counted %d, want %d", c.name, c.got, c.want)
			}
		}
	})
}
