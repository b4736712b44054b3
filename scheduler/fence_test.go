package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler/smartrun"
	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestRecheckAfterSmartDecisionNotFencedOff reproduces issue 19's cross-lease fencing bug: an app's smart
// decision is written by the smart runner under the fleet-wide lease (wired as the daemon wires it: Leading is
// Scheduler.Leading), whose token is newer than the app's shard lease's; the app is then registered again in
// host mode without a delete, and its recheck under the shard's term must write its decision, not be fenced off
// (storage.ErrFenced) until the shard changes hands. Both decision write paths: batched (PutDecisionBatch) and
// not (PutDecisionFenced). A later write under the shard's lease by a holder older than the one that wrote is
// still fenced off.
func TestRecheckAfterSmartDecisionNotFencedOff(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	pops := []geo.PoP{mustPoP(t, "FRA"), mustPoP(t, "SIN"), mustPoP(t, "IAD")}
	startModelFleet(t, st, pops)
	tests := []struct {
		name      string
		batchTick time.Duration
	}{
		{"batched", 0},    // DefaultBatchTick
		{"unbatched", -1}, // one PutDecisionFenced per recheck
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a bound on hangs, not a timing check
			defer cancel()
			app := "moved-" + tt.name
			s, err := New(Config{Name: "fence-" + tt.name, LeaseName: "fence-" + tt.name, BatchTick: tt.batchTick,
				Budget: len(pops), PoPs: pops, ResultTimeout: time.Minute, LeaseTTL: 10 * time.Second, Logger: quietLogger()},
				StoreBackend{st}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.deps.batchFor(s) != nil; got != (tt.batchTick >= 0) {
				t.Fatalf("batcher %v; want %v", got, tt.batchTick >= 0)
			}
			// The app's shard lease is taken first, so its token is older than the fleet-wide lease's.
			shardLease := shardLeaseName(s.cfg.LeaseName, int(shardOf(app, s.cfg.Shards)))
			shardToken, ok, err := st.AcquireLease(ctx, shardLease, "shard-holder", time.Minute)
			if err != nil || !ok {
				t.Fatalf("AcquireLease(%s): %v %v", shardLease, ok, err)
			}

			// The fleet-wide lease, through the scheduler's own leadership.
			lctx, stopLead := context.WithCancel(ctx)
			leadDone := make(chan struct{})
			go func() { s.lead.run(lctx); close(leadDone) }()
			t.Cleanup(func() { stopLead(); <-leadDone })
			testwait.Eventually(t, 30*time.Second, "the fleet-wide lease", func() bool { ok, _ := s.Leading(); return ok })
			_, fleet := s.Leading()
			if fleet.Lease != s.cfg.LeaseName || fleet.Token <= shardToken {
				t.Fatalf("fleet fence %+v, shard token %d: want the fleet lease's name and a newer token", fleet, shardToken)
			}

			// A smart app: the runner writes its decision under the fleet-wide fence.
			if err := st.PutApp(ctx, storage.App{Name: app, Mode: placement.ModeSmart}); err != nil {
				t.Fatal(err)
			}
			r, err := smartrun.NewRunner(smart.DefaultConfig(), st, smartrun.Sources{}, smartrun.RunnerOptions{
				Logger: quietLogger(), Leading: s.Leading, Poll: -1})
			if err != nil {
				t.Fatal(err)
			}
			rctx, stopRunner := context.WithCancel(ctx)
			runDone := make(chan error, 1)
			go func() { runDone <- r.Run(rctx) }()
			testwait.Eventually(t, 30*time.Second, "the smart decision", func() bool {
				d, ok, err := st.Decision(ctx, app)
				return err == nil && ok && d.Mode == placement.ModeSmart
			})
			stopRunner()
			if err := <-runDone; err != nil {
				t.Fatal(err)
			}

			// Registered again in host mode, no delete in between: the shard's recheck writes.
			target := Target{App: app, Mode: placement.ModeHost, Target: "db-" + tt.name + ".example:5432"}
			if err := st.PutApp(ctx, storage.App{Name: app, Mode: placement.ModeHost, Target: target.Target}); err != nil {
				t.Fatal(err)
			}
			term := &Term{Ctx: ctx, Lease: shardLease, Token: shardToken, Seq: 1, Start: time.Now()}
			dec, err := s.recheck(ctx, term, target)
			if err != nil {
				t.Fatalf("recheck under the shard's term (token %d) after the fleet lease's (token %d): %v; want written",
					shardToken, fleet.Token, err)
			}
			got, ok, err := st.Decision(ctx, app)
			if err != nil || !ok || got.Mode != placement.ModeHost || got.Target != target.Target || got.BestPoP != dec.BestPoP {
				t.Errorf("stored decision %+v (%v, %v); want the recheck's host decision %+v", got, ok, err, dec)
			}

			// The shard's lease owns the app now: a holder of it older than the one that wrote is fenced off.
			stale := &Term{Ctx: ctx, Lease: shardLease, Token: shardToken - 1, Seq: 2, Start: time.Now()}
			if _, err := s.recheck(ctx, stale, target); !errors.Is(err, storage.ErrFenced) {
				t.Errorf("recheck under an older token of the shard's lease: %v; want storage.ErrFenced", err)
			}
		})
	}
}
