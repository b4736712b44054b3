package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is wrapped by errors about a record that does not exist (or has expired).
var ErrNotFound = errors.New("not found")

// Fields of an ad-hoc probe's hash.
const (
	adhocMeta          = "meta"
	adhocResultsPrefix = "r:"
)

// AdHocProbe is one ad-hoc probe run through the scheduler's API: the request, the per-PoP results as they
// arrive, and the final verdict once done. It expires the TTL given to the last PutAdHocProbe.
type AdHocProbe struct {
	ID        string          `json:"id"`
	Request   json.RawMessage `json:"request,omitempty"` // the request as the API received it, opaque here
	CreatedAt time.Time       `json:"created_at"`        // set by PutAdHocProbe when zero
	Done      bool            `json:"done,omitempty"`
	DoneAt    time.Time       `json:"done_at,omitzero"`
	// Verdict is the final report (verdict, best PoP, location...), opaque here; empty until done.
	Verdict json.RawMessage `json:"verdict,omitempty"`
	// Results are the results appended so far, one per (PoP, kind), sorted by PoP then kind. PutAdHocProbe
	// stores the ones it is given too.
	Results []Result `json:"-"`
}

// PutAdHocProbe writes p's request, state and verdict (keeping results appended before) and sets the record to
// expire ttl from now (ttl <= 0: DefaultAdHocTTL).
func (s *Store) PutAdHocProbe(ctx context.Context, p AdHocProbe, ttl time.Duration) error {
	if err := validName("ad-hoc probe id", p.ID); err != nil {
		return err
	}
	if ttl <= 0 {
		ttl = DefaultAdHocTTL
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = s.o.Now()
	}
	p.CreatedAt = p.CreatedAt.UTC()
	if p.Done && p.DoneAt.IsZero() {
		p.DoneAt = s.o.Now()
	}
	p.DoneAt = p.DoneAt.UTC()
	meta, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("storage: put ad-hoc probe %s: %w", p.ID, err)
	}
	fields := []any{adhocMeta, meta}
	for _, r := range p.Results {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("storage: put ad-hoc probe %s, result of %s: %w", p.ID, r.PoP, err)
		}
		fields = append(fields, adhocResultField(r), b)
	}
	key := KeyAdHoc(p.ID)
	_, err = s.c.TxPipelined(ctx, func(pp redis.Pipeliner) error {
		pp.HSet(ctx, key, fields...)
		pp.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: put ad-hoc probe %s: %w", p.ID, err)
	}
	return nil
}

func adhocResultField(r Result) string { return adhocResultsPrefix + r.PoP + ":" + string(r.Kind) }

// appendAdHocScript adds a result to an existing ad-hoc probe. KEYS[1] probe; ARGV[1] field, ARGV[2] JSON.
var appendAdHocScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// AppendAdHocResult adds r to ad-hoc probe id as r.PoP's result of r.Kind (replacing an earlier one of the same
// PoP and kind). It fails with an error wrapping ErrNotFound when the probe does not exist or has expired.
func (s *Store) AppendAdHocResult(ctx context.Context, id string, r Result) error {
	if err := validName("ad-hoc probe id", id); err != nil {
		return err
	}
	if err := validName("ad-hoc result PoP", r.PoP); err != nil {
		return err
	}
	if r.At.IsZero() {
		r.At = s.o.Now()
	}
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("storage: ad-hoc probe %s, result of %s: %w", id, r.PoP, err)
	}
	n, err := appendAdHocScript.Run(ctx, s.c, []string{KeyAdHoc(id)}, adhocResultField(r), b).Int()
	if err != nil {
		return fmt.Errorf("storage: ad-hoc probe %s, result of %s: %w", id, r.PoP, err)
	}
	if n == 0 {
		return fmt.Errorf("storage: ad-hoc probe %s, result of %s: probe %w", id, r.PoP, ErrNotFound)
	}
	return nil
}

// AdHocProbe returns ad-hoc probe id with its results, and whether it exists.
func (s *Store) AdHocProbe(ctx context.Context, id string) (AdHocProbe, bool, error) {
	if err := validName("ad-hoc probe id", id); err != nil {
		return AdHocProbe{}, false, err
	}
	m, err := s.c.HGetAll(ctx, KeyAdHoc(id)).Result()
	if err != nil {
		return AdHocProbe{}, false, fmt.Errorf("storage: get ad-hoc probe %s: %w", id, err)
	}
	meta, ok := m[adhocMeta]
	if !ok {
		return AdHocProbe{}, false, nil
	}
	var p AdHocProbe
	if err := json.Unmarshal([]byte(meta), &p); err != nil {
		return AdHocProbe{}, false, fmt.Errorf("storage: ad-hoc probe %s: %w", id, err)
	}
	for f, v := range m {
		if !strings.HasPrefix(f, adhocResultsPrefix) {
			continue
		}
		r, err := decodeResult(v)
		if err != nil {
			return AdHocProbe{}, false, fmt.Errorf("storage: ad-hoc probe %s, field %s: %w", id, f, err)
		}
		p.Results = append(p.Results, r)
	}
	sortResults(p.Results)
	return p, true, nil
}
