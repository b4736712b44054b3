package scheduler

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
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

// dirWriteTimeout bounds LoadDir's writes of a directory's smart applications to the app registry.
const dirWriteTimeout = 10 * time.Second

// Config file states, the values of vantage_scheduler_config_files{state} and ConfigFile.State.
const (
	ConfigOK      = "ok"
	ConfigSkipped = "skipped"
)

// ConfigFile is one file of a config dir as the latest load saw it.
type ConfigFile struct {
	Path  string `json:"path"`
	App   string `json:"app,omitempty"`
	State string `json:"state"`           // ConfigOK or ConfigSkipped
	Error string `json:"error,omitempty"` // why it was skipped
	hash  string // the file's content hash, with Error what a skip is logged once for
}

// dirRegistry is where LoadDir hands a config dir's smart applications to the smart runner, which reads the app
// registry in Redis; StoreBackend implements it (New uses it when its Backend does).
type dirRegistry interface {
	// SyncDirApps makes the registry's applications of source equal to apps: adds and changes them and, when
	// prune is set, removes the others of source. An application another source registered is left alone
	// and returned in conflicts with the reason.
	SyncDirApps(ctx context.Context, source string, apps []storage.App, prune bool) (conflicts map[string]string, err error)
}

// LoadDir reads every wrangler config of dir with parser and makes their probe-able placements the targets
// of source SourceDir(dir); smart placements are written to the app registry in Redis (as applications of
// source SourceDir(dir), their deploy version the file's content hash: a changed file is a new deploy), where
// the smart runner analyses them. Bad files are reported in the error, logged once per content and skipped;
// the good ones are applied (a reload that hits a half-written file keeps the rest of the directory).
func (s *Scheduler) LoadDir(dir string, parser placement.Parser, regions RegionEndpoints) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dirWriteTimeout)
	defer cancel()
	n, skipped, err := s.loadDir(ctx, dir, parser, regions)
	return n, errors.Join(err, skipped)
}

// loadDir is LoadDir: n targets and smart applications applied, the skipped files' errors (logged here), and
// the errors that are not a file's (the directory, the registry).
func (s *Scheduler) loadDir(ctx context.Context, dir string, parser placement.Parser, regions RegionEndpoints) (n int, skipped, err error) {
	cfgs, perr := parser.LoadDir(dir)
	if cfgs == nil && perr != nil {
		if _, serr := os.Stat(dir); serr != nil {
			return 0, nil, fmt.Errorf("scheduler: config dir %s: %w", dir, serr)
		}
	}
	source := SourceDir(dir)
	files := map[string]ConfigFile{}
	var skips []error
	skip := func(path, app string, err error) {
		f := files[path]
		f.Path, f.App, f.State = path, cmp.Or(f.App, app), ConfigSkipped
		f.Error = strings.TrimPrefix(strings.TrimSpace(f.Error+"; "+err.Error()), "; ")
		files[path] = f
		skips = append(skips, err)
	}
	for _, e := range unjoin(perr) {
		skip(cmp.Or(errPath(e), dir), "", e)
	}
	var ts []Target
	var smartApps []storage.App
	fileOf := map[string]string{} // smart app -> its file
	for _, c := range cfgs {
		t, ok, terr := TargetFromConfig(c, regions)
		switch {
		case terr != nil:
			skip(c.Source, c.App, fmt.Errorf("%s: %w", c.Source, terr))
		case ok:
			ts = append(ts, t)
			files[c.Source] = ConfigFile{Path: c.Source, App: c.App, State: ConfigOK}
		case c.Mode == placement.ModeSmart && s.registry == nil:
			skip(c.Source, c.App, fmt.Errorf("%s: app %q: smart placement needs the app registry in Redis", c.Source, c.App))
		case c.Mode == placement.ModeSmart:
			hash, herr := fileHash(c.Source)
			if herr != nil {
				skip(c.Source, c.App, herr)
				continue
			}
			smartApps = append(smartApps, storage.App{Name: c.App, Mode: placement.ModeSmart, Account: c.AccountID, Source: source,
				DeployVersion: "sha256:" + hash[:16], DeployGenerated: true})
			fileOf[c.App] = c.Source
			files[c.Source] = ConfigFile{Path: c.Source, App: c.App, State: ConfigOK}
		default:
			skip(c.Source, c.App, fmt.Errorf("%s: app %q: no placement (no [placement] table, or mode \"off\"): nothing to place", c.Source, c.App))
		}
	}
	if cfgs != nil || perr == nil { // a directory of nothing but bad files keeps what it had
		if s.registry != nil {
			// As for targets below: only a clean read removes the smart apps whose files are gone.
			conflicts, rerr := s.registry.SyncDirApps(ctx, source, smartApps, len(skips) == 0)
			if rerr != nil {
				err = fmt.Errorf("scheduler: config dir %s: %w", dir, rerr)
			}
			for _, app := range slices.Sorted(maps.Keys(conflicts)) {
				skip(fileOf[app], app, fmt.Errorf("%s: app %q: %s", fileOf[app], app, conflicts[app]))
			}
			n += len(smartApps) - len(conflicts)
		}
		s.mu.Lock()
		removed := s.setTargetsLocked(source, ts, math.MaxInt64)
		s.mu.Unlock()
		// An app whose file left the directory is deleted with its decision, but only on a clean read: a file
		// that failed to parse (half written) is not evidence that its app was removed. Its decision then
		// expires.
		if len(skips) == 0 && err == nil {
			s.forget(removed)
		}
		n += len(ts)
	}
	s.noteFiles(dir, files)
	if len(skips) > 0 {
		skipped = fmt.Errorf("scheduler: config dir %s: %w", dir, errors.Join(skips...))
	}
	return n, skipped, err
}

// noteFiles records the files of dir's latest load, logs each skipped file once per content and error (a
// reload of an unchanged bad file says nothing), and sets vantage_scheduler_config_files.
func (s *Scheduler) noteFiles(dir string, files map[string]ConfigFile) {
	for path, f := range files {
		if f.State == ConfigSkipped {
			h, _ := fileHash(path) // "" for a path that cannot be read: the error says why
			f.hash = h
			files[path] = f
		}
	}
	s.dirMu.Lock()
	prev := s.dirFiles[dir]
	s.dirFiles[dir] = files
	counts := map[string]int{}
	for _, fs := range s.dirFiles {
		for _, f := range fs {
			counts[f.State]++
		}
	}
	s.dirMu.Unlock()
	for _, path := range slices.Sorted(maps.Keys(files)) {
		f, p := files[path], prev[path]
		switch {
		case f.State == ConfigSkipped && (p.State != ConfigSkipped || p.hash != f.hash || p.Error != f.Error):
			s.log.Warn("scheduler: config file skipped", "dir", dir, "path", path, "app", f.App, "err", f.Error)
		case f.State == ConfigOK && p.State == ConfigSkipped:
			s.log.Info("scheduler: config file loaded", "dir", dir, "path", path, "app", f.App)
		}
	}
	if s.metrics != nil {
		for _, st := range []string{ConfigOK, ConfigSkipped} {
			s.metrics.configFiles.WithLabelValues(st).Set(float64(counts[st]))
		}
	}
}

// SkippedConfigs returns the files the latest load of each config dir skipped, with the reason, by path.
func (s *Scheduler) SkippedConfigs() []ConfigFile {
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	out := []ConfigFile{}
	for _, fs := range s.dirFiles {
		for _, f := range fs {
			if f.State == ConfigSkipped {
				out = append(out, f)
			}
		}
	}
	slices.SortFunc(out, func(a, b ConfigFile) int { return cmp.Compare(a.Path, b.Path) })
	return out
}

// fileHash returns the hex SHA-256 of the file at path (at most placement.MaxConfigBytes+1 bytes of it).
func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("scheduler: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, placement.MaxConfigBytes+1)); err != nil {
		return "", fmt.Errorf("scheduler: reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// unjoin returns the errors err joins (errors.Join), or err alone; none for nil.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// errPath returns the file a placement error names, "" when it names none.
func errPath(err error) string {
	if ce := (*placement.ConfigError)(nil); errors.As(err, &ce) {
		return ce.File
	}
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return pe.Path
	}
	return ""
}

// WatchDir loads dir now and every interval until ctx is done, and at once when Redis is found to have lost
// its data (the directory's apps are registered again). A skipped file is logged once per content; an error
// that is not a file's (the directory unreadable, Redis) once per message.
func (s *Scheduler) WatchDir(ctx context.Context, dir string, parser placement.Parser, regions RegionEndpoints, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultDirReload
	}
	var last string
	for {
		lost := s.dataLostSignal() // taken before the load: a loss during it loads again
		lctx, cancel := context.WithTimeout(ctx, dirWriteTimeout)
		n, skipped, err := s.loadDir(lctx, dir, parser, regions)
		cancel()
		switch {
		case err != nil && err.Error() != last && ctx.Err() == nil:
			s.log.Warn("scheduler: loading the config dir", "dir", dir, "targets", n, "err", err)
		case err == nil && last != "":
			s.log.Info("scheduler: loading the config dir works again", "dir", dir, "targets", n)
		default:
			s.log.Debug("scheduler: loaded the config dir", "dir", dir, "targets", n, "skipped", skipped)
		}
		last = ""
		if err != nil {
			last = err.Error()
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

// SyncAPIApps keeps the targets of source SourceAPI equal to the registry in Redis, so a standby scheduler
// knows the apps registered through the leader's API: a change notification names apps, and only those are
// read back (one HMGET per 1,000). The whole registry is read once subscribed (the first Resync) and after
// each resubscription (notifications may have been lost), when more than maxPendingApps names wait, and every
// interval (the first one too, in case no subscription succeeds) or, when longer, every fullReadSpacing times
// the last full read's duration (a registry of 1,000,000 apps takes seconds to read). A failed read is retried
// after appsRetry at most. It returns when ctx is done.
func (s *Scheduler) SyncAPIApps(ctx context.Context, b StoreBackend, regions RegionEndpoints, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultAppsReload
	}
	var (
		mu      sync.Mutex
		full    bool // the watcher's first Resync sets it
		pending = map[string]struct{}{}
	)
	kick := make(chan struct{}, 1)
	var watch sync.WaitGroup
	defer watch.Wait()
	watch.Go(func() {
		b.WatchApps(ctx, func(name string) {
			mu.Lock()
			switch {
			case name == storage.Resync || len(pending) >= maxPendingApps:
				full = true
				clear(pending)
			case !full:
				pending[name] = struct{}{}
			}
			mu.Unlock()
			select {
			case kick <- struct{}{}:
			default:
			}
		})
	})
	nextFull := time.Now().Add(interval)
	for {
		mu.Lock()
		readAll := full || !time.Now().Before(nextFull)
		var names []string
		if !readAll {
			names = slices.Collect(maps.Keys(pending))
		}
		full = false
		clear(pending)
		mu.Unlock()
		// Registrations through this scheduler's API (AddTarget) made while the registry is read stand.
		readAfter := s.adds.Load()
		switch {
		case readAll:
			start := time.Now()
			l, n := s.beginListing(SourceAPI, readAfter), 0
			err := b.ScanAPITargets(ctx, regions, func(page []Target) error {
				s.listPage(l, page)
				n += len(page)
				return nil
			})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("scheduler: reading the app registry", "err", err, "retry_in", min(interval, appsRetry))
				nextFull = time.Now().Add(min(interval, appsRetry))
				break
			}
			s.endListing(l)
			took := time.Since(start)
			nextFull = time.Now().Add(max(interval, fullReadSpacing*took))
			s.log.Debug("scheduler: read the app registry", "apps", n, "took", took)
		case len(names) > 0:
			found, err := b.APITargetsNamed(ctx, names, regions)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("scheduler: reading changed apps from the registry; reading it all next", "apps", len(names), "err", err,
					"retry_in", min(interval, appsRetry))
				if retry := time.Now().Add(min(interval, appsRetry)); retry.Before(nextFull) {
					nextFull = retry // the names are dropped: the full read covers them
				}
				break
			}
			s.updateTargets(SourceAPI, names, found, readAfter)
		}
		t := time.NewTimer(time.Until(nextFull))
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

// maxPendingApps bounds the changed app names SyncAPIApps keeps between two reads; beyond it, it reads the
// whole registry instead.
const maxPendingApps = 100_000

// appsRetry bounds the wait before SyncAPIApps reads the registry again after a failed read.
const appsRetry = 5 * time.Second

// fullReadSpacing is how many times its own duration SyncAPIApps waits at least between two full reads of the
// registry that no notification asked for: a full read then takes at most ~3% of the time.
const fullReadSpacing = 30

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
