package testbed

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespace and interface constants.
const (
	// netnsDir is where named network namespaces are bind-mounted (what `ip netns` lists).
	netnsDir = "/run/netns"
	// tunName is the TUN interface's name inside every namespace; it exists only there.
	tunName = "vtun0"
	// tunMTU is the TUN interface's MTU, the common Ethernet one.
	tunMTU = 1500
	// tunTxQueueLen is the TUN's queue towards the router (default 500): bursts of a throughput benchmark
	// would overflow the default while the router is delivering.
	tunTxQueueLen = 4096
)

// WANPrefix is the only address range the testbed uses (RFC 2544 benchmarking space). Every namespace routes
// it, and only it, through its TUN; a testbed takes one subnet of it.
var WANPrefix = netip.MustParsePrefix("198.18.0.0/15")

// nsSetup describes one node's namespace.
type nsSetup struct {
	name  string       // namespace name, e.g. "vt3-fra"
	addrs []netip.Addr // the node's address first, then any anycast addresses it serves
	icmp  bool         // answer ICMP echo
}

// createNS creates the named network namespace with a TUN interface configured per s and returns the TUN's
// file descriptor (non-blocking), which keeps working from any thread. On error nothing is left behind.
func createNS(s nsSetup) (fd int, err error) {
	fd = -1 // not 0 on a failure before setupNS: the caller closes every fd >= 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread moves into the new namespace and is never unlocked: it exits with this goroutine
		// instead of returning to the runtime's pool in the wrong namespace.
		runtime.LockOSThread()
		h, e := netns.NewNamed(s.name)
		if e != nil {
			err = fmt.Errorf("testbed: create namespace %q: %w", s.name, e)
			_ = deleteNS(s.name)
			return
		}
		defer h.Close()
		fd, err = setupNS(s)
		if err != nil {
			err = fmt.Errorf("testbed: namespace %q: %w", s.name, err)
			_ = deleteNS(s.name)
		}
	}()
	<-done
	return fd, err
}

// setupNS configures the namespace the calling (locked) thread is in.
func setupNS(s nsSetup) (int, error) {
	sysctls := [][2]string{
		// No IPv6 at all: the TUN would otherwise emit router solicitations and MLD reports.
		{"net/ipv6/conf/all/disable_ipv6", "1"},
		{"net/ipv6/conf/default/disable_ipv6", "1"},
		// Unprivileged ICMP sockets (pro-bing's default) for every group.
		{"net/ipv4/ping_group_range", "0 2147483647"},
	}
	if !s.icmp {
		sysctls = append(sysctls, [2]string{"net/ipv4/icmp_echo_ignore_all", "1"})
	}
	for _, kv := range sysctls {
		// /proc/sys/net shows the namespace of the thread that opens it.
		if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
			return -1, fmt.Errorf("sysctl %s=%s: %w", kv[0], kv[1], err)
		}
	}
	fd, err := openTUN(tunName)
	if err != nil {
		return -1, err
	}
	if err := configureLinks(s); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openTUN creates a TUN interface (IP packets without a protocol header) in the calling thread's namespace.
func openTUN(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tun name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %q: %w", name, err)
	}
	return fd, nil
}

// configureLinks brings lo and the TUN up, adds the addresses and the one route (WANPrefix via the TUN).
func configureLinks(s nsSetup) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("link lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("link lo up: %w", err)
	}
	tun, err := h.LinkByName(tunName)
	if err != nil {
		return fmt.Errorf("link %s: %w", tunName, err)
	}
	if err := h.LinkSetMTU(tun, tunMTU); err != nil {
		return fmt.Errorf("link %s mtu: %w", tunName, err)
	}
	if err := h.LinkSetTxQLen(tun, tunTxQueueLen); err != nil {
		return fmt.Errorf("link %s txqueuelen: %w", tunName, err)
	}
	for _, a := range s.addrs {
		ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
		if err := h.AddrAdd(tun, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("address %v: %w", a, err)
		}
	}
	if err := h.LinkSetUp(tun); err != nil {
		return fmt.Errorf("link %s up: %w", tunName, err)
	}
	dst := &net.IPNet{IP: WANPrefix.Addr().AsSlice(), Mask: net.CIDRMask(WANPrefix.Bits(), 32)}
	rt := &netlink.Route{LinkIndex: tun.Attrs().Index, Dst: dst, Src: s.addrs[0].AsSlice(), Scope: netlink.SCOPE_LINK}
	if err := h.RouteAdd(rt); err != nil {
		return fmt.Errorf("route %v dev %s: %w", WANPrefix, tunName, err)
	}
	return nil
}

// deleteNS removes a named namespace (its bind mount and file); a missing one is not an error. The kernel
// frees the namespace, and the TUN in it, once no socket or file descriptor refers to it any more.
func deleteNS(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("testbed: unmount namespace %q: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("testbed: remove namespace %q: %w", name, err)
	}
	return nil
}

// listNS returns the names of the named namespaces that start with prefix.
func listNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testbed: list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// inNS runs fn on an OS thread inside the namespace at path. Sockets fn creates belong to that namespace and
// keep working from any goroutine. The thread switches back afterwards, or is discarded if it cannot.
func inNS(path string, fn func() error) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, e := netns.Get()
		if e != nil {
			err = fmt.Errorf("testbed: current namespace: %w", e)
			return // still locked: the thread is discarded
		}
		defer orig.Close()
		target, e := netns.GetFromPath(path)
		if e != nil {
			err = fmt.Errorf("testbed: namespace %s: %w", path, e)
			runtime.UnlockOSThread() // nothing switched yet
			return
		}
		defer target.Close()
		if e := netns.Set(target); e != nil {
			err = fmt.Errorf("testbed: enter namespace %s: %w", path, e)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
	return err
}

// setProcessNice sets the nice value of every thread of the process; threads created later inherit it from
// their creator. The router shares the process's garbage collector, whose stop-the-world pauses wait for the
// slowest thread: on a loaded machine a starved thread stalls the router too.
func setProcessNice(nice int) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("testbed: nice: %w", err)
	}
	var errs []error
	for _, e := range ents {
		var tid int
		if _, err := fmt.Sscan(e.Name(), &tid); err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("testbed: nice %d on thread %d: %w", nice, tid, err))
		}
	}
	return errors.Join(errs...)
}
