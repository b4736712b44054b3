package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

func init() {
	areas = append(areas, area{"jobs", testJobs}, area{"jobs_reclaim", testJobsReclaim},
		area{"jobs_corrupt", testJobsCorrupt}, area{"results", testResults},
		area{"explanation", testExplanation})
}

func job(target string) Job {
	return Job{Target: target, Kind: placement.ProbeTCP, Count: 5, TimeoutMs: 1000, Round: "r1", CreatedAt: t0,
		Params: json.RawMessage(`{"host":"x"}`)}
}

func testJobs(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	// Jobs enqueued before any daemon ever read are delivered.
	var ids []string
	for _, target := range []string{"a:1", "b:2", "c:3"} {
		id, err := s.EnqueueJob(ctx, "LHR", job(target))
		if err != nil {
			t.Fatalf("EnqueueJob(%s): %v", target, err)
		}
		ids = append(ids, id)
	}
	if n, err := s.PendingJobs(ctx, "LHR"); err != nil || n != 3 {
		t.Errorf("PendingJobs = %d, %v; want 3", n, err)
	}
	got, err := s.ReadJobs(ctx, "LHR", "d1", 2, 0)
	if err != nil {
		t.Fatalf("ReadJobs: %v", err)
	}
	want := job("a:1")
	want.ID, want.Attempt, want.Entry, want.Parts = ids[0], 1, ids[0], 1
	if len(got) != 2 || !reflect.DeepEqual(got[0], want) || got[1].Target != "b:2" || got[1].ID != ids[1] {
		t.Fatalf("ReadJobs = %+v; want a:1 (%+v), b:2", got, want)
	}
	got, err = s.ReadJobs(ctx, "LHR", "d2", 10, 0)
	if err != nil || len(got) != 1 || got[0].Target != "c:3" {
		t.Fatalf("second ReadJobs = %+v, %v; want c:3", got, err)
	}
	if got, err := s.ReadJobs(ctx, "LHR", "d2", 10, 0); err != nil || len(got) != 0 {
		t.Fatalf("ReadJobs of an empty queue = %+v, %v; want none", got, err)
	}
	if st, err := s.JobStats(ctx, "LHR"); err != nil || st != (JobStats{Queued: 3, InFlight: 3}) {
		t.Errorf("JobStats = %+v, %v; want 3 queued, 3 in flight", st, err)
	}
	for _, id := range ids[:2] {
		if err := s.AckJob(ctx, "LHR", id); err != nil {
			t.Fatalf("AckJob(%s): %v", id, err)
		}
	}
	if err := s.AckJob(ctx, "LHR", ids[0]); err != nil {
		t.Errorf("second AckJob: %v", err)
	}
	if st, err := s.JobStats(ctx, "LHR"); err != nil || st != (JobStats{Queued: 1, InFlight: 1}) {
		t.Errorf("JobStats after 2 acks = %+v, %v; want 1 queued, 1 in flight", st, err)
	}
	// Other PoPs are separate queues; an unknown PoP is empty.
	if n, err := s.PendingJobs(ctx, "NRT"); err != nil || n != 0 {
		t.Errorf("PendingJobs(NRT) = %d, %v; want 0", n, err)
	}

	// A blocking read returns as soon as a job arrives...
	type readResult struct {
		jobs []Job
		err  error
	}
	done := make(chan readResult, 1)
	go func() {
		j, err := s.ReadJobs(ctx, "FRA", "f1", 1, 5*time.Second)
		done <- readResult{j, err}
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := s.EnqueueJob(ctx, "FRA", job("late:1")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || len(r.jobs) != 1 || r.jobs[0].Target != "late:1" {
			t.Errorf("blocking ReadJobs = %+v, %v; want late:1", r.jobs, r.err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("blocking ReadJobs did not return within 4 s of the enqueue")
	}
	// ...and with none after about its block time, empty.
	start := time.Now()
	if got, err := s.ReadJobs(ctx, "FRA", "f1", 1, 200*time.Millisecond); err != nil || len(got) != 0 {
		t.Errorf("blocking ReadJobs of an empty queue = %+v, %v", got, err)
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 5*time.Second {
		t.Errorf("blocking ReadJobs with 200 ms block took %v", took)
	}

	bad := []struct {
		name string
		pop  string
		j    Job
	}{
		{"no_target", "LHR", Job{Kind: placement.ProbeTCP}},
		{"bad_kind", "LHR", Job{Target: "a:1", Kind: "smtp"}},
		{"bad_pop", "", job("a:1")},
	}
	for _, b := range bad {
		if _, err := s.EnqueueJob(ctx, b.pop, b.j); err == nil {
			t.Errorf("%s: EnqueueJob succeeded; want an error", b.name)
		}
	}
}

func testJobsReclaim(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{MaxJobAttempts: 3})
	ctx := testCtx(t)
	id, err := s.EnqueueJob(ctx, "SIN", job("x:1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReclaimJobs(ctx, "SIN", "d2", 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("ReclaimJobs before any read = %+v, %v; want none", got, err)
	}
	if got, err := s.ReadJobs(ctx, "SIN", "dies", 10, 0); err != nil || len(got) != 1 {
		t.Fatalf("ReadJobs = %+v, %v", got, err)
	}
	const idle = 100 * time.Millisecond
	if got, err := s.ReclaimJobs(ctx, "SIN", "d2", time.Hour, 10); err != nil || len(got) != 0 {
		t.Fatalf("ReclaimJobs of a fresh job = %+v, %v; want none", got, err)
	}
	// Each reclaim after the job idled is a new delivery; past MaxJobAttempts the job goes to the dead letters.
	for attempt := 2; attempt <= 4; attempt++ {
		time.Sleep(idle + 50*time.Millisecond)
		got, err := s.ReclaimJobs(ctx, "SIN", "d2", idle, 10)
		if err != nil {
			t.Fatalf("attempt %d: ReclaimJobs: %v", attempt, err)
		}
		if attempt <= 3 {
			if len(got) != 1 || got[0].ID != id || got[0].Attempt != attempt || got[0].Target != "x:1" {
				t.Fatalf("attempt %d: ReclaimJobs = %+v; want job %s with Attempt %d", attempt, got, id, attempt)
			}
			continue
		}
		if len(got) != 0 {
			t.Fatalf("attempt %d: ReclaimJobs = %+v; want none (dead)", attempt, got)
		}
	}
	if st, err := s.JobStats(ctx, "SIN"); err != nil || st != (JobStats{Queued: 0, InFlight: 0, Dead: 1}) {
		t.Errorf("JobStats = %+v, %v; want the job dead", st, err)
	}
	dead, err := s.Client().LRange(ctx, KeyDeadJobs("SIN"), 0, -1).Result()
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters = %q, %v", dead, err)
	}
	var j Job
	if err := json.Unmarshal([]byte(dead[0]), &j); err != nil || j.Target != "x:1" {
		t.Errorf("dead letter = %q (%v); want job x:1", dead[0], err)
	}
}

func testResults(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{HistoryLen: 5})
	ctx := testCtx(t)
	const target = "tcp:db.example.com:5432"
	res := func(pop, jobID string, at time.Time, ms float64) Result {
		return Result{Target: target, PoP: pop, Kind: placement.ProbeTCP, MinMs: ms, MedianMs: ms + 1, Samples: 5,
			At: at, JobID: jobID, Round: "r1"}
	}
	dns := res("AMS", "j9", t0, 5)
	dns.Kind = placement.ProbeDNS
	dns.DNS = json.RawMessage(`{"answers":["198.18.0.9"],"chaos_id":"ams1"}`)
	steps := []struct {
		name       string
		r          Result
		wantStored bool
	}{
		{"first", res("LHR", "j1", t0, 10), true},
		{"redelivered_same_job", res("LHR", "j1", t0, 10), false},
		{"same_stream_id_other_pop", res("FRA", "j1", t0, 20), true},
		{"newer", res("LHR", "j2", t0.Add(time.Minute), 11), true},
		{"older_arrives_late", res("LHR", "j3", t0.Add(-time.Minute), 99), true},
		{"no_job_id", res("NRT", "", t0, 200), true},
		{"no_job_id_again", res("NRT", "", t0, 200), true},
		{"dns_evidence", dns, true},
	}
	for _, st := range steps {
		stored, err := s.PutResult(ctx, st.r)
		if err != nil {
			t.Fatalf("%s: PutResult: %v", st.name, err)
		}
		if stored != st.wantStored {
			t.Errorf("%s: stored = %v; want %v", st.name, stored, st.wantStored)
		}
	}
	latest, err := s.LatestResults(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Result{
		"LHR": res("LHR", "j2", t0.Add(time.Minute), 11), // the late older one did not replace it
		"FRA": res("FRA", "j1", t0, 20),
		"NRT": res("NRT", "", t0, 200),
		"AMS": dns,
	}
	if !reflect.DeepEqual(latest, want) {
		t.Errorf("LatestResults =\n %+v\nwant\n %+v", latest, want)
	}
	// History: 7 stored, capped at 5, newest first.
	hist, err := s.History(ctx, target, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range hist {
		got = append(got, r.PoP+"/"+r.JobID)
	}
	if wantH := []string{"AMS/j9", "NRT/", "NRT/", "LHR/j3", "LHR/j2"}; !reflect.DeepEqual(got, wantH) {
		t.Errorf("History = %q; want %q", got, wantH)
	}
	if hist, _ := s.History(ctx, target, 2); len(hist) != 2 {
		t.Errorf("History(2) returned %d", len(hist))
	}
	if l, err := s.LatestResults(ctx, "unknown:1"); err != nil || len(l) != 0 {
		t.Errorf("LatestResults(unknown) = %v, %v; want empty", l, err)
	}
	if _, err := s.PutResult(ctx, Result{Target: target}); err == nil {
		t.Error("PutResult without a PoP succeeded")
	}
	// Recent: each PoP's results newest first by time (the late older one in its place), failures kept as such,
	// a redelivered job not twice, capped at RecentLen.
	failed := res("FRA", "j4", t0.Add(time.Minute), 0)
	failed.Class, failed.Error, failed.Samples = "timeout", "i/o timeout", 0
	if _, err := s.PutResult(ctx, failed); err != nil {
		t.Fatal(err)
	}
	recent, err := s.RecentResults(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	wantR := map[string][]Sample{
		"LHR": {{At: t0.Add(time.Minute), MinMs: 11, OK: true}, {At: t0, MinMs: 10, OK: true}, {At: t0.Add(-time.Minute), MinMs: 99, OK: true}},
		"FRA": {{At: t0.Add(time.Minute)}, {At: t0, MinMs: 20, OK: true}},
		"NRT": {{At: t0, MinMs: 200, OK: true}, {At: t0, MinMs: 200, OK: true}},
		"AMS": {{At: t0, MinMs: 5, OK: true}},
	}
	if !reflect.DeepEqual(recent, wantR) {
		t.Errorf("RecentResults =\n %+v\nwant\n %+v", recent, wantR)
	}
	s2 := open(t, Options{RecentLen: 2})
	for i := range 4 {
		if _, err := s2.PutResult(ctx, res("SIN", fmt.Sprint("k", i), t0.Add(time.Duration(i)*time.Minute), float64(30+i))); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s2.RecentResults(ctx, target); err != nil || !reflect.DeepEqual(got["SIN"],
		[]Sample{{At: t0.Add(3 * time.Minute), MinMs: 33, OK: true}, {At: t0.Add(2 * time.Minute), MinMs: 32, OK: true}}) {
		t.Errorf("RecentResults with RecentLen 2 = %+v, %v; want the 2 newest", got["SIN"], err)
	}
	if err := s2.Client().HSet(ctx, KeyRecent(target), "SIN", "12:x").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.RecentResults(ctx, target); !errors.Is(err, errCorrupt) {
		t.Errorf("RecentResults of a corrupt entry: %v; want errCorrupt", err)
	}
}

// testJobsCorrupt: an entry that is not a job (bad JSON, no job field) can never run: whether a daemon reads it
// or reclaims it, it is acknowledged and deleted, and the jobs around it are delivered.
func testJobsCorrupt(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	addRaw := func(pop string, values ...any) {
		t.Helper()
		if err := s.Client().XAdd(ctx, &redis.XAddArgs{Stream: KeyJobs(pop), Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Read: the corrupt entries between two jobs are dropped.
	if _, err := s.EnqueueJob(ctx, "LHR", job("a:1")); err != nil {
		t.Fatal(err)
	}
	addRaw("LHR", jobField, "{not json")
	addRaw("LHR", "other", "x")
	if _, err := s.EnqueueJob(ctx, "LHR", job("b:2")); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadJobs(ctx, "LHR", "d1", 10, 0)
	if err != nil || len(got) != 2 || got[0].Target != "a:1" || got[1].Target != "b:2" {
		t.Fatalf("ReadJobs around corrupt entries = %+v, %v; want a:1 and b:2", got, err)
	}
	if st, err := s.JobStats(ctx, "LHR"); err != nil || st != (JobStats{Queued: 2, InFlight: 2}) {
		t.Errorf("JobStats = %+v, %v; want the 2 jobs only (corrupt ones deleted)", st, err)
	}
	// Reclaim: a corrupt entry a dead daemon had read (without decoding it) is dropped, not returned.
	if err := s.ensureGroup(ctx, "SIN"); err != nil {
		t.Fatal(err)
	}
	addRaw("SIN", jobField, "[]")
	if err := s.Client().XReadGroup(ctx, &redis.XReadGroupArgs{Group: JobGroup, Consumer: "dies",
		Streams: []string{KeyJobs("SIN"), ">"}, Count: 10, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReclaimJobs(ctx, "SIN", "d2", 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("ReclaimJobs of a corrupt entry = %+v, %v; want none", got, err)
	}
	if st, err := s.JobStats(ctx, "SIN"); err != nil || st != (JobStats{}) {
		t.Errorf("JobStats after reclaiming a corrupt entry = %+v, %v; want it deleted", st, err)
	}
}

func testExplanation(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	if _, ok, err := s.Explanation(ctx, "shop"); ok || err != nil {
		t.Fatalf("Explanation before any = %v, %v; want none", ok, err)
	}
	e := Explanation{App: "shop", ComputedAt: t0, Verdict: "unicast", BestPoP: "FRA",
		Notes:       []string{"vantage point SIN breaks the speed-of-light bound"},
		SetAside:    []SetAside{{PoP: "SIN", Reason: "speed-of-light"}},
		Calibration: ExplainCalibration{Kind: "calibrated", PoPs: 12, Suspects: []string{"SIN"}},
		Window: ExplainWindow{Rounds: 3, Seconds: 900,
			FromHistory: []WindowedPoPRT{{PoP: "FRA", LatestMs: 62, UsedMs: 12, UsedAt: t0.Add(-time.Minute)}}},
		Chaos: map[string]string{"FRA": "fra1"}}
	if err := s.PutExplanation(ctx, e, time.Hour); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Explanation(ctx, "shop")
	if err != nil || !ok || !reflect.DeepEqual(got, e) {
		t.Errorf("Explanation = %+v, %v, %v; want %+v", got, ok, err, e)
	}
	if ttl, err := s.Client().PTTL(ctx, KeyExplain("shop")).Result(); err != nil || ttl <= 0 || ttl > time.Hour {
		t.Errorf("explanation TTL = %v, %v; want the decision's hour", ttl, err)
	}
	if err := s.DeleteExplanation(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Explanation(ctx, "shop"); ok || err != nil {
		t.Errorf("Explanation after delete = %v, %v; want none", ok, err)
	}
}

func init() { areas = append(areas, area{"result_dedup_ttl", testResultDedupTTL}) }

// testResultDedupTTL: a result's dedup marker lives until DedupAfterDeadline past its job's deadline, capped at
// ResultDedupTTL, which a job without a deadline gets; single and batched writes alike, and a re-delivered
// job's result is still dropped meanwhile.
func testResultDedupTTL(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	now := time.Now()
	tests := []struct {
		name     string
		deadline time.Time
		lo, hi   time.Duration // the marker's TTL
	}{
		{"deadline_ahead", now.Add(time.Minute), DedupAfterDeadline, time.Minute + DedupAfterDeadline},
		{"deadline_passed", now.Add(-DedupAfterDeadline / 4), DedupAfterDeadline - time.Minute, DedupAfterDeadline}, // still written: a marker for DedupAfterDeadline from now
		{"deadline_far", now.Add(48 * time.Hour), DefaultResultDedupTTL - time.Minute, DefaultResultDedupTTL},
		{"no_deadline", time.Time{}, DefaultResultDedupTTL - time.Minute, DefaultResultDedupTTL},
	}
	for _, tt := range tests {
		for _, batched := range []bool{false, true} {
			name := tt.name + map[bool]string{false: "/single", true: "/batch"}[batched]
			t.Run(name, func(t *testing.T) {
				target := "tcp:dedup-" + strings.ReplaceAll(name, "/", "-") + ":5432"
				r := Result{Target: target, PoP: "FRA", Kind: placement.ProbeTCP, MinMs: 10, Samples: 3, At: t0,
					JobID: "1-0", Round: "r1", JobDeadline: tt.deadline}
				put := func() bool {
					if !batched {
						stored, err := s.PutResult(ctx, r)
						if err != nil {
							t.Fatal(err)
						}
						return stored
					}
					n, err := s.PutResultBatch(ctx, "FRA", []BatchResult{{Result: &r}})
					if err != nil {
						t.Fatal(err)
					}
					return n == 1
				}
				if !put() {
					t.Fatal("first result not stored")
				}
				if put() {
					t.Error("the same job's result stored twice")
				}
				ttl, err := s.c.PTTL(ctx, keyDone(target, "FRA", r.JobID)).Result()
				if err != nil {
					t.Fatal(err)
				}
				if ttl < tt.lo || ttl > tt.hi {
					t.Errorf("dedup marker's TTL %v; want %v to %v", ttl, tt.lo, tt.hi)
				}
			})
		}
	}
	// Written more than half of DedupAfterDeadline past its job's deadline (a daemon paused between probing and
	// writing): dropped, as its marker may be gone, and counted; a batch still acknowledges its entry.
	for i, batched := range []bool{false, true} {
		target := fmt.Sprintf("tcp:dedup-late-%v:5432", batched)
		r := Result{Target: target, PoP: "FRA", Kind: placement.ProbeTCP, MinMs: 10, Samples: 3, At: t0,
			JobID: "2-0", Round: "r1", JobDeadline: now.Add(-DedupAfterDeadline/2 - time.Minute)}
		var stored bool
		if batched {
			if _, _, err := s.EnqueueJobBatches(ctx, map[string][]Job{"FRA": {job(target)}}, ""); err != nil {
				t.Fatal(err)
			}
			read, err := s.ReadJobs(ctx, "FRA", "late", 10, 0)
			if err != nil || len(read) == 0 {
				t.Fatalf("ReadJobs = %v, %v", read, err)
			}
			rs := []BatchResult{{Result: &r, Ack: read[len(read)-1].Entry}}
			n, err := s.PutResultBatch(ctx, "FRA", rs)
			if err != nil {
				t.Fatal(err)
			}
			stored = n > 0
			if rs[0].Result != &r {
				t.Error("PutResultBatch changed the caller's slice")
			}
			if st, err := s.JobStats(ctx, "FRA"); err != nil || st.InFlight != 0 {
				t.Errorf("JobStats = %+v, %v; want the late result's entry acknowledged", st, err)
			}
		} else {
			var err error
			if stored, err = s.PutResult(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if h, err := s.History(ctx, target, 10); stored || err != nil || len(h) != 0 {
			t.Errorf("batched %v: a result written %v past its job's deadline: stored %v, history %d, %v; want dropped",
				batched, DedupAfterDeadline/2+time.Minute, stored, len(h), err)
		}
		var m dto.Metric
		if err := s.Metrics().late.Write(&m); err != nil || m.GetCounter().GetValue() != float64(i+1) {
			t.Errorf("vantage_storage_results_dropped_late_total = %v (%v), want %d", m.GetCounter().GetValue(), err, i+1)
		}
	}
}
