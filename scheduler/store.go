package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// StoreBackend is the Backend (and app registry) on a storage.Store.
type StoreBackend struct {
	*storage.Store
}

var _ Backend = StoreBackend{}

// UpPoPs implements Backend: PoPs up and not drained.
func (b StoreBackend) UpPoPs(ctx context.Context) ([]string, error) {
	fleet, err := b.Fleet(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range fleet {
		if p.Up && !p.Drained {
			out = append(out, p.PoP)
		}
	}
	return out, nil // Fleet is sorted by PoP
}

// NextRechecks implements Backend, reading only the decision buckets that can hold the wanted shards' apps:
// shards and buckets are both FNV-1a of the app's name modulo their count (n shards, 64 buckets), so an app of
// shard s lies in a bucket b with b = s modulo gcd(n, 64). With the default 64 shards, a scheduler taking over
// one shard of a million apps reads ~16,000 decisions, not all of them.
func (b StoreBackend) NextRechecks(ctx context.Context, want []bool) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	n := len(want)
	if !slices.Contains(want, true) {
		return out, nil
	}
	g := gcd(n, storage.DecisionBuckets)
	classes := make([]bool, g) // the residues modulo g of the wanted shards
	for s, w := range want {
		if w {
			classes[s%g] = true
		}
	}
	buckets := make([]int, 0, storage.DecisionBuckets)
	for bk := range storage.DecisionBuckets {
		if classes[bk%g] {
			buckets = append(buckets, bk)
		}
	}
	err := b.ScanDecisionBuckets(ctx, buckets, func(d placement.Decision) error {
		if !d.NextRecheck.IsZero() && want[shardOf(d.App, n)] {
			out[d.App] = d.NextRecheck
		}
		return nil
	})
	return out, err
}

// AcquireLease implements Leaser.
func (b StoreBackend) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	return b.Store.AcquireLease(ctx, name, holder, ttl)
}

// RenewLease implements Leaser (the store checks the holder; the token is implied by it).
func (b StoreBackend) RenewLease(ctx context.Context, name, holder string, _ int64, ttl time.Duration) (bool, error) {
	return b.Store.RenewLease(ctx, name, holder, ttl)
}

// ReleaseLease implements Leaser.
func (b StoreBackend) ReleaseLease(ctx context.Context, name, holder string, _ int64) error {
	return b.Store.ReleaseLease(ctx, name, holder)
}

// PutApp implements the API's app registry.
func (b StoreBackend) PutApp(ctx context.Context, t Target) error {
	return b.Store.PutApp(ctx, storage.App{Name: t.App, Mode: t.Mode, Target: t.Target, Account: t.Account})
}

// RegisterApp implements the API's app registry: registers or replaces app, in any mode.
func (b StoreBackend) RegisterApp(ctx context.Context, app storage.App) error {
	return b.Store.PutApp(ctx, app)
}

// SyncDirApps implements the config dir's registry: the applications of source become apps, and with prune
// the others of source are deleted with their decisions. An application whose mode and deploy version are
// unchanged is not written again (a write notifies every scheduler and the runner); one registered by another
// source is left alone and reported in conflicts.
func (b StoreBackend) SyncDirApps(ctx context.Context, source string, apps []storage.App, prune bool) (map[string]string, error) {
	have, err := b.Apps(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]storage.App, len(have))
	for _, a := range have {
		byName[a.Name] = a
	}
	conflicts := map[string]string{}
	want := map[string]bool{}
	var errs []error
	for _, a := range apps {
		want[a.Name] = true
		old, ok := byName[a.Name]
		switch {
		case ok && cmp.Or(old.Source, SourceAPI) != source:
			conflicts[a.Name] = fmt.Sprintf("already registered by %s, which stands", cmp.Or(old.Source, SourceAPI))
			continue
		case ok && old.Mode == a.Mode && old.DeployVersion == a.DeployVersion && old.Account == a.Account:
			continue
		}
		a.DeployedAt = b.now()
		if err := b.Store.PutApp(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	for _, a := range have {
		if prune && a.Source == source && !want[a.Name] {
			// The app's file left the directory: the app and its decision go (routers stop routing it).
			if _, err := b.Store.DeleteApp(ctx, a.Name); err != nil {
				errs = append(errs, err)
			} else if err := b.Store.DeleteDecision(ctx, a.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return conflicts, errors.Join(errs...)
}

func (b StoreBackend) now() time.Time { return time.Now() }

// DeleteApp implements the API's app registry.
func (b StoreBackend) DeleteApp(ctx context.Context, app string) error {
	_, err := b.Store.DeleteApp(ctx, app)
	return err
}

// apiTargetsPage is how many targets ScanAPITargets passes at a time.
const apiTargetsPage = 1000

// ScanAPITargets passes the applications registered through the API, as targets (region endpoints resolved;
// apps without a probe-able target skipped), to fn a page at a time (the page is reused after fn returns),
// never holding the registry: SyncAPIApps' full read. A target may be passed twice (HSCAN). An error from fn
// stops the scan and is returned.
func (b StoreBackend) ScanAPITargets(ctx context.Context, regions RegionEndpoints, fn func([]Target) error) error {
	page := make([]Target, 0, apiTargetsPage)
	err := b.ScanApps(ctx, func(a storage.App) error {
		t, ok := apiTarget(a, regions)
		if !ok {
			return nil
		}
		if page = append(page, t); len(page) < apiTargetsPage {
			return nil
		}
		err := fn(page)
		page = page[:0]
		return err
	})
	if err != nil || len(page) == 0 {
		return err
	}
	return fn(page)
}

// APITargetsNamed is ScanAPITargets for the applications names, by name: an application absent from the result
// is not registered, or not through the API, or has no probe-able target.
func (b StoreBackend) APITargetsNamed(ctx context.Context, names []string, regions RegionEndpoints) (map[string]Target, error) {
	apps, err := b.AppsNamed(ctx, names)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Target, len(apps))
	for name, a := range apps {
		if t, ok := apiTarget(a, regions); ok && t.App == name {
			out[name] = t
		}
	}
	return out, nil
}

// apiTarget returns a registered application as a target, when it was registered through the API and has a
// probe-able target (a region's endpoint resolved).
func apiTarget(a storage.App, regions RegionEndpoints) (Target, bool) {
	if cmp.Or(a.Source, SourceAPI) != SourceAPI {
		return Target{}, false // a config dir's smart application: its scheduler holds it
	}
	t := Target{App: a.Name, Mode: a.Mode, Target: a.Target, Account: a.Account}
	if t.Mode == placement.ModeRegion {
		var err error
		if t.Endpoint, err = regions.Endpoint(t.Target); err != nil {
			return Target{}, false
		}
	}
	return t, t.Validate() == nil
}

// gcd returns the greatest common divisor of a and b (both positive).
func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
