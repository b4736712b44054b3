package prober

import (
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeSocket is a TCP socket the prober connects, disconnects and connects again. f registers fd with Go's
// netpoller; it is nil until a handshake has had to wait, and from then on owns fd.
type probeSocket struct {
	fd int
	f  *os.File
}

// close closes the socket; with SO_LINGER 0 set, an established connection is reset.
func (s *probeSocket) close() {
	if s.f != nil {
		s.f.Close()
		return
	}
	unix.Close(s.fd)
}

// disconnect resets s's connection and returns the socket to the closed state, ready for another connect():
// connect() with an AF_UNSPEC address, which Linux's tcp_disconnect answers by sending a RST for an
// established connection. The source address bound at creation stays bound; the ephemeral port is released
// (the next connect() picks a new one), and the next connect() clears the ECONNRESET the disconnect leaves
// in SO_ERROR.
func (s *probeSocket) disconnect() error {
	var sa unix.RawSockaddrInet6 // any sockaddr whose family is AF_UNSPEC (0)
	if _, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(s.fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)); e != 0 {
		return os.NewSyscallError("connect AF_UNSPEC", e)
	}
	return nil
}

// socketKey says which sockets can serve a probe: same family, same bound source address (the zero Addr
// when the kernel chooses).
type socketKey struct {
	family int
	src    netip.Addr
}

// socketPool keeps disconnected TCP probe sockets for the next probe, at most max per key, so that a probe
// costs a connect() and a disconnect instead of socket(), setsockopt(), connect() and close() (a quarter less
// CPU per loopback probe in BenchmarkTCPProbe), and a WAN probe keeps its socket's netpoller registration
// instead of making a new one. Only RST-closing engines pool: a FIN close cannot be undone. Sockets taken
// out are owned by one probe until put back.
type socketPool struct {
	max    int
	mu     sync.Mutex
	closed bool
	idle   map[socketKey][]*probeSocket
}

func newSocketPool(max int) *socketPool {
	return &socketPool{max: max, idle: make(map[socketKey][]*probeSocket)}
}

// get returns the socket put back last for k, or nil.
func (p *socketPool) get(k socketKey) *probeSocket {
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := p.idle[k]
	if len(idle) == 0 {
		return nil
	}
	s := idle[len(idle)-1]
	idle[len(idle)-1] = nil
	p.idle[k] = idle[:len(idle)-1]
	return s
}

// put keeps s for the next probe of k, or closes it when k has max sockets idle or the pool is closed.
func (p *socketPool) put(k socketKey, s *probeSocket) (kept bool) {
	p.mu.Lock()
	if !p.closed && len(p.idle[k]) < p.max {
		p.idle[k] = append(p.idle[k], s)
		p.mu.Unlock()
		return true
	}
	p.mu.Unlock()
	s.close()
	return false
}

// close closes every idle socket; sockets put back later are closed at once.
func (p *socketPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, ss := range idle {
		for _, s := range ss {
			s.close()
		}
	}
}
