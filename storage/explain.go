package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Explanation says why a decision is what it is: the engine's notes, the PoPs it set aside and why, the
// calibration its disks used, the history window its RTTs were taken over, and the extra evidence (CHAOS
// answers, a GeoIP prior). The scheduler writes one per decision (PutExplanation) beside the decision, not in
// it: routers never read it, and the decision's codec stays as it is.
type Explanation struct {
	App        string    `json:"app"`
	ComputedAt time.Time `json:"computed_at"` // the decision's ComputedAt
	Verdict    string    `json:"verdict,omitempty"`
	BestPoP    string    `json:"best_pop,omitempty"`
	// Notes are the engine's notes (triangulate.Result.Notes) and the scheduler's own, in words.
	Notes []string `json:"notes,omitempty"`
	// SetAside are the PoPs whose measurements the engine did not trust, each with the reason.
	SetAside []SetAside `json:"set_aside,omitempty"`
	// Calibration describes the disks: "fibre" (the plain 2/3 c bound) or "calibrated" (per-PoP lines).
	Calibration ExplainCalibration `json:"calibration"`
	// Window is the history window each PoP's minimum RTT was taken over.
	Window ExplainWindow `json:"window"`
	// Chaos are the CHAOS TXT answers (id.server, else hostname.bind) of the PoPs that got one, by PoP.
	Chaos map[string]string `json:"chaos,omitempty"`
	// Instances are the anycast instances found, when the verdict is anycast.
	Instances []ExplainInstance `json:"instances,omitempty"`
}

// SetAside is a PoP whose measurement the engine did not trust.
type SetAside struct {
	PoP    string `json:"pop"`
	Reason string `json:"reason"`
}

// ExplainCalibration is the calibration a decision's disks used.
type ExplainCalibration struct {
	Kind     string   `json:"kind"`               // "fibre" or "calibrated"
	PoPs     int      `json:"pops,omitempty"`     // PoPs with a line of their own
	Suspects []string `json:"suspects,omitempty"` // PoPs the calibration found mislocated
}

// ExplainWindow is the history window of a decision: each PoP's minimum RTT over at most Rounds of its recent
// results no older than Seconds. FromHistory lists the PoPs whose RTT came from an earlier round than the
// latest (the latest was slower).
type ExplainWindow struct {
	Rounds      int             `json:"rounds"`
	Seconds     float64         `json:"seconds"`
	FromHistory []WindowedPoPRT `json:"from_history,omitempty"`
}

// WindowedPoPRT is a PoP whose windowed RTT is below its latest.
type WindowedPoPRT struct {
	PoP      string    `json:"pop"`
	LatestMs float64   `json:"latest_ms"`
	UsedMs   float64   `json:"used_ms"`
	UsedAt   time.Time `json:"used_at"` // when the RTT used was measured
}

// ExplainInstance is one anycast instance: the city it was collapsed to and the radius it is known within.
type ExplainInstance struct {
	City     string  `json:"city,omitempty"`
	PoP      string  `json:"pop,omitempty"`
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	RadiusKm float64 `json:"radius_km"`
}

// KeyExplain returns the string key of app's Explanation (JSON), with the decision's TTL.
func KeyExplain(app string) string { return "vantage:{x:" + app + "}:explain" }

// PutExplanation stores e as e.App's explanation for ttl (the decision's lifetime; <= 0: no expiry). It is not
// fenced: a paused scheduler may overwrite a successor's explanation until the successor's next recheck, which
// only a reader comparing ComputedAt with the decision's can tell.
func (s *Store) PutExplanation(ctx context.Context, e Explanation, ttl time.Duration) error {
	if err := validName("explanation app", e.App); err != nil {
		return err
	}
	e.ComputedAt = e.ComputedAt.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("storage: put explanation of %q: %w", e.App, err)
	}
	if ttl < 0 {
		ttl = 0
	}
	if err := s.c.Set(ctx, KeyExplain(e.App), b, ttl).Err(); err != nil {
		return fmt.Errorf("storage: put explanation of %q: %w", e.App, err)
	}
	return nil
}

// Explanation returns app's explanation; false when none is stored.
func (s *Store) Explanation(ctx context.Context, app string) (Explanation, bool, error) {
	if err := validName("explanation app", app); err != nil {
		return Explanation{}, false, err
	}
	v, err := s.c.Get(ctx, KeyExplain(app)).Result()
	if errors.Is(err, redis.Nil) {
		return Explanation{}, false, nil
	}
	if err != nil {
		return Explanation{}, false, fmt.Errorf("storage: explanation of %q: %w", app, err)
	}
	var e Explanation
	if err := json.Unmarshal([]byte(v), &e); err != nil {
		return Explanation{}, false, fmt.Errorf("storage: explanation of %q: %w: %w", app, errCorrupt, err)
	}
	return e, true, nil
}

// DeleteExplanation deletes app's explanation (nothing when none is stored).
func (s *Store) DeleteExplanation(ctx context.Context, app string) error {
	if err := validName("explanation app", app); err != nil {
		return err
	}
	if err := s.c.Del(ctx, KeyExplain(app)).Err(); err != nil {
		return fmt.Errorf("storage: delete explanation of %q: %w", app, err)
	}
	return nil
}
