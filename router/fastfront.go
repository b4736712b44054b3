package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// The fasthttp path: the front's cleartext HTTP/1.1 listener is served by valyala/fasthttp (ServeFastHTTP),
// which reuses its request, response and header buffers across requests (what net/http's server does not),
// and a request to a plain-HTTP worker is written and its response head read with fasthttp's own writer and
// parser on the front's pool of worker connections (upstream.go, shared with ServeHTTP). On the bench's
// loopback setup this path takes two thirds of the CPU per request of the net/http one (bench/ROUTER.md). TLS
// and HTTP/2 from clients stay on net/http (ServeHTTP), and so do the requests this path does not carry
// (fastRequestOK, https workers): ServeFastHTTP hands them to the reverse proxy through fasthttpadaptor, with
// the route already decided.

// Limits of the fasthttp path.
const (
	// DefaultMaxHeaderBytes bounds a request's head on the fasthttp path (nginx reads request heads in
	// buffers of 8 KiB, up to four of them, by default).
	DefaultMaxHeaderBytes = 32 << 10
	// maxAdaptedBody bounds the body of a request the fasthttp front hands to the reverse proxy (adapted),
	// which holds it in memory: the requests that take that path rarely carry one.
	maxAdaptedBody = 1 << 20
	// cancelCheckAfter: a worker that has not answered a request this long has the client's connection
	// watched until it does (clientWatch); a client that goes away cancels the exchange. Faster exchanges are
	// not watched (a goroutine and a poll): a client rarely gives up within milliseconds.
	cancelCheckAfter = 10 * time.Millisecond
)

// ServerLimits are the limits of the front's fasthttp server (FastServer); zero fields take the defaults.
type ServerLimits struct {
	// ReadTimeout bounds reading a request, head and body; WriteTimeout writing a response; IdleTimeout a
	// keep-alive connection waiting for its next request.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's head (default DefaultMaxHeaderBytes).
	MaxHeaderBytes int
}

// FastServer returns the fasthttp server of the front (ServeFastHTTP) with limits l: request bodies are
// streamed to the worker as they arrive, responses passed through without a default Content-Type or Server
// header of the front's own. The caller serves it on a listener and shuts it down.
func (f *Front) FastServer(l ServerLimits) *fasthttp.Server {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	f.readTimeout = l.ReadTimeout
	return &fasthttp.Server{
		Handler:                      f.ServeFastHTTP,
		ReadTimeout:                  l.ReadTimeout,
		WriteTimeout:                 l.WriteTimeout,
		IdleTimeout:                  l.IdleTimeout,
		ReadBufferSize:               l.MaxHeaderBytes,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{f},
	}
}

// fastLogger passes the fasthttp server's messages to the front's log at WARN.
type fastLogger struct{ f *Front }

func (l fastLogger) Printf(format string, args ...any) {
	l.f.log.Warn("router: front: fasthttp", "msg", fmt.Sprintf(format, args...))
}

// ServeFastHTTP routes and forwards one request received by a fasthttp server (FastServer): the same
// answers as ServeHTTP.
func (f *Front) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	req := &ctx.Request
	app := f.fastApp(req)
	if app == "" {
		ctx.Error("router: no application in the request", http.StatusBadRequest)
		return
	}
	kind := KindFetch
	if v := req.Header.Peek(f.cfg.KindHeader); len(v) > 0 {
		k, err := ParseKind(string(v))
		if err != nil {
			ctx.Error(err.Error(), http.StatusBadRequest)
			return
		}
		kind = k
	}
	id := string(req.Header.Peek(f.cfg.RequestIDHeader))
	if id == "" {
		id = newRequestID()
		req.Header.Set(f.cfg.RequestIDHeader, id)
	}
	res, wk := f.decide(app, kind, id)
	obs := f.observe[placementOf(res)]
	if wk.up != nil && fastRequestOK(req) {
		if f.forwardFast(ctx, wk, res, obs, start) {
			return // observed when the body has been sent (upstreamBody.Close)
		}
	} else {
		f.adapted(ctx, wk, res)
	}
	obs.Observe(time.Since(start).Seconds())
}

// errAdaptedBodyTooLarge answers a request over maxAdaptedBody that adapted would have to hold.
var errAdaptedBodyTooLarge = fmt.Sprintf("router: request body over %d bytes on a path the front buffers "+
	"(protocol upgrades, trailers, absolute-form targets)", maxAdaptedBody)

// adapted serves a request the fasthttp path does not carry through wk's reverse proxy (net/http), by
// fasthttpadaptor. The request's context is not ctx: fasthttp recycles ctx once the handler returns, which for
// a hijacked (upgraded) connection is while the proxy still runs.
func (f *Front) adapted(ctx *fasthttp.RequestCtx, wk *worker, res Result) {
	// fasthttpadaptor reads the whole body into memory, and takes a body cut short for a whole one: bound it
	// and check it first.
	req := &ctx.Request
	if s := ctx.RequestBodyStream(); s != nil {
		body, err := io.ReadAll(io.LimitReader(s, maxAdaptedBody+1))
		if cl := req.Header.ContentLength(); err != nil || (cl >= 0 && len(body) != cl) {
			f.log.Debug("router: front: request body cut short", "pop", wk.pop, "read", len(body), "content_length", cl, "err", err)
			ctx.SetConnectionClose()
			ctx.Error("router: request body cut short", http.StatusBadRequest)
			return
		}
		if len(body) > maxAdaptedBody {
			ctx.Error(errAdaptedBodyTooLarge, http.StatusRequestEntityTooLarge)
			return
		}
		req.SetBodyRaw(body)
	} else if len(req.Body()) > maxAdaptedBody {
		ctx.Error(errAdaptedBodyTooLarge, http.StatusRequestEntityTooLarge)
		return
	}
	fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		wk.proxy.ServeHTTP(w, req.WithContext(context.WithValue(context.Background(), resultKey{}, res)))
	}))(ctx)
}

// fastApp returns the request's application name (as app).
func (f *Front) fastApp(req *fasthttp.Request) string {
	switch {
	case f.cfg.App != "":
		return f.cfg.App
	case f.cfg.AppHeader != "":
		return string(req.Header.Peek(f.cfg.AppHeader))
	}
	if uri := req.Header.RequestURI(); len(uri) > 0 && uri[0] != '/' {
		return hostApp(string(req.URI().Host())) // absolute-form: the target's host, as net/http (RFC 9112 3.2.2)
	}
	return hostApp(string(req.Header.Host())) // the Host header as sent: req.Host() would parse the URI
}

// fastRequestOK reports whether req can take the fasthttp path's own exchange with a worker: an origin-form
// target and nothing that needs net/http's transport (protocol upgrades, request trailers). Bodies of unknown length
// (chunked) are streamed; Expect: 100-continue was answered by the server; the headers Connection names are
// dropped (forwardFast).
func fastRequestOK(req *fasthttp.Request) bool {
	uri := req.Header.RequestURI()
	if len(uri) == 0 || uri[0] != '/' || req.Header.IsConnect() {
		return false
	}
	h := &req.Header
	return len(h.Peek("Upgrade")) == 0 && len(h.Peek("Te")) == 0 && len(h.Peek("Trailer")) == 0 && !h.ConnectionUpgrade()
}

// fastDropped are the request headers removed before forwarding: hop-by-hop headers (the server answered
// Expect: 100-continue; Connection and the headers it names go by dropConnectionHeaders), the front's internal headers and the
// forwarding headers the front replaces (as the HTTP/1.1 path's skipRequestHeader).
var fastDropped = []string{"Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Expect",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	canonIngress, canonReason, canonPlacement}

// fastResponseDropped are the worker response's headers that are not passed on (hop-by-hop; Connection and
// the headers it names by dropConnectionHeaders).
var fastResponseDropped = []string{"Keep-Alive", "Proxy-Authenticate", "Upgrade", "Proxy-Connection"}

// forwardFast sends the request to wk's worker and sets the worker's response, with the placement headers,
// as ctx's response; the fasthttp server then writes it (streaming its body). It reports whether the body is
// streamed: the request's duration is then observed (obs, from start) once it has been sent.
func (f *Front) forwardFast(ctx *fasthttp.RequestCtx, wk *worker, res Result, obs prometheus.Observer, start time.Time) (streamed bool) {
	req, resp := &ctx.Request, &ctx.Response
	h := &req.Header
	dropConnectionHeaders(h.Peek("Connection"), h.DelBytes) // and Connection itself: the server has read it already
	for _, k := range fastDropped {
		h.Del(k)
	}
	h.SetProtocol("HTTP/1.1") // a client's HTTP/1.0 is the client's: the worker's connection stays kept alive
	h.SetNoDefaultContentType(true)
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		var ip [64]byte
		h.SetBytesV("X-Forwarded-For", a.AddrPort().Addr().Unmap().WithZone("").AppendTo(ip[:0]))
	}
	h.SetBytesV("X-Forwarded-Host", h.Host())
	if ctx.IsTLS() {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	h.Set(canonIngress, f.cfg.Ingress)
	h.Set(canonReason, res.Reason.String())
	req.UseHostHeader = true // the Host as the client sent it, should anything have parsed the URI (lower-casing it)
	up := fasthttp.AcquireResponse()
	uc, ferr := f.exchangeFast(ctx, wk.up, req, up)
	if ferr != nil {
		fasthttp.ReleaseResponse(up)
		if ferr.canceled {
			f.log.Debug("router: front: client canceled the request", "pop", wk.pop, "err", ferr.err)
			f.canceled.Inc() // after the line: a test that sees the count reads the line
			ctx.SetConnectionClose()
			return
		}
		f.log.Warn("router: front: forwarding failed", "pop", wk.pop, "worker", wk.url.Redacted(), "err", ferr.err)
		ctx.Error("router: worker at "+wk.pop+" unreachable", http.StatusBadGateway) // resets the response
		resp.Header.Set(canonPlacement, res.Header)
		resp.Header.Set(canonReason, res.Reason.String())
		return
	}
	rh := &resp.Header
	up.Header.CopyTo(rh)
	rh.SetNoDefaultContentType(true)   // as the server's setting (CopyTo copied the client response's default)
	rh.SetProtocol([]byte("HTTP/1.1")) // the front's, whatever the worker spoke (CopyTo copied its version)
	if up.IsBodyStream() {
		b := upstreamBodies.Get().(*upstreamBody)
		b.up, b.dst, b.u, b.uc, b.obs, b.start = up, rh, wk.up, uc, obs, start
		resp.SetBodyStream(b, up.Header.ContentLength())
		streamed = true
	} else { // no body (HEAD, 204, 304)
		wk.up.release(uc, reusable(up))
		fasthttp.ReleaseResponse(up)
	}
	dropConnectionHeaders(rh.Peek("Connection"), rh.DelBytes) // the worker's connection, not the client's
	for _, k := range fastResponseDropped {
		rh.Del(k)
	}
	rh.Set(canonPlacement, res.Header)
	rh.Set(canonReason, res.Reason.String())
	return streamed
}

// exchangeFast sends req to the worker of u on a pooled connection and reads the response's head into up,
// its body left on the connection as up's body stream; it returns the connection, which the caller releases
// once the body is read (upstreamBody). A pooled connection the worker had closed is replaced once for an
// idempotent request without a body, as on the HTTP/1.1 path; nothing else is retried. A worker that takes
// longer than cancelCheckAfter to answer has the client's connection watched: a client that goes away ends the
// exchange (canceled), as does one whose body cannot be read to its end.
func (f *Front) exchangeFast(ctx *fasthttp.RequestCtx, u *upstream, req *fasthttp.Request, up *fasthttp.Response) (*upConn, *forwardError) {
	// Decided before writing: Request.Write consumes a streamed body (and drops the stream).
	streamed := req.IsBodyStream()
	replayable := !streamed && len(req.Body()) == 0 && idempotent(req.Header.Method())
	req.URI().DisablePathNormalizing = true // Write rebuilds the target from the parsed URI: keep it as sent
	if len(req.Header.Host()) == 0 {
		req.Header.SetHost(u.addr) // HTTP/1.0 without Host (the application named by FrontConfig.App)
	}
	for attempt := 0; ; attempt++ {
		uc, reused, err := u.get(context.Background()) // the dial is bounded by its own timeout
		if err != nil {
			return nil, &forwardError{err: err}
		}
		u.arm(uc)
		err = req.Write(uc.bw)
		if err == nil {
			err = uc.bw.Flush()
		}
		if err != nil {
			uc.c.Close()
			var oe *net.OpError
			if toWorker := errors.As(err, &oe) && oe.Op == "write"; !toWorker && streamed {
				// Reading the client's body failed: the client went away mid-upload.
				return nil, &forwardError{err: errors.Join(errClientGone, err), canceled: true}
			}
			if reused && attempt == 0 && replayable {
				continue // a pooled connection the worker had closed
			}
			return nil, &forwardError{err: err}
		}
		// The request is out; from cancelCheckAfter on, a client that goes away ends the wait for the answer.
		w := f.watchClient(ctx.Conn(), uc.c)
		up.SkipBody = req.Header.IsHead()
		up.StreamBody = true
		err = up.Read(uc.br)
		if err == nil && up.StatusCode() == http.StatusSwitchingProtocols {
			err = errors.New("router: front: worker switched protocols without an upgrade request")
			up.CloseBodyStream()
		}
		canceled := w.stop()
		if err == nil && !canceled {
			return uc, nil
		}
		uc.c.Close()
		if canceled {
			return nil, &forwardError{err: errors.Join(errClientGone, err), canceled: true}
		}
		stale := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
		if reused && attempt == 0 && stale && replayable {
			up.Reset()
			continue
		}
		return nil, &forwardError{err: err}
	}
}

// idempotent reports whether a request of this method may be sent again after a connection failed under it
// (RFC 9110 9.2.2: a proxy retries no other automatically).
func idempotent(method []byte) bool {
	switch string(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// errClientGone is the error of an exchange the client canceled by going away.
var errClientGone = errors.New("router: front: the client went away")

// reusable reports whether the connection that carried up (read to its end) can carry another request.
func reusable(up *fasthttp.Response) bool {
	return !up.ConnectionClose() && (up.Header.ContentLength() != -2 || up.SkipBody || noBody(up.StatusCode()))
}

// noBody reports whether a response of this status has no body (RFC 9112 6.3).
func noBody(status int) bool {
	return (status >= 100 && status < 200) || status == http.StatusNoContent || status == http.StatusNotModified
}

// upstreamBody streams a worker's response body, read from the worker's connection (uc of u) by up, into the
// client's response. The two responses are apart because the server sets Connection: close on the client's
// for a client that closes its own connection (HTTP/1.0, Connection: close): the worker's connection is kept
// by what the worker said. At the end of the body the worker's trailers are copied to the client's header
// (dst), which the server writes after the body; the connection goes back to the pool when the body was read
// to its end, and is closed otherwise.
type upstreamBody struct {
	up    *fasthttp.Response
	dst   *fasthttp.ResponseHeader
	u     *upstream
	uc    *upConn
	done  bool                // read to its end
	obs   prometheus.Observer // the request's duration, observed at Close
	start time.Time           // when the request came
}

var upstreamBodies = sync.Pool{New: func() any { return new(upstreamBody) }}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.up.BodyStream().Read(p)
	if err == io.EOF {
		b.done = true
		for _, k := range b.up.Header.PeekTrailerKeys() {
			b.dst.SetBytesKV(k, b.up.Header.PeekBytes(k))
		}
	}
	return n, err
}

// Close releases the worker's connection and the response; the server calls it once, when the body is
// written or the response reset.
func (b *upstreamBody) Close() error {
	b.obs.Observe(time.Since(b.start).Seconds())
	b.up.CloseBodyStream()
	b.u.release(b.uc, b.done && reusable(b.up))
	fasthttp.ReleaseResponse(b.up)
	*b = upstreamBody{}
	upstreamBodies.Put(b)
	return nil
}

// dropConnectionHeaders deletes, with del, the headers named in a Connection header's value v (hop-by-hop,
// RFC 9110 7.6.1: whatever it names, its options close and keep-alive included) and Connection itself. del
// must leave v's bytes alone until the last call, which deletes Connection (fasthttp's DelBytes moves a
// header's entries, not their bytes). No allocation: a worker that says Connection: keep-alive says it on
// every response.
func dropConnectionHeaders(v []byte, del func(name []byte)) {
	if len(v) == 0 {
		return
	}
	for rest := v; len(rest) > 0; {
		var name []byte
		name, rest, _ = bytes.Cut(rest, comma)
		if name = bytes.TrimSpace(name); len(name) > 0 {
			del(name)
		}
	}
	del(connectionKey)
}

var comma, connectionKey = []byte(","), []byte("Connection")

// clientWatch watches a client's connection while the front waits for the worker's answer: from
// cancelCheckAfter on, a goroutine waits for the connection to become readable and, when the client closed it
// (EOF or a reset, seen by a non-blocking MSG_PEEK), closes the worker's connection's deadline (abort), which
// ends the exchange. Bytes to read (a pipelined request, the rest of a body) end the watch: the client is
// there. Watches are pooled with their timer: an exchange answered within cancelCheckAfter costs no goroutine
// and no allocation.
type clientWatch struct {
	t        *time.Timer
	c        net.Conn // the client's
	upc      net.Conn // the worker's
	readTO   time.Duration
	mu       sync.Mutex
	cond     sync.Cond
	stopped  bool // stop was called: a run that has not begun ends at once
	running  bool // run is waiting on the client's connection
	gone     bool // the client went away
	finished bool // run has ended (set by each run the timer starts)
}

var clientWatches = sync.Pool{New: func() any {
	w := &clientWatch{}
	w.cond.L = &w.mu
	w.t = time.AfterFunc(time.Hour, w.run)
	w.t.Stop()
	return w
}}

// watchClient starts watching the client's connection c for the exchange on the worker's connection upc.
func (f *Front) watchClient(c, upc net.Conn) *clientWatch {
	w := clientWatches.Get().(*clientWatch)
	w.c, w.upc, w.readTO = c, upc, f.readTimeout
	w.stopped, w.running, w.gone, w.finished = false, false, false, false
	w.t.Reset(cancelCheckAfter)
	return w
}

func (w *clientWatch) run() {
	w.mu.Lock()
	if w.stopped {
		w.finished = true
		w.cond.Broadcast()
		w.mu.Unlock()
		return
	}
	w.running = true
	w.mu.Unlock()
	gone := false
	if sc, ok := w.c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			var buf [1]byte
			rc.Read(func(fd uintptr) bool {
				n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				if errors.Is(err, syscall.EAGAIN) {
					return false // nothing yet: wait until the connection is readable (or stop's deadline)
				}
				gone = (n == 0 && err == nil) || errors.Is(err, syscall.ECONNRESET)
				return true
			})
		}
	}
	w.mu.Lock()
	if gone {
		w.gone = true
		w.upc.SetDeadline(aLongTimeAgo) // the exchange with the worker ends now
	}
	w.running, w.finished = false, true
	w.cond.Broadcast()
	w.mu.Unlock()
}

// stop ends the watch (waiting for its goroutine once the timer has fired), returns the watch to the pool and
// reports whether the client went away.
func (w *clientWatch) stop() bool {
	if w.t.Stop() { // never started
		w.c, w.upc = nil, nil
		clientWatches.Put(w)
		return false
	}
	w.mu.Lock()
	w.stopped = true
	woke := false
	for !w.finished {
		if w.running && !woke { // wake its wait for the connection (the read deadline is restored below)
			w.c.SetReadDeadline(aLongTimeAgo)
			woke = true
		}
		w.cond.Wait()
	}
	gone := w.gone
	w.mu.Unlock()
	if woke {
		var d time.Time // the server's read deadline for the rest of the request (none without a ReadTimeout)
		if w.readTO > 0 {
			d = time.Now().Add(w.readTO)
		}
		w.c.SetReadDeadline(d)
	}
	w.c, w.upc = nil, nil
	clientWatches.Put(w)
	return gone
}
