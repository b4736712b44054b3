package probed

import (
	"context"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/prober"
)

// result is a finished job waiting to be stored and acknowledged.
type result struct {
	job     Job
	r       prober.Result
	expired bool // acknowledge without a result
}

// outbox is the bounded FIFO of results not yet stored. When full, the oldest result is dropped (counted in
// vantage_probed_results_dropped_total): its job stays pending and is re-run after a re-claim, so a drop costs
// a probe, never a wrong result.
type outbox struct {
	max     int
	metrics *Metrics

	mu     sync.Mutex
	items  []result
	closed bool
	wake   chan struct{} // closed and replaced on every push and on close
}

func newOutbox(max int, m *Metrics) *outbox {
	return &outbox{max: max, metrics: m, wake: make(chan struct{})}
}

func (o *outbox) push(r result) {
	o.mu.Lock()
	if len(o.items) >= o.max {
		o.items = o.items[1:]
		o.metrics.dropped.Inc()
	}
	o.items = append(o.items, r)
	o.metrics.buffered.Set(float64(len(o.items)))
	close(o.wake)
	o.wake = make(chan struct{})
	o.mu.Unlock()
}

// peek returns the oldest result without removing it, blocking until there is one; false when the outbox is
// closed and empty or ctx is done.
func (o *outbox) peek(ctx context.Context) (result, bool) {
	for {
		o.mu.Lock()
		if len(o.items) > 0 {
			r := o.items[0]
			o.mu.Unlock()
			return r, true
		}
		if o.closed {
			o.mu.Unlock()
			return result{}, false
		}
		wake := o.wake
		o.mu.Unlock()
		select {
		case <-ctx.Done():
			return result{}, false
		case <-wake:
		}
	}
}

// peekN returns up to n of the oldest results without removing them, blocking until there is one; false
// when the outbox is closed and empty or ctx is done.
func (o *outbox) peekN(ctx context.Context, n int) ([]result, bool) {
	if _, ok := o.peek(ctx); !ok {
		return nil, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]result(nil), o.items[:min(n, len(o.items))]...), true
}

// gather waits up to d for the outbox to hold n results or for done to report true, checked on every push.
func (o *outbox) gather(ctx context.Context, d time.Duration, n int, done func() bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		o.mu.Lock()
		full, closed, wake := len(o.items) >= n, o.closed, o.wake
		o.mu.Unlock()
		if full || closed || done() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-wake:
		}
	}
}

// popN removes rs from the head of the outbox, those still there (older ones may have been dropped).
func (o *outbox) popN(rs []result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range rs {
		if len(o.items) > 0 && o.items[0].job.ID == r.job.ID && o.items[0].job.StreamID == r.job.StreamID {
			o.items = o.items[1:]
		}
	}
	o.metrics.buffered.Set(float64(len(o.items)))
}

// pop removes r if it is still the oldest (it may have been dropped meanwhile).
func (o *outbox) pop(r result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) > 0 && o.items[0].job.ID == r.job.ID && o.items[0].job.StreamID == r.job.StreamID {
		o.items = o.items[1:]
	}
	o.metrics.buffered.Set(float64(len(o.items)))
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items)
}

// close makes peek return false once the outbox is empty.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.wake)
		o.wake = make(chan struct{})
	}
}
