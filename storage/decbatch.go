package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

// RecheckRead names what a recheck reads before deciding: the app's previous decision and, when Key is set,
// the recent results of its result key (RecentResults).
type RecheckRead struct {
	App string
	Key string // "" for none
}

// RecheckState is what RecheckInputs read for one RecheckRead. Err is set (and the rest empty) when that item's
// decision could not be read or decoded, RecentErr when its recent results could not: the other items stand.
type RecheckState struct {
	Decision    placement.Decision
	HasDecision bool
	Recent      map[string][]Sample
	Err         error
	RecentErr   error
}

// readRecheckScript reads many apps' decisions and recent results. KEYS: 2 per item (the decision bucket,
// the recent hash or the bucket again); ARGV: 2 per item (app, "1" when the recent hash is read). Returns per
// item {decision or false, {pop, entries, ...}}.
var readRecheckScript = redis.NewScript(`
local out = {}
for i = 0, #KEYS / 2 - 1 do
  local d = redis.call('HGET', KEYS[i*2+1], ARGV[i*2+1])
  local r = {}
  if ARGV[i*2+2] == '1' then r = redis.call('HGETALL', KEYS[i*2+2]) end
  out[#out+1] = {d, r}
end
return out
`)

// RecheckInputs reads the previous decision and recent results of many rechecks in one script call (on a
// Redis Cluster, whose scripts touch one slot, one Decision and one RecentResults per item).
func (s *Store) RecheckInputs(ctx context.Context, rs []RecheckRead) ([]RecheckState, error) {
	out := make([]RecheckState, len(rs))
	if len(rs) == 0 {
		return out, nil
	}
	for _, r := range rs {
		if err := validName("decision app", r.App); err != nil {
			return nil, err
		}
		if r.Key != "" {
			if err := validName("result target", r.Key); err != nil {
				return nil, err
			}
		}
	}
	if s.clustered() {
		for i, r := range rs {
			o := &out[i]
			o.Decision, o.HasDecision, o.Err = s.Decision(ctx, r.App)
			if o.Err == nil && r.Key != "" {
				o.Recent, o.RecentErr = s.RecentResults(ctx, r.Key)
			}
		}
		return out, nil
	}
	keys := make([]string, 0, 2*len(rs))
	args := make([]any, 0, 2*len(rs))
	for _, r := range rs {
		b := KeyDecisions(DecisionBucket(r.App))
		if r.Key != "" {
			keys = append(keys, b, KeyRecent(r.Key))
			args = append(args, r.App, "1")
		} else {
			keys = append(keys, b, b)
			args = append(args, r.App, "0")
		}
	}
	v, err := readRecheckScript.Run(ctx, s.c, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("storage: read %d rechecks' decisions and recent results: %w", len(rs), err)
	}
	if len(v) != len(rs) {
		return nil, fmt.Errorf("storage: read %d rechecks' inputs: %w: %d replies", len(rs), errCorrupt, len(v))
	}
	for i, r := range rs {
		o := &out[i]
		pair, ok := v[i].([]any)
		if !ok || len(pair) != 2 {
			o.Err = fmt.Errorf("storage: recheck inputs of %q: %w: reply %T", r.App, errCorrupt, v[i])
			continue
		}
		if dv, ok := pair[0].(string); ok {
			d, err := decodeDecision(strconv.Quote(r.App), dv)
			if err == nil && d.App != r.App {
				err = fmt.Errorf("storage: decision %q: %w: holds app %q", r.App, errCorrupt, d.App)
			}
			if err != nil {
				o.Err = err
				continue
			}
			o.Decision, o.HasDecision = d, true
		}
		if r.Key == "" {
			continue
		}
		flat, _ := pair[1].([]any)
		o.Recent = make(map[string][]Sample, len(flat)/2)
		for j := 0; j+1 < len(flat); j += 2 {
			pop, _ := flat[j].(string)
			val, _ := flat[j+1].(string)
			ss, err := decodeRecent(val)
			if err != nil {
				o.Recent, o.RecentErr = nil, fmt.Errorf("storage: recent results of %s for %s: %w", pop, r.Key, err)
				break
			}
			o.Recent[pop] = ss
		}
	}
	return out, nil
}

// DecisionWrite is one decision for PutDecisionBatch: written under Fence (zero: unfenced) as PutDecisionFenced
// does, with its Explanation (nil: none) stored for ExplainTTL (<= 0: no expiry) unless the write is fenced off.
type DecisionWrite struct {
	Decision    placement.Decision
	Fence       Fence
	Explanation *Explanation
	ExplainTTL  time.Duration
}

// DecisionWritten is the outcome of one DecisionWrite: Err wraps ErrFenced when a newer token of the same lease
// wrote the app's decision (the other writes of the batch stand).
type DecisionWritten struct {
	Changed bool
	Version int64
	Err     error
}

// putDecisionBatchScript runs putDecisionLua for each decision and stores its explanation unless fenced off.
// KEYS: 4 per decision (bucket, fences, history, explanation); ARGV: 11 per decision (putDecisionLua's 9,
// explanation JSON or "", its TTL ms). Returns {changed, version} per decision, flattened.
var putDecisionBatchScript = redis.NewScript(`
local function put(KEYS, ARGV)
` + putDecisionLua + `
end
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = {KEYS[i*4+1], KEYS[i*4+2], KEYS[i*4+3]}, {}
  for j = 1, 9 do a[j] = ARGV[i*11+j] end
  local r = put(k, a)
  local ex, ttl = ARGV[i*11+10], tonumber(ARGV[i*11+11])
  if r[1] ~= -1 and ex ~= '' then
    if ttl > 0 then redis.call('SET', KEYS[i*4+4], ex, 'PX', ttl) else redis.call('SET', KEYS[i*4+4], ex) end
  end
  out[#out+1] = r[1]
  out[#out+1] = r[2]
end
return out
`)

// PutDecisionBatch writes many decisions (and their explanations) in one script call, each fenced per app as
// PutDecisionFenced. The error is for the whole call (nothing or only part may be written); per-decision
// outcomes, ErrFenced among them, are in the result. On a Redis Cluster it writes each decision with its own
// script call and each explanation with SET (a script touches one slot).
func (s *Store) PutDecisionBatch(ctx context.Context, ws []DecisionWrite) ([]DecisionWritten, error) {
	out := make([]DecisionWritten, len(ws))
	if len(ws) == 0 {
		return out, nil
	}
	for i := range ws {
		d := &ws[i].Decision
		if err := validName("decision app", d.App); err != nil {
			return nil, err
		}
		if n := len(d.Candidates); n > maxCandidates {
			return nil, fmt.Errorf("storage: decision %q: %d candidates: at most %d are stored", d.App, n, maxCandidates)
		}
		if !d.Mode.Valid() {
			return nil, fmt.Errorf("storage: decision %q: mode %q: want one of smart, region, host, hostname or none", d.App, d.Mode)
		}
		if err := ws[i].Fence.check(d.App); err != nil {
			return nil, err
		}
	}
	if s.clustered() {
		for i, w := range ws {
			o := &out[i]
			res, err := s.putDecisions(ctx, []placement.Decision{w.Decision}, w.Fence)
			if err != nil {
				if !errors.Is(err, ErrFenced) {
					return nil, err
				}
				o.Err = err
				continue
			}
			o.Changed, o.Version = res[0].Changed, res[0].Version
			if w.Explanation != nil {
				if err := s.PutExplanation(ctx, *w.Explanation, w.ExplainTTL); err != nil {
					o.Err = err
				}
			}
		}
		return out, nil
	}
	keys := make([]string, 0, 4*len(ws))
	args := make([]any, 0, 11*len(ws))
	hcap, every := max(s.o.DecisionHistoryLen, 0), s.o.DecisionHistoryEvery.Milliseconds()
	for i := range ws {
		w := &ws[i]
		d := &w.Decision
		b := DecisionBucket(d.App)
		at := d.ComputedAt
		if at.IsZero() {
			at = s.o.Now()
		}
		var entry []byte
		if hcap > 0 {
			entry = historyEntry(d, at)
		}
		var ex []byte
		if w.Explanation != nil {
			e := *w.Explanation
			e.ComputedAt = e.ComputedAt.UTC()
			var err error
			if ex, err = json.Marshal(e); err != nil {
				return nil, fmt.Errorf("storage: put explanation of %q: %w", d.App, err)
			}
		}
		keys = append(keys, KeyDecisions(b), KeyDecisionFences(b), KeyDecisionHistory(d.App), KeyExplain(d.App))
		args = append(args, d.App, fingerprint(d), encodeDecision(d), ChannelDecisions, w.Fence.arg(), max(at.UnixMilli(), 0),
			hcap, every, entry, ex, max(w.ExplainTTL.Milliseconds(), 0))
	}
	v, err := putDecisionBatchScript.Run(ctx, s.c, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("storage: put %d decisions: %w", len(ws), err)
	}
	if len(v) != 2*len(ws) {
		return nil, fmt.Errorf("storage: put %d decisions: %w: %d replies", len(ws), errCorrupt, len(v))
	}
	for i := range ws {
		if v[2*i] == -1 {
			out[i].Err = fencedError(ws[i].Decision.App, ws[i].Fence, v[2*i+1])
			continue
		}
		out[i] = DecisionWritten{Changed: v[2*i] == 1, Version: v[2*i+1]}
	}
	return out, nil
}
