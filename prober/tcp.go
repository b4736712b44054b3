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
	"unsafe"

	"github.com/vantage-edge/vantage/placement"
	"golang.org/x/sys/unix"
)

// tcpProber measures TCP CONNECT: the RTT of one sample is the time from connect() to the connection being
// established, i.e. SYN out to SYN-ACK in (the kernel sends the final ACK as connect completes).
//
// Timing: the probe uses a raw non-blocking socket (x/sys/unix) rather than net.Dialer. t0 is read right
// before the connect() syscall, after socket(), bind() and setsockopt(); t1 right after a second connect()
// reports the connection established. When the handshake is still in flight then (EALREADY: any target
// farther than loopback), the probe waits on Go's netpoller through an os.File, so a slow WAN handshake parks
// a goroutine, not an OS thread. net.Dialer would add an epoll registration, getsockname/getpeername and
// TCP_NODELAY syscalls and a goroutine wake-up to every sample (about 40% more CPU per probe in
// BenchmarkTCPProbe) and put part of them inside the timed interval.
//
// Closing: under CloseRST the socket is disconnected (a RST) and kept for a later probe (socketPool), so a
// sample costs two or three syscalls; the socket's netpoller registration is kept with it. Sockets are
// created inside Config.Enter, so the namespace seam works as for the other kinds.
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
		if t.DNS.Chaos {
			// A DNS server's address (a host target on port 53): its CHAOS id.server answer names the anycast
			// site this PoP reached. Evidence only: the TCP samples are the result.
			r.DNS = (&dnsProber{e}).chaosOf(ctx, t.DNS.Transport, netip.AddrPortFrom(ip, uint16(port)), r.Source, timeout)
		}
	}
	r.finish(firstErr)
	return r
}

// connectOnce opens one TCP connection to dst and closes it, and returns the handshake time and, when local
// is true, the local address (one getsockname syscall).
func (e *Engine) connectOnce(ctx context.Context, dst netip.AddrPort, src netip.Addr, timeout time.Duration, local bool) (time.Duration, netip.Addr, error) {
	k, rsa := socketKey{family: unix.AF_INET6, src: src}, unix.Sockaddr(nil)
	if a := dst.Addr(); a.Is4() {
		k.family, rsa = unix.AF_INET, &unix.SockaddrInet4{Addr: a.As4(), Port: int(dst.Port())}
	} else {
		rsa = &unix.SockaddrInet6{Addr: a.As16(), Port: int(dst.Port())}
	}
	s, err := e.tcpSocket(k)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	reusable := false
	defer func() { e.releaseSocket(k, s, reusable) }() // sends the RST (disconnect, or SO_LINGER 0) or the FIN

	t0 := e.clock.Now()
	// A non-blocking connect() answers EINPROGRESS; a second one reports the handshake's outcome: nil once
	// established, the error once it failed, EALREADY while the SYN is still out. On loopback and near targets
	// the handshake has completed inside the first call (the kernel runs it in softirq on the way out), so two
	// syscalls do what connect, poll and getsockopt(SO_ERROR) would.
	err = unix.Connect(s.fd, rsa)
	for err == unix.EINPROGRESS || err == unix.EINTR {
		err = unix.Connect(s.fd, rsa)
	}
	clean := true
	if err == unix.EALREADY {
		clean, err = s.waitConnect(ctx, rsa, t0.Add(timeout))
	}
	switch err {
	case nil, unix.EISCONN:
	case unix.ECONNRESET:
		// Established and reset already (a target that accepts and resets at once): the handshake completed,
		// so the sample counts. A RST answering the SYN is ECONNREFUSED.
	case unix.ECONNREFUSED:
		reusable = clean // the kernel has disconnected the socket: it can serve the next probe
		return 0, netip.Addr{}, os.NewSyscallError("connect", err)
	default:
		if _, ok := err.(unix.Errno); ok {
			err = os.NewSyscallError("connect", err)
		}
		return 0, netip.Addr{}, err
	}
	t1 := e.clock.Now()
	reusable = clean
	var la netip.Addr
	if local {
		la = localAddr(s.fd)
	}
	return t1.Sub(t0), la, nil
}

// tcpSocket returns an idle socket for k from the pool, or a new one: non-blocking, bound to k.src (when
// valid) and, under CloseRST, with SO_LINGER 0. New sockets are created inside Config.Enter.
func (e *Engine) tcpSocket(k socketKey) (*probeSocket, error) {
	if e.sockets != nil {
		if s := e.sockets.get(k); s != nil {
			e.metrics.tcpConnects.reused.Inc()
			return s, nil
		}
	}
	var fd int
	err := e.cfg.Enter(func() error {
		var err error
		fd, err = unix.Socket(k.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	s := &probeSocket{fd: fd}
	if k.src.IsValid() {
		if err := bindSource(fd, k.src, true); err != nil {
			s.close()
			return nil, err
		}
	}
	if e.cfg.Close == CloseRST {
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			s.close()
			return nil, os.NewSyscallError("setsockopt SO_LINGER", err)
		}
	}
	e.metrics.tcpConnects.created.Inc()
	return s, nil
}

// releaseSocket ends s's connection. A reusable socket of a pooling Engine is disconnected (a RST) and kept
// for the next probe; any other is closed: a RST under CloseRST, a FIN under CloseFIN.
func (e *Engine) releaseSocket(k socketKey, s *probeSocket, reusable bool) {
	if !reusable || e.sockets == nil {
		s.close()
		return
	}
	if err := s.disconnect(); err != nil {
		e.log.Warn("prober: tcp socket not reused", "err", err)
		s.close()
		return
	}
	e.sockets.put(k, s)
}

// bindSource binds fd to src. For TCP it sets IP_BIND_ADDRESS_NO_PORT first, so that the port is chosen at
// connect(), per destination: a bind() with port 0 would reserve an ephemeral port against every destination
// and cap one source address at ~28,000 connections in flight. Kernels without the option (before 4.2) bind
// the old way.
func bindSource(fd int, src netip.Addr, tcp bool) error {
	if tcp {
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}
	if err := unix.Bind(fd, sockaddr(src)); err != nil {
		return fmt.Errorf("binding source address %v: %w", src, err)
	}
	return nil
}

// waitConnect waits on the netpoller until s's handshake ends, the deadline passes (ErrTimeout) or ctx ends,
// and returns connect()'s outcome. clean is false when ctx ended meanwhile: its AfterFunc may still move the
// socket's deadline, so the socket must not serve another probe.
func (s *probeSocket) waitConnect(ctx context.Context, rsa unix.Sockaddr, deadline time.Time) (clean bool, err error) {
	if s.f == nil {
		s.f = os.NewFile(uintptr(s.fd), "tcp-probe") // non-blocking: registered with the netpoller
	}
	ctxFirst := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxFirst = d, true
	}
	if err := s.f.SetWriteDeadline(deadline); err != nil {
		return false, err
	}
	rc, err := s.f.SyscallConn()
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { s.f.SetWriteDeadline(time.Unix(1, 0)) })
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		cerr = unix.Connect(int(fd), rsa)
		for cerr == unix.EINTR {
			cerr = unix.Connect(int(fd), rsa)
		}
		return cerr != unix.EALREADY
	})
	clean = stop()
	if werr != nil {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			if ctxFirst {
				return false, fmt.Errorf("no SYN-ACK before the context's deadline: %w", context.DeadlineExceeded)
			}
			return false, fmt.Errorf("no SYN-ACK within the timeout: %w", ErrTimeout)
		}
		return false, werr
	}
	return clean, cerr
}

// localAddr returns fd's local address, or the zero Addr. It calls getsockname(2) itself: unix.Getsockname
// adds a getsockopt(SO_PROTOCOL) to every call (to tell L2TP sockets apart), a tenth of a loopback probe's
// syscalls.
func localAddr(fd int) netip.Addr {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	if _, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n))); e != 0 {
		return netip.Addr{}
	}
	switch rsa.Addr.Family {
	case unix.AF_INET:
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa)).Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16((*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa)).Addr).Unmap()
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
					if serr = bindSource(int(fd), src, network[:3] == "tcp"); serr != nil {
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
