package router

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// fleetTimeoutMin is the least time a fleet refresh may take: the refresh period can be far shorter (tests use
// 50 ms) and a busy Redis must not look like an outage.
const fleetTimeoutMin = time.Second

// Run loads the snapshot and keeps it fresh until ctx is done: a full reload every RecheckInterval, an early one
// (debounced) on decision-change notifications and after Redis comes back, a fleet refresh every
// FleetInterval, and the coarse clock Route reads. It returns nil when ctx is done, ErrRunning if called twice.
// Every goroutine it starts has returned when it returns.
func (r *Router) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){r.clockLoop, r.fleetLoop, r.watchLoop, r.reloadLoop} {
		wg.Go(func() { loop(ctx) })
	}
	wg.Wait()
	return nil
}

// Ready reports whether a snapshot has been loaded.
func (r *Router) Ready() bool { return r.snapshot() != nil }

// SnapshotInfo describes the router's current state.
type SnapshotInfo struct {
	Apps        int       // applications in the snapshot
	LoadedAt    time.Time // when the snapshot was loaded; zero: none yet
	LastContact time.Time // last successful reload (a full decision scan); zero: never
	Stale       bool      // LastContact older than Config.MaxAge: Route runs everything locally
	PoPs        int       // PoP codes the router tracks: the snapshot's, the fleet's and the configured ones
}

// Info returns the router's current state.
func (r *Router) Info() SnapshotInfo {
	var i SnapshotInfo
	v := r.view.Load()
	if s := v.snap; s != nil {
		i.Apps, i.LoadedAt = s.apps, s.loadedAt
	}
	i.PoPs = len(v.pops.names)
	if ms := r.contactMs.Load(); ms != 0 {
		i.LastContact = time.UnixMilli(ms)
	}
	i.Stale = r.stale()
	return i
}

// stale reports whether Route currently answers ReasonStale (given a snapshot).
func (r *Router) stale() bool {
	return r.clockMs.Load()-r.contactMs.Load() > r.maxAgeMs
}

// Reload loads every decision from the source into a new snapshot and swaps it in. On error the current
// snapshot stays. Reloads are serialised.
func (r *Router) Reload(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReloadTimeout)
	defer cancel()
	start := r.now()
	old := r.snapshot()
	b := newBuilder(r, old, start)
	err := r.scanInto(ctx, b)
	if err != nil {
		r.m.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("router: reload after %v: %w", r.now().Sub(start).Round(time.Millisecond), err)
	}
	end := r.now()
	s := b.finish(end)
	carryRates(old, s, uint64(r.clockMs.Load()/r.windowMs))
	r.storeSnapshot(s) // with its fresh PoP table: codes no longer in use are forgotten
	r.contactMs.Store(end.UnixMilli())
	took := r.now().Sub(start)
	r.m.reloads.WithLabelValues("success").Inc()
	r.m.reloadSeconds.Observe(took.Seconds())
	r.m.apps.Set(float64(s.apps))
	r.m.skipped.Set(float64(b.skipped))
	log := r.log.With("apps", s.apps, "pops", len(s.pops.names), "expired", b.expired, "profiles", len(s.profiles)/2,
		"bytes", s.bytes(), "took", took.Round(time.Millisecond))
	if b.retagged > 0 {
		log = log.With("tag_salts_redrawn", b.retagged)
	}
	if b.skipped > 0 {
		log.Warn("router: snapshot loaded; some decisions skipped", "skipped", b.skipped, "first", b.firstErr)
	} else {
		log.Debug("router: snapshot loaded")
	}
	return nil
}

// reloadBatch is how many decisions the scan hands to the builder goroutine at a time, and reloadBatches how
// many batches are in flight: the builder encodes while the scan waits on Redis and decodes.
const (
	reloadBatch   = 1024
	reloadBatches = 4
)

// scanInto scans every decision into b, building on a second goroutine while the scan reads Redis.
func (r *Router) scanInto(ctx context.Context, b *builder) error {
	full := make(chan []placement.Decision, reloadBatches)
	free := make(chan []placement.Decision, reloadBatches)
	for range reloadBatches {
		free <- make([]placement.Decision, 0, reloadBatch)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for batch := range full {
			for _, d := range batch {
				b.add(d)
			}
			clear(batch) // drop the decoded strings
			free <- batch[:0]
		}
	})
	batch := <-free
	err := r.src.ScanDecisions(ctx, func(d placement.Decision) error {
		batch = append(batch, d)
		if len(batch) == reloadBatch {
			full <- batch
			batch = <-free
		}
		return nil
	})
	full <- batch
	close(full)
	wg.Wait()
	return err
}

// RefreshFleet reloads the fleet view (up, down, drained PoPs) that failover reads.
func (r *Router) RefreshFleet(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.FleetInterval, fleetTimeoutMin))
	defer cancel()
	states, err := r.src.Fleet(ctx)
	if err != nil {
		r.m.fleetRefreshes.WithLabelValues("error").Inc()
		return fmt.Errorf("router: fleet refresh: %w", err)
	}
	r.setFleet(states) // not a contact: only a decision scan tells that the snapshot is current
	r.m.fleetRefreshes.WithLabelValues("success").Inc()
	return nil
}

// setFleet replaces the fleet view (nil states: none loaded), adding PoPs new to the current table by
// copy-on-write. The fleet is kept by name, so that each reload's fresh table gets its view rebuilt.
func (r *Router) setFleet(states []storage.PoPState) {
	r.popMu.Lock()
	defer r.popMu.Unlock()
	cur := r.view.Load()
	t := cur.pops
	var up map[string]bool
	if states != nil {
		up = make(map[string]bool, len(states))
	}
	for _, st := range states {
		if _, ok := t.index[st.PoP]; !ok {
			if t == cur.pops {
				t = t.clone()
			}
			if _, err := t.add(r, st.PoP); err != nil {
				r.log.Warn("router: fleet: PoP skipped", "err", err)
				continue
			}
		}
		up[st.PoP] = st.Up && !st.Drained
	}
	r.fleetUp = up
	r.publishLocked(&view{snap: cur.snap, pops: t, fleet: r.fleetViewLocked(t)})
}

// kick asks the reload loop for an early (debounced) reload.
func (r *Router) kick() {
	r.kickMs.Store(r.now().UnixMilli())
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *Router) clockLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.ClockResolution)
	defer t.Stop()
	for {
		r.clockMs.Store(r.now().UnixMilli())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Router) fleetLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.FleetInterval)
	defer t.Stop()
	failing := false
	for {
		err := r.RefreshFleet(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			r.log.Warn("router: Redis unreachable; keeping the current snapshot", "err", err)
			failing = true
		case err == nil && failing:
			r.log.Info("router: Redis reachable again; reloading")
			failing = false
			r.kick() // notifications may have been lost during the outage
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Router) watchLoop(ctx context.Context) {
	for {
		err := r.src.WatchDecisions(ctx, func(string) { r.kick() })
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("router: decision watch ended; retrying", "err", err, "in", r.cfg.RetryInterval)
		if !sleepCtx(ctx, r.cfg.RetryInterval) {
			return
		}
	}
}

func (r *Router) reloadLoop(ctx context.Context) {
	var lastOK, lastStart time.Time // starts of the last successful reload and of the last reload
	var wait, took time.Duration    // until the next periodic reload; how long the last reload took
	failures := 0
	for {
		if !r.waitReload(ctx, wait, lastOK, lastStart, took) {
			return
		}
		lastStart = r.now()
		err := r.Reload(ctx)
		took = r.now().Sub(lastStart)
		if ctx.Err() != nil {
			return
		}
		wait = r.cfg.RecheckInterval
		if s := r.snapshot(); s != nil && !s.reloadBy.IsZero() {
			wait = min(wait, s.reloadBy.Sub(r.now())) // re-encode expiries beyond the field's range
		}
		switch {
		case err == nil:
			if failures > 0 {
				r.log.Info("router: reload succeeded again", "failed_attempts", failures)
			}
			lastOK, failures = lastStart, 0
		default:
			level := slog.LevelDebug // an outage logs once, not every RetryInterval
			if failures == 0 {
				level = slog.LevelWarn
			}
			r.log.Log(ctx, level, "router: reload failed; keeping the current snapshot", "err", err, "retry_in", r.cfg.RetryInterval)
			failures++
			wait = r.cfg.RetryInterval
		}
	}
}

// reloadGapFactor scales the last reload's duration into the gap before a notification-driven reload: with a
// gap of 4 reload times, reloads take at most a fifth of the router's time however many notifications come,
// and a small table (reloaded in milliseconds) follows a change, a deletion included, within the debounce.
const reloadGapFactor = 4

// waitReload waits until the next reload is due: after d, or earlier on a notification, debounced and at least
// min(MinReloadGap, reloadGapFactor × took) after lastStart (took: the last reload's duration). A notification
// received before lastOK (the start of the last successful scan, which saw that change) does not count: e.g.
// the watch's first resync racing the first reload. It reports false when ctx is done.
func (r *Router) waitReload(ctx context.Context, d time.Duration, lastOK, lastStart time.Time, took time.Duration) bool {
	gap := min(r.cfg.MinReloadGap, reloadGapFactor*took)
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-r.notify:
			if r.kickMs.Load() < lastOK.UnixMilli() {
				continue
			}
			if !sleepCtx(ctx, max(r.cfg.Debounce, gap-r.now().Sub(lastStart))) {
				return false
			}
			select { // notifications that arrived while debouncing are covered by the coming reload
			case <-r.notify:
			default:
			}
			return true
		}
	}
}

// sleepCtx sleeps for d or until ctx is done; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
