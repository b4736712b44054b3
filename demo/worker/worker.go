// Package worker is Vantage's demo worker host: an HTTP server running small applications that make sequential
// round trips to their database, answering with the timings and reporting per-request telemetry for smart
// placement.
package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/storage"
)

// Worker defaults.
const (
	// DefaultQueries is the number of sequential database round trips per request (the seeds' example: 5).
	DefaultQueries = 5
	// MaxQueries bounds App.Queries (and ?n=): each is a round trip, and a request must end.
	MaxQueries = 100
	// DefaultQueryTimeout bounds the connection and each round trip to the database.
	DefaultQueryTimeout = 5 * time.Second
	// DefaultBatchSize and DefaultFlushInterval: telemetry is sent when this many records are waiting, or this
	// long after the first one, whichever comes first.
	DefaultBatchSize     = 100
	DefaultFlushInterval = time.Second
	// DefaultQueueLen bounds the records waiting to be sent; more are dropped (and counted), never blocking
	// requests on a slow Redis.
	DefaultQueueLen = 10_000
	// flushTimeout bounds one batch's write, including the final one at shutdown.
	flushTimeout = 5 * time.Second
	// readHeaderTimeout bounds a request's headers.
	readHeaderTimeout = 10 * time.Second
)

// HeaderExec is the response header naming the PoP that ran the request.
const HeaderExec = "vantage-exec"

// App is one demo application.
type App struct {
	Name    string // the application's name: the Host header it is served under (without port)
	Deploy  string // its deploy version, reported with its telemetry
	DB      string // its database, "host:port", spoken to with the line protocol of ServeDB
	Queries int    // sequential round trips per request after connecting (default DefaultQueries)
}

// Config configures a Worker.
type Config struct {
	// PoP is the IATA code of the PoP this worker host runs in (required).
	PoP string
	// Apps are the applications served, by name (at least one). A request names its application with the Host
	// header; with a single application every request runs it.
	Apps []App
	// Dial connects to the databases from this PoP (on the emulated WAN: the PoP node's DialContext). Default: a
	// net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Report sends a batch of telemetry (e.g. (*storage.Store).AddTelemetry). Nil: no telemetry.
	Report func(ctx context.Context, recs []storage.Telemetry) error
	// QueryTimeout bounds the connection and each round trip (default DefaultQueryTimeout).
	QueryTimeout time.Duration
	// BatchSize, FlushInterval and QueueLen tune the telemetry sender (defaults above).
	BatchSize     int
	FlushInterval time.Duration
	QueueLen      int
	// Logger receives telemetry and serving errors (default: discard).
	Logger *slog.Logger
	// Registerer, when set, registers the worker's metrics (namespace vantage, subsystem worker).
	Registerer prometheus.Registerer
	// Now reads the clock for telemetry timestamps (default time.Now). Durations use the monotonic clock.
	Now func() time.Time
}

// Result is a worker's answer to one request (the response body, JSON).
type Result struct {
	App       string    `json:"app"`
	Deploy    string    `json:"deploy,omitempty"`
	Ingress   string    `json:"ingress"`
	Exec      string    `json:"exec"`
	ConnectMs float64   `json:"connect_ms"`
	QueryMs   []float64 `json:"query_ms"`
	TotalMs   float64   `json:"total_ms"`
}

// Worker serves the applications and sends their telemetry. Its methods are safe for concurrent use.
type Worker struct {
	cfg   Config
	apps  map[string]App
	only  *App
	log   *slog.Logger
	queue chan storage.Telemetry

	running  atomic.Bool
	dropped  prometheus.Counter
	failed   prometheus.Counter
	requests *prometheus.CounterVec
	duration prometheus.Histogram
}

// New returns a Worker.
func New(cfg Config) (*Worker, error) {
	if cfg.PoP == "" {
		return nil, errors.New("worker: PoP is empty")
	}
	if len(cfg.Apps) == 0 {
		return nil, errors.New("worker: no applications")
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{cfg: cfg, apps: map[string]App{}, log: cfg.Logger, queue: make(chan storage.Telemetry, cfg.QueueLen)}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	for _, a := range cfg.Apps {
		if a.Name == "" {
			return nil, errors.New("worker: an application has no name")
		}
		if _, _, err := net.SplitHostPort(a.DB); err != nil {
			return nil, fmt.Errorf("worker: app %s: db %q: want host:port: %w", a.Name, a.DB, err)
		}
		if a.Queries == 0 {
			a.Queries = DefaultQueries
		}
		if a.Queries < 0 || a.Queries > MaxQueries {
			return nil, fmt.Errorf("worker: app %s: queries %d: want 1 to %d", a.Name, a.Queries, MaxQueries)
		}
		name := strings.ToLower(a.Name)
		if _, dup := w.apps[name]; dup {
			return nil, fmt.Errorf("worker: app %s given twice", a.Name)
		}
		w.apps[name] = a
	}
	if len(w.apps) == 1 {
		for _, a := range w.apps {
			w.only = &a
		}
	}
	w.dropped = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "telemetry_dropped_total", Help: "Telemetry records dropped because the queue was full."})
	w.failed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "telemetry_failed_total", Help: "Telemetry records lost because their batch could not be sent."})
	w.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "requests_total", Help: "Requests run, by result (success or error)."}, []string{"result"})
	w.requests.WithLabelValues("success")
	w.requests.WithLabelValues("error")
	w.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "request_duration_seconds", Help: "Duration of the requests run, back-end round trips included.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{w.dropped, w.failed, w.requests, w.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("worker: registering metrics: %w", err)
			}
		}
	}
	return w, nil
}

// ServeHTTP runs the request's application: it connects to the database, makes the round trips, answers with
// a Result and queues the telemetry. The router's ingress header (absent: this PoP) and placement reason, when
// forwarded, go into the telemetry. ?n= overrides the application's query count (1 to MaxQueries).
func (w *Worker) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	start := time.Now()
	at := w.cfg.Now()
	app, ok := w.app(req.Host)
	if !ok {
		http.Error(rw, fmt.Sprintf("worker: no application %q at %s", req.Host, w.cfg.PoP), http.StatusNotFound)
		return
	}
	if v := req.URL.Query().Get("n"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxQueries {
			http.Error(rw, fmt.Sprintf("worker: n=%q: want 1 to %d", v, MaxQueries), http.StatusBadRequest)
			return
		}
		app.Queries = n
	}
	ingress := req.Header.Get(router.HeaderIngress)
	if ingress == "" {
		ingress = w.cfg.PoP
	}
	res := Result{App: app.Name, Deploy: app.Deploy, Ingress: ingress, Exec: w.cfg.PoP}
	err := w.run(req.Context(), app, &res)
	res.TotalMs = ms(time.Since(start))
	w.duration.Observe(time.Since(start).Seconds())
	rw.Header().Set(HeaderExec, w.cfg.PoP)
	if err != nil {
		w.requests.WithLabelValues("error").Inc()
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	w.requests.WithLabelValues("success").Inc()
	t := storage.Telemetry{
		App: app.Name, Deploy: app.Deploy, Ingress: ingress, Exec: w.cfg.PoP, Routed: ingress != w.cfg.PoP,
		Reason: req.Header.Get(router.HeaderReason), At: at, DurationMs: res.TotalMs,
		Subrequests: make([]storage.Subrequest, 0, 1+len(res.QueryMs)),
	}
	t.Subrequests = append(t.Subrequests, storage.Subrequest{Host: app.DB, DurationMs: res.ConnectMs})
	for _, q := range res.QueryMs {
		t.Subrequests = append(t.Subrequests, storage.Subrequest{Host: app.DB, DurationMs: q})
	}
	w.enqueue(t)
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(res)
}

// app returns the application served under host.
func (w *Worker) app(host string) (App, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if a, ok := w.apps[strings.ToLower(host)]; ok {
		return a, true
	}
	if w.only != nil {
		return *w.only, true
	}
	return App{}, false
}

// run connects to app's database and makes app.Queries sequential round trips, filling res's timings.
func (w *Worker) run(ctx context.Context, app App, res *Result) error {
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, w.cfg.QueryTimeout)
	c, err := w.cfg.Dial(dctx, "tcp", app.DB)
	cancel()
	if err != nil {
		return fmt.Errorf("worker: app %s at %s: connect to db %s: %w", app.Name, w.cfg.PoP, app.DB, err)
	}
	defer c.Close()
	res.ConnectMs = ms(time.Since(t0))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) }) // cancel a blocked read
	defer stop()
	r := bufio.NewReader(c)
	res.QueryMs = make([]float64, 0, app.Queries)
	for i := range app.Queries {
		t := time.Now()
		if err := c.SetDeadline(t.Add(w.cfg.QueryTimeout)); err != nil {
			return fmt.Errorf("worker: app %s: db %s: %w", app.Name, app.DB, err)
		}
		if err := Query(c, r); err != nil {
			return fmt.Errorf("worker: app %s at %s: db %s query %d: %w", app.Name, w.cfg.PoP, app.DB, i+1, err)
		}
		res.QueryMs = append(res.QueryMs, ms(time.Since(t)))
	}
	return nil
}

// enqueue queues t for the sender, dropping it when the queue is full or there is no sender.
func (w *Worker) enqueue(t storage.Telemetry) {
	if w.cfg.Report == nil {
		return
	}
	select {
	case w.queue <- t:
	default:
		w.dropped.Inc()
	}
}

// Run sends the queued telemetry in batches (Config.BatchSize records, or Config.FlushInterval after the first
// waiting one) until ctx is done, then sends what is left (bounded by flushTimeout) and returns nil. A batch
// that fails is logged, counted and dropped. Run returns at once when there is no Config.Report.
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.Report == nil {
		<-ctx.Done()
		return nil
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	defer w.running.Store(false)
	var batch []storage.Telemetry
	var timer *time.Timer
	var timerC <-chan time.Time
	flush := func() {
		if len(batch) == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		if err := w.cfg.Report(fctx, batch); err != nil {
			w.failed.Add(float64(len(batch)))
			w.log.Warn("worker: sending telemetry failed", "pop", w.cfg.PoP, "records", len(batch), "err", err)
		}
		batch = batch[:0]
		if timer != nil {
			timer.Stop()
			timer, timerC = nil, nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			for len(w.queue) > 0 {
				batch = append(batch, <-w.queue)
				if len(batch) >= w.cfg.BatchSize {
					flush()
				}
			}
			flush()
			return nil
		case t := <-w.queue:
			batch = append(batch, t)
			if len(batch) >= w.cfg.BatchSize {
				flush()
			} else if timer == nil {
				timer = time.NewTimer(w.cfg.FlushInterval)
				timerC = timer.C
			}
		case <-timerC:
			timer, timerC = nil, nil
			flush()
		}
	}
}

// Serve serves HTTP on ln until ctx is done, then shuts down gracefully (bounded by flushTimeout).
func (w *Worker) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: w, ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog: slog.NewLogLogger(w.log.Handler(), slog.LevelWarn)}
	var wg sync.WaitGroup
	served := make(chan struct{})
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-served:
		}
		sctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		srv.Shutdown(sctx)
	})
	err := srv.Serve(ln)
	close(served)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("worker: serving at %s: %w", w.cfg.PoP, err)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
