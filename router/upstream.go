package router

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Upstream defaults (FrontConfig).
const (
	// DefaultMaxIdlePerWorker is how many idle connections the front keeps to each worker. It should be at
	// least the number of requests in flight toward one worker: a request that finds no idle connection dials
	// one, and a connection returned to a full pool is closed (one TIME_WAIT socket toward the worker each).
	// 256 covers a front serving a few hundred concurrent requests per worker; nginx's upstream keepalive is
	// typically set in the same range.
	DefaultMaxIdlePerWorker = 256
	// DefaultUpstreamTimeout bounds one exchange with a worker on the HTTP/1.1 path (writing the request,
	// reading the whole response). It matches the front's HTTP server write timeout (2 minutes), past which
	// the client could not be answered anyway.
	DefaultUpstreamTimeout = 2 * time.Minute
	// DefaultDialTimeout bounds dialing a worker.
	DefaultDialTimeout = 5 * time.Second
	// DefaultIdleConnTimeout closes a connection idle this long (net/http.DefaultTransport's value; below
	// nginx's keepalive_timeout of 75 s, so the front, not the worker, usually closes it).
	DefaultIdleConnTimeout = 60 * time.Second
	// staleCheckAfter: a pooled connection idle longer than this is checked for a close by the worker (a
	// non-blocking peek) before it carries a request. Busy connections skip the check (a syscall).
	staleCheckAfter = time.Second
	// upReadBufferSize is the read buffer of a worker connection: on the fasthttp front it also bounds the
	// worker response's head (nginx's proxy_buffer_size, the same bound, is 4 or 8 KiB by default).
	upReadBufferSize = 16 << 10
	// copyBufferSize is the size of the pooled buffers that carry bodies.
	copyBufferSize = 32 << 10
)

// errStaleConn is a pooled connection the worker had closed before the request was written.
var errStaleConn = errors.New("router: front: pooled connection closed by the worker")

// aLongTimeAgo is a deadline in the past: setting it unblocks a connection's pending reads and writes.
var aLongTimeAgo = time.Unix(1, 0)

// bufPool holds the buffers that carry request and response bodies; it is also the ReverseProxy's BufferPool.
var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// proxyBufferPool adapts bufPool to httputil.BufferPool.
type proxyBufferPool struct{}

func (proxyBufferPool) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (proxyBufferPool) Put(b []byte) { bufPool.Put(&b) }

// upConn is one HTTP/1.1 connection to a worker.
type upConn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time // when it was last returned to the pool
	// deadline is the connection's read and write deadline. It is moved forward only when it is more than
	// deadlineSlack behind now + the upstream timeout: a syscall-free request on a busy connection.
	deadline time.Time
}

// deadlineSlack is how far an exchange's deadline may lag behind its ideal (now + UpstreamTimeout), so that
// a busy connection resets its deadline (a runtime timer update) about once a second, not per request.
const deadlineSlack = time.Second

// upstream is the HTTP/1.1 path to one plain-HTTP worker: a LIFO pool of kept-alive connections (the most
// recently used first, so that when the load falls the least used ones age out), and the request written and
// the response read in the handler's own goroutine (no per-connection goroutines, no channel hand-offs: the
// cost of net/http.Transport on this path).
type upstream struct {
	addr    string // host:port
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle int
	idleTTL time.Duration
	timeout time.Duration

	mu        sync.Mutex
	idle      []*upConn // LIFO: idle[len-1] is the most recently used
	lastSweep time.Time
}

// get returns a pooled connection (reused true) or dials one.
func (u *upstream) get(ctx context.Context) (uc *upConn, reused bool, err error) {
	for {
		u.mu.Lock()
		n := len(u.idle)
		if n == 0 {
			u.mu.Unlock()
			break
		}
		uc = u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		u.mu.Unlock()
		if idle := time.Since(uc.idleAt); idle > u.idleTTL || (idle > staleCheckAfter && !connAlive(uc.c)) {
			uc.c.Close()
			continue
		}
		return uc, true, nil
	}
	c, err := u.dial(ctx, "tcp", u.addr)
	if err != nil {
		return nil, false, err
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, upReadBufferSize), bw: bufio.NewWriterSize(c, 4096)}, false, nil
}

// put returns a connection whose last response was read to its end; it is closed when the pool is full.
// Connections idle past idleTTL at the bottom of the pool are closed, at most once a second.
func (u *upstream) put(uc *upConn) {
	now := time.Now()
	uc.idleAt = now
	var stale []*upConn
	u.mu.Lock()
	if len(u.idle) >= u.maxIdle {
		u.mu.Unlock()
		uc.c.Close()
		return
	}
	u.idle = append(u.idle, uc)
	if now.Sub(u.lastSweep) > time.Second {
		u.lastSweep = now
		i := 0
		for i < len(u.idle) && now.Sub(u.idle[i].idleAt) > u.idleTTL {
			i++
		}
		if i > 0 {
			stale = append(stale, u.idle[:i]...)
			u.idle = append(u.idle[:0], u.idle[i:]...)
		}
	}
	u.mu.Unlock()
	for _, s := range stale {
		s.c.Close()
	}
}

// arm gives uc's exchange its deadline, now + the upstream timeout, moving it only when it lags by more than
// deadlineSlack (a runtime timer update saved on a busy connection).
func (u *upstream) arm(uc *upConn) {
	if now := time.Now(); uc.deadline.Sub(now) < u.timeout-deadlineSlack {
		uc.deadline = now.Add(u.timeout)
		uc.c.SetDeadline(uc.deadline)
	}
}

// release returns uc to the pool when reuse is set (a response read to its end on a connection that stays
// open) and nothing is left unread on it, else closes it.
func (u *upstream) release(uc *upConn, reuse bool) {
	if reuse && uc.br.Buffered() == 0 { // bytes past the response (a body on a HEAD or a 204): not reusable
		u.put(uc)
	} else {
		uc.c.Close()
	}
}

// closeIdle closes every pooled connection.
func (u *upstream) closeIdle() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// connAlive reports whether c is still open with nothing to read: a non-blocking MSG_PEEK that finds no data
// (EAGAIN). EOF (the worker closed it), an error or unexpected bytes mean it must not be reused.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && errors.Is(err, syscall.EAGAIN)
		return true // never wait
	})
	return err == nil && alive
}

// hopHeaders are removed from forwarded requests and responses (RFC 9110 7.6.1, as httputil.ReverseProxy).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// skipRequestHeader reports whether the header k (canonical) of a client request is not forwarded as it is:
// hop-by-hop headers, the front's internal headers, Content-Length (written from the request's length) and
// the forwarding headers the front replaces (as httputil.ProxyRequest.SetXForwarded after Rewrite's removal).
func skipRequestHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te",
		"Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		canonIngress, canonReason, canonPlacement:
		return true
	}
	return false
}

// Canonical forms of the internal headers.
var (
	canonIngress   = http.CanonicalHeaderKey(HeaderIngress)
	canonReason    = http.CanonicalHeaderKey(HeaderReason)
	canonPlacement = http.CanonicalHeaderKey(HeaderPlacement)
)

// fastPathOK reports whether req can take the HTTP/1.1 path: an origin-form target, a body of known length
// and nothing that needs net/http's transport (protocol upgrades, 100-continue, request trailers, headers
// named in Connection). The others go through httputil.ReverseProxy.
func fastPathOK(req *http.Request) bool {
	if len(req.RequestURI) == 0 || req.RequestURI[0] != '/' || req.ContentLength < 0 || req.Trailer != nil {
		return false
	}
	h := req.Header
	return h["Connection"] == nil && h["Upgrade"] == nil && h["Expect"] == nil && h["Te"] == nil
}

// writeRequest writes req's head, as the front forwards it to a worker, and its body to uc.
func (f *Front) writeRequest(uc *upConn, req *http.Request, res Result) error {
	bw := uc.bw
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.RequestURI)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		if skipRequestHeader(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.WriteString(req.Host)
	if req.TLS != nil {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n")
	}
	bw.WriteString(f.ingressLine)
	bw.WriteString(reasonLines[res.Reason])
	if req.ContentLength > 0 {
		var num [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], req.ContentLength, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if req.ContentLength > 0 {
		bp := bufPool.Get().(*[]byte)
		_, err := io.CopyBuffer(bw, io.LimitReader(req.Body, req.ContentLength), *bp)
		bufPool.Put(bp)
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// reasonLines are the request header lines carrying each reason to the worker.
var reasonLines = func() (out [NumReasons]string) {
	for i := range NumReasons {
		out[i] = canonReason + ": " + i.String() + "\r\n"
	}
	return out
}()

// reasonValues are the response header values of each reason (shared, never modified).
var reasonValues = func() (out [NumReasons][]string) {
	for i := range NumReasons {
		out[i] = []string{i.String()}
	}
	return out
}()

// forwardError is a failed exchange with a worker; canceled says the client went away.
type forwardError struct {
	err      error
	canceled bool
	sent     bool // the response head was already sent to the client
}

// forward sends req to the worker of u over HTTP/1.1 and copies the response to w, adding the placement
// headers. A connection that a worker closed while idle is retried once on a new one when the request is
// idempotent and has no body (nothing of it is lost, and nothing is done twice).
func (f *Front) forward(w http.ResponseWriter, req *http.Request, u *upstream, res Result) *forwardError {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		uc, reused, err := u.get(ctx)
		if err != nil {
			return &forwardError{err: err, canceled: ctx.Err() != nil}
		}
		ferr := f.exchange(ctx, w, req, uc, u, res)
		if ferr == nil {
			return nil
		}
		if reused && attempt == 0 && errors.Is(ferr.err, errStaleConn) && req.ContentLength == 0 && ctx.Err() == nil &&
			idempotent([]byte(req.Method)) {
			continue
		}
		return ferr
	}
}

// exchange runs one request on uc; uc is returned to u's pool when the response was read to its end and the
// connection can carry another, else closed.
func (f *Front) exchange(ctx context.Context, w http.ResponseWriter, req *http.Request, uc *upConn, u *upstream, res Result) *forwardError {
	u.arm(uc)
	stop := context.AfterFunc(ctx, func() { uc.c.SetDeadline(aLongTimeAgo) })
	fail := func(err error, sent bool) *forwardError {
		stop()
		uc.c.Close()
		return &forwardError{err: err, canceled: ctx.Err() != nil, sent: sent}
	}
	if err := f.writeRequest(uc, req, res); err != nil {
		if uc.br.Buffered() == 0 && req.ContentLength == 0 {
			err = errors.Join(errStaleConn, err)
		}
		return fail(err, false)
	}
	var resp *http.Response
	for {
		var err error
		if resp, err = http.ReadResponse(uc.br, req); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				err = errors.Join(errStaleConn, err)
			}
			return fail(err, false)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		resp.Body.Close() // 1xx informational: the final response follows
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("router: front: worker switched protocols without an upgrade request"), false)
	}
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	for _, v := range resp.Header["Connection"] {
		dropConnectionHeaders([]byte(v), func(name []byte) { delete(h, http.CanonicalHeaderKey(string(name))) })
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // none from the worker: net/http's server would sniff one
	}
	h[canonPlacement] = f.placementValue(res.Header)
	h[canonReason] = reasonValues[res.Reason]
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	bp := bufPool.Get().(*[]byte)
	rerr, werr := copyBody(w, resp.Body, *bp, resp.ContentLength < 0)
	bufPool.Put(bp)
	if rerr != nil || werr != nil {
		return fail(errors.Join(rerr, werr), true)
	}
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
	u.release(uc, stop() && !resp.Close)
	return nil
}

// copyBody copies a response body to w; flush sends each piece at once (bodies of unknown length, which may
// be streams). It returns the read error (not EOF) and the write error apart.
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, flush bool) (rerr, werr error) {
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr = w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if flush {
				if werr = http.NewResponseController(w).Flush(); werr != nil {
					return nil, werr
				}
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}
