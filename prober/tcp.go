package prober

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"golang.org/x/sys/unix"
)

// tcpProber measures TCP CONNECT: the RTT of one sample is the time from connect() to the connection being
// established, i.e. SYN out to SYN-ACK in (the final ACK is sent by the kernel as connect completes).
//
// Timing: t0 is read at the end of net.Dialer.Control, which Go runs after socket() and right before
// connect() (the prober binds the source address itself inside Control, so bind() is not timed either); t1 is
// read when DialContext returns, which adds the netpoller wake-up, getsockopt(SO_ERROR) and Go's
// setsockopt(TCP_NODELAY): a few microseconds on loopback, negligible against WAN RTTs.
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
	ip, err := e.resolve(ctx, host)
	r.IP = ip
	if err != nil {
		r.finish(err)
		return r
	}
	src, err := e.source(ip)
	if err != nil {
		r.finish(err)
		return r
	}
	r.Source = src
	if err := e.limits.wait(ctx, ip); err != nil {
		r.finish(fmt.Errorf("prober: tcp %s: waiting for the rate limit: %w", t.Addr, err))
		return r
	}
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
		rtt, local, err := e.connectOnce(ctx, dst, src, timeout)
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("prober: tcp connect %v: %w", dst, err))
			continue
		}
		r.Samples = append(r.Samples, Duration(rtt))
		r.Source = local
	}
	if len(r.Samples) > 0 {
		firstErr = nil // partial loss is reported as Loss, not as a failure
	}
	r.finish(firstErr)
	return r
}

// connectOnce opens and closes one TCP connection to dst and returns the handshake time and local address.
func (e *Engine) connectOnce(ctx context.Context, dst netip.AddrPort, src netip.Addr, timeout time.Duration) (time.Duration, netip.Addr, error) {
	var t0 time.Time
	c, err := e.dial(ctx, "tcp", dst, src, timeout, &t0)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	t1 := e.clock.Now()
	local := netip.Addr{}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local = la.AddrPort().Addr().Unmap()
	}
	c.Close() // SO_LINGER 0 was set in Control when Close is CloseRST: this sends the RST
	return t1.Sub(t0), local, nil
}

// dial connects to dst over network ("tcp" or "udp"), leaving from src when valid, inside Config.Enter. The Dialer's Control binds src, sets SO_LINGER 0 for TCP with CloseRST, and stores the clock
// reading taken right before connect() in *t0 (when t0 is not nil).
func (e *Engine) dial(ctx context.Context, network string, dst netip.AddrPort, src netip.Addr, timeout time.Duration, t0 *time.Time) (net.Conn, error) {
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
			if t0 != nil {
				*t0 = e.clock.Now()
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
