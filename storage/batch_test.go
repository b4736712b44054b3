package storage

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

func init() {
	areas = append(areas, area{"job_batches", testJobBatches}, area{"job_batch_hostile", testJobBatchHostile},
		area{"decision_batch", testDecisionBatch})
}

func TestEncodeJobBatchBounds(t *testing.T) {
	long := strings.Repeat("x", 1000) + ".example:80"
	tests := []struct {
		name    string
		jobs    []Job
		entries []int // probes per entry
		wantErr string
	}{
		{"one", []Job{job("a:1")}, []int{1}, ""},
		{"at_probe_bound", jobsOf(MaxBatchProbes, "a:1"), []int{MaxBatchProbes}, ""},
		{"past_probe_bound_splits", jobsOf(MaxBatchProbes+1, "a:1"), []int{MaxBatchProbes, 1}, ""},
		{"past_byte_bound_splits", jobsOf(100, long), []int{57, 43}, ""},
		{"probe_alone_too_large", []Job{job(strings.Repeat("y", MaxBatchBytes) + ":1")}, nil, "job batch too large"},
		{"empty_target", []Job{job("a:1"), {Kind: placement.ProbeTCP}}, nil, "probe 1: empty target"},
		{"bad_kind", []Job{{Target: "a:1", Kind: "smoke"}}, nil, `probe 0, target "a:1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, err := EncodeJobBatch(tt.jobs, KeyResultNotes("s1"), t0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("EncodeJobBatch: err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for i, b := range bs {
				if len(b) > MaxBatchBytes {
					t.Errorf("entry %d: %d bytes, past MaxBatchBytes", i, len(b))
				}
				js, errs, err := DecodeJobBatch("FRA", fmt.Sprintf("1-%d", i), string(b))
				if err != nil || len(errs) > 0 {
					t.Fatalf("entry %d does not decode: %v %v", i, err, errs)
				}
				for k, j := range js {
					if want := fmt.Sprintf("1-%d.%d", i, k); j.ID != want || j.Entry != fmt.Sprintf("1-%d", i) || j.Parts != len(js) || j.Reply != KeyResultNotes("s1") {
						t.Errorf("entry %d probe %d: id %q entry %q parts %d reply %q; want id %q", i, k, j.ID, j.Entry, j.Parts, j.Reply, want)
					}
				}
				got = append(got, len(js))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.entries) {
				t.Errorf("probes per entry %v, want %v", got, tt.entries)
			}
		})
	}
}

func jobsOf(n int, target string) []Job {
	js := make([]Job, n)
	for i := range js {
		js[i] = job(target)
		js[i].Round = fmt.Sprintf("r%d", i)
	}
	return js
}

// TestDecodeJobBatchHostile feeds entries a buggy or hostile writer could put on a job stream: the whole entry is
// refused when its envelope is wrong, a bad probe is refused with the field and value named while the rest run.
func TestDecodeJobBatchHostile(t *testing.T) {
	good := `{"target":"a:1","kind":"tcp","round":"r"}`
	tests := []struct {
		name     string
		raw      string
		wantJobs int
		wantErrs []string // per bad probe
		wantErr  string   // whole entry
	}{
		{"ok", `{"v":1,"probes":[` + good + `,` + good + `]}`, 2, nil, ""},
		{"oversize", `{"v":1,"probes":["` + strings.Repeat("x", MaxBatchBytes) + `"]}`, 0, nil, "job batch too large"},
		{"malformed", `{"v":1,"probes":[`, 0, nil, "unexpected EOF"},
		{"not_json", `batch`, 0, nil, "invalid character"},
		{"unknown_envelope_field", `{"v":1,"probes":[],"priority":9}`, 0, nil, `unknown field "priority"`},
		{"wrong_version", `{"v":2,"probes":[` + good + `]}`, 0, nil, `field "v": version 2: want 1`},
		{"too_many_probes", `{"v":1,"probes":[` + strings.TrimSuffix(strings.Repeat("{},", MaxBatchProbes+1), ",") + `]}`, 0, nil,
			`field "probes": 257 probes: job batch too large`},
		{"reply_not_a_results_stream", `{"v":1,"reply":"vantage:{apps}:apps","probes":[` + good + `]}`, 0, nil,
			`field "reply": "vantage:{apps}:apps": not a results stream`},
		{"unknown_probe_field", `{"v":1,"probes":[` + good + `,{"target":"b:1","kind":"tcp","rm":"-rf"}]}`, 1,
			[]string{`probe 1: json: unknown field "rm"`}, ""},
		{"bad_kind", `{"v":1,"probes":[{"target":"b:1","kind":"smoke"},` + good + `]}`, 1,
			[]string{`probe 0: field "kind"`}, ""},
		{"empty_target", `{"v":1,"probes":[` + good + `,{"kind":"tcp"}]}`, 1, []string{`probe 1: field "target": empty`}, ""},
		{"wrong_type", `{"v":1,"probes":[{"target":"b:1","kind":"tcp","count":"three"}]}`, 0,
			[]string{`probe 0: json: cannot unmarshal string into Go struct field Job.count of type int`}, ""},
		{"probe_not_object", `{"v":1,"probes":[7,` + good + `]}`, 1, []string{`probe 0: json: cannot unmarshal number`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, errs, err := DecodeJobBatch("FRA", "7-0", tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "job batch 7-0 of FRA") {
					t.Fatalf("err %v, want one naming the entry and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err %v", err)
			}
			if len(js) != tt.wantJobs {
				t.Errorf("%d jobs, want %d", len(js), tt.wantJobs)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("errs %v, want %d", errs, len(tt.wantErrs))
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.wantErrs[i]) {
					t.Errorf("err %d %q, want it to contain %q", i, e, tt.wantErrs[i])
				}
			}
		})
	}
}

// testJobBatches: a batch entry goes out, a daemon stores part of its results and dies; another reclaims the
// entry, runs every probe again, and the results already stored are not stored twice; the entry is acknowledged
// with the last write, and every result was announced on the scheduler's results stream. A single-job entry
// (an older scheduler's) is read beside it.
func testJobBatches(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	reply := KeyResultNotes("sched-1")
	first, entries, err := s.EnqueueJobBatches(ctx, map[string][]Job{"FRA": {job("a:1"), job("b:1"), job("c:1")}}, reply)
	if err != nil || entries["FRA"] != 1 {
		t.Fatalf("EnqueueJobBatches = %v, %v", entries, err)
	}
	if _, err := s.EnqueueJob(ctx, "FRA", job("old:1")); err != nil {
		t.Fatal(err)
	}
	js, err := s.ReadJobs(ctx, "FRA", "d1", 10, 0)
	if err != nil || len(js) != 4 {
		t.Fatalf("ReadJobs = %+v, %v; want the batch's 3 probes and the single job", js, err)
	}
	if js[3].Target != "old:1" || js[3].Parts != 1 || js[3].Entry != js[3].ID {
		t.Errorf("single job read as %+v", js[3])
	}
	res := func(j Job) *Result {
		return &Result{Target: j.Target, Kind: j.Kind, MinMs: 10, Samples: 3, At: t0, JobID: j.ID, Round: j.Round}
	}
	// d1 stores a:1 and b:1, then dies before c:1.
	n, err := s.PutResultBatch(ctx, "FRA", []BatchResult{{Result: res(js[0]), Reply: reply}, {Result: res(js[1]), Reply: reply}})
	if err != nil || n != 2 {
		t.Fatalf("PutResultBatch = %d, %v; want 2", n, err)
	}
	again, err := s.ReclaimJobs(ctx, "FRA", "d2", 0, 10)
	if err != nil || len(again) != 4 {
		t.Fatalf("ReclaimJobs = %+v, %v; want the batch's 3 probes and the single job", again, err)
	}
	for i := range 3 {
		if again[i].ID != js[i].ID || again[i].Attempt != 2 {
			t.Errorf("reclaimed probe %d: id %q attempt %d; want %q, 2", i, again[i].ID, again[i].Attempt, js[i].ID)
		}
	}
	batch := []BatchResult{{Result: res(again[0]), Reply: reply}, {Result: res(again[1]), Reply: reply},
		{Result: res(again[2]), Reply: reply, Ack: again[2].Entry}, {Result: res(again[3]), Ack: again[3].Entry}}
	n, err = s.PutResultBatch(ctx, "FRA", batch)
	if err != nil || n != 2 {
		t.Fatalf("PutResultBatch after the reclaim = %d, %v; want 2 (c:1 and old:1; a:1 and b:1 were stored)", n, err)
	}
	for _, target := range []string{"a:1", "b:1", "c:1", "old:1"} {
		if h, err := s.History(ctx, target, 10); err != nil || len(h) != 1 {
			t.Errorf("History(%s) = %d results, %v; want 1", target, len(h), err)
		}
		if rs, err := s.RecentResults(ctx, target); err != nil || len(rs["FRA"]) != 1 {
			t.Errorf("RecentResults(%s) = %v, %v; want 1", target, rs, err)
		}
	}
	if st, err := s.JobStats(ctx, "FRA"); err != nil || st.Queued != 0 || st.InFlight != 0 {
		t.Errorf("JobStats = %+v, %v; want the entries acknowledged and deleted", st, err)
	}
	notes, last, err := s.ReadResultNotes(ctx, reply, StreamIDBefore(first), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range notes {
		if r.PoP != "FRA" || r.Round != "r1" || r.Detail != nil {
			t.Errorf("note %+v: want PoP FRA, round r1, no detail", r)
		}
		got = append(got, r.Target)
	}
	if fmt.Sprint(got) != "[a:1 b:1 a:1 b:1 c:1]" {
		t.Errorf("announced %v; want a:1 b:1, then after the reclaim a:1 b:1 c:1 (not old:1: no reply)", got)
	}
	if more, _, err := s.ReadResultNotes(ctx, reply, last, 100, 0); err != nil || len(more) != 0 {
		t.Errorf("read after the last id: %v, %v; want nothing", more, err)
	}
}

// testDecisionBatch: decisions written in one call are fenced per app, and a fenced-off app's explanation is not
// written; RecheckInputs reads decisions and recent results back.
func testDecisionBatch(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	dec := func(app, best string) placement.Decision {
		return placement.Decision{App: app, Mode: placement.ModeHost, Target: "db:5432", BestPoP: best, Verdict: placement.VerdictUnicast,
			Status: placement.StatusSuccess, Candidates: []placement.Candidate{{PoP: best, RTTMs: 3}}, ComputedAt: t0}
	}
	// A successor of the shard's lease (token 7) wrote "fenced"; the fleet-wide lease (token 9) wrote "moved",
	// an app that has since moved to the shard.
	if _, err := s.PutDecisionFenced(ctx, dec("fenced", "SIN"), Fence{"s-shard-001", 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutDecisionFenced(ctx, dec("moved", "SIN"), Fence{"s", 9}); err != nil {
		t.Fatal(err)
	}
	f := Fence{"s-shard-001", 5}
	ws := []DecisionWrite{
		{Decision: dec("fenced", "FRA"), Fence: f, Explanation: &Explanation{App: "fenced", BestPoP: "FRA"}, ExplainTTL: time.Hour},
		{Decision: dec("free", "FRA"), Fence: f, Explanation: &Explanation{App: "free", BestPoP: "FRA"}, ExplainTTL: time.Hour},
		{Decision: dec("again", "LHR"), Fence: f},
		{Decision: dec("moved", "LHR"), Fence: f},
	}
	out, err := s.PutDecisionBatch(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(out[0].Err, ErrFenced) || !strings.Contains(out[0].Err.Error(), `"fenced" under fencing token 5 of lease "s-shard-001" (token 7 wrote it)`) {
		t.Errorf("fenced app: %+v; want ErrFenced naming the tokens", out[0])
	}
	if out[1].Err != nil || !out[1].Changed || out[1].Version != 1 || out[2].Err != nil || !out[2].Changed {
		t.Errorf("other apps: %+v %+v; want written and changed", out[1], out[2])
	}
	if out[3].Err != nil || !out[3].Changed || out[3].Version != 2 {
		t.Errorf("app written under another lease's newer token: %+v; want written (version 2)", out[3])
	}
	if d, _, _ := s.Decision(ctx, "fenced"); d.BestPoP != "SIN" {
		t.Errorf("fenced app's decision %s; want the successor's SIN", d.BestPoP)
	}
	if _, ok, _ := s.Explanation(ctx, "fenced"); ok {
		t.Error("a fenced-off write stored its explanation")
	}
	if e, ok, err := s.Explanation(ctx, "free"); err != nil || !ok || e.BestPoP != "FRA" {
		t.Errorf("Explanation(free) = %+v, %v, %v", e, ok, err)
	}
	if _, err := s.PutResult(ctx, Result{Target: "tcp:db:5432", PoP: "FRA", Kind: placement.ProbeTCP, MinMs: 4, Samples: 3, At: t0}); err != nil {
		t.Fatal(err)
	}
	st, err := s.RecheckInputs(ctx, []RecheckRead{{App: "free", Key: "tcp:db:5432"}, {App: "none"}, {App: "again"}})
	if err != nil {
		t.Fatal(err)
	}
	if !st[0].HasDecision || st[0].Decision.BestPoP != "FRA" || len(st[0].Recent["FRA"]) != 1 || st[0].Recent["FRA"][0].MinMs != 4 {
		t.Errorf("inputs of free: %+v", st[0])
	}
	if st[1].HasDecision || st[1].Err != nil || st[1].Recent != nil {
		t.Errorf("inputs of an app without a decision: %+v", st[1])
	}
	if !st[2].HasDecision || st[2].Decision.BestPoP != "LHR" {
		t.Errorf("inputs of again: %+v", st[2])
	}
}

// testJobBatchHostile: a batch entry with a malformed probe, as a buggy or hostile writer could XADD it: the good
// probe is delivered and, once stored, acknowledges the entry; an entry that is not a batch at all is dropped.
func testJobBatchHostile(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	raw := `{"v":1,"probes":[{"target":"a:1","kind":"tcp","round":"r"},{"target":"b:1","kind":"tcp","rm":"-rf"}]}`
	if err := s.Client().XAdd(ctx, &redis.XAddArgs{Stream: KeyJobs("FRA"), Values: []any{batchField, raw}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Client().XAdd(ctx, &redis.XAddArgs{Stream: KeyJobs("FRA"), Values: []any{batchField, `{"v":1,"probes":7}`}}).Err(); err != nil {
		t.Fatal(err)
	}
	js, err := s.ReadJobs(ctx, "FRA", "d1", 10, 0)
	if err != nil || len(js) != 1 || js[0].Target != "a:1" || js[0].Index != 0 {
		t.Fatalf("ReadJobs = %+v, %v; want only the good probe", js, err)
	}
	if st, err := s.JobStats(ctx, "FRA"); err != nil || st.Queued != 1 {
		t.Errorf("JobStats = %+v, %v; want the broken entry dropped, the other pending", st, err)
	}
	r := &Result{Target: "a", Kind: placement.ProbeTCP, MinMs: 1, Samples: 1, At: t0, JobID: js[0].ID, Round: "r"}
	if _, err := s.PutResultBatch(ctx, "FRA", []BatchResult{{Result: r, Ack: js[0].Entry}}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.JobStats(ctx, "FRA"); err != nil || st.Queued != 0 {
		t.Errorf("JobStats = %+v, %v; want the entry acknowledged with its only good probe", st, err)
	}
}
