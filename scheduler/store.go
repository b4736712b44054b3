package scheduler

import (
	"context"
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

// NextRechecks implements Backend.
func (b StoreBackend) NextRechecks(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := b.ScanDecisions(ctx, func(d placement.Decision) error {
		if !d.NextRecheck.IsZero() {
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

// DeleteApp implements the API's app registry.
func (b StoreBackend) DeleteApp(ctx context.Context, app string) error {
	_, err := b.Store.DeleteApp(ctx, app)
	return err
}

// APITargets returns the applications registered through the API as targets, resolving region endpoints;
// apps without a probe-able target are skipped.
func (b StoreBackend) APITargets(ctx context.Context, regions RegionEndpoints) ([]Target, error) {
	apps, err := b.Apps(ctx)
	if err != nil {
		return nil, err
	}
	var out []Target
	for _, a := range apps {
		t := Target{App: a.Name, Mode: a.Mode, Target: a.Target, Account: a.Account}
		if t.Mode == placement.ModeRegion {
			if t.Endpoint, err = regions.Endpoint(t.Target); err != nil {
				continue
			}
		}
		if t.Validate() == nil {
			out = append(out, t)
		}
	}
	return out, nil
}
