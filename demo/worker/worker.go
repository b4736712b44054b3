// Package worker is Vantage's demo worker host: an HTTP server running small applications that make sequential
// round trips to their database, answering with the timings and reporting aggregated telemetry windows (and a
// sample of per-request records) for smart placement.
package worker

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	// DefaultWindow is how long the worker aggregates before it sends: storage's window, so that each flush
	// writes each application's window once (one script call per application and window).
	DefaultWindow = storage.TelemetryAggWindow
	// DefaultSampleRate is the fraction of requests also sent one by one, as records for debugging.
	DefaultSampleRate = storage.DefaultTelemetrySampleRate
	// DefaultMaxGroups caps the groups (app x deploy x ingress x exec x reason cells, and app x deploy x exec x
	// back-end groups) open in one window: memory stays bounded whatever the requests carry; requests that
	// would open more are dropped from the telemetry and counted.
	DefaultMaxGroups = 10_000
	// DefaultQueueLen bounds the sampled records waiting to be sent; more are dropped (and counted), never
	// blocking requests on a slow sink.
	DefaultQueueLen = 10_000
	// maxBatchGroups and maxBatchSamples bound one Report call: a POST /v1/telemetry stays far below the API's
	// caps (smartrun.MaxIngestBytes, MaxIngestRecords) and one Redis script call stays short.
	maxBatchGroups  = 1000
	maxBatchSamples = 1000
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
	// Report sends a batch of telemetry: aggregated windows and sampled records (e.g.
	// (*storage.Store).AddTelemetryBatch, or PostTelemetry to a scheduler's POST /v1/telemetry). Nil: no
	// telemetry.
	Report func(ctx context.Context, b storage.TelemetryBatch) error
	// QueryTimeout bounds the connection and each round trip (default DefaultQueryTimeout).
	QueryTimeout time.Duration
	// Window is how long requests are aggregated before the windows are sent, at the end of each window of the
	// clock (default DefaultWindow; a shorter one sends partial windows that the store merges).
	Window time.Duration
	// SampleRate is the fraction of requests also sent one by one as records (default DefaultSampleRate; 1:
	// every request; negative: none).
	SampleRate float64
	// MaxGroups caps the open groups of a window (default DefaultMaxGroups); QueueLen the sampled records
	// waiting (default DefaultQueueLen).
	MaxGroups int
	QueueLen  int
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
	agg   *storage.TelemetryAggregator // the window being aggregated; drained by flush
	queue chan storage.Telemetry       // sampled records waiting for flush

	running  atomic.Bool
	telReqs  *prometheus.CounterVec // requests' telemetry by result: sent, failed, dropped
	samples  *prometheus.CounterVec // sampled records by result: sent, failed, dropped
	batches  *prometheus.CounterVec // Report calls by result: success, error
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
	cfg.Window = cmp.Or(cfg.Window, DefaultWindow)
	if cfg.Window < 0 {
		return nil, fmt.Errorf("worker: window %v: want > 0", cfg.Window)
	}
	cfg.SampleRate = cmp.Or(cfg.SampleRate, DefaultSampleRate)
	if !(cfg.SampleRate <= 1) {
		return nil, fmt.Errorf("worker: sample rate %v: want at most 1 (negative: none)", cfg.SampleRate)
	}
	cfg.MaxGroups = cmp.Or(cfg.MaxGroups, DefaultMaxGroups)
	cfg.QueueLen = cmp.Or(cfg.QueueLen, DefaultQueueLen)
	if cfg.MaxGroups < 0 || cfg.QueueLen < 0 {
		return nil, fmt.Errorf("worker: max groups %d, queue %d: want > 0", cfg.MaxGroups, cfg.QueueLen)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{cfg: cfg, apps: map[string]App{}, log: cfg.Logger, agg: storage.NewTelemetryAggregator(),
		queue: make(chan storage.Telemetry, cfg.QueueLen)}
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
	w.telReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "telemetry_requests_total", Help: "Requests by the fate of their aggregated telemetry: sent, failed (its batch " +
			"could not be sent) or dropped (it would have opened more groups than Config.MaxGroups, --max-groups, in its window)."}, []string{"result"})
	w.samples = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "telemetry_samples_total", Help: "Sampled request records by fate: sent, failed (its batch could not be sent) " +
			"or dropped (the queue was full)."}, []string{"result"})
	w.batches = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "telemetry_batches_total", Help: "Telemetry batches sent, by result (success or error)."}, []string{"result"})
	for _, r := range []string{"sent", "failed", "dropped"} {
		w.telReqs.WithLabelValues(r)
		w.samples.WithLabelValues(r)
	}
	w.batches.WithLabelValues("success")
	w.batches.WithLabelValues("error")
	groups := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "telemetry_open_groups", Help: "Groups open in the telemetry window being aggregated (capped by --max-groups)."},
		func() float64 { return float64(w.agg.Groups()) })
	w.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "requests_total", Help: "Requests run, by result (success or error)."}, []string{"result"})
	w.requests.WithLabelValues("success")
	w.requests.WithLabelValues("error")
	w.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "vantage", Subsystem: "worker",
		Name: "request_duration_seconds", Help: "Duration of the requests run, back-end round trips included.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{w.telReqs, w.samples, w.batches, groups, w.requests, w.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("worker: registering metrics: %w", err)
			}
		}
	}
	return w, nil
}

// ServeHTTP runs the request's application: it connects to the database, makes the round trips, answers with
// a Result and adds its telemetry to the window (and, sampled, to the queue of records). The router's ingress header (absent: this PoP) and placement reason, when
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
	w.record(&t)
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

// record adds t to the window being aggregated (unless it would open more than Config.MaxGroups groups) and,
// sampled, queues it as a record; with no Config.Report it does nothing.
func (w *Worker) record(t *storage.Telemetry) {
	if w.cfg.Report == nil {
		return
	}
	if !w.agg.AddCapped(t, w.cfg.MaxGroups) {
		w.telReqs.WithLabelValues("dropped").Inc()
		return
	}
	if w.cfg.SampleRate < 1 && !(rand.Float64() < w.cfg.SampleRate) {
		return
	}
	select {
	case w.queue <- *t:
	default:
		w.samples.WithLabelValues("dropped").Inc()
	}
}

// Run sends the telemetry at the end of each Config.Window of the clock: the aggregated windows and the sampled
// records, in batches of a bounded size. When ctx is done it sends what is left (bounded by flushTimeout) and
// returns nil. A batch that fails is logged, counted and dropped. Run returns at once when there is no
// Config.Report.
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.Report == nil {
		<-ctx.Done()
		return nil
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	defer w.running.Store(false)
	for {
		now := time.Now()
		t := time.NewTimer(now.Truncate(w.cfg.Window).Add(w.cfg.Window).Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			w.flush(ctx)
			return nil
		case <-t.C:
			w.flush(ctx)
		}
	}
}

// flush sends the windows aggregated so far and the queued samples.
func (w *Worker) flush(ctx context.Context) {
	ws := w.agg.Drain()
	var samples []storage.Telemetry
	for len(w.queue) > 0 {
		samples = append(samples, <-w.queue)
	}
	for _, b := range batches(ws, samples, maxBatchGroups, maxBatchSamples) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		err := w.cfg.Report(fctx, b)
		cancel()
		var n int64
		for i := range b.Windows {
			n += b.Windows[i].Requests()
		}
		result := "sent"
		if err != nil {
			result = "failed"
			w.batches.WithLabelValues("error").Inc()
			w.log.Warn("worker: sending telemetry failed", "pop", w.cfg.PoP, "windows", len(b.Windows), "requests", n,
				"samples", len(b.Samples), "err", err)
		} else {
			w.batches.WithLabelValues("success").Inc()
		}
		w.telReqs.WithLabelValues(result).Add(float64(n))
		w.samples.WithLabelValues(result).Add(float64(len(b.Samples)))
	}
}

// batches splits windows and samples into batches of at most maxGroups groups (a window's cells and hosts; a
// window too large is split, the store merging its parts) and maxSamples samples.
func batches(ws []storage.TelemetryWindow, samples []storage.Telemetry, maxGroups, maxSamples int) []storage.TelemetryBatch {
	var out []storage.TelemetryBatch
	groups := maxGroups // of the last batch: full, so that the first group starts one
	part := func(w *storage.TelemetryWindow) *storage.TelemetryWindow {
		if groups == maxGroups {
			out = append(out, storage.TelemetryBatch{})
			groups = 0
		}
		b := &out[len(out)-1]
		if n := len(b.Windows); n == 0 || b.Windows[n-1].App != w.App || !b.Windows[n-1].Start.Equal(w.Start) {
			b.Windows = append(b.Windows, storage.TelemetryWindow{App: w.App, Start: w.Start})
		}
		groups++
		return &b.Windows[len(b.Windows)-1]
	}
	for i := range ws {
		w := &ws[i]
		for _, c := range w.Cells {
			p := part(w)
			p.Cells = append(p.Cells, c)
		}
		for _, h := range w.Hosts {
			p := part(w)
			p.Hosts = append(p.Hosts, h)
		}
	}
	for i := 0; len(samples) > 0; i++ {
		if i == len(out) {
			out = append(out, storage.TelemetryBatch{})
		}
		n := min(len(samples), maxSamples)
		out[i].Samples, samples = samples[:n], samples[n:]
	}
	return out
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
