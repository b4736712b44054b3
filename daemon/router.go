package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/router/proxysync"
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
	// Proxies, when it names a map file, keeps HAProxy's or nginx's own tables in sync with the router
	// (router/proxysync), beside the front or instead of it.
	Proxies ProxySyncConfig
	// Listen is the front's address and Admin the address of /metrics, /healthz and /readyz (empty: none);
	// Listener and AdminListener, when set, are used instead. Listen may be empty when Proxies has a target:
	// the router then only keeps the proxies' tables.
	Listen, Admin           string
	Listener, AdminListener net.Listener
	// TLS serves the front and the admin endpoints over TLS (default: plain HTTP).
	TLS TLSFiles
	// FrontServer is the HTTP server of the front: FrontFastHTTP (cleartext HTTP/1.1 to plain-HTTP workers,
	// the fastest), FrontNetHTTP (net/http: TLS and HTTP/2 from clients, https workers) or FrontAuto ("";
	// fasthttp unless TLS is set or a worker is https).
	FrontServer string
	Logger      *slog.Logger
}

// ProxySyncConfig configures the proxy table sync of a router.
type ProxySyncConfig struct {
	// HAProxyMapFile is the map file HAProxy's configuration reads; HAProxySocket its runtime API (a stats
	// socket at level admin; empty: the file only, read when HAProxy starts or reloads).
	HAProxyMapFile, HAProxySocket string
	// NginxMapFile is the include file of nginx's tables; nginx reloads by SIGHUP to the pid in NginxPIDFile,
	// or else by NginxReloadCommand (default proxysync.DefaultNginxReload).
	NginxMapFile, NginxPIDFile string
	NginxReloadCommand         []string
	// PoPs are the PoPs the proxies forward to (a backend or upstream each). Empty: the front's workers' PoPs,
	// or every PoP when there is no front.
	PoPs []string
}

// targets returns the configured proxies.
func (c ProxySyncConfig) targets() []proxysync.Target {
	var ts []proxysync.Target
	if c.HAProxyMapFile != "" {
		ts = append(ts, &proxysync.HAProxy{MapFile: c.HAProxyMapFile, Socket: c.HAProxySocket})
	}
	if c.NginxMapFile != "" {
		ts = append(ts, &proxysync.Nginx{MapFile: c.NginxMapFile, PIDFile: c.NginxPIDFile, ReloadCommand: c.NginxReloadCommand})
	}
	return ts
}

// Front servers (RouterConfig.FrontServer).
const (
	FrontAuto     = "auto"
	FrontFastHTTP = "fasthttp"
	FrontNetHTTP  = "net/http"
)

// fastFront reports whether the front is served by fasthttp: when asked, or by default when it serves no
// TLS and forwards to no https worker (fasthttp would hand every request to an https worker to net/http's
// reverse proxy, holding its body in memory).
func (c RouterConfig) fastFront() bool {
	if c.FrontServer == FrontFastHTTP {
		return true
	}
	return (c.FrontServer == "" || c.FrontServer == FrontAuto) && !c.TLS.Enabled() && c.httpsWorker() == ""
}

// httpsWorker returns the PoP of an https worker of the front, "" when there is none.
func (c RouterConfig) httpsWorker() string {
	for _, pop := range slices.Sorted(maps.Keys(c.Front.Workers)) {
		if u := c.Front.Workers[pop]; u != nil && u.Scheme == "https" {
			return pop
		}
	}
	return ""
}

// serveFront reports whether the router serves its HTTP front.
func (c RouterConfig) serveFront() bool { return c.Listen != "" || c.Listener != nil }

// DefaultRouterConfig returns the defaults of `vantage router`.
func DefaultRouterConfig() RouterConfig {
	return RouterConfig{Router: router.DefaultConfig(), Listen: DefaultRouterListen, Admin: DefaultRouterAdmin}
}

// Validate checks the front's ingress and its worker, and the router's tunables.
func (c RouterConfig) Validate() error {
	if c.Front.Ingress == "" {
		return errors.New("router: --ingress is required (the PoP this router runs in)")
	}
	proxies := len(c.Proxies.targets()) > 0
	if !c.serveFront() && !proxies {
		return errors.New("router: the front needs an address (--listen), unless the router keeps proxy tables (--haproxy-map-file, --nginx-map-file)")
	}
	if c.Proxies.HAProxySocket != "" && c.Proxies.HAProxyMapFile == "" {
		return errors.New("router: --haproxy-socket needs --haproxy-map-file (the map the runtime API updates)")
	}
	if c.serveFront() && c.Front.Workers[c.Front.Ingress] == nil {
		return fmt.Errorf("router: no worker endpoint for the ingress PoP %s (--workers %s=URL)", c.Front.Ingress, c.Front.Ingress)
	}
	if err := c.TLS.validate("router"); err != nil {
		return err
	}
	switch c.FrontServer {
	case "", FrontAuto, FrontNetHTTP:
	case FrontFastHTTP:
		if c.TLS.Enabled() {
			return errors.New("router: --front-server fasthttp serves cleartext HTTP/1.1 only; with --tls-cert use auto or net/http")
		}
		if pop := c.httpsWorker(); pop != "" {
			return fmt.Errorf("router: --front-server fasthttp forwards to plain-HTTP workers only; the worker of %s is https: use auto or net/http", pop)
		}
	default:
		return fmt.Errorf("router: --front-server %q: want auto, fasthttp or net/http", c.FrontServer)
	}
	return c.Router.Validate()
}

// Router is a router with its HTTP front and admin endpoints.
type Router struct {
	cfg   RouterConfig
	rt    *router.Router
	front *router.Front // nil: no front (proxy tables only)
	// frontServer is the server the front is served by (FrontFastHTTP or FrontNetHTTP; "": no front).
	frontServer string
	sync        *proxysync.Sync
	tr          *http.Transport
	g           group
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
	var src router.Source = st
	names := proxysync.Record(st)
	if len(cfg.Proxies.targets()) > 0 {
		src = names // the proxies' tables are keyed by application name, which the snapshot does not keep
	}
	rt, err := router.New(src, cfg.Router)
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, rt: rt, g: g}
	if cfg.serveFront() {
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
	}
	if r.sync, err = newProxySync(cfg, rt, names, reg, log); err != nil {
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
	switch {
	case r.front != nil && cfg.fastFront():
		r.g.serveFast("router front", ln, r.front.FastServer(router.ServerLimits{ReadTimeout: ReadTimeout,
			WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout}))
		r.frontServer = FrontFastHTTP
	case r.front != nil:
		r.g.serve("router front", ln, r.front)
		r.frontServer = FrontNetHTTP
	}
	r.g.serve("router admin", aln, router.AdminHandler(rt, reg))
	return r, nil
}

// newProxySync returns the proxy table sync of cfg.Proxies (nil when it has no target), after creating the
// map files that do not exist yet, so that the proxies can start before the first snapshot.
func newProxySync(cfg RouterConfig, rt *router.Router, names *proxysync.Names, reg prometheus.Registerer, log *slog.Logger) (*proxysync.Sync, error) {
	targets := cfg.Proxies.targets()
	if len(targets) == 0 {
		return nil, nil
	}
	for _, t := range targets {
		if e, ok := t.(interface{ EnsureFile(string) error }); ok {
			if err := e.EnsureFile(cfg.Front.Ingress); err != nil {
				return nil, fmt.Errorf("router: proxy tables: %w", err)
			}
		}
	}
	pops := cfg.Proxies.PoPs
	if len(pops) == 0 && cfg.serveFront() {
		pops = slices.Sorted(maps.Keys(cfg.Front.Workers))
	}
	return proxysync.New(rt, names, proxysync.Config{Ingress: cfg.Front.Ingress, PoPs: pops,
		BaselineFraction: cfg.Router.BaselineFraction, Targets: targets, Logger: log, Registerer: reg})
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

// Addr returns the front's address ("" when the router serves no front); AdminAddr the admin endpoints' ("" when
// none).
func (r *Router) Addr() string {
	if r.front == nil {
		return ""
	}
	return r.g.endpoints[0].ln.Addr().String()
}

// AdminAddr returns the address of /metrics, /healthz and /readyz, or "".
func (r *Router) AdminAddr() string {
	i := 1
	if r.front == nil {
		i = 0
	}
	if len(r.g.endpoints) <= i {
		return ""
	}
	return r.g.endpoints[i].ln.Addr().String()
}

// Run loads decisions and serves the front until ctx is done.
func (r *Router) Run(ctx context.Context) error {
	if r.front != nil {
		defer r.front.CloseIdleConnections() // the HTTP/1.1 path's pools and the transport's
	}

	r.g.loop(func(ctx context.Context) { r.rt.Run(ctx) })
	var workers []string
	if r.front != nil {
		workers = r.front.Workers()
	}
	var proxies []string
	if r.sync != nil {
		r.g.loop(func(ctx context.Context) { r.sync.Run(ctx) })
		for _, t := range r.cfg.Proxies.targets() {
			proxies = append(proxies, t.Name())
		}
	}
	r.g.log.Info("router: running", "ingress", r.cfg.Front.Ingress, "front", cmp.Or(r.Addr(), "none"),
		"front_server", cmp.Or(r.frontServer, "none"),
		"admin", cmp.Or(r.AdminAddr(), "none"),
		"workers", strings.Join(workers, ","), "proxy_tables", cmp.Or(strings.Join(proxies, ","), "none"))
	err := r.g.run(ctx)
	r.g.log.Info("router: stopped")
	return err
}
