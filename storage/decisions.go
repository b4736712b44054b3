package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

// Tunables of decision scans and watches.
const (
	// scanRound is the number of buckets a ScanDecisions worker reads per round trip (HVALS each): with
	// 1,000,000 decisions a round's reply is about 8 MB.
	scanRound = 4
	// scanWorkers is the number of goroutines ScanDecisions reads and decodes buckets with: enough to keep Redis
	// busy while the others decode.
	scanWorkers = 4
	// pipelineChunk bounds the commands of one pipeline, so that each round trip finishes well within the read
	// timeout even on the embedded server, whose scripts are slow.
	pipelineChunk = 100
	// watchPingInterval is how often an idle watch pings Redis to notice a dead connection.
	watchPingInterval = 5 * time.Second
	// watchRetryMin and watchRetryMax bound the backoff between resubscription attempts.
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 2 * time.Second
)

// Resync is the app name WatchDecisions passes to fn after every (re)subscription: notifications may have been
// missed (before the first subscription, or during an outage), so the caller should reload everything, e.g.
// with ScanDecisions. Application names are never empty.
const Resync = ""

// putDecisionScript stores a decision, bumping its version and publishing its app when the fingerprint changed.
// A fenced write (ARGV[5] is "<token>:<lease>", Fence.arg) is refused when the app's fence (KEYS[2]'s field) is
// of the same lease with a newer token, or is a bare token (the format before fences named their lease) newer
// than the writer's; otherwise ARGV[5] becomes the fence, so a write under another lease takes the app over.
// It then records the decision in the app's history when it changed, or when the newest entry is at least
// ARGV[8] ms older than it, and trims the history to ARGV[7] entries (0: no history).
// KEYS[1] bucket, KEYS[2] the bucket's fences, KEYS[3] the app's history; ARGV[1] app, ARGV[2] fingerprint,
// ARGV[3] payload, ARGV[4] channel, ARGV[5] fence or "" (unfenced), ARGV[6] computed-at (Unix ms), ARGV[7]
// history cap, ARGV[8] history interval (ms), ARGV[9] history entry (JSON). Returns {changed, version}, or {-1,
// the fence's token} when fenced off.
var putDecisionScript = redis.NewScript(putDecisionLua)

// putDecisionLua is putDecisionScript's source, also the body of putDecisionBatchScript's per-decision function.
const putDecisionLua = `
if ARGV[5] ~= '' then
  local token, lease = string.match(ARGV[5], '^(%d+):(.+)$')
  token = tonumber(token)
  local f = redis.call('HGET', KEYS[2], ARGV[1])
  if f ~= ARGV[5] then
    if f then
      local ft, fl = string.match(f, '^(%d+):(.+)$')
      if not ft then ft, fl = f, lease end
      ft = tonumber(ft)
      if ft and fl == lease and ft > token then return {-1, ft} end
    end
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
  end
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
local ver, changed = 0, 1
if old then
  local v, fp = string.match(old, '^(%d+)|(%x*)|')
  if v then ver = tonumber(v) end
  if fp == ARGV[2] then changed = 0 end
end
if changed == 1 then ver = ver + 1 end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', ver) .. '|' .. ARGV[2] .. '|' .. ARGV[3])
if changed == 1 then redis.call('PUBLISH', ARGV[4], ARGV[1]) end
local cap = tonumber(ARGV[7])
if cap > 0 then
  local at = tonumber(ARGV[6])
  local record = changed == 1
  if not record then
    local head = redis.call('LINDEX', KEYS[3], 0)
    local hat = head and tonumber(string.match(head, '^(%d+)|'))
    record = (not hat) or at - hat >= tonumber(ARGV[8])
  end
  if record then
    redis.call('LPUSH', KEYS[3], ARGV[6] .. '|' .. string.format('%d', ver) .. '|' .. changed .. '|' .. ARGV[9])
    redis.call('LTRIM', KEYS[3], 0, cap - 1)
  end
end
return {changed, ver}
`

// ErrFenced is returned by PutDecisionFenced when the decision was already written under a newer fencing
// token of the same lease: the writer's lease has passed to another scheduler, whose decision stands.
var ErrFenced = errors.New("fenced off: a newer lease holder wrote this decision")

// Fence is the lease a decision is written under: the lease's name (AcquireLease's name, e.g. a shard's lease
// or the fleet-wide one) and the holder's fencing token. The zero Fence writes unfenced.
//
// The app's fence records the last fenced write's lease and token. A write is refused (ErrFenced) only when that
// fence is of the same lease with a newer token: tokens of one lease grow with every holder, so the writer is a
// holder that lost the lease while paused. A write under another lease is accepted and its Fence becomes the
// app's: the app changed hands between leases (a mode change moved it between the fleet-wide and a shard's
// lease, or a new shard count moved it to another shard), and tokens of different leases are not comparable.
// A fence stored by older binaries (a bare token, no lease) is compared with any lease's token as before, and
// replaced by the next write.
type Fence struct {
	Lease string
	Token int64
}

// arg is f as putDecisionLua's ARGV[5] and the stored fence, "<token>:<lease>"; "" when unfenced.
func (f Fence) arg() string {
	if f.Token == 0 {
		return ""
	}
	return strconv.FormatInt(f.Token, 10) + ":" + f.Lease
}

// check validates a fence of d.App's write: the zero Fence, or a lease name and a positive token.
func (f Fence) check(app string) error {
	if f == (Fence{}) {
		return nil
	}
	if f.Token <= 0 {
		return fmt.Errorf("storage: put decision %q: lease %q fencing token %d: want > 0", app, f.Lease, f.Token)
	}
	if err := validName("fence lease", f.Lease); err != nil {
		return fmt.Errorf("storage: put decision %q: %w", app, err)
	}
	return nil
}

// fencedError is the error of d.App's write under f refused by a fence of token stored.
func fencedError(app string, f Fence, stored int64) error {
	return fmt.Errorf("storage: put decision %q under fencing token %d of lease %q (token %d wrote it): %w",
		app, f.Token, f.Lease, stored, ErrFenced)
}

// deleteFieldScript deletes a hash field (an app of the registry, apps.go) and publishes its name when it
// existed. KEYS[1] hash; ARGV[1] field, ARGV[2] channel.
var deleteFieldScript = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n == 1 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return n
`)

// deleteFencedDecisionScript deletes a decision, its fence and its history and publishes its app when the
// decision existed. KEYS[1] bucket, KEYS[2] the bucket's fences, KEYS[3] the app's history; ARGV[1] app,
// ARGV[2] channel.
var deleteFencedDecisionScript = redis.NewScript(`
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n == 1 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return n
`)

// PutDecision stores d, the decision for d.App. When the mode, target, best PoP, status, verdict or the
// candidates' order differ from the stored decision (or none is stored) it stores d with the stored version + 1,
// publishes d.App on ChannelDecisions and returns changed=true; otherwise it stores d (fresh RTTs, computed-at
// and next-recheck) under the stored version, publishes nothing and returns changed=false. d.Version is ignored.
func (s *Store) PutDecision(ctx context.Context, d placement.Decision) (changed bool, err error) {
	return s.PutDecisionFenced(ctx, d, Fence{})
}

// PutDecisionFenced is PutDecision for a writer that holds a lease: f names the lease and its token
// (AcquireLease), and the write is refused with ErrFenced when d.App's decision was already written under a
// newer token of the same lease, so a scheduler that lost its lease while paused cannot overwrite its
// successor's decision (see Fence for writes under different leases). The zero Fence writes unfenced.
func (s *Store) PutDecisionFenced(ctx context.Context, d placement.Decision, f Fence) (changed bool, err error) {
	if err := f.check(d.App); err != nil {
		return false, err
	}
	res, err := s.putDecisions(ctx, []placement.Decision{d}, f)
	if err != nil {
		return false, err
	}
	return res[0].Changed, nil
}

// PutResult is the outcome of storing one decision with PutDecisions.
type PutResult struct {
	Changed bool
	Version int64 // the version stored
}

// PutDecisions stores many decisions in one pipeline, each as PutDecision does, and returns one PutResult per
// decision. It stops at the first error (decisions before it may be stored).
func (s *Store) PutDecisions(ctx context.Context, ds []placement.Decision) ([]PutResult, error) {
	return s.putDecisions(ctx, ds, Fence{})
}

func (s *Store) putDecisions(ctx context.Context, ds []placement.Decision, f Fence) ([]PutResult, error) {
	for i := range ds {
		if err := validName("decision app", ds[i].App); err != nil {
			return nil, err
		}
		if n := len(ds[i].Candidates); n > maxCandidates {
			return nil, fmt.Errorf("storage: decision %q: %d candidates: at most %d are stored", ds[i].App, n, maxCandidates)
		}
		if !ds[i].Mode.Valid() {
			return nil, fmt.Errorf("storage: decision %q: mode %q: want one of smart, region, host, hostname or none",
				ds[i].App, ds[i].Mode)
		}
	}
	keys := make([][]string, len(ds))
	args := make([][]any, len(ds))
	hcap, every := max(s.o.DecisionHistoryLen, 0), s.o.DecisionHistoryEvery.Milliseconds()
	for i := range ds {
		d := &ds[i]
		b := DecisionBucket(d.App)
		at := d.ComputedAt
		if at.IsZero() {
			at = s.o.Now()
		}
		var entry []byte
		if hcap > 0 {
			entry = historyEntry(d, at)
		}
		keys[i] = []string{KeyDecisions(b), KeyDecisionFences(b), KeyDecisionHistory(d.App)}
		args[i] = []any{d.App, fingerprint(d), encodeDecision(d), ChannelDecisions, f.arg(), max(at.UnixMilli(), 0), hcap, every, entry}
	}
	cmds, err := s.evalMany(ctx, putDecisionScript, keys, args)
	if err != nil {
		return nil, fmt.Errorf("storage: put %d decisions: %w", len(ds), err)
	}
	out := make([]PutResult, len(ds))
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return nil, fmt.Errorf("storage: put decision %q: %w", ds[i].App, err)
		}
		v, err := c.Int64Slice()
		if err == nil && len(v) != 2 {
			err = errCorrupt
		}
		if err != nil {
			return nil, fmt.Errorf("storage: put decision %q: unexpected reply %v: %w", ds[i].App, c.Val(), err)
		}
		if v[0] == -1 {
			return nil, fencedError(ds[i].App, f, v[1])
		}
		out[i] = PutResult{Changed: v[0] == 1, Version: v[1]}
	}
	return out, nil
}

// evalMany runs script once per keys[i]/args[i] in one pipeline with EVALSHA. Calls that fail with NOSCRIPT (a
// restarted or new node) are run again, alone, after loading the script on every node. The returned commands
// carry each call's result or error; the error is a pipeline failure other than a Redis error reply.
func (s *Store) evalMany(ctx context.Context, script *redis.Script, keys [][]string, args [][]any) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, 0, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), pipelineChunk)
		c, err := s.evalChunk(ctx, script, keys[:n], args[:n])
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, c...)
		keys, args = keys[n:], args[n:]
	}
	return cmds, nil
}

func (s *Store) evalChunk(ctx context.Context, script *redis.Script, keys [][]string, args [][]any) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(keys))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys {
			cmds[i] = script.EvalSha(ctx, p, keys[i], args[i]...)
		}
		return nil
	})
	var retry []int
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		if err := script.Load(ctx, s.c).Err(); err != nil {
			return nil, fmt.Errorf("load script: %w", err)
		}
		_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range retry {
				cmds[i] = script.EvalSha(ctx, p, keys[i], args[i]...)
			}
			return nil
		})
	}
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return nil, err
	}
	return cmds, nil
}

// isNoScript reports whether err says a script is not cached (after a restart or a failover).
func isNoScript(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") }

// Decision returns app's decision and whether one is stored.
func (s *Store) Decision(ctx context.Context, app string) (placement.Decision, bool, error) {
	if err := validName("decision app", app); err != nil {
		return placement.Decision{}, false, err
	}
	v, err := s.c.HGet(ctx, KeyDecisions(DecisionBucket(app)), app).Result()
	if errors.Is(err, redis.Nil) {
		return placement.Decision{}, false, nil
	}
	if err != nil {
		return placement.Decision{}, false, fmt.Errorf("storage: get decision %q: %w", app, err)
	}
	d, err := decodeDecision(strconv.Quote(app), v)
	if err != nil {
		return placement.Decision{}, false, err
	}
	if d.App != app {
		return placement.Decision{}, false, fmt.Errorf("storage: decision %q: %w: holds app %q", app, errCorrupt, d.App)
	}
	return d, true, nil
}

// DeleteDecision deletes app's decision and its history and, when one was stored, publishes app on ChannelDecisions.
func (s *Store) DeleteDecision(ctx context.Context, app string) error {
	if err := validName("decision app", app); err != nil {
		return err
	}
	b := DecisionBucket(app)
	keys := []string{KeyDecisions(b), KeyDecisionFences(b), KeyDecisionHistory(app)}
	err := deleteFencedDecisionScript.Run(ctx, s.c, keys, app, ChannelDecisions).Err()
	if err != nil {
		return fmt.Errorf("storage: delete decision %q: %w", app, err)
	}
	return nil
}

// ScanDecisions calls fn for every stored decision, in no particular order. scanWorkers goroutines each read a
// share of the buckets with pipelined HVALS and decode them, so that Redis, the decoding and fn overlap; fn is
// called from the calling goroutine only, never concurrently. Each bucket is read atomically, so every
// decision is seen once, in its state when its bucket was read; one written during the scan is announced on the
// channel anyway. It stops at fn's first error and returns it. An undecodable value is skipped (logged and
// counted once per Store, see skipCorrupt): one corrupt decision must not hide all the others.
func (s *Store) ScanDecisions(ctx context.Context, fn func(placement.Decision) error) error {
	return s.ScanDecisionBuckets(ctx, nil, fn)
}

// ScanDecisionBuckets is ScanDecisions over the decisions of buckets only (DecisionBucket of their
// applications; nil: every bucket, empty: none): a reader of some applications' decisions need not read and
// decode every one.
func (s *Store) ScanDecisionBuckets(ctx context.Context, buckets []int, fn func(placement.Decision) error) error {
	if buckets == nil {
		buckets = make([]int, DecisionBuckets)
		for b := range buckets {
			buckets[b] = b
		}
	}
	for _, b := range buckets {
		if b < 0 || b >= DecisionBuckets {
			return fmt.Errorf("storage: scan decisions: bucket %d: want 0 to %d", b, DecisionBuckets-1)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []placement.Decision, 2*scanWorkers)
	errs := make(chan error, scanWorkers)
	var wg sync.WaitGroup
	for w := range scanWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []int
			for i := w; i < len(buckets); i += scanWorkers {
				mine = append(mine, buckets[i])
			}
			err := s.scanBuckets(ctx, mine, batches)
			if err != nil {
				cancel() // stop the other workers too
			}
			errs <- err
		}()
	}
	go func() { wg.Wait(); close(batches) }()
	var fnErr error
	for batch := range batches {
		if fnErr != nil {
			continue // drain until the workers notice the cancellation
		}
		for _, d := range batch {
			if err := fn(d); err != nil {
				fnErr = err
				cancel()
				break
			}
		}
	}
	if fnErr != nil {
		return fnErr
	}
	// The first real error; the others' are the cancellation it caused.
	var first error
	for range scanWorkers {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	return first
}

// scanBuckets reads buckets with pipelined HVALS, scanRound buckets per round trip, sending each round's
// decoded decisions to out.
func (s *Store) scanBuckets(ctx context.Context, buckets []int, out chan<- []placement.Decision) error {
	cmds := make([]*redis.StringSliceCmd, 0, scanRound)
	for len(buckets) > 0 {
		round := buckets[:min(scanRound, len(buckets))]
		buckets = buckets[len(round):]
		p := s.c.Pipeline()
		cmds = cmds[:0]
		for _, b := range round {
			cmds = append(cmds, p.HVals(ctx, KeyDecisions(b)))
		}
		if _, err := p.Exec(ctx); err != nil {
			return fmt.Errorf("storage: scan decisions: %w", err)
		}
		n := 0
		for _, c := range cmds {
			n += len(c.Val())
		}
		batch := make([]placement.Decision, 0, n)
		for j, c := range cmds {
			for _, v := range c.Val() {
				d, err := decodeDecision("in "+KeyDecisions(round[j]), v)
				if err != nil {
					s.skipCorrupt("decision", KeyDecisions(round[j]), v, err)
					continue
				}
				batch = append(batch, d)
			}
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// WatchDecisions calls fn with the name of every application whose decision changes (or is deleted), until ctx
// is done, when it returns nil. After every subscription, the first one included, it calls fn(Resync): the
// caller should then reload all decisions, since changes made while no subscription was active were missed.
// When Redis goes away it logs, retries with backoff and subscribes again by itself. fn runs on the watching
// goroutine: a slow fn delays later notifications.
func (s *Store) WatchDecisions(ctx context.Context, fn func(app string)) error {
	return s.watch(ctx, ChannelDecisions, fn)
}

// watch subscribes to channel and calls fn per message, with fn(Resync) after each subscription.
func (s *Store) watch(ctx context.Context, channel string, fn func(string)) error {
	backoff := watchRetryMin
	subscriptions := 0
	subscribed := func() {
		backoff = watchRetryMin
		if subscriptions++; subscriptions > 1 {
			s.metrics.resubs.WithLabelValues(channel).Inc() // a subscription again, not each failed attempt
		}
	}
	for ctx.Err() == nil {
		err := s.watchOnce(ctx, channel, fn, subscribed)
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("storage: watch interrupted; resubscribing", "channel", channel, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchRetryMax)
	}
	return nil
}

// watchOnce runs one subscription until an error; subscribed is called once the subscription is confirmed.
func (s *Store) watchOnce(ctx context.Context, channel string, fn func(string), subscribed func()) error {
	ps := s.c.Subscribe(ctx)
	defer ps.Close()
	// go-redis does not abort a blocked read when ctx is cancelled: closing the subscription does.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	if err := ps.Subscribe(ctx, channel); err != nil {
		return err
	}
	// Wait for the confirmation, so that no notification after fn(Resync) is lost.
	rctx, cancel := context.WithTimeout(ctx, s.o.DialTimeout+s.o.ReadTimeout)
	msg, err := ps.Receive(rctx)
	cancel()
	if err != nil {
		return err
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return fmt.Errorf("storage: subscribe %s: unexpected first message %T", channel, msg)
	}
	subscribed()
	fn(Resync)
	pinged := false
	for {
		wait := s.pingInterval
		if pinged {
			wait = max(wait, s.o.ReadTimeout) // give the PONG a read timeout to arrive
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				// Idle: check the connection is alive; the PONG arrives as a message.
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				pinged = true
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			fn(m.Payload)
		case *redis.Subscription:
			if m.Kind == "unsubscribe" {
				return fmt.Errorf("storage: unsubscribed from %s", channel)
			}
		}
	}
}
