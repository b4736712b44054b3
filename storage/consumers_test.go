package storage

import (
	"slices"
	"testing"
	"time"
)

func init() {
	areas = append(areas, area{"jobs_prune_consumers", testPruneConsumers})
}

// testPruneConsumers: consumers idle with nothing pending are deleted; one with a pending job is kept, however
// idle, and so is one that read recently.
func testPruneConsumers(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	if got, err := s.PruneConsumers(ctx, "LHR", 0); err != nil || len(got) != 0 {
		t.Fatalf("PruneConsumers before any group = %v, %v; want none", got, err)
	}
	for _, target := range []string{"a:1", "b:2", "c:3", "d:4"} { // one each: Redis creates a consumer when it reads
		if _, err := s.EnqueueJob(ctx, "LHR", job(target)); err != nil {
			t.Fatal(err)
		}
	}
	holds, err := s.ReadJobs(ctx, "LHR", "holds-a-job", 1, 0) // pending, never acknowledged
	if err != nil || len(holds) != 1 {
		t.Fatalf("ReadJobs = %v, %v", holds, err)
	}
	readAck := func(consumer string) {
		t.Helper()
		js, err := s.ReadJobs(ctx, "LHR", consumer, 1, 0)
		if err != nil || len(js) != 1 {
			t.Fatalf("ReadJobs(%s) = %v, %v", consumer, js, err)
		}
		if err := s.AckJob(ctx, "LHR", js[0].ID); err != nil {
			t.Fatal(err)
		}
	}
	readAck("acked")
	readAck("idle-reader")
	consumers := func() []string {
		t.Helper()
		cs, err := s.Client().XInfoConsumers(ctx, KeyJobs("LHR"), JobGroup).Result()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		return names
	}
	if cs, err := s.Client().XInfoConsumers(ctx, KeyJobs("LHR"), JobGroup).Result(); err != nil || len(cs) == 0 || cs[0].Idle < 0 {
		t.Skipf("consumers %+v, %v: this server does not report idle times (miniredis), so PruneConsumers prunes nothing", cs, err)
	}
	if got, err := s.PruneConsumers(ctx, "LHR", time.Hour); err != nil || len(got) != 0 {
		t.Errorf("PruneConsumers(1h) = %v, %v; want none: every consumer read just now", got, err)
	}
	time.Sleep(1200 * time.Millisecond) // the three are idle past 1 s; fresh reads just before the prune
	readAck("fresh")
	got, err := s.PruneConsumers(ctx, "LHR", time.Second)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"acked", "idle-reader"}) {
		t.Errorf("PruneConsumers(1s) = %v, %v; want acked and idle-reader", got, err)
	}
	if got := consumers(); !slices.Equal(got, []string{"fresh", "holds-a-job"}) {
		t.Errorf("consumers left %v; want fresh (recent) and holds-a-job (a job pending)", got)
	}
	// The pending job is still there to be reclaimed.
	if js, err := s.ReclaimJobs(ctx, "LHR", "fresh", 0, 10); err != nil || len(js) != 1 || js[0].ID != holds[0].ID {
		t.Errorf("ReclaimJobs after pruning = %+v, %v; want the held job", js, err)
	}
}
