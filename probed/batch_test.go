package probed

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// batchProber answers at once, except the target "slow:1", which waits for release.
type batchProber struct{ release chan struct{} }

func (p batchProber) Probe(ctx context.Context, t prober.Target) prober.Result {
	if t.Addr == "slow:1" {
		select {
		case <-p.release:
		case <-ctx.Done():
		}
	}
	d := prober.Duration(5 * time.Millisecond)
	return prober.Result{Kind: t.Kind, Target: t.Addr, Start: time.Now(), Samples: []prober.Duration{d}, Min: d, Median: d,
		Sent: 1, Received: 1, Success: true}
}

// TestDaemonBatchEntry: the probes of one batch entry are stored and announced as they finish (a slow one
// holds the others back by at most FlushDelay), and the entry is acknowledged only with its last probe.
func TestDaemonBatchEntry(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	ctx := context.Background()
	reply := storage.KeyResultNotes("test")
	jobs := []storage.Job{{Target: "a:1", Key: "a", Round: "r", Kind: placement.ProbeTCP}, {Target: "slow:1", Key: "slow", Round: "r", Kind: placement.ProbeTCP},
		{Target: "b:1", Key: "b", Round: "r", Kind: placement.ProbeTCP}}
	first, _, err := st.EnqueueJobBatches(ctx, map[string][]storage.Job{"FRA": jobs}, reply)
	if err != nil {
		t.Fatal(err)
	}
	p := batchProber{release: make(chan struct{})}
	startDaemon(t, st, fastConfig("FRA", "fra-1"), p)
	var notes []storage.Result
	last := storage.StreamIDBefore(first)
	read := func() {
		rs, next, err := st.ReadResultNotes(ctx, reply, last, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		notes, last = append(notes, rs...), next
	}
	testwait.Eventually(t, 10*time.Second, "the fast probes announced", func() bool { read(); return len(notes) == 2 })
	for _, k := range []string{"a", "b"} {
		if rs, err := st.LatestResults(ctx, k); err != nil || rs["FRA"].Round != "r" {
			t.Errorf("result of %s: %+v, %v", k, rs, err)
		}
	}
	if n := pending(t, st, "FRA"); n != 1 {
		t.Fatalf("entry pending %d with a probe still running; want 1 (not acknowledged)", n)
	}
	close(p.release)
	testwait.Eventually(t, 10*time.Second, "the slow probe announced", func() bool { read(); return len(notes) == 3 })
	testwait.Eventually(t, 5*time.Second, "the entry acknowledged", func() bool { return pending(t, st, "FRA") == 0 })
	if notes[2].Target != "slow" || notes[2].PoP != "FRA" || notes[2].JobID == "" {
		t.Errorf("last announcement %+v; want the slow probe's", notes[2])
	}
}

// TestDaemonResultDedupFollowsDeadline: the daemon hands its job's deadline with the result, so the marker that
// drops a re-delivered job's second result lives until storage.DedupAfterDeadline past it, not the 24 hours of a
// job without one.
func TestDaemonResultDedupFollowsDeadline(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	jobs := []storage.Job{{Target: "a:1", Key: "dedup-a", Round: "r", Kind: placement.ProbeTCP, Deadline: deadline}}
	if _, _, err := st.EnqueueJobBatches(ctx, map[string][]storage.Job{"FRA": jobs}, storage.KeyResultNotes("test")); err != nil {
		t.Fatal(err)
	}
	p := batchProber{release: make(chan struct{})}
	close(p.release)
	startDaemon(t, st, fastConfig("FRA", "fra-1"), p)
	testwait.Eventually(t, 10*time.Second, "the result stored", func() bool {
		rs, err := st.LatestResults(ctx, "dedup-a")
		return err == nil && rs["FRA"].Round == "r"
	})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	keys, err := c.Keys(ctx, "*:done:FRA:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("dedup markers %v, %v; want one", keys, err)
	}
	ttl, err := c.PTTL(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if max := time.Minute + storage.DedupAfterDeadline; ttl < storage.DedupAfterDeadline || ttl > max { // the deadline was a minute ahead
		t.Errorf("dedup marker %s lives %v; want at most %v (its job's deadline + %v)", keys[0], ttl, max, storage.DedupAfterDeadline)
	}
}
