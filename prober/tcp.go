package prober

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"golang.org/x/sys/unix"
)

// tcpProber measures TCP CONNECT: the RTT of one sample is the time from connect() to the connection being
// established, i.e. SYN out to SYN-ACK in (the kernel sends the final ACK as connect completes).
//
// Timing: the probe uses a raw non-blocking socket (x/sys/unix) rather than net.Dialer. t0 is read right
// before the connect() syscall, after socket(), bind() and setsockopt(); t1 right after the socket is seen
// writable. When connect() returns EINPROGRESS the prober first polls with a zero timeout (on loopback and on
// very near targets the handshake has completed by then), and otherwise waits on Go's netpoller through an
// os.File, so a slow WAN handshake parks a goroutine, not an OS thread. net.Dialer would add an epoll
// registration, getsockname/getpeername and TCP_NODELAY syscalls and a goroutine wake-up to every sample
// (about 40% more CPU per probe in BenchmarkTCPProbe) and put part of them inside the timed interval.
// Sockets are created inside Config.Enter, so the namespace seam works as for the other kinds.
type tcpProber struct{ e *Engine }

func (p *tcpProber) Probe(ctx context.Context, t Target) Result {
	e := p.e
	r := Result{Kind: placement.ProbeTCP, Target: t.Addr}
	host, portStr, err := net.SplitHostPort(t.Addr)
	if err != nil {
		r.finish(fmt.Errorf("prober: tcp target %q: want host:port: %w", t.Addr, err))
		return r
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		r.finish(fmt.Errorf("prober: tcp target %q: port %q is not in 1-65535", t.Addr, portStr))
		return r
	}
	if err := e.prepare(ctx, &r, host); err != nil {
		r.finish(err)
		return r
	}
	ip, src := r.IP, r.Source
	dst := netip.AddrPortFrom(ip, uint16(port))
	timeout := e.timeout(t)
	var firstErr error
	for i := range e.count(t) {
		if i > 0 {
			if err := e.pause(ctx); err != nil {
				firstErr = cmpErr(firstErr, err)
				break
			}
		}
		r.Sent++
		rtt, local, err := e.connectOnce(ctx, dst, src, timeout, !r.Source.IsValid())
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("prober: tcp connect %v: %w", dst, err))
			continue
		}
		if r.Samples == nil {
			r.Samples = make([]Duration, 0, e.count(t))
		}
		r.Samples = append(r.Samples, Duration(rtt))
		if local.IsValid() {
			r.Source = local
		}
	}
	if len(r.Samples) > 0 {
		firstErr = nil // partial loss is reported as Loss, not as a failure
	}
	r.finish(firstErr)
	return r
}

// connectOnce opens and closes one TCP connection to dst and returns the handshake time and, when local is
// true, the local address (one getsockname syscall).
func (e *Engine) connectOnce(ctx context.Context, dst netip.AddrPort, src netip.Addr, timeout time.Duration, local bool) (time.Duration, netip.Addr, error) {
	family, rsa := unix.AF_INET6, unix.Sockaddr(nil)
	if a := dst.Addr(); a.Is4() {
		family, rsa = unix.AF_INET, &unix.SockaddrInet4{Addr: a.As4(), Port: int(dst.Port())}
	} else {
		rsa = &unix.SockaddrInet6{Addr: a.As16(), Port: int(dst.Port())}
	}
	var fd int
	err := e.cfg.Enter(func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return 0, netip.Addr{}, os.NewSyscallError("socket", err)
	}
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd)
		}
	}()
	if src.IsValid() {
		if err := unix.Bind(fd, sockaddr(src)); err != nil {
			return 0, netip.Addr{}, fmt.Errorf("binding source address %v: %w", src, err)
		}
	}
	if e.cfg.Close == CloseRST {
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			return 0, netip.Addr{}, os.NewSyscallError("setsockopt SO_LINGER", err)
		}
	}
	t0 := e.clock.Now()
	err = unix.Connect(fd, rsa)
	for err == unix.EINTR {
		err = unix.Connect(fd, rsa) // EALREADY or EISCONN tell the story from here
	}
	switch err {
	case nil, unix.EISCONN:
	case unix.EINPROGRESS, unix.EALREADY:
		if !writable(fd) {
			f := os.NewFile(uintptr(fd), "tcp-probe") // non-blocking: registered with the netpoller
			closed = true
			defer f.Close()
			if err := waitWritable(ctx, f, t0.Add(timeout)); err != nil {
				return 0, netip.Addr{}, err
			}
		}
		if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
			return 0, netip.Addr{}, os.NewSyscallError("getsockopt SO_ERROR", err)
		} else if soerr != 0 && unix.Errno(soerr) != unix.ECONNRESET {
			// ECONNRESET means the connection was established and then reset (a target that accepts and
			// resets at once): the handshake completed, so the sample counts. A RST answering the SYN is
			// ECONNREFUSED.
			return 0, netip.Addr{}, os.NewSyscallError("connect", unix.Errno(soerr))
		}
	default:
		return 0, netip.Addr{}, os.NewSyscallError("connect", err)
	}
	t1 := e.clock.Now()
	var la netip.Addr
	if local {
		if sa, err := unix.Getsockname(fd); err == nil {
			la = sockaddrAddr(sa)
		}
	}
	return t1.Sub(t0), la, nil // the deferred close sends the RST (SO_LINGER 0) or the FIN
}

// writable polls fd for writability without waiting.
func writable(fd int) bool {
	p := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(p[:], 0)
	return err == nil && n > 0
}

// waitWritable waits on the netpoller until f is writable (connect finished, either way), the deadline
// passes (ErrTimeout) or ctx ends.
func waitWritable(ctx context.Context, f *os.File, deadline time.Time) error {
	ctxFirst := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxFirst = d, true
	}
	if err := f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	werr := rc.Write(func(fd uintptr) bool { return writable(int(fd)) })
	if werr != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			if ctxFirst {
				return fmt.Errorf("no SYN-ACK before the context's deadline: %w", context.DeadlineExceeded)
			}
			return fmt.Errorf("no SYN-ACK within the timeout: %w", ErrTimeout)
		}
		return werr
	}
	return nil
}

// sockaddrAddr returns the address of a unix.Sockaddr.
func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// dial connects to dst over network ("tcp" or "udp") with a net.Dialer, inside Config.Enter, for the HTTP
// and DNS probes. Its Control binds src (when valid) and, for TCP with CloseRST, sets SO_LINGER 0.
func (e *Engine) dial(ctx context.Context, network string, dst netip.AddrPort, src netip.Addr, timeout time.Duration) (net.Conn, error) {
	if dst.Addr().Is4() {
		network += "4"
	} else {
		network += "6"
	}
	rst := e.cfg.Close == CloseRST && network[:3] == "tcp"
	d := &net.Dialer{
		Timeout:   timeout,
		KeepAlive: -1, // no keep-alive setsockopt calls between connect and t1
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				if src.IsValid() {
					if serr = unix.Bind(int(fd), sockaddr(src)); serr != nil {
						serr = fmt.Errorf("binding source address %v: %w", src, serr)
						return
					}
				}
				if rst {
					serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
				}
			}); err != nil {
				return err
			}
			return serr
		},
	}
	var c net.Conn
	err := e.cfg.Enter(func() error {
		var err error
		c, err = d.DialContext(ctx, network, dst.String())
		return err
	})
	return c, err
}

// sockaddr converts a to a unix.Sockaddr with port 0.
func sockaddr(a netip.Addr) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Addr: a.As16()}
}

// cmpErr keeps the first non-nil error.
func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}
