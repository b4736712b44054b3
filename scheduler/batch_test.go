package scheduler

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// notesBackend counts the recheck's looks at the stored results and can lose every announcement.
type notesBackend struct {
	StoreBackend
	polls     atomic.Int64
	loseNotes bool
}

func (b *notesBackend) LatestResults(ctx context.Context, key string) (map[string]storage.Result, error) {
	b.polls.Add(1)
	return b.StoreBackend.LatestResults(ctx, key)
}

func (b *notesBackend) ReadResultNotes(ctx context.Context, stream, last string, count int, block time.Duration) ([]storage.Result, string, error) {
	rs, next, err := b.StoreBackend.ReadResultNotes(ctx, stream, last, count, block)
	if b.loseNotes {
		return nil, next, err
	}
	return rs, next, err
}

// startModelFleet runs a probe daemon per PoP answering from the latency model (modelProber), in this process.
func startModelFleet(t *testing.T, st *storage.Store, pops []geo.PoP) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := 0
	for _, p := range pops {
		q := &probed.StoreQueue{DB: st, PoP: p.Code, DaemonID: "model-" + p.Code}
		d, err := probed.New(probed.Config{PoP: p.Code, DaemonID: q.DaemonID, Heartbeat: 200 * time.Millisecond,
			ReadBlock: 200 * time.Millisecond, Logger: quietLogger()}, q, modelProber{at: p.Point, model: geo.DefaultModel()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		n++
		go func() { d.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range n {
			<-done
		}
	})
	testwait.Eventually(t, 20*time.Second, "the fleet up", func() bool {
		up, err := StoreBackend{st}.UpPoPs(context.Background())
		return err == nil && len(up) == len(pops)
	})
}

// TestRecheckWokenByAnnouncement: a recheck's round is woken by the announcement of its results on the
// scheduler's results stream, without looking at the stored results; when every announcement is lost, the
// fallback look finds them.
func TestRecheckWokenByAnnouncement(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	pops := []geo.PoP{mustPoP(t, "FRA"), mustPoP(t, "SIN"), mustPoP(t, "IAD")}
	startModelFleet(t, st, pops)
	tests := []struct {
		name      string
		loseNotes bool
		fallback  time.Duration
		wantPolls func(int64) bool
	}{
		// A fallback far past the results' arrival: a poll would mean the announcement did not wake the round.
		{"announced", false, time.Hour, func(n int64) bool { return n == 0 }},
		{"announcements_lost", true, 100 * time.Millisecond, func(n int64) bool { return n >= 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &notesBackend{StoreBackend: StoreBackend{st}, loseNotes: tt.loseNotes}
			s, err := New(Config{Name: "notes-" + tt.name, Budget: len(pops), PoPs: pops, ResultTimeout: time.Minute,
				Logger: quietLogger()}, b, nil)
			if err != nil {
				t.Fatal(err)
			}
			bt := s.deps.batchFor(s)
			if bt == nil {
				t.Fatal("no batcher on a storage backend")
			}
			bt.fallback = tt.fallback
			ctx := context.Background()
			dec, err := s.recheck(ctx, &Term{Ctx: ctx, Lease: "vantage-shard-000", Token: 1, Seq: 1, Start: time.Now()},
				Target{App: "app-" + tt.name, Mode: placement.ModeHost, Target: "db-" + tt.name + ".example:5432"})
			if err != nil {
				t.Fatal(err)
			}
			if dec.Status != placement.StatusSuccess || len(dec.Candidates) != len(pops) {
				t.Errorf("decision %s with %d candidates (%s); want SUCCESS from every PoP", dec.Status, len(dec.Candidates), dec.Reason)
			}
			if n := b.polls.Load(); !tt.wantPolls(n) {
				t.Errorf("%d looks at the stored results", n)
			}
			if got, ok, err := st.Decision(ctx, "app-"+tt.name); err != nil || !ok || got.BestPoP != dec.BestPoP {
				t.Errorf("stored decision %+v, %v, %v; want the recheck's", got, ok, err)
			}
			if _, ok, err := st.Explanation(ctx, "app-"+tt.name); err != nil || !ok {
				t.Errorf("explanation stored: %v, %v; want it written with the decision", ok, err)
			}
		})
	}
}

// TestBatchedDecisionFencedPerApp: two rechecks whose decisions are written in the same tick, one of an app a
// newer holder of the shard's lease wrote: that one fails with storage.ErrFenced, the other is written.
func TestBatchedDecisionFencedPerApp(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	s, err := New(Config{Name: "fence", Logger: quietLogger(), BatchTick: 200 * time.Millisecond}, StoreBackend{st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	succ := placement.Decision{App: "taken", Mode: placement.ModeHost, Target: "x:1", Status: placement.StatusSuccess, ComputedAt: time.Now()}
	if _, err := st.PutDecisionFenced(ctx, succ, storage.Fence{Lease: "vantage-shard-001", Token: 9}); err != nil {
		t.Fatal(err)
	}
	bt := s.deps.batchFor(s)
	dec := func(app string) placement.Decision {
		return placement.Decision{App: app, Mode: placement.ModeHost, Target: "x:1", BestPoP: "FRA", Status: placement.StatusSuccess, ComputedAt: time.Now()}
	}
	term := &Term{Lease: "vantage-shard-001", Token: 4}
	type out struct {
		w   storage.DecisionWritten
		err error
	}
	taken, free := make(chan out), make(chan out)
	go func() { w, err := bt.write(ctx, s.decisionWrite(dec("taken"), nil, term)); taken <- out{w, err} }()
	go func() { w, err := bt.write(ctx, s.decisionWrite(dec("free"), nil, term)); free <- out{w, err} }()
	if o := <-taken; !errorsIsFenced(o.err) {
		t.Errorf("write of the app a newer holder wrote: %+v; want storage.ErrFenced", o)
	}
	if o := <-free; o.err != nil || !o.w.Changed {
		t.Errorf("write of the other app: %+v; want written", o)
	}
	if d, _, _ := st.Decision(ctx, "taken"); d.BestPoP != "" {
		t.Errorf("the successor's decision was overwritten: %+v", d)
	}
}

func mustPoP(t *testing.T, code string) geo.PoP {
	t.Helper()
	p, ok := geo.LookupPoP(code)
	if !ok {
		t.Fatalf("PoP %s not in the catalogue", code)
	}
	return p
}

func errorsIsFenced(err error) bool { return errors.Is(err, storage.ErrFenced) }

// TestRunStopsBatcher: Run owns the batcher's goroutines: when it returns, the flusher and the listener have
// stopped (not an idle second later), and what a recheck would queue afterwards fails instead of waiting.
func TestRunStopsBatcher(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	pops := []geo.PoP{mustPoP(t, "FRA"), mustPoP(t, "SIN")}
	startModelFleet(t, st, pops)
	s, err := New(Config{Name: "stops", Budget: len(pops), PoPs: pops, RecheckInterval: time.Hour, InitialSpread: time.Millisecond,
		LeaseTTL: 3 * time.Second, Logger: quietLogger()}, StoreBackend{st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	s.SetTargets("test", testTargets("owned"))
	testwait.Eventually(t, 30*time.Second, "the first decision", func() bool {
		d, ok, err := st.Decision(context.Background(), "owned")
		return err == nil && ok && len(d.Candidates) == len(pops)
	})
	bt := s.deps.batchFor(s)
	if bt == nil {
		t.Fatal("no batcher on a storage backend")
	}
	cancel()
	<-done
	bt.mu.Lock()
	flushing, listening := bt.flushing, bt.listening
	bt.mu.Unlock()
	if flushing || listening {
		t.Errorf("after Run returned: flusher running %v, listener running %v; want both stopped", flushing, listening)
	}
	if _, err := bt.write(context.Background(), s.decisionWrite(placement.Decision{App: "late"}, nil, &Term{Lease: "vantage-shard-000", Token: 1})); !errors.Is(err, errBatchClosed) {
		t.Errorf("a write queued after Run returned: %v; want errBatchClosed", err)
	}
	if w := bt.enqueue("late-round", map[string]storage.Job{"FRA": {}}); !errors.Is(w.err, errBatchClosed) {
		t.Errorf("jobs queued after Run returned: %v; want errBatchClosed", w.err)
	}
}
