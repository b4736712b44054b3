package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// Defaults of the target sources.
const (
	// DefaultDirReload is how often --config-dir is read again.
	DefaultDirReload = time.Minute
	// DefaultAppsReload is how often the API's app registry is read again in full, on top of the change
	// notifications (which an outage may lose).
	DefaultAppsReload = 30 * time.Second
)

// SourceDir returns the Target.Source of the configs of dir.
func SourceDir(dir string) string { return "dir:" + dir }

// LoadDir reads every wrangler config of dir with parser and makes their probe-able placements the targets
// of source SourceDir(dir). Bad files are reported in the error and skipped; the good ones are applied (a
// reload that hits a half-written file keeps the rest of the directory). The decisions of apps whose files
// left the directory are deleted when every file was read.
func (s *Scheduler) LoadDir(dir string, parser placement.Parser, regions RegionEndpoints) (int, error) {
	cfgs, err := parser.LoadDir(dir)
	if cfgs == nil && err != nil {
		return 0, fmt.Errorf("scheduler: config dir %s: %w", dir, err)
	}
	var ts []Target
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, c := range cfgs {
		t, ok, terr := TargetFromConfig(c, regions)
		if terr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Source, terr))
			continue
		}
		if ok {
			ts = append(ts, t)
		}
	}
	s.mu.Lock()
	removed := s.setTargetsLocked(SourceDir(dir), ts)
	s.mu.Unlock()
	// An app whose file left the directory is deleted with its decision, but only on a clean read: a file
	// that failed to parse (half written) is not evidence that its app was removed. Its decision then expires.
	if len(errs) == 0 {
		s.forget(removed)
	}
	if len(errs) > 0 {
		return len(ts), fmt.Errorf("scheduler: config dir %s: %w", dir, errors.Join(errs...))
	}
	return len(ts), nil
}

// WatchDir loads dir now and every interval until ctx is done, logging bad files, and at once when Redis is
// found to have lost its data (the directory's apps are registered again).
func (s *Scheduler) WatchDir(ctx context.Context, dir string, parser placement.Parser, regions RegionEndpoints, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultDirReload
	}
	for {
		lost := s.dataLostSignal() // taken before the load: a loss during it loads again
		n, err := s.LoadDir(dir, parser, regions)
		if err != nil {
			s.log.Warn("scheduler: loading the config dir", "dir", dir, "targets", n, "err", err)
		} else {
			s.log.Debug("scheduler: loaded the config dir", "dir", dir, "targets", n)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-lost:
			t.Stop()
		case <-t.C:
		}
	}
}

// SyncAPIApps keeps the targets of source SourceAPI equal to the registry in Redis: a full read now and
// every interval, and another on each change notification, so a standby scheduler knows the apps registered
// through the leader's API. It returns when ctx is done.
func (s *Scheduler) SyncAPIApps(ctx context.Context, b StoreBackend, regions RegionEndpoints, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultAppsReload
	}
	kick := make(chan struct{}, 1)
	var watch sync.WaitGroup
	defer watch.Wait()
	watch.Go(func() {
		b.WatchApps(ctx, func(string) {
			select {
			case kick <- struct{}{}:
			default:
			}
		})
	})
	for {
		ts, err := b.APITargets(ctx, regions)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("scheduler: reading the app registry", "err", err)
		} else {
			s.SetTargets(SourceAPI, ts)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// WatchPending refreshes the vantage_scheduler_jobs_pending gauge of every PoP of the fleet each interval
// while this scheduler leads.
func (s *Scheduler) WatchPending(ctx context.Context, pending func(ctx context.Context, pop string) (int64, error), pops func(ctx context.Context) ([]string, error), interval time.Duration) {
	if s.metrics == nil {
		return
	}
	for {
		if ok, _ := s.Leading(); ok {
			if ps, err := pops(ctx); err == nil {
				for _, p := range ps {
					if n, err := pending(ctx, p); err == nil {
						s.metrics.jobsPending.WithLabelValues(p).Set(float64(n))
					}
				}
			}
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
