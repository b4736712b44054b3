package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread inside the node's namespace and returns its error. Sockets fn creates belong to
// the namespace and keep working from any goroutine afterwards. fn must not start goroutines that expect the
// namespace: only the calling thread is in it.
func (n *Node) Do(fn func() error) error { return inNS(n.nsPath(), fn) }

// Listen listens on address ("198.18.0.5:80", ":80", "0.0.0.0:0") inside the node's namespace. network is
// "tcp" or "tcp4".
func (n *Node) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = (&net.ListenConfig{}).Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: node %s: listen %s %s: %w", n.Name, network, address, err)
	}
	return ln, nil
}

// ListenPacket listens on address inside the node's namespace. network is "udp", "udp4" or "ip4:icmp".
func (n *Node) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := n.Do(func() (err error) {
		pc, err = (&net.ListenConfig{}).ListenPacket(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: node %s: listen %s %s: %w", n.Name, network, address, err)
	}
	return pc, nil
}

// DialContext connects from the node to address ("198.18.0.7:443", or "<node>:443" / "<anycast>:443" with a
// testbed name) over network "tcp", "tcp4", "udp" or "udp4". Only the socket is created inside the namespace;
// the connection is awaited from the calling goroutine, so a dial does not hold an OS thread and its time is
// the network's, like a prober's dial on a real host.
func (n *Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := n.dial(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("testbed: node %s: dial %s %s: %w", n.Name, network, address, err)
	}
	return c, nil
}

func (n *Node) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var sotype int
	switch network {
	case "tcp", "tcp4":
		sotype = unix.SOCK_STREAM
	case "udp", "udp4":
		sotype = unix.SOCK_DGRAM
	default:
		return nil, fmt.Errorf("network %q: want tcp, tcp4, udp or udp4", network)
	}
	ap, err := n.tb.resolveAddrPort(address)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := n.socket(sotype)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "testbed-dial") // registers the non-blocking fd with the runtime poller
	defer f.Close()                              // net.FileConn dups it
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return nil, err
	}
	if sotype == unix.SOCK_STREAM {
		if err := awaitConnect(ctx, f); err != nil {
			return nil, err
		}
	}
	return net.FileConn(f)
}

// socketBatch is how many sockets of a type a node creates at once for DialContext: entering the namespace
// costs a thread switch and two setns(2) calls, paid once per batch instead of once per dial.
const socketBatch = 16

// socket returns a new non-blocking IPv4 socket of type sotype created inside the node's namespace, from the
// node's pool (refilled a batch at a time).
func (n *Node) socket(sotype int) (int, error) {
	n.poolMu.Lock()
	defer n.poolMu.Unlock()
	if n.pool == nil {
		n.pool = map[int][]int{}
	}
	if len(n.pool[sotype]) == 0 {
		var batch []int
		err := n.Do(func() error {
			for range socketBatch {
				fd, err := unix.Socket(unix.AF_INET, sotype|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				batch = append(batch, fd)
			}
			return nil
		})
		if len(batch) == 0 {
			return -1, err
		}
		n.pool[sotype] = batch
	}
	p := n.pool[sotype]
	fd := p[len(p)-1]
	n.pool[sotype] = p[:len(p)-1]
	return fd, nil
}

// closePool closes the sockets the node created ahead of use.
func (n *Node) closePool() {
	n.poolMu.Lock()
	defer n.poolMu.Unlock()
	for _, fds := range n.pool {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	n.pool = nil
}

// awaitConnect waits until the non-blocking connect on f completes, fails, or ctx ends.
func awaitConnect(ctx context.Context, f *os.File) error {
	if d, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	// RawWrite re-arms the poller before its first call of fn, so fn checks the state first and waits only
	// while the socket is still connecting: a handshake that completed before the wait is not missed.
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case v != 0:
			cerr = unix.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); errors.Is(err, unix.ENOTCONN) {
				return false // still connecting
			}
		}
		return true
	})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(werr, os.ErrDeadlineExceeded) { // ctx's deadline, seen by the poller first
			return context.DeadlineExceeded
		}
		return werr
	}
	return cerr
}

// resolveAddrPort parses "addr:port" where addr is an IPv4 address or a node or anycast name of the testbed.
func (tb *Testbed) resolveAddrPort(address string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		var ok bool
		if a, ok = tb.Resolve(host); !ok {
			return netip.AddrPort{}, fmt.Errorf("host %q is neither an IPv4 address nor a node of testbed %s", host, tb.Name())
		}
	}
	if !a.Is4() {
		return netip.AddrPort{}, fmt.Errorf("address %v: the testbed is IPv4 only", a)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// Command returns a command that runs name with args inside the node's namespace (through
// `ip netns exec`), killed when ctx ends.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}

// Resolve returns the address of a node or anycast name of the testbed ("FRA", "db", "edge"), or of
// "<name>.<zone>", or of a host's alias.
func (tb *Testbed) Resolve(name string) (netip.Addr, bool) {
	if i, ok := tb.plan.aliases[strings.ToLower(strings.TrimSuffix(name, "."))+"."]; ok {
		return tb.nodes[i].addr, true
	}
	name = strings.TrimSuffix(strings.TrimSuffix(name, "."), "."+strings.TrimSuffix(tb.plan.zone, "."))
	if n := tb.byName[name]; n != nil {
		return n.addr, true
	}
	for _, n := range tb.nodes {
		if strings.EqualFold(n.Name, name) {
			return n.addr, true
		}
	}
	a, ok := tb.any[name]
	return a, ok
}
