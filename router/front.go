package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Front defaults.
const (
	// DefaultRequestIDHeader carries the request id the baseline and spreading hash (Cloudflare's ray id).
	DefaultRequestIDHeader = "cf-ray"
	// DefaultKindHeader names the invocation kind (fetch, rpc, entrypoint, cron, asset); absent: fetch. The
	// edge in front of the router sets it and must strip it from client requests.
	DefaultKindHeader = "vantage-kind"
	// HeaderIngress is the request header telling the worker where the request entered.
	HeaderIngress = "vantage-ingress"
)

// internalHeaders are the headers the front itself sets towards the worker (HeaderIngress, HeaderReason) or
// the client (HeaderPlacement, HeaderReason): a client's values are removed before forwarding, so a worker
// never mistakes them for the router's. Forwarded and X-Forwarded-* are replaced by ReverseProxy's Rewrite
// (SetXForwarded), hop-by-hop headers removed by ReverseProxy.
//
// Not stripped, by design: the request id (RequestIDHeader, cf-ray), the invocation kind (KindHeader) and the
// application (AppHeader) are inputs the edge in front of the router sets, and which that edge must strip from
// client requests when it does not set them itself. A client that chooses them only chooses how its own
// request is handled (in or out of the baseline, a local run for a non-fetch kind, an application it could
// name by its Host anyway): no other request's placement and no worker's view of where a request came from.
var internalHeaders = []string{HeaderIngress, HeaderReason, HeaderPlacement}

// FrontConfig configures a Front.
type FrontConfig struct {
	// Ingress is the PoP this front runs in (required).
	Ingress string
	// Workers maps PoP codes to the worker endpoint that executes requests there (http or https URL). The
	// ingress PoP must have one; a request routed to a PoP without one runs at the ingress (ReasonNoWorker).
	Workers map[string]*url.URL
	// App, when set, is the application of every request. Otherwise the AppHeader header names it, or, when
	// AppHeader is empty, the Host header without its port, lower-cased.
	App       string
	AppHeader string
	// RequestIDHeader carries the request id (default DefaultRequestIDHeader). A request without one gets a
	// random id, set on the forwarded request. It is taken from the request as it is (the edge in front sets
	// it, as Cloudflare's cf-ray): see internalHeaders for what is stripped and why this is not.
	RequestIDHeader string
	// KindHeader carries the invocation kind (default DefaultKindHeader).
	KindHeader string
	// Transport forwards what the HTTP/1.1 path does not carry: requests to https workers (HTTP/2 when the
	// worker offers it by ALPN), protocol upgrades, bodies of unknown length, 100-continue (default: a clone of
	// http.DefaultTransport with MaxIdleConnsPerHost set to MaxIdlePerWorker).
	Transport http.RoundTripper
	// Dial connects to plain-HTTP workers on the HTTP/1.1 path (default: Transport's DialContext when
	// Transport is an *http.Transport that has one, else a net.Dialer with DefaultDialTimeout).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerWorker is how many idle connections to each plain-HTTP worker are kept for reuse, by both
	// entry points (default DefaultMaxIdlePerWorker): size it to the requests in flight toward one worker.
	MaxIdlePerWorker int
	// UpstreamTimeout bounds one exchange with a worker on the HTTP/1.1 path (default DefaultUpstreamTimeout);
	// IdleConnTimeout closes pooled connections idle that long (default DefaultIdleConnTimeout).
	UpstreamTimeout, IdleConnTimeout time.Duration
	// Logger receives forwarding errors (default: discard). A request its client canceled is not an error:
	// it is counted in vantage_router_requests_canceled_total and logged at debug level.
	Logger *slog.Logger
	// Registerer, when set, registers vantage_router_request_duration_seconds and
	// vantage_router_requests_canceled_total.
	Registerer prometheus.Registerer
}

// Front is the HTTP front of the router: it applies Route to every request, forwards it to the execution
// PoP's worker, and adds the cf-placement and reason headers to the response.
//
// A front has two entry points over one routing step (decide): ServeFastHTTP for a fasthttp server (the
// cleartext listener of `vantage router`, fastfront.go) and ServeHTTP for a net/http server (TLS, HTTP/2 from
// clients). Both send requests to a plain-HTTP worker on a lean HTTP/1.1 path (upstream.go): one pool of
// keep-alive connections per worker, the request written and the response read in the handler's goroutine,
// header values precomputed, buffers pooled.
// Requests to https workers (HTTP/2 by ALPN where offered) and the few requests those paths do not carry (see
// fastPathOK, fastRequestOK) go through httputil.ReverseProxy with FrontConfig.Transport, from either entry.
type Front struct {
	r           *Router
	cfg         FrontConfig
	log         *slog.Logger
	workers     map[string]*worker
	local       string // cf-placement value at the ingress
	ingressLine string // the vantage-ingress request header line
	placement   map[string][]string
	duration    *prometheus.HistogramVec
	observe     [3]prometheus.Observer // routed, baseline, local
	canceled    prometheus.Counter
	// readTimeout is the fasthttp server's ReadTimeout (FastServer), restored on a client's connection after
	// a clientWatch.
	readTimeout time.Duration
	// The canonical forms of the configured request headers: read from the request's header map directly,
	// so that a request does not canonicalize (allocate) each name again.
	kindKey, idKey, appKey string
}

// worker is the way to one PoP's worker: the HTTP/1.1 path of ServeHTTP and ServeFastHTTP (up: a pool of
// connections both use; nil for an https worker), and the reverse proxy for the other requests of both.
type worker struct {
	pop   string
	url   *url.URL
	up    *upstream
	proxy *httputil.ReverseProxy
}

type resultKey struct{}

// NewFront returns a Front routing with r.
func NewFront(r *Router, cfg FrontConfig) (*Front, error) {
	if r == nil {
		return nil, errors.New("router: front: nil Router")
	}
	if !validPoP(cfg.Ingress) {
		return nil, fmt.Errorf("router: front: ingress PoP %q: want 1 to 16 letters, digits, '-' or '_'", cfg.Ingress)
	}
	if cfg.Workers[cfg.Ingress] == nil {
		return nil, fmt.Errorf("router: front: no worker endpoint for the ingress PoP %s", cfg.Ingress)
	}
	if cfg.RequestIDHeader == "" {
		cfg.RequestIDHeader = DefaultRequestIDHeader
	}
	if cfg.KindHeader == "" {
		cfg.KindHeader = DefaultKindHeader
	}
	if cfg.MaxIdlePerWorker <= 0 {
		cfg.MaxIdlePerWorker = DefaultMaxIdlePerWorker
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if cfg.Transport == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.MaxIdlePerWorker
		cfg.Transport = tr
	}
	if cfg.Dial == nil {
		if tr, ok := cfg.Transport.(*http.Transport); ok && tr.DialContext != nil {
			cfg.Dial = tr.DialContext
		} else {
			cfg.Dial = (&net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext
		}
	}
	f := &Front{r: r, cfg: cfg, log: cfg.Logger, workers: map[string]*worker{}, local: "local-" + cfg.Ingress,
		ingressLine: canonIngress + ": " + cfg.Ingress + "\r\n", placement: map[string][]string{},
		kindKey: http.CanonicalHeaderKey(cfg.KindHeader), idKey: http.CanonicalHeaderKey(cfg.RequestIDHeader),
		appKey: http.CanonicalHeaderKey(cfg.AppHeader)}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if err := r.setIngress(cfg.Ingress); err != nil { // Route then builds no header strings for this ingress
		return nil, fmt.Errorf("router: front: ingress: %w", err)
	}
	for pop, u := range cfg.Workers {
		if !validPoP(pop) {
			return nil, fmt.Errorf("router: front: worker PoP %q: want 1 to 16 letters, digits, '-' or '_'", pop)
		}
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("router: front: worker of %s: URL %v: want http(s)://host[:port]", pop, u)
		}
		wk := &worker{pop: pop, url: u, proxy: f.proxy(pop, u)}
		if u.Scheme == "http" && (u.Path == "" || u.Path == "/") && u.RawQuery == "" {
			wk.up = &upstream{addr: hostPort(u), dial: cfg.Dial, maxIdle: cfg.MaxIdlePerWorker,
				idleTTL: cfg.IdleConnTimeout, timeout: cfg.UpstreamTimeout}
		}
		f.workers[pop] = wk
		f.placement["remote-"+pop] = []string{"remote-" + pop}
	}
	f.placement[f.local] = []string{f.local}
	f.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "request_duration_seconds",
		Help: "Duration of requests through the front, by placement: routed (run away from the ingress), baseline " +
			"(held back on purpose) or local (everything else); to the end of the response's body.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
	}, []string{"placement"})
	for i, p := range []string{"routed", "baseline", "local"} {
		f.observe[i] = f.duration.WithLabelValues(p)
	}
	f.canceled = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "requests_canceled_total",
		Help: "Requests whose client went away (canceled) before the worker's response was forwarded to its end: " +
			"not a failure of the router or the worker, and not logged one by one.",
	})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{f.duration, f.canceled} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("router: front: registering metrics: %w", err)
			}
		}
	}
	return f, nil
}

// hostPort returns u's host with the scheme's default port when it has none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// placementValue returns the cf-placement header value of h, shared when precomputed (every worker PoP and
// the ingress are).
func (f *Front) placementValue(h string) []string {
	if v, ok := f.placement[h]; ok {
		return v
	}
	return []string{h}
}

// CloseIdleConnections closes the idle connections to the workers (on shutdown).
func (f *Front) CloseIdleConnections() {
	for _, wk := range f.workers {
		if wk.up != nil {
			wk.up.closeIdle()
		}
	}
	if tr, ok := f.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
}

// failed handles a forwarding error: a client that went away is counted (and logged at debug level), any
// other error logged at WARN and, when the response has not started, answered with 502 and the placement.
func (f *Front) failed(w http.ResponseWriter, req *http.Request, wk *worker, res Result, err error, canceled, sent bool) {
	if canceled || req.Context().Err() != nil {
		f.log.Debug("router: front: client canceled the request", "pop", wk.pop, "err", err)
		f.canceled.Inc() // after the line: a test that sees the count reads the line

		return
	}
	f.log.Warn("router: front: forwarding failed", "pop", wk.pop, "worker", wk.url.Redacted(), "err", err)
	if sent {
		panic(http.ErrAbortHandler) // the response has started: abort it, the client sees a truncated reply
	}
	w.Header().Set(HeaderPlacement, res.Header)
	w.Header().Set(HeaderReason, res.Reason.String())
	http.Error(w, fmt.Sprintf("router: worker at %s unreachable", wk.pop), http.StatusBadGateway)
}

// proxy returns the reverse proxy to pop's worker at u.
func (f *Front) proxy(pop string, u *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // the worker serves the application by its host name
			pr.SetXForwarded()
			for _, h := range internalHeaders {
				pr.Out.Header.Del(h)
			}
			pr.Out.Header.Set(HeaderIngress, f.cfg.Ingress)
			// The worker reports the reason in its telemetry, so Smart Placement can tell the unrouted
			// baseline from other local runs; a client's own value never reaches it.
			if res, ok := pr.In.Context().Value(resultKey{}).(Result); ok {
				pr.Out.Header.Set(HeaderReason, res.Reason.String())
			}
		},
		Transport: f.cfg.Transport,
		ModifyResponse: func(resp *http.Response) error {
			if res, ok := resp.Request.Context().Value(resultKey{}).(Result); ok {
				resp.Header.Set(HeaderPlacement, res.Header)
				resp.Header.Set(HeaderReason, res.Reason.String())
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			res, _ := req.Context().Value(resultKey{}).(Result)
			f.failed(w, req, f.workers[pop], res, err, errors.Is(err, context.Canceled), false)
		},
		BufferPool: proxyBufferPool{},
		ErrorLog:   slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
	}
}

// ServeHTTP routes and forwards one request.
func (f *Front) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	app := f.app(req)
	if app == "" {
		http.Error(w, "router: no application in the request", http.StatusBadRequest)
		return
	}
	kind := KindFetch
	if v := headerValue(req.Header, f.kindKey); v != "" {
		k, err := ParseKind(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		kind = k
	}
	id := headerValue(req.Header, f.idKey)
	if id == "" {
		id = newRequestID()
		req.Header[f.idKey] = []string{id}
	}
	res, wk := f.decide(app, kind, id)
	if wk.up != nil && fastPathOK(req) {
		if ferr := f.forward(w, req, wk.up, res); ferr != nil {
			f.failed(w, req, wk, res, ferr.err, ferr.canceled, ferr.sent)
		}
	} else {
		wk.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), resultKey{}, res)))
	}
	f.observe[placementOf(res)].Observe(time.Since(start).Seconds())
}

// decide routes a request and returns the worker that runs it: the ingress's when the chosen PoP has none
// (ReasonNoWorker).
func (f *Front) decide(app string, kind Kind, id string) (Result, *worker) {
	res := f.r.Route(app, f.cfg.Ingress, id, kind)
	wk := f.workers[res.ExecPoP]
	if wk == nil {
		res = Result{ExecPoP: f.cfg.Ingress, Header: f.local, Reason: ReasonNoWorker}
		f.r.m.routes[ReasonNoWorker].inc(id)
		wk = f.workers[f.cfg.Ingress]
	}
	return res, wk
}

// placementOf returns the index of res's placement label in Front.observe: routed, baseline or local.
func placementOf(res Result) int {
	switch {
	case res.Routed:
		return 0
	case res.Reason == ReasonBaseline:
		return 1
	}
	return 2
}

// app returns the request's application name.
func (f *Front) app(req *http.Request) string {
	switch {
	case f.cfg.App != "":
		return f.cfg.App
	case f.cfg.AppHeader != "":
		return headerValue(req.Header, f.appKey)
	}
	return hostApp(req.Host)
}

// hostApp returns the application named by a Host header: without its port, lower-cased.
func hostApp(host string) string {
	if strings.LastIndexByte(host, ':') >= 0 { // a port, or an IPv6 literal (SplitHostPort allocates its error)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	return strings.ToLower(host)
}

// headerValue returns the first value of the header named by the canonical key k (as http.Header.Get, without
// canonicalizing k again).
func headerValue(h http.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// newRequestID returns 16 random hex digits.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// AdminHandler serves /metrics (from g), /healthz (always 200) and /readyz (200 once r has loaded a snapshot,
// 503 before; the body says the snapshot's size, age and staleness).
func AdminHandler(r *Router, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		i := r.Info()
		if !r.Ready() {
			http.Error(w, "not ready: no snapshot loaded yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready: %d applications, snapshot age %v, stale %v\n", i.Apps,
			r.now().Sub(i.LoadedAt).Round(time.Millisecond), i.Stale)
	})
	return mux
}

// ParseWorkers parses PoP-to-worker mappings "LHR=http://10.0.0.1:8080", separated by commas, spaces or new
// lines; '#' starts a comment. A PoP given twice is an error naming it.
func ParseWorkers(s string) (map[string]*url.URL, error) {
	out := map[string]*url.URL{}
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, item := range strings.FieldsFunc(line, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' || c == '\r' }) {
			pop, raw, ok := strings.Cut(item, "=")
			if !ok || !validPoP(pop) {
				return nil, fmt.Errorf("router: worker %q: want POP=URL with a PoP code of letters, digits, '-' or '_'", item)
			}
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("router: worker %q: URL %q: want http(s)://host[:port]", item, raw)
			}
			if _, dup := out[pop]; dup {
				return nil, fmt.Errorf("router: worker %q: PoP %s given twice", item, pop)
			}
			out[pop] = u
		}
	}
	return out, nil
}

// Workers returns the PoPs with a worker endpoint, sorted.
func (f *Front) Workers() []string {
	return slices.Sorted(maps.Keys(f.workers))
}
