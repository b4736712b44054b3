package scheduler

import (
	"container/heap"
	"context"
	"time"
)

// The rechecks are driven by one timer heap instead of one goroutine per target: every target of a shard this
// scheduler leads sits in the heap at its due time, one dispatcher goroutine pops the due ones and starts each
// recheck under the Concurrency semaphore on a goroutine that lives only as long as the recheck. An idle
// target costs its targetState and one heap slot (BenchmarkIdleTargetMemory).
//
// Locking: s.mu (the targets map) before s.qmu (the heap, each target's queue fields, the shards' terms)
// before targetState.mu.

// running is a recheck in flight: its cancel (a removed target's recheck must not write its decision) and a
// channel closed when it has stopped.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// dueHeap orders targets by due time; it implements heap.Interface and keeps each target's hidx.
type dueHeap []*targetState

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = int32(i), int32(j)
}
func (h *dueHeap) Push(x any) {
	st := x.(*targetState)
	st.hidx = int32(len(*h))
	*h = append(*h, st)
}
func (h *dueHeap) Pop() any {
	old := *h
	n := len(old)
	st := old[n-1]
	old[n-1] = nil
	st.hidx = -1
	*h = old[:n-1]
	return st
}

// pushLocked puts st in the heap at at (moving it when it is there already) and wakes the dispatcher when st
// became the first due. The caller holds s.qmu.
func (s *Scheduler) pushLocked(st *targetState, at time.Time) {
	st.at = s.stamp(at)
	if st.hidx >= 0 {
		heap.Fix(&s.queue, int(st.hidx))
	} else {
		heap.Push(&s.queue, st)
	}
	if st.hidx == 0 {
		s.wakeDispatcher()
	}
}

// unqueueLocked takes st out of the heap if it is there. The caller holds s.qmu.
func (s *Scheduler) unqueueLocked(st *targetState) {
	if st.hidx >= 0 {
		heap.Remove(&s.queue, int(st.hidx))
	}
}

// unqueueShardLocked takes every target of shard out of the heap (its term ended). The caller holds s.qmu.
func (s *Scheduler) unqueueShardLocked(shard int) {
	kept := s.queue[:0]
	for _, st := range s.queue {
		if int(st.shard) == shard {
			st.hidx = -1
			continue
		}
		st.hidx = int32(len(kept))
		kept = append(kept, st)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	heap.Init(&s.queue)
}

func (s *Scheduler) wakeDispatcher() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// kick rechecks st at once: now when its shard is led and no recheck of it runs, else as soon as the running
// recheck ends or this scheduler leads its shard.
func (s *Scheduler) kick(st *targetState) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	st.kicked = true
	if st.run == nil && !st.removed && s.shards[st.shard].term != nil {
		s.pushLocked(st, s.cfg.Clock.Now())
	}
}

// dispatch pops due targets and starts their rechecks until ctx is done.
func (s *Scheduler) dispatch(ctx context.Context) {
	for {
		s.qmu.Lock()
		wait := time.Duration(-1)
		if len(s.queue) > 0 {
			wait = max(s.time(s.queue[0].at).Sub(s.cfg.Clock.Now()), 0)
		}
		if wait == 0 {
			st := heap.Pop(&s.queue).(*targetState)
			term := s.shards[st.shard].term
			s.qmu.Unlock()
			if term != nil && !s.start(ctx, st, term) {
				return
			}
			continue
		}
		s.qmu.Unlock()
		var (
			timer Timer
			fired <-chan time.Time
		)
		if wait > 0 {
			timer = s.cfg.Clock.NewTimer(wait)
			fired = timer.C()
			s.armed.Store(true)
		}
		s.parked.Store(true)
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-fired:
		}
		s.parked.Store(false)
		s.armed.Store(false)
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// start runs st's recheck under term once a slot of the semaphore is free; it returns false when ctx is done.
// A target removed, kicked into the heap again or whose term ended while it waited for the slot is left to
// the heap and the next term.
func (s *Scheduler) start(ctx context.Context, st *targetState, term *Term) bool {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	case <-term.Ctx.Done():
		return true
	}
	s.qmu.Lock()
	sh := s.shards[st.shard]
	if st.removed || st.run != nil || sh.term != term || term.Ctx.Err() != nil {
		s.qmu.Unlock()
		<-s.sem
		return true
	}
	s.unqueueLocked(st) // kicked while it waited for the slot
	cctx, cancel := context.WithCancel(term.Ctx)
	run := &running{cancel: cancel, done: make(chan struct{})}
	st.run, st.kicked = run, false
	sh.inflight++
	s.inflight.Add(1)
	s.qmu.Unlock()
	s.wg.Go(func() {
		defer s.inflight.Add(-1)
		defer func() { <-s.sem }()
		defer cancel()
		s.runCheck(cctx, term, st)
		s.finished(term, st, run)
	})
	return true
}

// finished puts st back in the heap after its recheck under term: at its next recheck time, at once when it
// was kicked meanwhile, or at its due time in a newer term of its shard; not at all when it was removed or
// its shard is not led.
func (s *Scheduler) finished(term *Term, st *targetState, run *running) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	st.run = nil
	close(run.done)
	sh := s.shards[st.shard]
	sh.inflight = max(sh.inflight-1, 0) // 0 already: the shards were split again (adoptShards) meanwhile
	if sh.inflight == 0 && sh.drained != nil {
		close(sh.drained)
		sh.drained = nil
	}
	if st.removed || sh.term == nil || st.hidx >= 0 {
		return
	}
	var at time.Time
	switch {
	case st.kicked:
		at = s.cfg.Clock.Now()
	case sh.term == term:
		st.mu.Lock()
		at = s.time(st.next)
		st.mu.Unlock()
	default:
		at = s.dueLocked(sh.term, st, sh.lateDue)
	}
	s.pushLocked(st, at)
}

// dueLocked returns when st is next due in term: at once when Redis lost its data or the target changed; its
// next recheck when it was checked in this term; its stored next recheck (read at the term's start); else
// (never checked) at once when it was added during the term (a new application is placed within seconds),
// else at its offset in the initial spread (targets loaded together at start-up do not probe all at once).
// The caller holds s.qmu.
func (s *Scheduler) dueLocked(term *Term, st *targetState, stored func(app string) (time.Time, bool)) time.Time {
	st.mu.Lock()
	urgent, app, added := st.urgent, st.t.app, s.time(st.added)
	if st.term == term.Seq && st.next != noStamp && !urgent && !st.kicked {
		n := s.time(st.next)
		st.mu.Unlock()
		return n
	}
	st.mu.Unlock()
	if urgent || st.kicked {
		return term.Start
	}
	if stored != nil {
		if at, ok := stored(app); ok {
			return at
		}
	}
	if added.After(term.Start) {
		return added
	}
	return term.Start.Add(offset(app, min(s.cfg.InitialSpread, s.cfg.RecheckInterval)))
}

// quiet reports whether the dispatcher is parked with nothing to do at once and no recheck runs, and whether
// it waits on a timer (tests advance their fake clock only then).
func (s *Scheduler) quiet() (ok, armed bool) {
	ok = s.parked.Load() && len(s.wake) == 0 && s.inflight.Load() == 0
	return ok, s.armed.Load()
}
