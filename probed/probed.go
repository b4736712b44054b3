// Package probed is the probe daemon of one PoP: it consumes the PoP's job stream, runs the probes, stores
// the results and acknowledges each job only once its result is stored.
package probed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/prober"
)

// Defaults of Config.
const (
	// DefaultHeartbeat is how often the daemon registers itself; a PoP is up while some daemon's heartbeat is
	// younger than three intervals.
	DefaultHeartbeat = 5 * time.Second
	// DefaultConcurrency is the probes run at once; the prober's rate limits apply on top.
	DefaultConcurrency = 64
	// DefaultReadBlock is how long one read of the job stream blocks waiting for jobs.
	DefaultReadBlock = 2 * time.Second
	// DefaultReclaimIdle is how long a job stays unacknowledged by another daemon before this one takes it
	// over: longer than the longest probe (MaxCount samples at the timeout would be far longer, but real jobs
	// are 3 samples of at most 2 s).
	DefaultReclaimIdle = 30 * time.Second
	// DefaultReclaimEvery is how often the daemon looks for abandoned jobs.
	DefaultReclaimEvery = 10 * time.Second
	// DefaultBufferSize bounds the results kept while Redis is unreachable (~1 KiB each).
	DefaultBufferSize = 10000
	// DefaultDrainTimeout is how long a stopping daemon lets in-flight probes finish and writes their results
	// before abandoning the rest to the other daemons of the PoP (they stay pending in the stream and are
	// re-claimed).
	DefaultDrainTimeout = 10 * time.Second
	// DefaultConsumerIdle is how long a consumer of the PoP's job group may stay idle with no job pending before
	// the reclaimer deletes it: a daemon reads every ReadBlock, so an hour idle is a daemon that stopped (every
	// start is a new consumer, and the group would grow with every restart). A live one deleted by mistake is
	// re-created by its next read.
	DefaultConsumerIdle = time.Hour
	// drainFlushMin is the least time the drain gives the writer for the last results, even when the probes
	// took the whole DrainTimeout: one round trip to Redis per result, on a healthy link.
	drainFlushMin = 250 * time.Millisecond
	// drainCancelGrace is how long the drain waits for probes to return once cancelled; a probe that does not
	// honour its context is left behind (its result is discarded, its job stays pending).
	drainCancelGrace = 250 * time.Millisecond
	// DefaultFlushDelay is how long the writer lets results gather once one is ready while probes are still
	// running: the results of a job batch then go to Redis in one call, and a slow probe holds back the
	// others by at most this long.
	DefaultFlushDelay = 20 * time.Millisecond
	// DefaultFlushMax is the most results one write carries.
	DefaultFlushMax = 512
	// DefaultBackoffMin and DefaultBackoffMax bound the exponential backoff between Redis attempts.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
)

// Config tunes a Daemon. Zero fields take the defaults above.
type Config struct {
	PoP          string // IATA code of this PoP; required
	DaemonID     string // consumer name in the PoP's group; default hostname-pid-<random>, unique per start
	Heartbeat    time.Duration
	Concurrency  int
	ReadBlock    time.Duration
	ReclaimIdle  time.Duration
	ReclaimEvery time.Duration
	BufferSize   int
	DrainTimeout time.Duration // the whole drain after ctx ends: probes, then the last writes (see Run)
	ConsumerIdle time.Duration // default DefaultConsumerIdle; < 0: never prune the PoP's consumers
	BackoffMin   time.Duration
	BackoffMax   time.Duration
	FlushDelay   time.Duration // default DefaultFlushDelay; < 0: write each result as soon as it is ready
	FlushMax     int           // default DefaultFlushMax
	Logger       *slog.Logger  // default slog.Default()
}

func (c *Config) fill() error {
	if c.PoP == "" {
		return errors.New("probed: config: PoP is empty")
	}
	if c.DaemonID == "" {
		// The random part keeps two daemons apart that share a hostname and a pid (containers on one host
		// network): sharing a consumer would mix their pending jobs.
		h, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		c.DaemonID = fmt.Sprintf("%s-%d-%s", h, os.Getpid(), hex.EncodeToString(b[:]))
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Heartbeat, DefaultHeartbeat)
	def(&c.ReadBlock, DefaultReadBlock)
	def(&c.ReclaimIdle, DefaultReclaimIdle)
	def(&c.ReclaimEvery, DefaultReclaimEvery)
	def(&c.DrainTimeout, DefaultDrainTimeout)
	if c.ConsumerIdle == 0 {
		c.ConsumerIdle = DefaultConsumerIdle
	}
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, DefaultBackoffMax)
	if c.FlushDelay == 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.FlushMax <= 0 {
		c.FlushMax = DefaultFlushMax
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BufferSize <= 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Job is one probe to run, as read from the PoP's stream.
type Job struct {
	ID       string        // job id: results are stored idempotently under it (per PoP)
	StreamID string        // the stream entry to acknowledge, once all its probes are stored
	Index    int           // the probe's index in its stream entry (a batch of Parts probes)
	Parts    int           // probes of the stream entry; 0 or 1: a single job
	Reply    string        // the results stream the result is announced on ("" for none)
	Round    string        // the recheck round or ad-hoc probe the job belongs to, echoed in the result
	Target   prober.Target // what to probe
	Key      string        // the placement target's key the result is stored under (e.g. "host:db.example.com:5432")
	Deadline time.Time     // zero: none; a job read after its deadline is acknowledged without probing
}

// Queue is the job stream and result store of one PoP, as the daemon uses it (QueueFor adapts a
// storage.Store).
type Queue interface {
	// Read returns up to max new jobs for this consumer, blocking up to block for some.
	Read(ctx context.Context, max int, block time.Duration) ([]Job, error)
	// Reclaim takes over up to max jobs other consumers left unacknowledged for minIdle.
	Reclaim(ctx context.Context, minIdle time.Duration, max int) ([]Job, error)
	// Store writes r as j's result (idempotent per job id).
	Store(ctx context.Context, j Job, r prober.Result) error
	// Ack acknowledges j's stream entry; called only after Store succeeded for every probe of the entry (or
	// they expired).
	Ack(ctx context.Context, j Job) error
	// Heartbeat registers the daemon for interval.
	Heartbeat(ctx context.Context, interval time.Duration) error
}

// Done is a finished probe for BatchQueue.StoreBatch: its result (nil when acknowledged without one,
// e.g. expired) and whether its stream entry is to be acknowledged with it (every probe of it is done).
type Done struct {
	Job    Job
	Result *prober.Result
	Ack    bool
}

// BatchQueue is implemented by a Queue that stores many results and acknowledges their entries in one
// operation (StoreQueue: one script call); the writer then uses it instead of Store and Ack per job.
type BatchQueue interface {
	StoreBatch(ctx context.Context, ds []Done) error
}

// ConsumerPruner is implemented by a Queue that can delete the PoP's stale consumers (StoreQueue); the
// reclaimer calls it every ConsumerIdle/12.
type ConsumerPruner interface {
	PruneConsumers(ctx context.Context, idle time.Duration) ([]string, error)
}

// Prober runs one probe; *prober.Engine implements it.
type Prober interface {
	Probe(ctx context.Context, t prober.Target) prober.Result
}

// Daemon is one probe daemon.
type Daemon struct {
	cfg     Config
	q       Queue
	p       Prober
	log     *slog.Logger
	metrics *Metrics

	out *outbox

	mu       sync.Mutex
	inFlight map[string]bool // job ids being probed here, so a reclaim does not run a job twice
	// entries holds, by stream entry, the indices of its probes not yet stored: the entry is acknowledged
	// with the write that stores the last of them.
	entries map[string]map[int]bool
	ready   bool // Redis answered the last attempt
}

// New returns a daemon; metrics are registered with reg (nil: not registered).
func New(cfg Config, q Queue, p Prober, reg prometheus.Registerer) (*Daemon, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg: cfg, q: q, p: p,
		log:      cfg.Logger.With("component", "probed", "pop", cfg.PoP, "daemon", cfg.DaemonID),
		metrics:  NewMetrics(reg),
		inFlight: map[string]bool{},
		entries:  map[string]map[int]bool{},
	}
	d.out = newOutbox(cfg.BufferSize, d.metrics)
	return d, nil
}

// ID returns the daemon's id (its consumer name).
func (d *Daemon) ID() string { return d.cfg.DaemonID }

// Ready reports whether the last Redis operation succeeded (for /readyz).
func (d *Daemon) Ready() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ready
}

func (d *Daemon) setReady(ok bool) {
	d.mu.Lock()
	d.ready = ok
	d.mu.Unlock()
	if ok {
		d.metrics.redisUp.Set(1)
	} else {
		d.metrics.redisUp.Set(0)
	}
}

// Run consumes jobs until ctx is done, then drains within DrainTimeout: it stops reading (a wait for a free
// probe slot ends with ctx), lets in-flight probes finish until DrainTimeout after ctx ended (cancelling the
// rest, which stay pending for the PoP's other daemons), and writes every finished result it can until the same
// deadline (given at least drainFlushMin). Every probe is also bounded by its job's deadline.
func (d *Daemon) Run(ctx context.Context) error {
	// Probes and result writes outlive ctx by the drain timeout.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	writeCtx, cancelWrite := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrite()

	sem := make(chan struct{}, d.cfg.Concurrency)
	var probes, loops sync.WaitGroup
	// dispatch starts jobs as probe slots free up. The reader and the reclaimer both dispatch, so a slot
	// counted free before a read may be gone: the wait for it ends with ctx, and the jobs not started stay
	// pending in the stream (another daemon, or this one after a restart, re-claims them).
	dispatch := func(jobs []Job, reclaimed bool) {
		fresh := 0
		defer func() {
			if reclaimed && fresh > 0 {
				d.log.Info("probed: re-claimed abandoned jobs", "jobs", fresh)
			}
		}()
		d.track(jobs)
		for i, j := range jobs {
			d.mu.Lock()
			dup := d.inFlight[j.ID] || !d.entries[entryOf(j)][j.Index]
			if !dup {
				d.inFlight[j.ID] = true
			}
			d.mu.Unlock()
			if dup {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				d.mu.Lock()
				delete(d.inFlight, j.ID)
				d.mu.Unlock()
				d.log.Info("probed: stopping; jobs read but not started stay pending", "jobs", len(jobs)-i)
				return
			}
			if reclaimed {
				fresh++
				d.metrics.reclaimed.Inc()
			}
			probes.Go(func() {
				defer func() { <-sem }()
				d.runJob(workCtx, j)
			})
		}
	}
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); d.writer(writeCtx) }()
	loops.Go(func() { d.heartbeat(ctx) })
	loops.Go(func() { d.reader(ctx, sem, dispatch) })
	loops.Go(func() { d.reclaimer(ctx, sem, dispatch) })

	<-ctx.Done()
	deadline := time.Now().Add(d.cfg.DrainTimeout)
	loops.Wait()
	d.log.Info("probed: draining", "in_flight", d.inFlightCount())
	done := make(chan struct{})
	go func() { probes.Wait(); close(done) }()
	timer := time.NewTimer(time.Until(deadline))
	select {
	case <-done:
	case <-timer.C:
		d.log.Warn("probed: drain timeout; abandoning in-flight jobs to the PoP's other daemons", "in_flight", d.inFlightCount())
		cancelWork()
		grace := time.NewTimer(drainCancelGrace)
		select {
		case <-done:
		case <-grace.C:
			d.log.Warn("probed: probes did not return when cancelled; leaving them", "in_flight", d.inFlightCount())
		}
		grace.Stop()
	}
	timer.Stop()
	// Flush what was measured until the drain deadline.
	d.out.close()
	flush := time.AfterFunc(max(time.Until(deadline), drainFlushMin), cancelWrite)
	<-writerDone
	flush.Stop()
	if n := d.out.len(); n > 0 {
		d.log.Warn("probed: stopped with unwritten results; their jobs stay pending and will be re-run", "results", n)
	}
	return nil
}

// entryOf returns the stream entry j belongs to.
func entryOf(j Job) string {
	if j.StreamID != "" {
		return j.StreamID
	}
	return j.ID
}

// track records the stream entries of jobs just delivered with the indices of their probes, unless an entry
// is tracked already (a re-delivery of an entry this daemon is working on: the probes it stored are not run
// again).
func (d *Daemon) track(jobs []Job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fresh := map[string]bool{}
	for _, j := range jobs {
		e := entryOf(j)
		set, ok := d.entries[e]
		if !ok {
			set = map[int]bool{}
			d.entries[e] = set
			fresh[e] = true
		}
		if fresh[e] {
			set[j.Index] = true
		}
	}
}

func (d *Daemon) inFlightCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inFlight)
}

// runJob probes j and queues the result; a panic becomes a failed result.
func (d *Daemon) runJob(ctx context.Context, j Job) {
	defer func() {
		d.mu.Lock()
		delete(d.inFlight, j.ID)
		d.mu.Unlock()
	}()
	d.metrics.inFlight.Inc()
	defer d.metrics.inFlight.Dec()
	if !j.Deadline.IsZero() && time.Now().After(j.Deadline) {
		d.metrics.jobs.WithLabelValues("expired").Inc()
		d.finish(j, result{job: j, expired: true})
		return
	}
	// The job's deadline bounds the probe: past it nobody waits for the result (the ad-hoc verdict or the
	// recheck round was given without it), and a slow target must not hold a slot longer.
	pctx := ctx
	if !j.Deadline.IsZero() {
		var cancel context.CancelFunc
		pctx, cancel = context.WithDeadline(ctx, j.Deadline)
		defer cancel()
	}
	var r prober.Result
	func() {
		defer func() {
			if p := recover(); p != nil {
				err := fmt.Errorf("probed: probe %s %s panicked: %v\n%s", j.Target.Kind, j.Target.Addr, p, debug.Stack())
				r = prober.Result{Kind: j.Target.Kind, Target: j.Target.Addr, Start: time.Now(),
					Class: prober.ClassOther, Error: err.Error(), Err: err}
			}
		}()
		r = d.p.Probe(pctx, j.Target)
	}()
	switch {
	case ctx.Err() != nil:
		// Abandoned by the drain timeout: a cancelled probe is not a measurement. The job stays pending.
		d.metrics.jobs.WithLabelValues("abandoned").Inc()
		return
	case pctx.Err() != nil:
		// Cut by the job's deadline: acknowledged without a result, as a job read too late is.
		d.log.Info("probed: probe cut at its job's deadline", "job", j.ID, "kind", j.Target.Kind, "target", j.Target.Addr)
		d.metrics.jobs.WithLabelValues("expired").Inc()
		d.finish(j, result{job: j, expired: true})
		return
	}
	d.finish(j, result{job: j, r: r})
}

// finish hands j's outcome to the writer; j is no longer in flight (the writer's wait for the probes still
// running ends with the last one).
func (d *Daemon) finish(j Job, r result) {
	d.mu.Lock()
	delete(d.inFlight, j.ID)
	d.mu.Unlock()
	d.out.push(r)
}

// backoff doubles d within the configured bounds.
func (d *Daemon) backoff(cur time.Duration) time.Duration {
	if cur <= 0 {
		return d.cfg.BackoffMin
	}
	return min(cur*2, d.cfg.BackoffMax)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (d *Daemon) heartbeat(ctx context.Context) {
	for {
		hctx, cancel := context.WithTimeout(ctx, d.cfg.Heartbeat)
		err := d.q.Heartbeat(hctx, d.cfg.Heartbeat)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.metrics.heartbeats.WithLabelValues("failure").Inc()
			d.log.Warn("probed: heartbeat", "err", err)
		} else {
			d.metrics.heartbeats.WithLabelValues("success").Inc()
		}
		if !sleepCtx(ctx, d.cfg.Heartbeat) {
			return
		}
	}
}

// reader reads new jobs while there are free probe slots.
func (d *Daemon) reader(ctx context.Context, sem chan struct{}, dispatch func([]Job, bool)) {
	var wait time.Duration
	for ctx.Err() == nil {
		free := cap(sem) - len(sem)
		if free <= 0 {
			if !sleepCtx(ctx, 10*time.Millisecond) {
				return
			}
			continue
		}
		jobs, err := d.q.Read(ctx, free, d.cfg.ReadBlock)
		if ctx.Err() != nil {
			// Jobs read as ctx ended are not run: they stay pending and another daemon re-claims them.
			return
		}
		if err != nil {
			d.setReady(false)
			d.metrics.redisErrors.WithLabelValues("read").Inc()
			wait = d.backoff(wait)
			d.log.Warn("probed: reading jobs; retrying", "err", err, "backoff", wait)
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		wait = 0
		d.setReady(true)
		dispatch(jobs, false)
	}
}

// reclaimer takes over jobs abandoned by dead daemons of the PoP, and deletes the consumers of the daemons
// that stopped (ConsumerPruner) every ConsumerIdle/12.
func (d *Daemon) reclaimer(ctx context.Context, sem chan struct{}, dispatch func([]Job, bool)) {
	pruner, _ := d.q.(ConsumerPruner)
	var lastPrune time.Time
	for sleepCtx(ctx, d.cfg.ReclaimEvery) {
		if pruner != nil && d.cfg.ConsumerIdle > 0 && time.Since(lastPrune) >= d.cfg.ConsumerIdle/12 {
			lastPrune = time.Now()
			if names, err := pruner.PruneConsumers(ctx, d.cfg.ConsumerIdle); err != nil {
				d.log.Warn("probed: pruning stale consumers", "err", err)
			} else if len(names) > 0 {
				d.log.Info("probed: deleted stale consumers", "consumers", names)
			}
		}
		free := cap(sem) - len(sem)
		if free <= 0 {
			continue
		}
		jobs, err := d.q.Reclaim(ctx, d.cfg.ReclaimIdle, free)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.metrics.redisErrors.WithLabelValues("reclaim").Inc()
			d.log.Warn("probed: re-claiming jobs", "err", err)
			continue
		}
		dispatch(jobs, true)
	}
}

// writer stores results and acknowledges their jobs' entries, retrying with backoff while Redis is away;
// results stay in the bounded outbox meanwhile. Results ready together are written together (BatchQueue):
// once one is ready, the writer waits up to FlushDelay for the probes still running.
func (d *Daemon) writer(ctx context.Context) {
	var wait time.Duration
	for {
		rs, ok := d.out.peekN(ctx, d.cfg.FlushMax)
		if !ok {
			return
		}
		if d.cfg.FlushDelay > 0 && len(rs) < d.cfg.FlushMax && d.inFlightCount() > 0 {
			d.out.gather(ctx, d.cfg.FlushDelay, d.cfg.FlushMax, func() bool { return d.inFlightCount() == 0 })
			if rs, ok = d.out.peekN(ctx, d.cfg.FlushMax); !ok {
				return
			}
		}
		err := d.complete(ctx, rs)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.setReady(false)
			wait = d.backoff(wait)
			d.log.Warn("probed: storing results; keeping them buffered", "results", len(rs), "err", err, "backoff", wait, "buffered", d.out.len())
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		wait = 0
		d.setReady(true)
		d.out.popN(rs)
	}
}

// complete stores rs and acknowledges the entries whose every probe is then stored.
func (d *Daemon) complete(ctx context.Context, rs []result) error {
	ds := make([]Done, len(rs))
	d.mu.Lock()
	left := map[string]int{}
	counted := map[string]map[int]bool{}
	for i, res := range rs {
		e := entryOf(res.job)
		if _, ok := left[e]; !ok {
			left[e] = len(d.entries[e])
			counted[e] = map[int]bool{}
		}
		if d.entries[e][res.job.Index] && !counted[e][res.job.Index] {
			counted[e][res.job.Index] = true
			left[e]--
		}
		ds[i] = Done{Job: res.job}
		if !res.expired {
			r := res.r
			ds[i].Result = &r
		}
	}
	// The entry is acknowledged with its last probe in rs, when none of its probes is left.
	seen := map[string]bool{}
	for i := len(rs) - 1; i >= 0; i-- {
		e := entryOf(rs[i].job)
		if !seen[e] {
			seen[e] = true
			_, tracked := d.entries[e]
			ds[i].Ack = left[e] <= 0 || !tracked
		}
	}
	d.mu.Unlock()
	if bq, ok := d.q.(BatchQueue); ok {
		if err := bq.StoreBatch(ctx, ds); err != nil {
			d.metrics.redisErrors.WithLabelValues("store").Inc()
			return err
		}
	} else {
		for _, dn := range ds {
			if dn.Result != nil {
				if err := d.q.Store(ctx, dn.Job, *dn.Result); err != nil {
					d.metrics.redisErrors.WithLabelValues("store").Inc()
					return err
				}
			}
			if dn.Ack {
				if err := d.q.Ack(ctx, dn.Job); err != nil {
					d.metrics.redisErrors.WithLabelValues("ack").Inc()
					// Stored; retrying stores again, which is idempotent per job id.
					return err
				}
			}
		}
	}
	d.metrics.batchResults.Observe(float64(len(ds)))
	d.mu.Lock()
	for _, dn := range ds {
		e := entryOf(dn.Job)
		if set := d.entries[e]; set != nil {
			delete(set, dn.Job.Index)
			if len(set) == 0 {
				delete(d.entries, e)
			}
		}
	}
	d.mu.Unlock()
	for _, dn := range ds {
		switch {
		case dn.Result == nil:
		case dn.Result.Success:
			d.metrics.jobs.WithLabelValues("success").Inc()
		default:
			d.metrics.jobs.WithLabelValues("failure").Inc()
		}
	}
	return nil
}
