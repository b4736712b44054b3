package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// The fasthttp path: the front's cleartext HTTP/1.1 listener is served by valyala/fasthttp (ServeFastHTTP),
// and plain-HTTP workers are reached through a fasthttp.HostClient each. Both reuse their request, response and
// header buffers across requests, which is what net/http's server and client do not: on the bench's loopback
// setup this path takes less than half the CPU per request of the net/http one (bench/ROUTER.md). TLS and
// HTTP/2 from clients stay on net/http (ServeHTTP), and so do the requests this path does not carry
// (fastRequestOK, https workers): ServeFastHTTP hands them to ServeHTTP's reverse proxy through
// fasthttpadaptor, with the route already decided.

// Defaults of the fasthttp path (FrontConfig).
const (
	// DefaultMaxConnsPerWorker bounds the connections the fasthttp path opens to one worker; a request that
	// finds all of them busy waits for one (up to DefaultDialTimeout). Connections are kept until idle for
	// IdleConnTimeout, so no more than this many sockets per worker ever churn.
	DefaultMaxConnsPerWorker = 1024
	// DefaultMaxHeaderBytes bounds a request's or a worker response's head on the fasthttp path (nginx reads
	// request heads in buffers of 8 KiB, up to four of them, by default).
	DefaultMaxHeaderBytes = 32 << 10
	// maxAdaptedBody bounds the body of a request the fasthttp front hands to the reverse proxy (adapted),
	// which holds it in memory: the requests that take that path rarely carry one.
	maxAdaptedBody = 1 << 20
	// cancelCheckAfter: an exchange that took longer than this is followed by a look at the client's
	// connection (a non-blocking peek); one that finds it closed counts a canceled request and sends nothing.
	// Faster exchanges skip the look (a syscall): a client rarely gives up within milliseconds.
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

// fastLogger passes the fasthttp server's and clients' messages to the front's log at WARN.
type fastLogger struct{ f *Front }

func (l fastLogger) Printf(format string, args ...any) {
	l.f.log.Warn("router: front: fasthttp", "msg", fmt.Sprintf(format, args...))
}

// newHostClient returns the fasthttp client of the plain-HTTP worker at addr (host:port).
func (f *Front) newHostClient(addr string) *fasthttp.HostClient {
	dial := f.cfg.Dial
	return &fasthttp.HostClient{
		Addr: addr,
		Dial: func(addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), DefaultDialTimeout)
			defer cancel()
			return dial(ctx, "tcp", addr)
		},
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		MaxConns:                 f.cfg.MaxConnsPerWorker,
		MaxConnWaitTimeout:       DefaultDialTimeout,
		MaxIdleConnDuration:      f.cfg.IdleConnTimeout,
		ReadTimeout:              f.cfg.UpstreamTimeout,
		WriteTimeout:             f.cfg.UpstreamTimeout,
		ReadBufferSize:           DefaultMaxHeaderBytes,
		StreamResponseBody:       true,
		ConnPoolStrategy:         fasthttp.LIFO, // the least used connections age out when the load falls
		RetryIfErr:               retryStale,
	}
}

// retryStale is the fasthttp path's retry rule, the HTTP/1.1 path's: a request without a body whose first
// attempt found its connection closed by the worker is sent once more, on another connection; nothing else is
// retried (fasthttp's own rule retries idempotent requests up to five times, timeouts included, which would
// run a GET five times at a slow worker and stretch UpstreamTimeout five-fold).
func retryStale(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	stale := errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	return false, attempts == 1 && stale && len(req.Body()) == 0 // not a stream: fasthttp never retries those
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
	if wk.fast != nil && fastRequestOK(req) {
		f.forwardFast(ctx, wk, res, start)
	} else {
		f.adapted(ctx, wk, res)
	}
	f.observe[placementOf(res)].Observe(time.Since(start).Seconds())
}

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
			ctx.Error(fmt.Sprintf("router: request body over %d bytes on a path the front buffers "+
				"(protocol upgrades, trailers, absolute-form targets)", maxAdaptedBody), http.StatusRequestEntityTooLarge)
			return
		}
		req.SetBodyRaw(body)
	} else if len(req.Body()) > maxAdaptedBody {
		ctx.Error(fmt.Sprintf("router: request body over %d bytes on a path the front buffers "+
			"(protocol upgrades, trailers, absolute-form targets)", maxAdaptedBody), http.StatusRequestEntityTooLarge)
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

// fastRequestOK reports whether req can take the fasthttp client to a worker: an origin-form target and
// nothing that needs net/http's transport (protocol upgrades, request trailers). Bodies of unknown length
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

// fastDropped are the request headers removed before forwarding: hop-by-hop headers (fasthttp's client
// writes its own Connection; the server answered Expect: 100-continue), the front's internal headers and the
// forwarding headers the front replaces (as the HTTP/1.1 path's skipRequestHeader).
var fastDropped = []string{"Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Expect",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	canonIngress, canonReason, canonPlacement}

// fastResponseDropped are the worker response's headers that are not passed on (hop-by-hop; Connection and
// the headers it names by dropConnectionHeaders).
var fastResponseDropped = []string{"Keep-Alive", "Proxy-Authenticate", "Upgrade", "Proxy-Connection"}

// forwardFast sends the request to wk's worker and sets the worker's response, with the placement headers,
// as ctx's response; the fasthttp server then writes it (streaming its body).
func (f *Front) forwardFast(ctx *fasthttp.RequestCtx, wk *worker, res Result, start time.Time) {
	req, resp := &ctx.Request, &ctx.Response
	h := &req.Header
	dropConnectionHeaders(h.Peek("Connection"), h.Del) // and Connection itself: the server has read it already
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
	req.UseHostHeader = true // the Host as the client sent it: the client parses the URI, lower-casing its host
	up := fasthttp.AcquireResponse()
	err := wk.fast.Do(req, up)
	if time.Since(start) > cancelCheckAfter && clientGone(ctx.Conn()) {
		f.log.Debug("router: front: client canceled the request", "pop", wk.pop, "err", err)
		f.canceled.Inc()
		up.CloseBodyStream() // releases the worker connection, or closes it when the body was not read
		fasthttp.ReleaseResponse(up)
		ctx.SetConnectionClose()
		return
	}
	if err != nil {
		fasthttp.ReleaseResponse(up)
		f.log.Warn("router: front: forwarding failed", "pop", wk.pop, "worker", wk.url.Redacted(), "err", err)
		ctx.Error("router: worker at "+wk.pop+" unreachable", http.StatusBadGateway) // resets the response
		resp.Header.Set(canonPlacement, res.Header)
		resp.Header.Set(canonReason, res.Reason.String())
		return
	}
	rh := &resp.Header
	up.Header.CopyTo(rh)
	rh.SetNoDefaultContentType(true) // as the server's setting (CopyTo copied the client response's default)
	if up.IsBodyStream() {
		b := upstreamBodies.Get().(*upstreamBody)
		b.up, b.dst = up, rh
		resp.SetBodyStream(b, up.Header.ContentLength())
	} else {
		resp.SetBody(up.Body())
		fasthttp.ReleaseResponse(up)
	}
	dropConnectionHeaders(rh.Peek("Connection"), rh.Del) // the worker's connection, not the client's
	for _, k := range fastResponseDropped {
		rh.Del(k)
	}
	rh.Set(canonPlacement, res.Header)
	rh.Set(canonReason, res.Reason.String())
}

// upstreamBody streams a worker's response body (up, read by the HostClient) into the client's response. The
// two are apart because fasthttp's client decides, when the body stream is closed, whether to keep the worker's
// connection from the response's Connection: close, which the server sets for a client closing its own
// connection (HTTP/1.0, Connection: close): in one object, each such client would cost a worker connection.
// At the end of the body the worker's trailers are copied to the client's header (dst), which the server
// writes after the body.
type upstreamBody struct {
	up  *fasthttp.Response
	dst *fasthttp.ResponseHeader
}

var upstreamBodies = sync.Pool{New: func() any { return new(upstreamBody) }}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.up.BodyStream().Read(p)
	if err == io.EOF {
		for _, k := range b.up.Header.PeekTrailerKeys() {
			b.dst.SetBytesKV(k, b.up.Header.PeekBytes(k))
		}
	}
	return n, err
}

// Close releases the worker's connection (or closes it when the body was not read to its end) and the
// response; the server calls it once, when the body is written or the response reset.
func (b *upstreamBody) Close() error {
	err := b.up.CloseBodyStream()
	fasthttp.ReleaseResponse(b.up)
	b.up, b.dst = nil, nil
	upstreamBodies.Put(b)
	return err
}

// dropConnectionHeaders deletes, with del, the headers named in a Connection header's value v (hop-by-hop,
// RFC 9110 7.6.1) and Connection itself.
func dropConnectionHeaders(v []byte, del func(string)) {
	if len(v) == 0 {
		return
	}
	for name := range strings.SplitSeq(string(v), ",") {
		if name = strings.TrimSpace(name); name != "" && !strings.EqualFold(name, "close") && !strings.EqualFold(name, "keep-alive") {
			del(name)
		}
	}
	del("Connection")
}

// clientGone reports whether the client closed c (a non-blocking MSG_PEEK reads EOF or a reset). Unread
// bytes (a pipelined request) or nothing to read mean it is still there.
func clientGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || errors.Is(err, syscall.ECONNRESET)
		return true // never wait
	})
	return err == nil && gone
}
