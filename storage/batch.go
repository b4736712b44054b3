package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

// Bounds of a job batch (one stream entry carrying many probes for one PoP).
const (
	// MaxBatchProbes is the most probes one batch entry carries: a daemon runs a batch's probes at once, and
	// its results are written in one script call, so a batch must stay a few milliseconds of Redis time.
	MaxBatchProbes = 256
	// MaxBatchBytes is the largest encoded batch entry (64 KiB): Redis streams keep entries in 4 KiB nodes
	// by default, and a reader must not be handed an unbounded reply.
	MaxBatchBytes = 64 << 10
	// batchField is the stream entry field holding a batch's JSON (a single job uses jobField).
	batchField = "batch"
	// batchVersion is the version of the batch encoding, checked by readers.
	batchVersion = 1
	// notesMaxLen caps each results stream (KeyResultNotes), approximately: a scheduler reads it every tick.
	notesMaxLen = 10000
	// notesTTL is how long a results stream outlives its last write: a scheduler that stopped leaves none
	// behind.
	notesTTL = 10 * time.Minute
	// maxNoteError bounds the error text a notification carries (the stored result keeps the whole text).
	maxNoteError = 200
)

// KeyResultNotes returns the stream a scheduler instance reads the results of its batched jobs from
// (JobBatch.Reply): each entry's field "r" holds a JSON array of Results (without Detail).
func KeyResultNotes(instance string) string { return "vantage:{notes:" + instance + "}:results" }

// jobBatch is the wire form of a batch entry: {"v":1,"reply":"<stream>","probes":[<Job>...]}.
type jobBatch struct {
	V      int               `json:"v"`
	Reply  string            `json:"reply,omitempty"`
	Probes []json.RawMessage `json:"probes"`
}

// ErrBatchTooLarge is returned by EncodeJobBatch (and reported for an entry read) past MaxBatchProbes or
// MaxBatchBytes.
var ErrBatchTooLarge = errors.New("job batch too large")

// EncodeJobBatch encodes jobs as batch entries of at most MaxBatchProbes probes and MaxBatchBytes each, all
// replying to reply (a KeyResultNotes stream, or "" for none). Each job must have a target and a valid kind.
func EncodeJobBatch(jobs []Job, reply string, now time.Time) ([][]byte, error) {
	var out [][]byte
	var cur []json.RawMessage
	size := 0
	replyJSON, err := json.Marshal(reply)
	if err != nil {
		return nil, err
	}
	head := len(`{"v":1,"reply":,"probes":[]}`) + len(replyJSON)
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		// Written by hand: json.Marshal would re-validate every probe's JSON, a third of the encoding's cost.
		b := make([]byte, 0, head+size)
		b = append(b, `{"v":`...)
		b = strconv.AppendInt(b, batchVersion, 10)
		b = append(b, `,"reply":`...)
		b = append(b, replyJSON...)
		b = append(b, `,"probes":[`...)
		for i, p := range cur {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, p...)
		}
		b = append(b, "]}"...)
		out = append(out, b)
		cur, size = nil, 0
		return nil
	}
	for i := range jobs {
		j := jobs[i]
		if j.Target == "" {
			return nil, fmt.Errorf("storage: job batch: probe %d: empty target", i)
		}
		if _, err := placement.ParseProbeKind(string(j.Kind)); err != nil {
			return nil, fmt.Errorf("storage: job batch: probe %d, target %q: %w", i, j.Target, err)
		}
		if j.CreatedAt.IsZero() {
			j.CreatedAt = now
		}
		j.CreatedAt = j.CreatedAt.UTC()
		b, err := json.Marshal(j)
		if err != nil {
			return nil, fmt.Errorf("storage: job batch: probe %d, target %q: %w", i, j.Target, err)
		}
		if head+len(b)+1 > MaxBatchBytes {
			return nil, fmt.Errorf("storage: job batch: probe %d, target %.60q: %d bytes: %w (at most %d)", i, j.Target, len(b), ErrBatchTooLarge, MaxBatchBytes)
		}
		if len(cur) == MaxBatchProbes || head+size+len(b)+1 > MaxBatchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		cur = append(cur, b)
		size += len(b) + 1
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// DecodeJobBatch decodes the batch entry raw of stream entry id of pop into its jobs: job i gets ID "<id>.<i>"
// (stable across deliveries, so results stay idempotent per probe), Entry id, Parts the probe count and Reply.
// A malformed probe (unknown field, wrong type, empty target, bad kind) is left out and reported in errs,
// naming the field and value; the others are returned. A malformed or oversized entry returns only err.
func DecodeJobBatch(pop, id, raw string) (jobs []Job, errs []error, err error) {
	if len(raw) > MaxBatchBytes {
		return nil, nil, fmt.Errorf("storage: job batch %s of %s: %d bytes: %w (at most %d)", id, pop, len(raw), ErrBatchTooLarge, MaxBatchBytes)
	}
	var b jobBatch
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, nil, fmt.Errorf("storage: job batch %s of %s: %w", id, pop, err)
	}
	if b.V != batchVersion {
		return nil, nil, fmt.Errorf("storage: job batch %s of %s: field \"v\": version %d: want %d", id, pop, b.V, batchVersion)
	}
	if len(b.Probes) > MaxBatchProbes {
		return nil, nil, fmt.Errorf("storage: job batch %s of %s: field \"probes\": %d probes: %w (at most %d)", id, pop, len(b.Probes), ErrBatchTooLarge, MaxBatchProbes)
	}
	if b.Reply != "" && !strings.HasPrefix(b.Reply, "vantage:{notes:") {
		return nil, nil, fmt.Errorf("storage: job batch %s of %s: field \"reply\": %.60q: not a results stream", id, pop, b.Reply)
	}
	for i, p := range b.Probes {
		var j Job
		d := json.NewDecoder(bytes.NewReader(p))
		d.DisallowUnknownFields()
		err := d.Decode(&j)
		switch {
		case err != nil:
			err = fmt.Errorf("storage: job batch %s of %s, probe %d: %w", id, pop, i, err)
		case j.Target == "":
			err = fmt.Errorf("storage: job batch %s of %s, probe %d: field \"target\": empty", id, pop, i)
		default:
			if _, kerr := placement.ParseProbeKind(string(j.Kind)); kerr != nil {
				err = fmt.Errorf("storage: job batch %s of %s, probe %d: field \"kind\": %w", id, pop, i, kerr)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		j.ID = id + "." + strconv.Itoa(i)
		j.Entry, j.Index, j.Parts, j.Reply = id, i, len(b.Probes), b.Reply
		jobs = append(jobs, j)
	}
	return jobs, errs, nil
}

// EnqueueJobBatches appends each PoP's jobs to its job stream as batch entries (EncodeJobBatch), all in one
// pipeline, the results to be announced on reply (KeyResultNotes; "" for none). It returns the first entry id
// (of Redis's clock, to start reading reply from) and the number of entries per PoP.
func (s *Store) EnqueueJobBatches(ctx context.Context, byPoP map[string][]Job, reply string) (first string, entries map[string]int, err error) {
	type entry struct {
		pop string
		b   []byte
	}
	var all []entry
	entries = map[string]int{}
	now := s.o.Now()
	for pop, jobs := range byPoP {
		if err := validName("job PoP", pop); err != nil {
			return "", nil, err
		}
		bs, err := EncodeJobBatch(jobs, reply, now)
		if err != nil {
			return "", nil, fmt.Errorf("storage: enqueue jobs for %s: %w", pop, err)
		}
		for _, b := range bs {
			all = append(all, entry{pop, b})
		}
		entries[pop] = len(bs)
	}
	if len(all) == 0 {
		return "", entries, nil
	}
	cmds := make([]*redis.StringCmd, len(all))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range all {
			cmds[i] = p.XAdd(ctx, &redis.XAddArgs{Stream: KeyJobs(e.pop), MaxLen: s.o.JobStreamMaxLen, Approx: true,
				Values: []any{batchField, e.b}})
		}
		return nil
	})
	if err != nil {
		for i, c := range cmds {
			if c.Err() != nil {
				return "", nil, fmt.Errorf("storage: enqueue a job batch for %s: %w", all[i].pop, c.Err())
			}
		}
		return "", nil, fmt.Errorf("storage: enqueue %d job batches: %w", len(all), err)
	}
	first = cmds[0].Val()
	for _, c := range cmds[1:] {
		if streamIDLess(c.Val(), first) {
			first = c.Val()
		}
	}
	return first, entries, nil
}

// streamIDLess orders two stream ids "<ms>-<seq>".
func streamIDLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	ai, _ := strconv.ParseUint(am, 10, 64)
	bi, _ := strconv.ParseUint(bm, 10, 64)
	if ai != bi {
		return ai < bi
	}
	aj, _ := strconv.ParseUint(as, 10, 64)
	bj, _ := strconv.ParseUint(bs, 10, 64)
	return aj < bj
}

// StreamIDBefore returns the id just before id ("<ms>-<seq>"), to read a stream from id on with XREAD.
func StreamIDBefore(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	m, _ := strconv.ParseUint(ms, 10, 64)
	q, _ := strconv.ParseUint(seq, 10, 64)
	if q > 0 {
		return strconv.FormatUint(m, 10) + "-" + strconv.FormatUint(q-1, 10)
	}
	if m > 0 {
		return strconv.FormatUint(m-1, 10) + "-18446744073709551615"
	}
	return "0-0"
}

// ReadResultNotes reads the results announced on stream (KeyResultNotes) after id last, waiting up to block for
// some (block <= 0: do not wait), at most count entries. It returns the results and the id to read from next
// (last when none came). An undecodable entry is skipped and reported in the error together with the others'
// results.
func (s *Store) ReadResultNotes(ctx context.Context, stream, last string, count int, block time.Duration) ([]Result, string, error) {
	args := &redis.XReadArgs{Streams: []string{stream, last}, Count: int64(max(count, 1)), Block: -1}
	if block > 0 {
		args.Block = max(block, time.Millisecond)
	}
	st, err := s.c.XRead(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, last, nil
	}
	if err != nil {
		return nil, last, fmt.Errorf("storage: read results of %s: %w", stream, err)
	}
	var out []Result
	var errs []error
	for _, x := range st {
		for _, m := range x.Messages {
			last = m.ID
			raw, _ := m.Values["r"].(string)
			var rs []Result
			if err := json.Unmarshal([]byte(raw), &rs); err != nil {
				errs = append(errs, fmt.Errorf("storage: results note %s of %s: %w: %w", m.ID, stream, errCorrupt, err))
				continue
			}
			out = append(out, rs...)
		}
	}
	return out, last, errors.Join(errs...)
}

// BatchResult is one finished probe of a batch for PutResultBatch: its result (nil for a job acknowledged
// without one, e.g. expired), the stream entry to acknowledge once every probe of it is stored (Ack), and the
// results stream to announce it on (Reply, "" for none).
type BatchResult struct {
	Result *Result
	Reply  string
	// Ack, when not empty, is a job stream entry id to acknowledge and delete after the results are stored.
	Ack string
}

// putResultBatchScript stores many results as putResultScript does, announces the stored ones on their
// results streams and acknowledges finished job entries, in one call.
// KEYS: 4 per result (latest, history, dedup, recent), then the job stream, then the results streams.
// ARGV[1] results n, ARGV[2] history length, ARGV[3] unused (the dedup TTL is per result), ARGV[4] recent
// length, ARGV[5] notes MAXLEN, ARGV[6] notes TTL ms, ARGV[7] acks m; then per result 7 args (PoP, at ms, JSON,
// the dedup marker's TTL ms or "0" when there is no job id, recent entry, reply index 0..: 0 none, else the
// KEYS index past the job stream, then note JSON); then m entry ids. Returns the number of results stored (not
// duplicates).
var putResultBatchScript = redis.NewScript(`
local n, hlen, rlen = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local stored, notes = 0, {}
for i = 0, n - 1 do
  local k, a = i * 4, 7 + i * 7
  local pop, at, js, ttl, entry, reply, note = ARGV[a+1], tonumber(ARGV[a+2]), ARGV[a+3], ARGV[a+4], ARGV[a+5], tonumber(ARGV[a+6]), ARGV[a+7]
  local fresh = true
  if ttl ~= '0' then
    if not redis.call('SET', KEYS[k+3], '1', 'NX', 'PX', ttl) then fresh = false end
  end
  if fresh then
    stored = stored + 1
    local cur = redis.call('HGET', KEYS[k+1], pop)
    local newer = true
    if cur then
      local cat = tonumber(string.match(cur, '^(-?%d+)|'))
      if cat and cat > at then newer = false end
    end
    if newer then redis.call('HSET', KEYS[k+1], pop, ARGV[a+2] .. '|' .. js) end
    redis.call('LPUSH', KEYS[k+2], js)
    redis.call('LTRIM', KEYS[k+2], 0, hlen - 1)
    local out, placed = {}, false
    local rec = redis.call('HGET', KEYS[k+4], pop) or ''
    for e in string.gmatch(rec, '[^;]+') do
      local eat = tonumber(string.match(e, '^(-?%d+):'))
      if not placed and (eat == nil or eat <= at) then
        table.insert(out, entry); placed = true
      end
      table.insert(out, e)
    end
    if not placed then table.insert(out, entry) end
    while #out > rlen do table.remove(out) end
    redis.call('HSET', KEYS[k+4], pop, table.concat(out, ';'))
  end
  if reply > 0 then
    notes[reply] = notes[reply] or {}
    table.insert(notes[reply], note)
  end
end
local js = KEYS[n * 4 + 1]
for r, list in pairs(notes) do
  local key = KEYS[n * 4 + 1 + r]
  redis.call('XADD', key, 'MAXLEN', '~', ARGV[5], '*', 'r', '[' .. table.concat(list, ',') .. ']')
  redis.call('PEXPIRE', key, ARGV[6])
end
local m = tonumber(ARGV[7])
local base = 7 + n * 7
for i = 1, m do
  redis.call('XACK', js, 'probers', ARGV[base + i])
  redis.call('XDEL', js, ARGV[base + i])
end
return stored
`)

// clustered reports whether the Store talks to a Redis Cluster: scripts there may only touch one slot.
func (s *Store) clustered() bool {
	_, ok := s.c.(*redis.ClusterClient)
	return ok
}

// noteOf is r as announced on a results stream: without Detail, with a bounded error text.
func noteOf(r Result) ([]byte, error) {
	r.Detail = nil
	if len(r.Error) > maxNoteError {
		r.Error = r.Error[:maxNoteError] + "..."
	}
	return json.Marshal(r)
}

// PutResultBatch stores pop's finished probes (each as PutResult: idempotent per (PoP, JobID), and dropped when
// written too long after the job's deadline), announces each on its Reply stream and acknowledges the Ack
// entries of pop's job stream, in one script call. It returns how many results were stored (duplicates of
// re-delivered probes and late results are not). On a Redis Cluster, whose scripts touch
// one slot, it falls back to one PutResult per result, one XADD per results stream and one AckJob per entry.
func (s *Store) PutResultBatch(ctx context.Context, pop string, rs []BatchResult) (int, error) {
	if err := validName("result PoP", pop); err != nil {
		return 0, err
	}
	cloned, late := false, 0
	for i := range rs {
		if rs[i].Result == nil {
			continue
		}
		r := *rs[i].Result
		r.PoP = pop
		if !s.tooLate(r) {
			continue
		}
		if !cloned { // rs is the caller's
			rs, cloned = slices.Clone(rs), true
		}
		rs[i].Result = nil // acknowledged, not stored
		late++
	}
	if late > 0 {
		s.log.Info("storage: results written too long after their jobs' deadlines; dropped", "pop", pop, "results", late)
	}
	type item struct {
		r    Result
		js   []byte
		note []byte
	}
	var items []item
	var acks []string
	replies := map[string]int{}
	var replyKeys []string
	for _, br := range rs {
		if br.Ack != "" {
			acks = append(acks, br.Ack)
		}
		if br.Result == nil {
			continue
		}
		r := *br.Result
		r.PoP = pop
		if err := validName("result target", r.Target); err != nil {
			return 0, err
		}
		if r.At.IsZero() {
			r.At = s.o.Now()
		}
		r.At = r.At.UTC()
		b, err := json.Marshal(r)
		if err != nil {
			return 0, fmt.Errorf("storage: put result of %s for %s: %w", pop, r.Target, err)
		}
		note, err := noteOf(r)
		if err != nil {
			return 0, fmt.Errorf("storage: put result of %s for %s: %w", pop, r.Target, err)
		}
		if br.Reply != "" {
			if _, ok := replies[br.Reply]; !ok {
				replies[br.Reply] = len(replyKeys) + 1
				replyKeys = append(replyKeys, br.Reply)
			}
		}
		items = append(items, item{r: r, js: b, note: note})
	}
	if len(items) == 0 && len(acks) == 0 {
		return 0, nil
	}
	if s.clustered() {
		return s.putResultBatchSlotwise(ctx, pop, rs)
	}
	keys := make([]string, 0, 4*len(items)+1+len(replyKeys))
	args := make([]any, 0, 7+7*len(items)+len(acks))
	args = append(args, len(items), s.o.HistoryLen, 0, s.o.RecentLen, notesMaxLen, notesTTL.Milliseconds(), len(acks))
	ri := 0
	for _, br := range rs {
		if br.Result == nil {
			continue
		}
		it := items[ri]
		ri++
		var ttl int64 // no job id: no dedup marker
		if it.r.JobID != "" {
			ttl = max(s.dedupTTL(it.r).Milliseconds(), 1)
		}
		keys = append(keys, KeyLatest(it.r.Target), KeyHistory(it.r.Target), keyDone(it.r.Target, pop, it.r.JobID), KeyRecent(it.r.Target))
		args = append(args, pop, it.r.At.UnixMilli(), it.js, strconv.FormatInt(ttl, 10), recentEntry(it.r), replies[br.Reply], it.note)
	}
	keys = append(keys, KeyJobs(pop))
	keys = append(keys, replyKeys...)
	for _, a := range acks {
		args = append(args, a)
	}
	n, err := putResultBatchScript.Run(ctx, s.c, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("storage: put %d results of %s (%d acks): %w", len(items), pop, len(acks), err)
	}
	return n, nil
}

// putResultBatchSlotwise is PutResultBatch on a Cluster: one slot per call.
func (s *Store) putResultBatchSlotwise(ctx context.Context, pop string, rs []BatchResult) (int, error) {
	stored := 0
	notes := map[string][][]byte{}
	for _, br := range rs {
		if br.Result == nil {
			continue
		}
		r := *br.Result
		r.PoP = pop
		ok, err := s.PutResult(ctx, r)
		if err != nil {
			return stored, err
		}
		if ok {
			stored++
		}
		if br.Reply != "" {
			if r.At.IsZero() {
				r.At = s.o.Now()
			}
			n, _ := noteOf(r)
			notes[br.Reply] = append(notes[br.Reply], n)
		}
	}
	for reply, ns := range notes {
		payload := append(append([]byte{'['}, bytes.Join(ns, []byte{','})...), ']')
		if err := s.c.XAdd(ctx, &redis.XAddArgs{Stream: reply, MaxLen: notesMaxLen, Approx: true, Values: []any{"r", payload}}).Err(); err != nil {
			return stored, fmt.Errorf("storage: announce results on %s: %w", reply, err)
		}
		s.c.PExpire(ctx, reply, notesTTL)
	}
	for _, br := range rs {
		if br.Ack != "" {
			if err := s.AckJob(ctx, pop, br.Ack); err != nil {
				return stored, err
			}
		}
	}
	return stored, nil
}
