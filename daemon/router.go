package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/storage"
)

// Defaults of RouterConfig's listeners.
const (
	DefaultRouterListen = "127.0.0.1:8080"
	DefaultRouterAdmin  = "127.0.0.1:9464"
)

// RouterConfig configures a router: its decisions (Router), its HTTP front (Front) and its listeners. Start
// from DefaultRouterConfig.
type RouterConfig struct {
	Router router.Config
	// Front configures the HTTP front; Front.Ingress and its worker are required. Router.PoPs defaults to the
	// ingress.
	Front router.FrontConfig
	// Listen is the front's address and Admin the address of /metrics, /healthz and /readyz (empty: none);
	// Listener and AdminListener, when set, are used instead.
	Listen, Admin           string
	Listener, AdminListener net.Listener
	// TLS serves the front and the admin endpoints over TLS (default: plain HTTP).
	TLS    TLSFiles
	Logger *slog.Logger
}

// DefaultRouterConfig returns the defaults of `vantage router`.
func DefaultRouterConfig() RouterConfig {
	return RouterConfig{Router: router.DefaultConfig(), Listen: DefaultRouterListen, Admin: DefaultRouterAdmin}
}

// Validate checks the front's ingress and its worker, and the router's tunables.
func (c RouterConfig) Validate() error {
	if c.Front.Ingress == "" {
		return errors.New("router: --ingress is required (the PoP this router runs in)")
	}
	if c.Front.Workers[c.Front.Ingress] == nil {
		return fmt.Errorf("router: no worker endpoint for the ingress PoP %s (--workers %s=URL)", c.Front.Ingress, c.Front.Ingress)
	}
	if c.Listen == "" && c.Listener == nil {
		return errors.New("router: the front needs an address (--listen)")
	}
	if err := c.TLS.validate("router"); err != nil {
		return err
	}
	return c.Router.Validate()
}

// Router is a router with its HTTP front and admin endpoints.
type Router struct {
	cfg   RouterConfig
	rt    *router.Router
	front *router.Front
	tr    *http.Transport
	g     group
}

// NewRouter assembles a router reading decisions from st.
func NewRouter(cfg RouterConfig, st *storage.Store) (*Router, error) {
	if len(cfg.Router.PoPs) == 0 {
		cfg.Router.PoPs = []string{cfg.Front.Ingress}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := logger(cfg.Logger)
	g, err := newGroup("router", cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	reg := newRegistry()
	cfg.Router.Logger, cfg.Router.Registerer = log, reg
	cfg.Front.Logger, cfg.Front.Registerer = log, reg
	rt, err := router.New(st, cfg.Router)
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, rt: rt, g: g}
	if cfg.Front.Transport == nil {
		r.tr = NewUpstreamTransport(nil)
		if cfg.Front.MaxIdlePerWorker > 0 {
			r.tr.MaxIdleConnsPerHost = cfg.Front.MaxIdlePerWorker
		}
		cfg.Front.Transport = r.tr
	}
	if r.front, err = router.NewFront(rt, cfg.Front); err != nil {
		return nil, err
	}
	ln, err := listen(cfg.Listener, cfg.Listen, "router: --listen")
	if err != nil {
		return nil, err
	}
	aln, err := listen(cfg.AdminListener, cfg.Admin, "router: --admin")
	if err != nil {
		closeAll(ln)
		return nil, err
	}
	r.g.serve("router front", ln, r.front)
	r.g.serve("router admin", aln, router.AdminHandler(rt, reg))
	return r, nil
}

// NewUpstreamTransport returns the transport a router front forwards with where its HTTP/1.1 path does not
// (https workers, HTTP/2 by ALPN when they offer it; upgrades): connections to workers are kept and reused
// (router.DefaultMaxIdlePerWorker per worker), environment proxies are never used, and dial (nil: a
// net.Dialer) makes the connections, the front's HTTP/1.1 path's included.
func NewUpstreamTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	if dial == nil {
		dial = (&net.Dialer{Timeout: router.DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{
		Proxy:                 nil, // a router never forwards through $HTTP_PROXY
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   router.DefaultMaxIdlePerWorker, // sized to the front's concurrency: no churn toward a worker
		IdleConnTimeout:       router.DefaultIdleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: WriteTimeout,
	}
}

// Router returns the router (Route, Ready), for callers that route in process.
func (r *Router) Router() *router.Router { return r.rt }

// Addr returns the front's address; AdminAddr the admin endpoints' ("" when none).
func (r *Router) Addr() string { return r.g.endpoints[0].ln.Addr().String() }

// AdminAddr returns the address of /metrics, /healthz and /readyz, or "".
func (r *Router) AdminAddr() string {
	if len(r.g.endpoints) < 2 {
		return ""
	}
	return r.g.endpoints[1].ln.Addr().String()
}

// Run loads decisions and serves the front until ctx is done.
func (r *Router) Run(ctx context.Context) error {
	defer r.front.CloseIdleConnections() // the HTTP/1.1 path's pools and the transport's

	r.g.loop(func(ctx context.Context) { r.rt.Run(ctx) })
	r.g.log.Info("router: running", "ingress", r.cfg.Front.Ingress, "front", r.Addr(), "admin", cmp.Or(r.AdminAddr(), "none"),
		"workers", strings.Join(r.front.Workers(), ","))
	err := r.g.run(ctx)
	r.g.log.Info("router: stopped")
	return err
}
