package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// TestAppHistory: GET /v1/apps/{name}/history returns the decisions the store recorded, newest first, with
// their fields; ?limit= caps them; a bad limit is refused; an unknown application is not found; deleting the
// application deletes its history.
func TestAppHistory(t *testing.T) {
	e := newAccountsEnv(t, Limits{})
	ctx := context.Background()
	e.must(201, "POST", "/v1/apps", tokA, hostConfig("shop-db", targetA))
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, best := range []string{"FRA", "AMS", "LHR"} {
		d := placement.Decision{App: "shop-db", Mode: placement.ModeHost, Target: targetA, BestPoP: best, Status: placement.StatusSuccess,
			Verdict: placement.VerdictUnicast, Confidence: 0.8, ComputedAt: t0.Add(time.Duration(i) * time.Minute),
			Candidates: []placement.Candidate{{PoP: best, RTTMs: float64(i) + 1.5}, {PoP: "CDG", RTTMs: 20}}}
		if _, err := e.st.PutDecision(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) AppHistory {
		t.Helper()
		var env struct{ Result AppHistory }
		if err := json.Unmarshal([]byte(e.must(200, "GET", path, tokA, "")), &env); err != nil {
			t.Fatal(err)
		}
		return env.Result
	}
	h := read("/v1/apps/shop-db/history")
	var got []string
	for _, r := range h.Decisions {
		got = append(got, fmt.Sprintf("%d:%s:%v@%s", r.Version, r.BestPoP, r.RTTMs, r.At.Format("15:04")))
	}
	if h.App != "shop-db" || strings.Join(got, " ") != "3:LHR:3.5@10:02 2:AMS:2.5@10:01 1:FRA:1.5@10:00" {
		t.Errorf("history %s: %v", h.App, got)
	}
	if r := h.Decisions[0]; r.Status != placement.StatusSuccess || r.Verdict != placement.VerdictUnicast || r.Confidence != 0.8 ||
		!r.Changed || len(r.Candidates) != 2 || r.Target != targetA {
		t.Errorf("newest entry %+v", r)
	}
	if h := read("/v1/apps/shop-db/history?limit=1"); len(h.Decisions) != 1 || h.Decisions[0].BestPoP != "LHR" {
		t.Errorf("limit=1: %+v", h.Decisions)
	}
	for _, tc := range []struct {
		name, path string
		code       int
	}{
		{"limit_not_a_number", "/v1/apps/shop-db/history?limit=many", 400},
		{"unknown_app", "/v1/apps/nope/history", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, raw := e.do("GET", tc.path, tokA, ""); code != tc.code {
				t.Errorf("GET %s: %d %s, want %d", tc.path, code, raw, tc.code)
			}
		})
	}
	e.must(200, "DELETE", "/v1/apps/shop-db", tokA, "")
	if rs, err := e.st.DecisionHistory(ctx, "shop-db", 0); err != nil || len(rs) != 0 {
		t.Errorf("history after the app's deletion: %v %v", rs, err)
	}
	e.must(404, "GET", "/v1/apps/shop-db/history", tokA, "")
}
