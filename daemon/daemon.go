// Package daemon assembles Vantage's running components from their configs: the probe daemon of a PoP, the
// scheduler (with its API, status page, telemetry ingest and smart runner), the router and the demo worker
// host. It is the only place that wires them: the `vantage` subcommands, the demo, the benchmarks and the
// end-to-end tests all build their components here, so that what they run is what an operator deploys.
//
// Each component follows one shape: NewX(cfg, store) validates cfg, binds its listeners and builds everything;
// Run(ctx) serves until ctx is done, then shuts down gracefully and returns.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"

	"github.com/vantage-edge/vantage/internal/tlsfiles"
	"github.com/vantage-edge/vantage/storage"
)

// HTTP server limits of every listener: a slow or hostile client cannot hold a connection or memory for long.
const (
	// ShutdownTimeout bounds a graceful HTTP shutdown once Run's context is done.
	ShutdownTimeout = 5 * time.Second
	// ReadHeaderTimeout and ReadTimeout bound reading a request (a wrangler config or a telemetry batch is
	// small); IdleTimeout closes idle keep-alive connections.
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
	// WriteTimeout bounds writing a response. The router front forwards to workers whose responses can take
	// seconds (a request making many round trips to a far back end), so it is generous.
	WriteTimeout = 2 * time.Minute
	// MaxHeaderBytes caps request headers.
	MaxHeaderBytes = 64 << 10
)

// listen returns ln when set, else a TCP listener on addr; what names the flag in errors. An empty addr and a
// nil ln give a nil listener (the endpoint is off).
func listen(ln net.Listener, addr, what string) (net.Listener, error) {
	if ln != nil || addr == "" {
		return ln, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, addr, err)
	}
	return l, nil
}

// closeAll closes every non-nil listener (a constructor that failed after binding some).
func closeAll(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

// TLSFiles names the PEM certificate chain and private key a component serves every one of its HTTP listeners
// with (the scheduler's API, the router's front and admin endpoints, probed's and the worker's metrics); both
// empty: plain HTTP, the default. The files are read when the component is built and again when they change
// (within tlsfiles.ReloadInterval), so a renewed certificate needs no restart.
type TLSFiles struct {
	Cert, Key string
}

// Enabled reports whether a certificate is configured.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" }

// validate checks that both files or neither are given; what prefixes the error (the component).
func (f TLSFiles) validate(what string) error {
	if f.Enabled() && (f.Cert == "" || f.Key == "") {
		return fmt.Errorf("%s: TLS needs both a certificate (--tls-cert) and its key (--tls-key)", what)
	}
	return nil
}

// serverConfig returns the server TLS configuration of f, nil when f is empty.
func (f TLSFiles) serverConfig(what string, log *slog.Logger) (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	if err := f.validate(what); err != nil {
		return nil, err
	}
	cfg, err := tlsfiles.Server(f.Cert, f.Key, log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return cfg, nil
}

// newGroup returns a group logging to log whose servers use the TLS files f (none: plain HTTP).
func newGroup(what string, f TLSFiles, log *slog.Logger) (group, error) {
	tc, err := f.serverConfig(what, log)
	return group{log: log, tls: tc}, err
}

// newServer returns an HTTP server with the package's limits, logging its errors to log, serving TLS with tc
// when it is set.
func newServer(h http.Handler, tc *tls.Config, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes, TLSConfig: tc.Clone(), // http2 setup writes to it
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// endpoint is one HTTP server on one listener: a net/http server (srv) or, for the router front's cleartext
// listener, a fasthttp one (fast, whose connections are tracked in conns).
type endpoint struct {
	name  string
	ln    net.Listener
	srv   *http.Server
	fast  *fasthttp.Server
	conns *connSet
}

// connSet tracks a fasthttp server's open connections (Server.ConnState), so that a shutdown that runs out of
// time can close them, as http.Server.Close does.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (cs *connSet) track(c net.Conn, st fasthttp.ConnState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch st {
	case fasthttp.StateNew:
		cs.m[c] = struct{}{}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(cs.m, c)
	}
}

// closeAll closes every tracked connection.
func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.m {
		c.Close()
	}
}

// group runs a component's servers and loops until its context is done, then shuts the servers down.
type group struct {
	log       *slog.Logger
	tls       *tls.Config // nil: plain HTTP
	endpoints []endpoint
	loops     []func(ctx context.Context)
}

// serve adds h on ln (nothing when ln is nil).
func (g *group) serve(name string, ln net.Listener, h http.Handler) {
	if ln != nil {
		g.endpoints = append(g.endpoints, endpoint{name: name, ln: ln, srv: newServer(h, g.tls, g.log)})
	}
}

// serveFast adds the fasthttp server s on ln (nothing when ln is nil).
func (g *group) serveFast(name string, ln net.Listener, s *fasthttp.Server) {
	if ln != nil {
		cs := &connSet{m: map[net.Conn]struct{}{}}
		s.ConnState = cs.track
		g.endpoints = append(g.endpoints, endpoint{name: name, ln: ln, fast: s, conns: cs})
	}
}

// scheme returns "https" when the group serves TLS, else "http".
func (g *group) scheme() string {
	if g.tls != nil {
		return "https"
	}
	return "http"
}

// loop adds a function that runs until its context is done.
func (g *group) loop(f func(ctx context.Context)) { g.loops = append(g.loops, f) }

// close closes the listeners of a group that will never run.
func (g *group) close() {
	for _, e := range g.endpoints {
		e.ln.Close()
	}
}

// run serves every endpoint and runs every loop until ctx is done or a server fails; the servers are then shut
// down (within ShutdownTimeout) and the loops awaited. It returns the first server error.
func (g *group) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(g.endpoints))
	for _, e := range g.endpoints {
		wg.Go(func() {
			var err error
			switch {
			case e.fast != nil:
				if err = e.fast.Serve(e.ln); err == nil { // nil: shut down
					err = http.ErrServerClosed
				}
			case e.srv.TLSConfig != nil:
				err = e.srv.ServeTLS(e.ln, "", "") // the certificate comes from TLSConfig
			default:
				err = e.srv.Serve(e.ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s %s: %w", e.name, e.ln.Addr(), err)
				cancel()
			}
		})
	}
	for _, f := range g.loops {
		wg.Go(func() { f(ctx) })
	}
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer scancel()
	for _, e := range g.endpoints {
		if e.fast != nil {
			// Closes the listener and the idle connections, and waits for the rest. The listener is closed
			// here too: a Serve that had not started yet (ctx done at once) would otherwise never return.
			err := e.fast.ShutdownWithContext(sctx)
			e.ln.Close()
			if err != nil {
				e.conns.closeAll()
			}
			continue
		}
		if err := e.srv.Shutdown(sctx); err != nil {
			e.srv.Close()
		}
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// newRegistry returns a metrics registry with the Go runtime's and the process's collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// adminMux serves /metrics from g and /healthz, and /readyz from ready (nil: always ready).
func adminMux(g prometheus.Gatherer, ready func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// OpenStore opens Redis with o, retrying with backoff while it is unreachable (a daemon may start before its
// Redis), until ctx is done. A schema mismatch (storage.ErrSchema) is returned at once.
func OpenStore(ctx context.Context, o storage.Options, log *slog.Logger) (*storage.Store, error) {
	wait := 100 * time.Millisecond
	for {
		st, err := storage.Open(ctx, o)
		if err == nil || errors.Is(err, storage.ErrSchema) {
			return st, err
		}
		log.Warn("opening Redis; retrying", "err", err, "backoff", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// logger returns log, or a logger that discards.
func logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
