package probed

import (
	"context"
	"sync"

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
