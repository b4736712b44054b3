package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// Tunables of the batches that cross Redis.
const (
	// DefaultBatchTick is how often the rechecks in flight send their jobs, read their inputs and write their
	// decisions (Config.BatchTick): each a single Redis call per tick (per PoP for the jobs). 50 ms adds at
	// most three ticks to a recheck (jobs, reads, writes) and a few more per planner round, well within the 5 s
	// a new target may wait for its first decision, and at 100 rechecks/s gathers 5 per call.
	DefaultBatchTick = 50 * time.Millisecond
	// NoteFallbackPoll is how long a recheck waits for the announcement of its results (the results stream)
	// before it looks at the stored results itself, and then again every NoteFallbackPoll: an announcement
	// lost (the results stream trimmed or expired, a daemon of an older version that does not announce) costs
	// this much, not the whole ResultTimeout.
	NoteFallbackPoll = 2 * time.Second
	// noteReadBlock is how long one read of the results stream blocks.
	noteReadBlock = time.Second
	// noteReadCount is the most announcements one read returns.
	noteReadCount = 4096
	// batchIdleTicks is how many idle ticks the flusher waits before it stops (a recheck starts it again).
	batchIdleTicks = 20
)

// BatchBackend is implemented by a Backend that batches what crosses Redis (StoreBackend: storage.Store);
// without it, every recheck enqueues, polls, reads and writes on its own.
type BatchBackend interface {
	// EnqueueJobBatches appends each PoP's jobs as batch entries announcing their results on reply; first is
	// the earliest entry id.
	EnqueueJobBatches(ctx context.Context, byPoP map[string][]storage.Job, reply string) (first string, entries map[string]int, err error)
	// ReadResultNotes reads the results announced on stream after id last.
	ReadResultNotes(ctx context.Context, stream, last string, count int, block time.Duration) ([]storage.Result, string, error)
	// RecheckInputs reads previous decisions and recent results, one call for many rechecks.
	RecheckInputs(ctx context.Context, rs []storage.RecheckRead) ([]storage.RecheckState, error)
	// PutDecisionBatch writes many fenced decisions and their explanations in one call.
	PutDecisionBatch(ctx context.Context, ws []storage.DecisionWrite) ([]storage.DecisionWritten, error)
}

// waiter is one planner round of a recheck waiting for its results: the PoPs it asked and what came.
type waiter struct {
	round string
	want  map[string]bool
	got   map[string]storage.Result // guarded by batcher.mu
	done  chan struct{}             // closed when every PoP of want answered, or on err
	err   error                     // set before done is closed
	shut  bool
}

// finishLocked closes w.done once; b.mu is held.
func (w *waiter) finishLocked(err error) {
	if !w.shut {
		w.shut, w.err = true, err
		close(w.done)
	}
}

// callReq is one recheck's share of a batched call: its input, and its output or the call's error once done
// is closed.
type callReq[In, Out any] struct {
	in   In
	out  Out
	err  error
	done chan struct{}
}

type (
	readReq  = callReq[storage.RecheckRead, storage.RecheckState]
	writeReq = callReq[storage.DecisionWrite, storage.DecisionWritten]
)

type jobReq struct {
	pop string
	job storage.Job
	w   *waiter
}

// batcher gathers what the rechecks in flight send to Redis and sends it once per tick: the jobs of every
// recheck as one stream entry per PoP, the reads of previous decisions and recent results as one script call,
// the decisions and explanations as another. Results come back on the scheduler's results stream
// (storage.KeyResultNotes), read by one listener per scheduler and handed to the waiting rounds.
//
// Its two goroutines, the flusher and the listener, run while there is work: the flusher stops after
// batchIdleTicks idle ticks, the listener when no round waits; the next recheck starts them again. close
// (Scheduler.Run's end) stops both and waits for them: the flusher sends what is queued first.
type batcher struct {
	b       BatchBackend
	tick    time.Duration
	log     *slog.Logger
	metrics *Metrics
	reply   string // this scheduler instance's results stream
	// fallback is how long a round waits for an announcement before looking at the stored results
	// (NoteFallbackPoll; tests shorten or lengthen it).
	fallback time.Duration

	mu        sync.Mutex
	jobs      []jobReq
	reads     []*readReq
	writes    []*writeReq
	waiters   map[string]*waiter // by round
	flushing  bool               // the flusher runs
	listening bool               // the listener runs
	last      string             // the results stream id read up to

	wg sync.WaitGroup // the flusher and the listener
	// ctx is canceled by close, under mu: once it is, nothing more is queued, the flusher sends what is and
	// stops, and the listener's read is abandoned.
	ctx    context.Context
	cancel context.CancelFunc
}

// errBatchClosed fails what is queued after the batcher was closed (a recheck outliving Scheduler.Run).
var errBatchClosed = errors.New("scheduler: stopped: the Redis batches are closed")

func newBatcher(b BatchBackend, name string, tick time.Duration, log *slog.Logger, m *Metrics) *batcher {
	var r [6]byte
	rand.Read(r[:])
	ctx, cancel := context.WithCancel(context.Background())
	return &batcher{b: b, tick: tick, log: log, metrics: m, waiters: map[string]*waiter{}, fallback: NoteFallbackPoll,
		reply: storage.KeyResultNotes(name + "-" + hex.EncodeToString(r[:])), ctx: ctx, cancel: cancel}
}

// startLocked starts the flusher unless it runs; b.mu is held.
func (b *batcher) startLocked() {
	if !b.flushing {
		b.flushing = true
		b.wg.Go(b.flusher)
	}
}

// close stops the flusher, once it has sent what is queued, and the listener, and waits for both; what is
// queued afterwards fails with errBatchClosed.
func (b *batcher) close() {
	b.mu.Lock()
	b.cancel()
	b.mu.Unlock()
	b.wg.Wait()
}

// enqueue registers a round waiting for one result of each PoP of jobs and queues the jobs for the next tick.
func (b *batcher) enqueue(round string, jobs map[string]storage.Job) *waiter {
	w := &waiter{round: round, want: make(map[string]bool, len(jobs)), got: map[string]storage.Result{}, done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx.Err() != nil {
		w.finishLocked(errBatchClosed)
		return w
	}
	for pop, j := range jobs {
		w.want[pop] = true
		b.jobs = append(b.jobs, jobReq{pop: pop, job: j, w: w})
	}
	b.waiters[round] = w
	b.startLocked()
	return w
}

// forget unregisters w; it returns what w got.
func (b *batcher) forget(w *waiter) map[string]storage.Result {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiters[w.round] == w {
		delete(b.waiters, w.round)
	}
	return w.got
}

// deliver hands results to the rounds waiting for them.
func (b *batcher) deliver(rs []storage.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deliverLocked(rs)
}

func (b *batcher) deliverLocked(rs []storage.Result) {
	for _, r := range rs {
		w := b.waiters[r.Round]
		if w == nil || !w.want[r.PoP] {
			continue
		}
		if _, ok := w.got[r.PoP]; ok {
			continue
		}
		w.got[r.PoP] = r
		if len(w.got) == len(w.want) {
			w.finishLocked(nil)
		}
	}
}

// read queues a read of a recheck's inputs for the next tick and waits for it.
func (b *batcher) read(ctx context.Context, in storage.RecheckRead) (storage.RecheckState, error) {
	r := &readReq{in: in, done: make(chan struct{})}
	b.mu.Lock()
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return storage.RecheckState{}, errBatchClosed
	}
	b.reads = append(b.reads, r)
	b.startLocked()
	b.mu.Unlock()
	select {
	case <-ctx.Done():
		return storage.RecheckState{}, ctx.Err()
	case <-r.done:
		if r.err != nil {
			return storage.RecheckState{}, r.err
		}
		return r.out, r.out.Err
	}
}

// write queues a decision write for the next tick and waits for it.
func (b *batcher) write(ctx context.Context, in storage.DecisionWrite) (storage.DecisionWritten, error) {
	r := &writeReq{in: in, done: make(chan struct{})}
	b.mu.Lock()
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return storage.DecisionWritten{}, errBatchClosed
	}
	b.writes = append(b.writes, r)
	b.startLocked()
	b.mu.Unlock()
	select {
	case <-ctx.Done():
		// The write may still happen at the tick: it is fenced, so a lost lease cannot make it wrong.
		return storage.DecisionWritten{}, ctx.Err()
	case <-r.done:
		if r.err != nil {
			return storage.DecisionWritten{}, r.err
		}
		return r.out, r.out.Err
	}
}

// flushTimeout bounds one tick's Redis calls.
const flushTimeout = 10 * time.Second

// flusher sends what was queued every tick, until batchIdleTicks ticks passed with nothing to send, or once
// more and for the last time when the batcher is closed.
func (b *batcher) flusher() {
	t := time.NewTicker(b.tick)
	defer t.Stop()
	idle := 0
	for {
		last := false
		select {
		case <-t.C:
		case <-b.ctx.Done():
			last = true
		}
		b.mu.Lock()
		jobs, reads, writes := b.jobs, b.reads, b.writes
		b.jobs, b.reads, b.writes = nil, nil, nil
		if len(jobs)+len(reads)+len(writes) == 0 {
			idle++
			if last || idle >= batchIdleTicks {
				b.flushing = false
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			continue
		}
		idle = 0
		if last {
			b.flushing = false
		}
		b.mu.Unlock()
		// Not b.ctx: decisions queued before close are still written (fenced, each bounded by flushTimeout).
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		// Writes first: they end rechecks. Jobs last: their results take longest to come back anyway.
		b.flushWrites(ctx, writes)
		b.flushReads(ctx, reads)
		b.flushJobs(ctx, jobs)
		cancel()
		if last {
			return
		}
	}
}

func (b *batcher) flushWrites(ctx context.Context, reqs []*writeReq) {
	flushCalls(ctx, reqs, b.b.PutDecisionBatch, b.metrics, func(m *Metrics) prometheus.Histogram { return m.batchDecisions })
}

func (b *batcher) flushReads(ctx context.Context, reqs []*readReq) {
	flushCalls(ctx, reqs, b.b.RecheckInputs, b.metrics, func(m *Metrics) prometheus.Histogram { return m.batchReads })
}

// flushCalls makes one call for reqs' inputs and hands each request its output (or the call's error).
func flushCalls[In, Out any](ctx context.Context, reqs []*callReq[In, Out], call func(context.Context, []In) ([]Out, error),
	m *Metrics, size func(*Metrics) prometheus.Histogram) {
	if len(reqs) == 0 {
		return
	}
	ins := make([]In, len(reqs))
	for i, r := range reqs {
		ins[i] = r.in
	}
	out, err := call(ctx, ins)
	if m != nil {
		size(m).Observe(float64(len(ins)))
	}
	for i, r := range reqs {
		if err != nil {
			r.err = err
		} else {
			r.out = out[i]
		}
		close(r.done)
	}
}

func (b *batcher) flushJobs(ctx context.Context, reqs []jobReq) {
	if len(reqs) == 0 {
		return
	}
	byPoP := map[string][]storage.Job{}
	for _, r := range reqs {
		byPoP[r.pop] = append(byPoP[r.pop], r.job)
	}
	first, _, err := b.b.EnqueueJobBatches(ctx, byPoP, b.reply)
	if b.metrics != nil {
		for _, js := range byPoP {
			b.metrics.batchJobs.Observe(float64(len(js)))
			b.metrics.jobsEnqueued.Add(float64(len(js)))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		for _, r := range reqs {
			r.w.finishLocked(fmt.Errorf("scheduler: enqueueing jobs for %d PoPs: %w", len(byPoP), err))
		}
		return
	}
	if !b.listening && b.ctx.Err() == nil {
		b.listening = true
		b.last = storage.StreamIDBefore(first)
		b.wg.Go(b.listener)
	}
}

// listener reads the results stream while rounds wait, at most once per tick, and hands the results over;
// it stops when no round waits or the batcher is closed.
func (b *batcher) listener() {
	var wait time.Duration
	for {
		b.mu.Lock()
		if len(b.waiters) == 0 || b.ctx.Err() != nil {
			b.listening = false
			b.mu.Unlock()
			return
		}
		last := b.last
		b.mu.Unlock()
		start := time.Now()
		ctx, cancel := context.WithTimeout(b.ctx, noteReadBlock+flushTimeout)
		rs, next, err := b.b.ReadResultNotes(ctx, b.reply, last, noteReadCount, noteReadBlock)
		cancel()
		b.mu.Lock()
		b.last = next
		b.deliverLocked(rs)
		b.mu.Unlock()
		var pause time.Duration
		if err != nil {
			// The rounds' fallback polls find their results meanwhile.
			if b.ctx.Err() == nil {
				b.log.Debug("scheduler: reading the results stream", "stream", b.reply, "err", err)
			}
			wait = min(max(2*wait, b.tick), NoteFallbackPoll)
			pause = wait
		} else {
			wait = 0
			// One read per tick: what arrives meanwhile comes with the next.
			if d := b.tick - time.Since(start); d > 0 && len(rs) > 0 {
				pause = d
			}
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-b.ctx.Done():
				t.Stop()
			}
		}
	}
}

// jobsFor returns the jobs of one planner round of t for pops: one per PoP, all of round.
func (s *Scheduler) jobsFor(t Target, key, addr, round string, pops []string, deadline time.Time) map[string]storage.Job {
	jobs := make(map[string]storage.Job, len(pops))
	for _, pop := range pops {
		j := storage.Job{Round: round, Key: key, Target: addr, Kind: t.Kind(), Count: s.cfg.ProbeCount, Deadline: deadline}
		if asksChaos(t.Kind(), addr) {
			j.Params = chaosParams
		}
		jobs[pop] = j
	}
	return jobs
}

// awaitBatch waits for w's results until deadline: woken by the listener, else looking at the stored results
// every bt.fallback. latest is filled with the results of w's round.
func (s *Scheduler) awaitBatch(ctx context.Context, bt *batcher, w *waiter, key string, deadline time.Time, latest map[string]storage.Result) error {
	defer func() {
		for pop, r := range bt.forget(w) {
			latest[pop] = r
			s.countResult(r)
		}
	}()
	for {
		wait := min(bt.fallback, deadline.Sub(s.cfg.Clock.Now()))
		if wait <= 0 {
			s.log.Debug("scheduler: results missing at the deadline", "key", key, "round", w.round, "want", len(w.want))
			return nil
		}
		t := s.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-w.done:
			t.Stop()
			return w.err
		case <-t.C():
		}
		// No announcement yet: look at the stored results (an announcement may have been lost).
		rs, err := s.deps.backend.LatestResults(ctx, key)
		if err != nil && ctx.Err() == nil {
			s.log.Debug("scheduler: reading results", "key", key, "err", err)
		}
		found := make([]storage.Result, 0, len(rs))
		for _, r := range rs {
			if r.Round == w.round {
				found = append(found, r)
			}
		}
		bt.deliver(found)
	}
}

// closeBatch closes the scheduler's batcher, if it has one, and waits for its goroutines.
func (d *recheckDeps) closeBatch() {
	d.batchOnce.Do(func() {}) // no batcher is made after this
	if d.batch != nil {
		d.batch.close()
	}
}

// batchFor returns the scheduler's batcher, nil when the backend does not batch or Config.BatchTick < 0.
func (d *recheckDeps) batchFor(s *Scheduler) *batcher {
	d.batchOnce.Do(func() {
		bb, ok := d.backend.(BatchBackend)
		if ok && s.cfg.BatchTick > 0 {
			d.batch = newBatcher(bb, s.cfg.Name, s.cfg.BatchTick, s.log, s.metrics)
		}
	})
	return d.batch
}

// decisionWrite is the batched write of dec with its explanation under term.
func (s *Scheduler) decisionWrite(dec placement.Decision, e *storage.Explanation, term *Term) storage.DecisionWrite {
	return storage.DecisionWrite{Decision: dec, Fence: term.Fence(), Explanation: e, ExplainTTL: s.cfg.DecisionTTL}
}
