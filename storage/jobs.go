package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

// deadJobsMax caps each PoP's dead-letter list.
const deadJobsMax = 1000

// jobField is the stream entry field holding a job's JSON.
const jobField = "job"

// Job is one probe a PoP's daemons should run. The scheduler enqueues it with EnqueueJob; a daemon reads it with
// ReadJobs (or takes it over from a dead daemon with ReclaimJobs), stores the result, then acknowledges it with
// AckJob. Delivery is at least once: a job may be run twice, so results are stored idempotently per JobID.
type Job struct {
	// ID is the stream entry id ("<ms>-<seq>"), set by EnqueueJob and the readers; it is unique per PoP only.
	ID        string              `json:"-"`
	Target    string              `json:"target"` // what to probe: host:port, hostname or URL, IP
	Kind      placement.ProbeKind `json:"kind"`
	Count     int                 `json:"count,omitempty"`      // samples; 0: the prober's default
	TimeoutMs int                 `json:"timeout_ms,omitempty"` // per sample; 0: the prober's default
	// Round is the scheduler's recheck round or the ad-hoc probe id the job belongs to.
	Round string `json:"round,omitempty"`
	// Key is where the result goes (PutResult's Target), when it differs from Target, e.g. "tcp:db:5432".
	Key       string          `json:"key,omitempty"`
	CreatedAt time.Time       `json:"created_at"`        // set by EnqueueJob when zero
	Deadline  time.Time       `json:"deadline,omitzero"` // zero: none; a job read later should be acknowledged unprobed
	Params    json.RawMessage `json:"params,omitempty"`  // kind-specific options (HTTP host, DNS query...), opaque here
	// Attempt counts deliveries, this one included: 1 from ReadJobs, more from ReclaimJobs.
	Attempt int `json:"-"`
	// Entry is the stream entry to acknowledge (AckJob) once every probe of it is done: ID for a single job;
	// for a probe of a batch entry (EnqueueJobBatches), ID is "<Entry>.<Index>" and Parts the entry's probes.
	Entry string `json:"-"`
	Index int    `json:"-"`
	Parts int    `json:"-"`
	// Reply is the results stream (KeyResultNotes) the probe's result is announced on; "" for none.
	Reply string `json:"-"`
}

// JobStats describe one PoP's job queue.
type JobStats struct {
	Queued   int64 // jobs not yet acknowledged, waiting or in flight
	InFlight int64 // jobs delivered to a daemon and not yet acknowledged
	Dead     int64 // jobs that exhausted Options.MaxJobAttempts, in the dead-letter list
}

// EnqueueJob appends j to pop's job stream and returns its stream id. The stream is capped at about
// Options.JobStreamMaxLen entries (the oldest are dropped).
func (s *Store) EnqueueJob(ctx context.Context, pop string, j Job) (string, error) {
	if err := validName("job PoP", pop); err != nil {
		return "", err
	}
	if j.Target == "" {
		return "", fmt.Errorf("storage: enqueue job for %s: empty target", pop)
	}
	if _, err := placement.ParseProbeKind(string(j.Kind)); err != nil {
		return "", fmt.Errorf("storage: enqueue job for %s, target %q: %w", pop, j.Target, err)
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = s.o.Now()
	}
	j.CreatedAt = j.CreatedAt.UTC()
	b, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("storage: enqueue job for %s, target %q: %w", pop, j.Target, err)
	}
	id, err := s.c.XAdd(ctx, &redis.XAddArgs{
		Stream: KeyJobs(pop), MaxLen: s.o.JobStreamMaxLen, Approx: true, Values: []any{jobField, b},
	}).Result()
	if err != nil {
		return "", fmt.Errorf("storage: enqueue job for %s, target %q: %w", pop, j.Target, err)
	}
	return id, nil
}

// ensureGroup creates pop's consumer group (and stream) when missing. The group starts at the stream's beginning,
// so jobs enqueued before any daemon read are delivered.
func (s *Store) ensureGroup(ctx context.Context, pop string) error {
	err := s.c.XGroupCreateMkStream(ctx, KeyJobs(pop), JobGroup, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("storage: create job group for %s: %w", pop, err)
	}
	return nil
}

func isNoGroup(err error) bool { return err != nil && redis.HasErrorPrefix(err, "NOGROUP") }

// ReadJobs returns up to count new jobs of pop for consumer (a daemon id), waiting up to block for the first when
// there are none (block <= 0: do not wait). It returns no jobs and no error when none arrived.
func (s *Store) ReadJobs(ctx context.Context, pop, consumer string, count int, block time.Duration) ([]Job, error) {
	if err := validName("job PoP", pop); err != nil {
		return nil, err
	}
	if err := validName("job consumer", consumer); err != nil {
		return nil, err
	}
	args := &redis.XReadGroupArgs{
		Group: JobGroup, Consumer: consumer, Streams: []string{KeyJobs(pop), ">"}, Count: int64(max(count, 1)), Block: -1,
	}
	if block > 0 {
		args.Block = max(block, time.Millisecond)
	}
	streams, err := s.c.XReadGroup(ctx, args).Result()
	if isNoGroup(err) {
		if err = s.ensureGroup(ctx, pop); err != nil {
			return nil, err
		}
		streams, err = s.c.XReadGroup(ctx, args).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read jobs of %s for %s: %w", pop, consumer, err)
	}
	var jobs []Job
	for _, st := range streams {
		for _, m := range st.Messages {
			for _, j := range s.decodeOrDrop(ctx, pop, m) {
				j.Attempt = 1
				jobs = append(jobs, j)
			}
		}
	}
	return jobs, nil
}

// decodeEntry decodes a job stream entry: a single job (field "job", as every scheduler before job batches
// wrote, and ad-hoc and mesh probes still do) or a batch (field "batch"). Malformed probes of a batch are
// reported in errs; err means the whole entry is unusable.
func decodeEntry(pop string, m redis.XMessage) (jobs []Job, errs []error, err error) {
	if raw, ok := m.Values[batchField].(string); ok {
		return DecodeJobBatch(pop, m.ID, raw)
	}
	j, err := decodeJob(pop, m)
	if err != nil {
		return nil, nil, err
	}
	return []Job{j}, nil, nil
}

// decodeJob decodes a single-job entry (field "job").
func decodeJob(pop string, m redis.XMessage) (Job, error) {
	raw, ok := m.Values[jobField].(string)
	if !ok {
		return Job{}, fmt.Errorf("storage: job %s of %s: no %q or %q field", m.ID, pop, jobField, batchField)
	}
	var j Job
	if err := json.Unmarshal([]byte(raw), &j); err != nil {
		return Job{}, fmt.Errorf("storage: job %s of %s: %w", m.ID, pop, err)
	}
	j.ID, j.Entry, j.Parts = m.ID, m.ID, 1
	return j, nil
}

// decodeOrDrop decodes m, or, when it is corrupt (it can never run), logs it and acknowledges and deletes it
// and returns no job; errors of the deletion are only logged. The malformed probes of a batch are logged and
// left out (the entry is acknowledged once its other probes are done).
func (s *Store) decodeOrDrop(ctx context.Context, pop string, m redis.XMessage) []Job {
	jobs, errs, err := decodeEntry(pop, m)
	for _, e := range errs {
		s.log.Warn("storage: dropping a malformed probe of a job batch", "pop", pop, "id", m.ID, "err", e)
	}
	if err == nil && len(jobs) > 0 {
		return jobs
	}
	if err != nil {
		s.log.Warn("storage: dropping corrupt job", "pop", pop, "id", m.ID, "err", err)
	}
	if err := s.AckJob(ctx, pop, m.ID); err != nil {
		s.log.Warn("storage: drop job", "pop", pop, "id", m.ID, "err", err)
	}
	return nil
}

// AckJob acknowledges job id of pop and deletes it from the stream. Acknowledging twice is harmless.
func (s *Store) AckJob(ctx context.Context, pop, id string) error {
	if err := validName("job PoP", pop); err != nil {
		return err
	}
	key := KeyJobs(pop)
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, key, JobGroup, id)
		p.XDel(ctx, key, id)
		return nil
	})
	if err != nil && !isNoGroup(err) {
		return fmt.Errorf("storage: ack job %s of %s: %w", id, pop, err)
	}
	return nil
}

// ReclaimJobs takes over for consumer up to count jobs of pop that another consumer received at least minIdle
// ago without acknowledging them (its daemon died mid-job), with XAUTOCLAIM, and returns them with their Attempt.
// Jobs delivered more than Options.MaxJobAttempts times are not returned: they are moved to pop's dead-letter
// list (KeyDeadJobs) and acknowledged.
func (s *Store) ReclaimJobs(ctx context.Context, pop, consumer string, minIdle time.Duration, count int) ([]Job, error) {
	if err := validName("job PoP", pop); err != nil {
		return nil, err
	}
	if err := validName("job consumer", consumer); err != nil {
		return nil, err
	}
	key := KeyJobs(pop)
	msgs, _, err := s.c.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: key, Group: JobGroup, Consumer: consumer, MinIdle: minIdle, Start: "0-0", Count: int64(max(count, 1)),
	}).Result()
	if isNoGroup(err) {
		return nil, nil // nobody ever read: nothing to reclaim
	}
	if err != nil {
		return nil, fmt.Errorf("storage: reclaim jobs of %s for %s: %w", pop, consumer, err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	// XAUTOCLAIM does not report delivery counts: read them from the pending entries list.
	pend := make([]*redis.XPendingExtCmd, len(msgs))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			pend[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: JobGroup, Start: m.ID, End: m.ID, Count: 1})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: reclaim jobs of %s: delivery counts: %w", pop, err)
	}
	var jobs []Job
	for i, m := range msgs {
		js := s.decodeOrDrop(ctx, pop, m)
		if len(js) == 0 {
			continue
		}
		attempt := 1
		if p := pend[i].Val(); len(p) == 1 {
			attempt = int(p[0].RetryCount)
		}
		if attempt > s.o.MaxJobAttempts {
			// A failed move leaves the job pending, to be moved at the next reclaim; the jobs claimed with it
			// are still returned (dropping them here would strand them for another minIdle).
			raw := m.Values[jobField]
			if b, ok := m.Values[batchField]; ok {
				raw = b
			}
			j := js[0]
			j.ID, j.Attempt = m.ID, attempt
			if err := s.deadJob(ctx, pop, j, raw); err != nil {
				s.log.Warn("storage: dead-lettering a job; it stays pending", "pop", pop, "id", j.ID, "err", err)
			}
			continue
		}
		for _, j := range js {
			j.Attempt = attempt
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

// deadJob moves j to pop's dead-letter list, acknowledging and deleting it from the stream in one transaction.
func (s *Store) deadJob(ctx context.Context, pop string, j Job, raw any) error {
	s.log.Warn("storage: job exhausted its attempts", "pop", pop, "id", j.ID, "target", j.Target, "attempts", j.Attempt)
	key, dead := KeyJobs(pop), KeyDeadJobs(pop)
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, dead, raw)
		p.LTrim(ctx, dead, 0, deadJobsMax-1)
		p.XAck(ctx, key, JobGroup, j.ID)
		p.XDel(ctx, key, j.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: move job %s of %s to %s: %w", j.ID, pop, dead, err)
	}
	return nil
}

// PendingJobs returns the number of pop's jobs not yet acknowledged (waiting or in flight): the queue's backlog.
func (s *Store) PendingJobs(ctx context.Context, pop string) (int64, error) {
	st, err := s.JobStats(ctx, pop)
	return st.Queued, err
}

// JobStats returns pop's queue counts.
func (s *Store) JobStats(ctx context.Context, pop string) (JobStats, error) {
	if err := validName("job PoP", pop); err != nil {
		return JobStats{}, err
	}
	var (
		xlen, llen *redis.IntCmd
		pend       *redis.XPendingCmd
	)
	key := KeyJobs(pop)
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		xlen = p.XLen(ctx, key)
		pend = p.XPending(ctx, key, JobGroup)
		llen = p.LLen(ctx, KeyDeadJobs(pop))
		return nil
	})
	if err != nil && !isNoGroup(err) && !errors.Is(err, redis.Nil) {
		return JobStats{}, fmt.Errorf("storage: job stats of %s: %w", pop, err)
	}
	st := JobStats{Queued: xlen.Val(), Dead: llen.Val()}
	if pend.Err() == nil {
		st.InFlight = pend.Val().Count
	}
	return st, nil
}
