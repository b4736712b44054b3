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
	// Transport forwards the requests (default: a clone of http.DefaultTransport).
	Transport http.RoundTripper
	// Logger receives forwarding errors (default: discard).
	Logger *slog.Logger
	// Registerer, when set, registers vantage_router_request_duration_seconds.
	Registerer prometheus.Registerer
}

// Front is the HTTP front of the router: it applies Route to every request, forwards it (httputil.ReverseProxy)
// to the execution PoP's worker, and adds the cf-placement and reason headers to the response.
type Front struct {
	r        *Router
	cfg      FrontConfig
	log      *slog.Logger
	proxies  map[string]*httputil.ReverseProxy
	local    string // cf-placement value at the ingress
	duration *prometheus.HistogramVec
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
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	f := &Front{r: r, cfg: cfg, log: cfg.Logger, proxies: map[string]*httputil.ReverseProxy{}, local: "local-" + cfg.Ingress}
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
		f.proxies[pop] = f.proxy(pop, u)
	}
	f.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "request_duration_seconds",
		Help: "Duration of requests through the front, by placement: routed (run away from the ingress), baseline " +
			"(held back on purpose) or local (everything else).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
	}, []string{"placement"})
	for _, p := range []string{"routed", "baseline", "local"} {
		f.duration.WithLabelValues(p)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(f.duration); err != nil {
			return nil, fmt.Errorf("router: front: registering metrics: %w", err)
		}
	}
	return f, nil
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
			f.log.Warn("router: front: forwarding failed", "pop", pop, "worker", u.Redacted(), "err", err)
			w.Header().Set(HeaderPlacement, res.Header)
			w.Header().Set(HeaderReason, res.Reason.String())
			http.Error(w, fmt.Sprintf("router: worker at %s unreachable", pop), http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
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
	if v := req.Header.Get(f.cfg.KindHeader); v != "" {
		k, err := ParseKind(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		kind = k
	}
	id := req.Header.Get(f.cfg.RequestIDHeader)
	if id == "" {
		id = newRequestID()
		req.Header.Set(f.cfg.RequestIDHeader, id)
	}
	res := f.r.Route(app, f.cfg.Ingress, id, kind)
	p := f.proxies[res.ExecPoP]
	if p == nil {
		res = Result{ExecPoP: f.cfg.Ingress, Header: f.local, Reason: ReasonNoWorker}
		f.r.m.routes[ReasonNoWorker].inc(id)
		p = f.proxies[f.cfg.Ingress]
	}
	p.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), resultKey{}, res)))
	placement := "local"
	switch {
	case res.Routed:
		placement = "routed"
	case res.Reason == ReasonBaseline:
		placement = "baseline"
	}
	f.duration.WithLabelValues(placement).Observe(time.Since(start).Seconds())
}

// app returns the request's application name.
func (f *Front) app(req *http.Request) string {
	switch {
	case f.cfg.App != "":
		return f.cfg.App
	case f.cfg.AppHeader != "":
		return req.Header.Get(f.cfg.AppHeader)
	}
	host := req.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(host)
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
	return slices.Sorted(maps.Keys(f.proxies))
}
