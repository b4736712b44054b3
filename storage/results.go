package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

// Result is one PoP's measurement of a target, as a probe daemon stores it with PutResult.
type Result struct {
	// Target is the key results are stored under: the probed address, or the scheduler's target key.
	Target   string              `json:"target"`
	PoP      string              `json:"pop"`
	Kind     placement.ProbeKind `json:"kind"`
	MinMs    float64             `json:"min_ms"`    // smallest RTT sample, ms
	MedianMs float64             `json:"median_ms"` // median RTT sample, ms
	Samples  int                 `json:"samples"`   // answered samples
	Loss     float64             `json:"loss"`      // lost fraction of the samples sent, 0..1
	Class    string              `json:"class,omitempty"`
	Error    string              `json:"error,omitempty"`
	At       time.Time           `json:"at"`               // when the probe ran; zero: PutResult's clock
	JobID    string              `json:"job_id,omitempty"` // results are idempotent per (PoP, JobID)
	Round    string              `json:"round,omitempty"`  // the job's Round
	// JobDeadline is the deadline of the job this result answers (Job.Deadline; not stored): the marker that
	// drops a re-delivered job's second result is kept until DedupAfterDeadline past it, not
	// Options.ResultDedupTTL (see dedupTTL).
	JobDeadline time.Time `json:"-"`
	// Resolved is every address the target's name resolved to at this PoP (none for an IP target): DNS
	// evidence, as a geo-DNS name resolves to a different replica per PoP.
	Resolved []string `json:"resolved,omitempty"`
	// DNS is DNS evidence (answers, CHAOS server id), opaque here.
	DNS json.RawMessage `json:"dns,omitempty"`
	// Detail is the prober's full result, opaque here, for callers that need more than the fields above.
	Detail json.RawMessage `json:"detail,omitempty"`
}

// putResultScript stores a result unless its job's result was stored already.
// KEYS[1] latest hash, KEYS[2] history list, KEYS[3] dedup key, KEYS[4] recent hash; ARGV[1] PoP, ARGV[2] at
// (Unix ms), ARGV[3] JSON, ARGV[4] history length, ARGV[5] dedup TTL ms, ARGV[6] "1" when there is a job id,
// ARGV[7] the recent entry ("<at ms>:<min ms>" or "<at ms>:-"), ARGV[8] recent length. Returns 1 when stored.
//
// The PoP's recent entries are kept newest first by time (a late result is inserted where it belongs) and cut
// to ARGV[8].
var putResultScript = redis.NewScript(`
if ARGV[6] == '1' then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[5]) then return 0 end
end
local at = tonumber(ARGV[2])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local newer = true
if cur then
  local cat = tonumber(string.match(cur, '^(-?%d+)|'))
  if cat and cat > at then newer = false end
end
if newer then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3]) end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
local out, placed, n, max = {}, false, 0, tonumber(ARGV[8])
local rec = redis.call('HGET', KEYS[4], ARGV[1]) or ''
for e in string.gmatch(rec, '[^;]+') do
  local eat = tonumber(string.match(e, '^(-?%d+):'))
  if not placed and (eat == nil or eat <= at) then
    table.insert(out, ARGV[7]); placed = true
  end
  table.insert(out, e)
end
if not placed then table.insert(out, ARGV[7]) end
while #out > max do table.remove(out) end
redis.call('HSET', KEYS[4], ARGV[1], table.concat(out, ';'))
return 1
`)

// Sample is one entry of a PoP's recent results of a target (RecentResults): when it was measured and its
// minimum RTT, or OK false for a probe that failed.
type Sample struct {
	At    time.Time
	MinMs float64 // smallest RTT sample, ms; 0 when !OK
	OK    bool    // the probe succeeded: no failure class and at least one answered sample
}

// recentEntry encodes r as an entry of the recent hash: "<at ms>:<min ms>", or "<at ms>:-" for a failure.
func recentEntry(r Result) string {
	if r.Class != "" || r.Error != "" || r.Samples <= 0 {
		return strconv.FormatInt(r.At.UnixMilli(), 10) + ":-"
	}
	return strconv.FormatInt(r.At.UnixMilli(), 10) + ":" + strconv.FormatFloat(r.MinMs, 'g', -1, 64)
}

// decodeRecent decodes a PoP's field of the recent hash, newest first.
func decodeRecent(v string) ([]Sample, error) {
	var out []Sample
	for _, e := range strings.Split(v, ";") {
		if e == "" {
			continue
		}
		a, m, ok := strings.Cut(e, ":")
		if !ok {
			return nil, fmt.Errorf("%w: recent entry %.40q: no ':'", errCorrupt, e)
		}
		ms, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: recent entry %.40q: %w", errCorrupt, e, err)
		}
		s := Sample{At: time.UnixMilli(ms).UTC()}
		if m != "-" {
			if s.MinMs, err = strconv.ParseFloat(m, 64); err != nil {
				return nil, fmt.Errorf("%w: recent entry %.40q: %w", errCorrupt, e, err)
			}
			s.OK = true
		}
		out = append(out, s)
	}
	return out, nil
}

// RecentResults returns each PoP's recent results of target (up to Options.RecentLen per PoP, newest first):
// the window a decision takes each PoP's minimum RTT over.
func (s *Store) RecentResults(ctx context.Context, target string) (map[string][]Sample, error) {
	if err := validName("result target", target); err != nil {
		return nil, err
	}
	m, err := s.c.HGetAll(ctx, KeyRecent(target)).Result()
	if err != nil {
		return nil, fmt.Errorf("storage: recent results for %s: %w", target, err)
	}
	out := make(map[string][]Sample, len(m))
	for pop, v := range m {
		ss, err := decodeRecent(v)
		if err != nil {
			return nil, fmt.Errorf("storage: recent results of %s for %s: %w", pop, target, err)
		}
		out[pop] = ss
	}
	return out, nil
}

// PutResult stores r as r.PoP's latest result for r.Target (unless a newer one is stored) and prepends it to the
// target's history, capped at Options.HistoryLen, and to the PoP's recent results (RecentResults), capped at
// Options.RecentLen. When r.JobID is set the result is stored once per (PoP,
// JobID) within Options.ResultDedupTTL: a re-delivered job's result returns stored=false and changes nothing.
// So does a job's result written more than DedupAfterDeadline/2 past its deadline (r.JobDeadline).
func (s *Store) PutResult(ctx context.Context, r Result) (stored bool, err error) {
	if err := validName("result target", r.Target); err != nil {
		return false, err
	}
	if err := validName("result PoP", r.PoP); err != nil {
		return false, err
	}
	if s.tooLate(r) {
		s.log.Info("storage: result written too long after its job's deadline; dropped", "pop", r.PoP, "target", r.Target,
			"job", r.JobID, "deadline", r.JobDeadline)
		return false, nil
	}
	if r.At.IsZero() {
		r.At = s.o.Now()
	}
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("storage: put result of %s for %s: %w", r.PoP, r.Target, err)
	}
	hasJob := "0"
	if r.JobID != "" {
		hasJob = "1"
	}
	keys := []string{KeyLatest(r.Target), KeyHistory(r.Target), keyDone(r.Target, r.PoP, r.JobID), KeyRecent(r.Target)}
	n, err := putResultScript.Run(ctx, s.c, keys, r.PoP, r.At.UnixMilli(), b, s.o.HistoryLen,
		s.dedupTTL(r).Milliseconds(), hasJob, recentEntry(r), s.o.RecentLen).Int()
	if err != nil {
		return false, fmt.Errorf("storage: put result of %s for %s (job %q): %w", r.PoP, r.Target, r.JobID, err)
	}
	return n == 1, nil
}

// DedupAfterDeadline is how long past its job's deadline a result's dedup marker is kept. A daemon probes no
// job past its deadline (it acknowledges a job read later without probing, and a probe is cut at it), and the
// store drops a result written more than half of DedupAfterDeadline past it (tooLate: a daemon paused, or cut
// off from Redis, between probing and writing, while another daemon of the PoP probed the job again), so a
// second result of a job can only come while its marker lives. Both use the writing daemon's clock: the
// margin covers two daemons of one PoP disagreeing by up to 5 minutes.
const DedupAfterDeadline = 10 * time.Minute

// tooLate reports whether r, a job's result, is written more than DedupAfterDeadline/2 past the job's
// deadline: nobody waits for it any more, and its job's dedup marker may be gone. The caller drops it; it is
// counted in vantage_storage_results_dropped_late_total.
func (s *Store) tooLate(r Result) bool {
	if r.JobDeadline.IsZero() || r.JobID == "" || !s.o.Now().After(r.JobDeadline.Add(DedupAfterDeadline/2)) {
		return false
	}
	s.metrics.late.Inc()
	return true
}

// dedupTTL returns how long r's dedup marker is kept: until DedupAfterDeadline past its job's deadline (past
// the write, when that is later), at most Options.ResultDedupTTL, which also applies to a job without a
// deadline. At a 5-minute recheck the markers of a day (288 rechecks x a result per PoP probed, ~150 bytes
// each) were most of a target's Redis memory (bench/FLEET.md).
func (s *Store) dedupTTL(r Result) time.Duration {
	if r.JobDeadline.IsZero() {
		return s.o.ResultDedupTTL
	}
	return min(max(r.JobDeadline.Sub(s.o.Now()), 0)+DedupAfterDeadline, s.o.ResultDedupTTL)
}

// LatestResults returns the latest result of each PoP for target, by PoP.
func (s *Store) LatestResults(ctx context.Context, target string) (map[string]Result, error) {
	if err := validName("result target", target); err != nil {
		return nil, err
	}
	m, err := s.c.HGetAll(ctx, KeyLatest(target)).Result()
	if err != nil {
		return nil, fmt.Errorf("storage: latest results for %s: %w", target, err)
	}
	out := make(map[string]Result, len(m))
	for pop, v := range m {
		r, err := decodeLatest(v)
		if err != nil {
			return nil, fmt.Errorf("storage: latest result of %s for %s: %w: %.40q", pop, target, errCorrupt, v)
		}
		out[pop] = r
	}
	return out, nil
}

// History returns up to n of target's most recent results (all PoPs), newest first by storage order.
func (s *Store) History(ctx context.Context, target string, n int) ([]Result, error) {
	if err := validName("result target", target); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	vs, err := s.c.LRange(ctx, KeyHistory(target), 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("storage: result history for %s: %w", target, err)
	}
	out := make([]Result, 0, len(vs))
	for i, v := range vs {
		r, err := decodeResult(v)
		if err != nil {
			return nil, fmt.Errorf("storage: result history for %s, entry %d: %w", target, i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// sortResults orders results by PoP, then kind, then time.
func sortResults(rs []Result) {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.PoP != b.PoP {
			return a.PoP < b.PoP
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.At.Before(b.At)
	})
}
