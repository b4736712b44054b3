package scheduler

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// memRegistry adds the lease group's membership and shard count to memLeaser, on the fake clock.
type memRegistry struct {
	*memLeaser
	members map[string]time.Time // holder -> expiry
	shards  int
}

func (r *memRegistry) HeartbeatMember(_ context.Context, group, member string, ttl time.Duration) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead[nameOf(member)] {
		return nil, errDead
	}
	if r.members == nil {
		r.members = map[string]time.Time{}
	}
	now := r.clock.Now()
	r.members[member] = now.Add(ttl)
	var out []string
	for m, until := range r.members {
		if now.Before(until) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (r *memRegistry) LeaveMember(_ context.Context, group, member string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead[nameOf(member)] {
		return errDead
	}
	delete(r.members, member)
	return nil
}

func (r *memRegistry) AgreeShards(_ context.Context, group string, n int) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shards == 0 {
		r.shards = n
	}
	return r.shards, nil
}

// shardLeaders returns, per shard, the schedulers that believe they lead it.
func shardLeaders(scheds map[string]*Scheduler, n int) [][]string {
	out := make([][]string, n)
	for name, s := range scheds {
		for _, i := range s.Shards().Led {
			if i >= n { // led before it adopted the fleet's count: would be a bug, reported as a shard of none
				continue
			}
			out[i] = append(out[i], name)
		}
	}
	return out
}

// TestShardsBalanceTakeOverAndMove: three schedulers split 8 shards 3/3/2, each led by exactly one; when one
// dies (no release: its leases expire) the two others take its shards over within about one lease period; a
// fourth joining takes shards from the others until none leads more than its fair share. Throughout, no app
// is checked twice in parallel.
func TestShardsBalanceTakeOverAndMove(t *testing.T) {
	h := newHarness()
	reg := &memRegistry{memLeaser: h.leaser}
	const shards = 8
	ttl := 3 * time.Second
	cfg := Config{RecheckInterval: 2 * time.Second, InitialSpread: time.Second, Jitter: -1, LeaseTTL: ttl, Shards: shards}
	var apps []string
	for i := range 40 {
		apps = append(apps, fmt.Sprintf("app-%02d", i))
	}
	scheds := map[string]*Scheduler{}
	start := func(name string, n int) *Scheduler {
		c := cfg
		c.Shards = n
		c.Name, c.Clock, c.Logger = name, h.clock, quietLogger()
		s := newScheduler(c, reg, NewMetrics(nil))
		s.check = h.log.fn(h.clock, name, nil)
		s.SetTargets("test", testTargets(apps...))
		h.track(s)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		scheds[name] = s
		return s
	}
	// run advances the fake clock in steps until ok holds, at most for limit.
	run := func(what string, limit time.Duration, ok func() bool) time.Duration {
		t.Helper()
		begin := h.clock.Now()
		for !ok() {
			if h.clock.Now().Sub(begin) > limit {
				t.Fatalf("%s: not within %v: leaders %v", what, limit, shardLeaders(scheds, shards))
			}
			h.settle(t)
			h.clock.Advance(100 * time.Millisecond)
			h.settle(t)
		}
		return h.clock.Now().Sub(begin)
	}
	balanced := func(names ...string) func() bool {
		return func() bool {
			share := (shards + len(names) - 1) / len(names)
			for _, ls := range shardLeaders(scheds, shards) {
				if len(ls) != 1 || !slices.Contains(names, ls[0]) {
					return false
				}
			}
			for _, n := range names {
				if len(scheds[n].Shards().Led) > share {
					return false
				}
			}
			return true
		}
	}

	start("s1", shards)
	start("s2", shards)
	testwait.Eventually(t, 10*time.Second, "the fleet's shard count stored", func() bool {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return reg.shards != 0
	})
	start("s3", 16) // a misconfigured one adopts the fleet's count
	run("three schedulers share the shards", 10*ttl, balanced("s1", "s2", "s3"))
	if n := scheds["s3"].Shards().Shards; n != shards {
		t.Errorf("s3 splits targets into %d shards, want the fleet's %d", n, shards)
	}
	run("every app checked", 5*ttl, func() bool {
		for _, a := range apps {
			if h.log.count(a) == 0 {
				return false
			}
		}
		return true
	})

	h.leaser.kill("s3") // s3's process dies: no renewal, no release, no heartbeat
	took := run("s3's shards taken over", 5*ttl, balanced("s1", "s2"))
	t.Logf("s3's shards taken over %v after its death", took)
	if took > ttl+ttl/2 {
		t.Errorf("takeover after %v, want within one lease period (%v) and a few polls", took, ttl)
	}
	s3 := scheds["s3"]
	delete(scheds, "s3")
	if led := s3.Shards().Led; len(led) != 0 {
		t.Errorf("the dead s3 still believes it leads shards %v", led)
	}

	start("s4", shards)
	run("shards move to s4", 10*ttl, balanced("s1", "s2", "s4"))
	if n := len(scheds["s4"].Shards().Led); n < 2 {
		t.Errorf("s4 leads %d shards, want its share", n)
	}
	checkedBy := func(name string) bool {
		h.log.mu.Lock()
		defer h.log.mu.Unlock()
		for _, by := range h.log.by {
			if slices.Contains(by, name) {
				return true
			}
		}
		return false
	}
	run("s4 rechecks", 5*ttl, func() bool { return checkedBy("s4") })
	h.log.mu.Lock()
	defer h.log.mu.Unlock()
	if h.log.maxPar > 1 {
		t.Errorf("an app was checked %d times in parallel", h.log.maxPar)
	}
}

// TestShardsConfig: New refuses a shard count out of range and takes the default for 0.
func TestShardsConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards int
		want   int // 0: refused
	}{
		{"default", 0, DefaultShards},
		{"one", 1, 1},
		{"max", MaxShards, MaxShards},
		{"negative", -1, 0},
		{"too_many", MaxShards + 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Shards: tc.shards, Logger: quietLogger()}, StoreBackend{}, nil)
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("Shards %d accepted", tc.shards)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := s.Shards().Shards; n != tc.want {
				t.Errorf("Shards %d: %d shards, want %d", tc.shards, n, tc.want)
			}
		})
	}
}

// TestNextRechecksReadsWantedShards: the stored recheck times read when shards are taken over are those of the
// shards' apps only, read from the decision buckets that can hold them (with the default 64 shards, one bucket
// per shard).
func TestNextRechecksReadsWantedShards(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	ctx := context.Background()
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	var ds []placement.Decision
	for i := range 400 {
		ds = append(ds, placement.Decision{App: fmt.Sprintf("app-%03d", i), Mode: placement.ModeHost, Target: "x:1",
			ComputedAt: at.Add(-time.Hour), NextRecheck: at})
	}
	if _, err := st.PutDecisions(ctx, ds); err != nil {
		t.Fatal(err)
	}
	cmds := &redistest.Commands{}
	st.Client().AddHook(cmds)
	b := StoreBackend{st}
	tests := []struct {
		name      string
		shards    int
		want      []int
		wantHVals int64 // buckets read
	}{
		{"default_64_two_shards", 64, []int{3, 17}, 2},
		{"16_shards_one", 16, []int{5}, 4},
		{"48_shards", 48, []int{0, 47}, 8},          // gcd 16: the buckets of residues 0 and 15
		{"1024_shards", 1024, []int{5, 69, 700}, 2}, // 5 and 69 share bucket 5; 700 is in bucket 60
		{"3_shards", 3, []int{1}, 64},               // gcd 1: every bucket
		{"none", 64, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]bool, tt.shards)
			for _, i := range tt.want {
				want[i] = true
			}
			before := cmds.Count("hvals")
			got, err := b.NextRechecks(ctx, want)
			if err != nil {
				t.Fatal(err)
			}
			if n := cmds.Count("hvals") - before; n != tt.wantHVals {
				t.Errorf("%d decision buckets read, want %d", n, tt.wantHVals)
			}
			expect := 0
			for _, d := range ds {
				if want[shardOf(d.App, tt.shards)] {
					expect++
					if !got[d.App].Equal(at) {
						t.Errorf("%s (shard %d): %v, want %v", d.App, shardOf(d.App, tt.shards), got[d.App], at)
					}
				}
			}
			if len(got) != expect || (tt.want != nil && expect == 0) {
				t.Errorf("%d apps' recheck times, want %d (the wanted shards' apps)", len(got), expect)
			}
		})
	}
}
