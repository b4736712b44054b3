package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// historyCandidates is how many of a decision's candidates its history entry keeps: the runners-up that say
// how close the choice was, not the whole fleet (an entry stays a few hundred bytes).
const historyCandidates = 3

// DecisionRecord is one entry of an application's decision history: the decision as it was written (its
// first few candidates), with its version and whether the write changed it.
type DecisionRecord struct {
	At         time.Time             `json:"at"` // the decision's ComputedAt (the write's time when zero)
	Version    int64                 `json:"version"`
	Changed    bool                  `json:"changed"` // the write changed the decision (a new version)
	Mode       placement.Mode        `json:"mode"`
	Target     string                `json:"target,omitempty"`
	BestPoP    string                `json:"best_pop,omitempty"`
	RTTMs      float64               `json:"rtt_ms,omitempty"` // the best PoP's, when among the candidates
	Status     placement.Status      `json:"status,omitempty"`
	Verdict    placement.Verdict     `json:"verdict,omitempty"`
	Estimated  bool                  `json:"estimated,omitempty"`
	Confidence float64               `json:"confidence,omitempty"`
	Reason     string                `json:"reason,omitempty"`
	Candidates []placement.Candidate `json:"candidates,omitempty"` // the first historyCandidates
}

// historyEntry returns the JSON of d's history entry, without the version and changed flag the script
// prefixes it with.
func historyEntry(d *placement.Decision, at time.Time) []byte {
	r := DecisionRecord{At: at.UTC(), Mode: d.Mode, Target: d.Target, BestPoP: d.BestPoP, Status: d.Status,
		Verdict: d.Verdict, Estimated: d.Estimated, Confidence: d.Confidence, Reason: d.Reason,
		Candidates: d.Candidates[:min(len(d.Candidates), historyCandidates)]}
	for _, c := range d.Candidates {
		if c.PoP == d.BestPoP {
			r.RTTMs = c.RTTMs
			break
		}
	}
	b, _ := json.Marshal(r) // plain fields: cannot fail
	return b
}

// parseHistoryEntry decodes one stored entry, "<at ms>|<version>|<changed 0/1>|<JSON>".
func parseHistoryEntry(v string) (DecisionRecord, error) {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) != 4 {
		return DecisionRecord{}, errCorrupt
	}
	ver, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || (parts[2] != "0" && parts[2] != "1") {
		return DecisionRecord{}, errCorrupt
	}
	var r DecisionRecord
	if err := json.Unmarshal([]byte(parts[3]), &r); err != nil {
		return DecisionRecord{}, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	r.Version, r.Changed = ver, parts[2] == "1"
	return r, nil
}

// DecisionHistory returns app's recent decisions, newest first, at most limit (limit <= 0: every one kept,
// up to Options.DecisionHistoryLen). PutDecision records a decision when it changed, and an unchanged one once
// per Options.DecisionHistoryEvery; DeleteDecision deletes the history. An undecodable entry is skipped (logged
// and counted once, as ScanDecisions does).
func (s *Store) DecisionHistory(ctx context.Context, app string, limit int) ([]DecisionRecord, error) {
	if err := validName("decision app", app); err != nil {
		return nil, err
	}
	key, stop := KeyDecisionHistory(app), int64(-1)
	if limit > 0 {
		stop = int64(limit) - 1
	}
	vs, err := s.c.LRange(ctx, key, 0, stop).Result()
	if err != nil {
		return nil, fmt.Errorf("storage: decision history %q: %w", app, err)
	}
	out := make([]DecisionRecord, 0, len(vs))
	for _, v := range vs {
		r, err := parseHistoryEntry(v)
		if err != nil {
			s.skipCorrupt("decision history entry", key, v, err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}
