package testnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NeedRoot skips tb unless it runs as root.
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skipf("skipping: %s needs root (run as root, as CI does)", why)
	}
}

// EmptyNetns returns a function that opens sockets (whatever open does) inside a new network namespace with no
// interface up and no route: any connect from it fails with ENETUNREACH and nothing leaves the host. It has
// the shape of prober.EnterFunc, the seam the probe daemon uses for emulated-WAN namespaces. It skips tb
// unless root.
func EmptyNetns(tb testing.TB) func(open func() error) error {
	tb.Helper()
	NeedRoot(tb, "creating a network namespace")
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("netns.Get: %v", err)
	}
	ns, err := netns.New() // unshares this thread into the new namespace
	if err != nil {
		runtime.UnlockOSThread()
		orig.Close()
		tb.Skipf("skipping: cannot create a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the new namespace: keep it locked so it dies with this goroutine.
		tb.Fatalf("netns.Set back: %v", err)
	}
	runtime.UnlockOSThread()
	tb.Cleanup(func() { ns.Close(); orig.Close() })
	return func(open func() error) error {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			return err
		}
		err := open()
		if serr := netns.Set(orig); serr != nil {
			return errors.Join(err, serr) // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		return err
	}
}

// LoopbackNS is a network namespace whose only interface is loopback, up: nothing sent from it can leave the
// host, and whatever is sent is counted on its loopback (Packets).
type LoopbackNS struct {
	// Enter opens sockets inside the namespace (prober.EnterFunc's shape).
	Enter func(open func() error) error
}

// NewLoopbackNS creates a LoopbackNS and assigns each of extra to its loopback (those the kernel takes; the
// others are logged), so that a probe of one that got past a deny policy would reach loopback rather than
// fail: what it sent is then seen in Packets. It skips tb unless root.
func NewLoopbackNS(tb testing.TB, extra ...netip.Addr) LoopbackNS {
	tb.Helper()
	ns := LoopbackNS{Enter: EmptyNetns(tb)}
	err := ns.Enter(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("listing links: %w", err)
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" {
			return fmt.Errorf("the new namespace has links %v, want only lo", links)
		}
		if err := netlink.LinkSetUp(links[0]); err != nil {
			return fmt.Errorf("setting lo up: %w", err)
		}
		for _, a := range extra {
			a = a.Unmap().WithZone("")
			if a.IsLoopback() {
				continue // lo has them once up
			}
			bits := a.BitLen()
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
			if a.Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := netlink.AddrAdd(links[0], addr); err != nil && !errors.Is(err, unix.EEXIST) {
				tb.Logf("namespace: %v not assigned to lo: %v", a, err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("setting up the loopback namespace: %v", err)
	}
	return ns
}

// Packets returns how many packets the namespace's loopback has sent.
func (ns LoopbackNS) Packets(tb testing.TB) uint64 {
	tb.Helper()
	var n uint64
	err := ns.Enter(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		n = lo.Attrs().Statistics.TxPackets
		return nil
	})
	if err != nil {
		tb.Fatalf("reading the namespace's loopback counters: %v", err)
	}
	return n
}

// DNSServer serves h on 127.0.0.1, UDP and TCP on the same port, until tb ends, and returns the address.
func DNSServer(tb testing.TB, h dns.Handler) string {
	tb.Helper()
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close() // the TCP port is taken: try another
			continue
		}
		for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
			started := make(chan struct{})
			s.NotifyStartedFunc = func() { close(started) }
			done := make(chan struct{})
			go func() { defer close(done); s.ActivateAndServe() }()
			<-started
			tb.Cleanup(func() { s.Shutdown(); <-done })
		}
		return pc.LocalAddr().String()
	}
	tb.Fatal("no free UDP+TCP port pair")
	return ""
}
