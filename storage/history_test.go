package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage/redistest"
)

func init() {
	areas = append(areas, area{"decision_history", testDecisionHistory}, area{"decision_history_off", testDecisionHistoryOff})
}

// historyOf returns app's history as "version:best[:changed]" strings, newest first.
func historyOf(t *testing.T, s *Store, app string, limit int) []string {
	t.Helper()
	rs, err := s.DecisionHistory(testCtx(t), app, limit)
	if err != nil {
		t.Fatalf("DecisionHistory(%s): %v", app, err)
	}
	var out []string
	for _, r := range rs {
		v := fmt.Sprintf("%d:%s", r.Version, r.BestPoP)
		if r.Changed {
			v += ":changed"
		}
		out = append(out, v)
	}
	return out
}

// testDecisionHistory: every changed decision is recorded, an unchanged one only once the newest entry is
// DecisionHistoryEvery old; the list is capped at DecisionHistoryLen, newest first; an entry carries the
// decision's fields; DeleteDecision deletes the history with the decision; another app's history is its own.
func testDecisionHistory(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{DecisionHistoryLen: 4, DecisionHistoryEvery: time.Hour})
	ctx := testCtx(t)
	steps := []struct {
		name string
		best string
		at   time.Duration // after t0
		want string        // the history after the step, newest first
	}{
		{"first_decision", "LHR", 0, "1:LHR:changed"},
		{"unchanged_soon_after", "LHR", 5 * time.Minute, "1:LHR:changed"},
		{"unchanged_an_hour_after_the_entry", "LHR", time.Hour, "1:LHR 1:LHR:changed"},
		{"changed_a_minute_later", "FRA", time.Hour + time.Minute, "2:FRA:changed 1:LHR 1:LHR:changed"},
		{"changed_back", "LHR", time.Hour + 2*time.Minute, "3:LHR:changed 2:FRA:changed 1:LHR 1:LHR:changed"},
		{"capped_at_4", "AMS", time.Hour + 3*time.Minute, "4:AMS:changed 3:LHR:changed 2:FRA:changed 1:LHR"},
		{"unchanged_again_soon", "AMS", time.Hour + 4*time.Minute, "4:AMS:changed 3:LHR:changed 2:FRA:changed 1:LHR"},
	}
	for _, st := range steps {
		d := decision("api", st.best, st.best, "CDG")
		d.ComputedAt = t0.Add(st.at)
		if _, err := s.PutDecision(ctx, d); err != nil {
			t.Fatalf("%s: PutDecision: %v", st.name, err)
		}
		if got := strings.Join(historyOf(t, s, "api", 0), " "); got != st.want {
			t.Fatalf("%s: history %q, want %q", st.name, got, st.want)
		}
	}
	if got := strings.Join(historyOf(t, s, "api", 2), " "); got != "4:AMS:changed 3:LHR:changed" {
		t.Errorf("history limited to 2: %q", got)
	}

	// An entry carries the decision's fields (its first candidates) and its time.
	d := decision("web", "SIN", "SIN", "HKG", "NRT", "SYD", "BOM")
	d.Status, d.Reason, d.Verdict, d.Estimated = placement.StatusNoValidHosts, "no host answered", placement.VerdictUnknown, true
	d.ComputedAt = t0.Add(90 * time.Second)
	if _, err := s.PutDecision(ctx, d); err != nil {
		t.Fatal(err)
	}
	rs, err := s.DecisionHistory(ctx, "web", 0)
	if err != nil || len(rs) != 1 {
		t.Fatalf("history of web: %v, %v", rs, err)
	}
	r := rs[0]
	if !r.At.Equal(d.ComputedAt) || r.Version != 1 || !r.Changed || r.Mode != d.Mode || r.Target != d.Target || r.BestPoP != "SIN" ||
		r.RTTMs != 1.25 || r.Status != d.Status || r.Verdict != d.Verdict || !r.Estimated || r.Confidence != d.Confidence ||
		r.Reason != d.Reason || len(r.Candidates) != historyCandidates || r.Candidates[2] != d.Candidates[2] {
		t.Errorf("history entry %+v, want the fields of %+v", r, d)
	}

	// A fenced-off write records nothing.
	if _, err := s.PutDecisionFenced(ctx, decision("web", "HKG", "HKG"), Fence{"lease", 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutDecisionFenced(ctx, decision("web", "NRT", "NRT"), Fence{"lease", 4}); err == nil {
		t.Fatal("a write under an older token was not fenced off")
	}
	if got := strings.Join(historyOf(t, s, "web", 0), " "); got != "2:HKG:changed 1:SIN:changed" {
		t.Errorf("history of web after a fenced-off write: %q", got)
	}

	// Deleted with the decision; the other application's history stays.
	if err := s.DeleteDecision(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if got := historyOf(t, s, "api", 0); len(got) != 0 {
		t.Errorf("history after DeleteDecision: %v", got)
	}
	if n, err := s.Client().Exists(ctx, KeyDecisionHistory("api")).Result(); err != nil || n != 0 {
		t.Errorf("history key still exists after DeleteDecision: %d %v", n, err)
	}
	if got := historyOf(t, s, "web", 0); len(got) != 2 {
		t.Errorf("history of web after deleting api: %v", got)
	}

	// A corrupt entry is skipped, the others read.
	if err := s.Client().RPush(ctx, KeyDecisionHistory("web"), "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	if got := historyOf(t, s, "web", 0); len(got) != 2 {
		t.Errorf("history of web with a corrupt entry: %v", got)
	}
	if _, err := s.DecisionHistory(ctx, "", 0); err == nil {
		t.Error("DecisionHistory of an empty name: no error")
	}
}

// testDecisionHistoryOff: a negative DecisionHistoryLen keeps no history; the default keeps
// DefaultDecisionHistoryLen.
func testDecisionHistoryOff(t *testing.T, open func(*testing.T, Options) *Store) {
	off := open(t, Options{DecisionHistoryLen: -1})
	ctx := testCtx(t)
	if _, err := off.PutDecision(ctx, decision("quiet", "LHR", "LHR")); err != nil {
		t.Fatal(err)
	}
	if got := historyOf(t, off, "quiet", 0); len(got) != 0 {
		t.Errorf("history with DecisionHistoryLen -1: %v", got)
	}
	def := open(t, Options{})
	bests := []string{"LHR", "FRA"}
	for i := range DefaultDecisionHistoryLen + 5 {
		d := decision("busy", bests[i%2], bests[i%2])
		d.ComputedAt = t0.Add(time.Duration(i) * time.Minute)
		if _, err := def.PutDecision(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	got := historyOf(t, def, "busy", 0)
	if len(got) != DefaultDecisionHistoryLen || got[0] != fmt.Sprintf("%d:%s:changed", DefaultDecisionHistoryLen+5, bests[(DefaultDecisionHistoryLen+4)%2]) {
		t.Errorf("default history: %d entries, newest %q; want %d, the last write's", len(got), got[0], DefaultDecisionHistoryLen)
	}
}

// BenchmarkPutDecisionsHistory times PutDecisions of 1,000 changing decisions on a real redis-server with the
// decision history kept (the default) and without it (DecisionHistoryLen -1), and reports the history's Redis
// memory per entry. Run:
//
//	go test -run '^$' -bench PutDecisionsHistory ./storage/
func BenchmarkPutDecisionsHistory(b *testing.B) {
	const n = 1000
	srv := redistest.Start(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		hlen int
	}{{"history", 0}, {"no_history", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(ctx, Options{Addrs: []string{srv.Addr()}, DecisionHistoryLen: bc.hlen})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.Client().FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			ds := make([]placement.Decision, n)
			for i := range ds {
				ds[i] = benchDecision(i)
			}
			round := 0
			for b.Loop() {
				round++
				for i := range ds { // every decision changes: every write is recorded
					ds[i].BestPoP = ds[i].Candidates[round%len(ds[i].Candidates)].PoP
				}
				if _, err := s.PutDecisions(ctx, ds); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
			if bc.hlen == 0 {
				mem, err := s.Client().MemoryUsage(ctx, KeyDecisionHistory(ds[0].App)).Result()
				if err != nil {
					b.Fatal(err)
				}
				entries := min(round, DefaultDecisionHistoryLen)
				b.ReportMetric(float64(mem)/float64(entries), "history-B/entry")
			}
		})
	}
}
