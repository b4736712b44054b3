package scheduler

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// killableBackend is a scheduler's store whose lease and membership calls all fail once it is killed, as if
// its process had died: nothing is renewed, released or left, so its leases and membership expire in Redis.
type killableBackend struct {
	StoreBackend
	dead atomic.Bool
}

var errKilled = fmt.Errorf("scheduler process killed")

func (b *killableBackend) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (int64, bool, error) {
	if b.dead.Load() {
		return 0, false, errKilled
	}
	return b.StoreBackend.AcquireLease(ctx, name, holder, ttl)
}

func (b *killableBackend) RenewLease(ctx context.Context, name, holder string, tok int64, ttl time.Duration) (bool, error) {
	if b.dead.Load() {
		return false, errKilled
	}
	return b.StoreBackend.RenewLease(ctx, name, holder, tok, ttl)
}

func (b *killableBackend) ReleaseLease(ctx context.Context, name, holder string, tok int64) error {
	if b.dead.Load() {
		return errKilled
	}
	return b.StoreBackend.ReleaseLease(ctx, name, holder, tok)
}

func (b *killableBackend) HeartbeatMember(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	if b.dead.Load() {
		return nil, errKilled
	}
	return b.Store.HeartbeatMember(ctx, group, member, ttl)
}

func (b *killableBackend) LeaveMember(ctx context.Context, group, member string) error {
	if b.dead.Load() {
		return errKilled
	}
	return b.Store.LeaveMember(ctx, group, member)
}

// checkSpan is one recheck: by which scheduler, from when to when (wall clock).
type checkSpan struct {
	by         string
	start, end time.Time
}

// spanLog records every recheck of every app, and each app's next recheck as its decision would store it.
type spanLog struct {
	mu    sync.Mutex
	spans map[string][]checkSpan
	next  map[string]time.Time
}

func (l *spanLog) check(name string, interval time.Duration) checkFunc {
	return func(ctx context.Context, term *Term, t Target) (placement.Decision, error) {
		start := time.Now()
		select { // a recheck mostly waits for the fleet
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
		end := time.Now()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.spans[t.App] = append(l.spans[t.App], checkSpan{name, start, end})
		if ctx.Err() == nil {
			l.next[t.App] = end.Add(interval)
		}
		return placement.Decision{App: t.App}, ctx.Err()
	}
}

func (l *spanLog) nextRechecks(context.Context, []bool) (map[string]time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.next), nil
}

// TestShardsOnRedisCluster runs schedulers on a 3-master Redis Cluster (their shard leases spread over its
// slots): three share every shard, each led by exactly one (as Redis's leases say too); one killed without
// releasing anything has its shards taken over once its leases expire; a fourth takes shards from the others.
// Throughout, no app is checked by two schedulers at once, and none goes unchecked for two intervals.
func TestShardsOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-master Redis Cluster")
	}
	cluster := redistest.StartCluster(t, 3)
	ctx := context.Background()
	const (
		shards   = 16
		interval = 4 * time.Second
		ttl      = 2 * time.Second
		nApps    = 200
	)
	var apps []string
	for i := range nApps {
		apps = append(apps, fmt.Sprintf("app-%03d", i))
	}
	log := &spanLog{spans: map[string][]checkSpan{}, next: map[string]time.Time{}}
	obs, err := storage.Open(ctx, storage.Options{Addrs: cluster.Addrs(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Close() })

	type member struct {
		s       *Scheduler
		backend *killableBackend
		stop    func()
	}
	var mu sync.Mutex
	members := map[string]*member{}
	start := func(name string) {
		st, err := storage.Open(ctx, storage.Options{Addrs: cluster.Addrs(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		b := &killableBackend{StoreBackend: StoreBackend{st}}
		cfg := Config{Name: name, Shards: shards, RecheckInterval: interval, Jitter: -1, InitialSpread: time.Second,
			LeaseTTL: ttl, MeshInterval: -1, Logger: quietLogger()}
		s := newScheduler(cfg, b, NewMetrics(nil))
		s.check = log.check(name, interval)
		s.dueScan = log.nextRechecks
		s.SetTargets("test", testTargets(apps...))
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { s.Run(rctx); close(done) }()
		stop := sync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stop)
		mu.Lock()
		members[name] = &member{s, b, stop}
		mu.Unlock()
	}
	// balanced reports whether every shard is led by exactly one of names, none above its fair share, and
	// Redis's shard leases agree.
	balanced := func(names ...string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			share := (shards + len(names) - 1) / len(names)
			leaders := make([][]string, shards)
			for name, m := range members {
				led := m.s.Shards().Led
				if slices.Contains(names, name) && len(led) > share {
					return false
				}
				for _, i := range led {
					leaders[i] = append(leaders[i], name)
				}
			}
			for i, ls := range leaders {
				if len(ls) != 1 || !slices.Contains(names, ls[0]) {
					return false
				}
				l, held, err := obs.LeaseInfo(ctx, shardLeaseName(DefaultLeaseName, i))
				if err != nil || !held || l.Holder != members[ls[0]].s.Shards().Holder {
					return false
				}
			}
			return true
		}
	}
	checkedSince := func(since time.Time) func() bool {
		return func() bool {
			log.mu.Lock()
			defer log.mu.Unlock()
			for _, a := range apps {
				sp := log.spans[a]
				if len(sp) == 0 || sp[len(sp)-1].start.Before(since) {
					return false
				}
			}
			return true
		}
	}

	begin := time.Now()
	for _, n := range []string{"s1", "s2", "s3"} {
		start(n)
	}
	testwait.Eventually(t, 10*ttl, "three schedulers to share the shards", balanced("s1", "s2", "s3"))
	testwait.Eventually(t, 2*interval, "every app checked", checkedSince(begin))

	// Kill s2: cut off from Redis first (no renewal, no release, no leave: its leases expire), its process
	// still running, so it must stop checking by itself before another scheduler takes its shards (balanced
	// counts its shards too); then its Run ends, as in a crash.
	mu.Lock()
	victim := members["s2"]
	mu.Unlock()
	victim.backend.dead.Store(true)
	killed := time.Now()
	took := testwait.Eventually(t, 5*ttl, "s2's shards taken over", balanced("s1", "s3"))
	t.Logf("s2's shards taken over %v after its death (lease %v)", took, ttl)
	if limit := ttl + ttl/2 + time.Second; took > limit { // a lease period, a few polls, and a busy machine
		t.Errorf("takeover took %v, want within one lease period (%v) plus slack (%v)", took, ttl, limit)
	}
	victim.stop()
	mu.Lock()
	delete(members, "s2")
	mu.Unlock()
	testwait.Eventually(t, 2*interval, "every app checked after the kill", checkedSince(killed))

	// A fourth joins: shards move to it.
	joined := time.Now()
	start("s4")
	testwait.Eventually(t, 10*ttl, "shards to move to s4", balanced("s1", "s3", "s4"))
	testwait.Eventually(t, 2*interval, "every app checked after s4 joined", checkedSince(joined))
	end := time.Now()
	mu.Lock()
	s4Led := len(members["s4"].s.Shards().Led)
	for _, m := range members {
		m.stop()
	}
	mu.Unlock()
	if s4Led < shards/4 {
		t.Errorf("s4 leads %d shards, want its share of %d", s4Led, shards)
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	byS4 := 0
	for _, a := range apps {
		sp := log.spans[a]
		sort.Slice(sp, func(i, j int) bool { return sp[i].start.Before(sp[j].start) })
		for i := 1; i < len(sp); i++ {
			if sp[i].start.Before(sp[i-1].end) {
				t.Errorf("app %s checked by %s from %v while %s checked it until %v", a,
					sp[i].by, sp[i].start.Sub(begin), sp[i-1].by, sp[i-1].end.Sub(begin))
			}
			if gap := sp[i].start.Sub(sp[i-1].start); gap > 2*interval {
				t.Errorf("app %s unchecked for %v (by %s, then %s), want at most two intervals (%v)", a, gap, sp[i-1].by, sp[i].by, 2*interval)
			}
		}
		if gap := end.Sub(sp[len(sp)-1].start); gap > 2*interval {
			t.Errorf("app %s unchecked for the last %v of the test", a, gap)
		}
		if sp[len(sp)-1].by == "s4" {
			byS4++
		}
	}
	if byS4 == 0 {
		t.Error("no app checked by s4 after it joined")
	}
}
