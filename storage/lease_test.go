package storage

import (
	"slices"
	"testing"
	"time"
)

func init() {
	areas = append(areas, area{"lease_members", testLeaseMembers}, area{"lease_shard_count", testShardCount})
}

// testLeaseMembers: members announce themselves with a TTL, expire when they stop, and leave at once.
func testLeaseMembers(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	for _, tc := range []struct {
		name   string
		member string
		ttl    time.Duration
		leave  string
		sleep  time.Duration
		want   []string
	}{
		{"a_joins", "a", time.Minute, "", 0, []string{"a"}},
		{"b_joins_briefly", "b", 200 * time.Millisecond, "", 0, []string{"a", "b"}},
		{"c_joins_after_b_expired", "c", time.Minute, "", 400 * time.Millisecond, []string{"a", "c"}},
		{"a_renews", "a", time.Minute, "", 0, []string{"a", "c"}},
		{"c_leaves_a_reads", "a", time.Minute, "c", 0, []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			time.Sleep(tc.sleep)
			if tc.leave != "" {
				if err := s.LeaveMember(ctx, "sched", tc.leave); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.HeartbeatMember(ctx, "sched", tc.member, tc.ttl)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("members %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := s.HeartbeatMember(ctx, "a{b}", "a", time.Second); err == nil {
		t.Error("a group name with a hash tag was accepted")
	}
}

// testShardCount: the first count stored wins; later members read it.
func testShardCount(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		n    int
		want int
	}{
		{"first_stores", 64, 64},
		{"mismatch_reads_the_stored", 16, 64},
		{"same_agrees", 64, 64},
	} {
		got, err := s.AgreeShards(ctx, "sched", tc.n)
		if err != nil || got != tc.want {
			t.Errorf("%s: AgreeShards(%d) = %d, %v; want %d", tc.name, tc.n, got, err, tc.want)
		}
	}
	if _, err := s.AgreeShards(ctx, "sched", 0); err == nil {
		t.Error("a shard count of 0 was accepted")
	}
}
