package scheduler

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"
)

// Sharded scheduling: the targets are split into Config.Shards shards by a hash of the app name, each shard
// with its own lease (and so its own fencing token, which its decisions are written under). Every scheduler of
// a fleet announces itself in the lease group (a membership heartbeat with the lease's TTL), takes free shards
// up to its fair share ceil(shards/members) and releases those above it, so several schedulers lead at once
// and a dead one's shards are taken over once their leases expire. A shard's rechecks run under its term,
// whose context ends when the lease may be lost, so no target is checked by two schedulers at once.
//
// The fleet-wide work (the PoP mesh, the smart runner, the pending-jobs gauge) stays with the single lease
// Config.LeaseName (leadership, Leading): one scheduler does it, whichever shards it leads.
//
// Decisions are fenced per app and per lease (storage.Fence): only an older token of the lease that last wrote
// an app is refused, so an app moving between leases (smart mode's fleet-wide lease, a shard's) is never fenced off.

// DefaultShards is the default number of shards (Config.Shards). Every scheduler of a fleet must split the
// targets the same way: the first to start stores its count in Redis (storage.Store.AgreeShards), and one
// started with another count logs a warning and adopts the stored one. 64 is enough to balance a fleet of
// tens of schedulers to within a few shards, few enough that a round over every shard lease stays cheap (one
// script call per shard held per LeaseTTL/3, per shard polled for per LeaseTTL/10).
const DefaultShards = 64

// MaxShards bounds Config.Shards: every shard is a lease each scheduler renews or polls for, a few script
// calls per shard per lease period.
const MaxShards = 1024

// shardRegistry is the part of the store the schedulers of a fleet agree through (storage.Store): the lease
// group's members and its shard count. Without it (a Leaser alone) a scheduler counts only itself.
type shardRegistry interface {
	HeartbeatMember(ctx context.Context, group, member string, ttl time.Duration) ([]string, error)
	LeaveMember(ctx context.Context, group, member string) error
	AgreeShards(ctx context.Context, group string, n int) (int, error)
}

// shard is one shard's lease and term.
type shard struct {
	idx  int
	name string // lease name

	// The shard manager's goroutine only:
	token      int64
	validUntil time.Time // stop leading at this time unless renewed
	renewed    time.Time

	// Guarded by Scheduler.qmu:
	term     *Term
	cancel   context.CancelFunc
	inflight int                  // rechecks of the shard's targets running
	drained  chan struct{}        // closed when inflight drops to 0 after the term ended; nil otherwise
	late     map[string]time.Time // stored next rechecks of apps not (yet) queued when the term began
}

// lateDue returns and forgets app's stored next recheck read at the term's start. The caller holds s.qmu.
func (sh *shard) lateDue(app string) (time.Time, bool) {
	at, ok := sh.late[app]
	if ok {
		delete(sh.late, app)
	}
	return at, ok
}

// shardOf returns the shard (0..n-1) of app: FNV-1a of the name, as storage.DecisionBucket, so with the
// default 64 shards a shard's decisions share one bucket.
func shardOf(app string, n int) uint16 {
	h := fnv.New32a()
	h.Write([]byte(app))
	return uint16(h.Sum32() % uint32(n))
}

// shardLeaseName returns shard i's lease name in group.
func shardLeaseName(group string, i int) string { return fmt.Sprintf("%s-shard-%03d", group, i) }

func newShards(group string, n int) []*shard {
	out := make([]*shard, n)
	for i := range out {
		out[i] = &shard{idx: i, name: shardLeaseName(group, i)}
	}
	return out
}

// ShardStatus is this scheduler's part of the sharded scheduling.
type ShardStatus struct {
	Holder  string `json:"holder"`  // this scheduler's lease holder id
	Shards  int    `json:"shards"`  // shards of the fleet
	Led     []int  `json:"led"`     // shards this scheduler leads
	Members int    `json:"members"` // schedulers of the fleet as last counted (1 without a registry)
	// FleetLease is whether this scheduler holds the fleet-wide lease (mesh, smart runner: Leading).
	FleetLease bool `json:"fleet_lease"`
}

// Shards returns which shards this scheduler leads.
func (s *Scheduler) Shards() ShardStatus {
	lead, _ := s.Leading()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	st := ShardStatus{Holder: s.lead.holder, Shards: len(s.shards), Led: []int{}, Members: int(s.members.Load()), FleetLease: lead}
	for _, sh := range s.shards {
		if sh.term != nil && sh.term.Ctx.Err() == nil {
			st.Led = append(st.Led, sh.idx)
		}
	}
	return st
}

// adoptShards splits the targets into n shards (the count the fleet agreed on). Only before any shard is led.
func (s *Scheduler) adoptShards(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.shards = newShards(s.cfg.LeaseName, n)
	for app, st := range s.targets {
		st.shard = shardOf(app, n)
	}
}

// runShards holds this scheduler's fair share of the shard leases until ctx is done, then ends its terms and
// releases them (each after its rechecks stopped) and leaves the group.
func (s *Scheduler) runShards(ctx context.Context) {
	reg, _ := s.lead.leaser.(shardRegistry)
	s.members.Store(1)
	agreed := reg == nil
	var beat, agreedAt time.Time
	defer s.releaseShards(ctx, reg)
	for {
		start := s.cfg.Clock.Now()
		// Agreed again every LeaseTTL/3: the count goes with Redis's data, and the first scheduler to find it
		// gone stores it again.
		if reg != nil && (!agreed || start.Sub(agreedAt) >= s.cfg.LeaseTTL/3) {
			if s.agreeShards(ctx, reg) {
				agreed, agreedAt = true, start
			}
		}
		if agreed {
			if reg != nil {
				s.heartbeat(ctx, reg, &beat, start)
			}
			s.shardRound(ctx, start)
		}
		if ctx.Err() != nil {
			return
		}
		// The next round comes in LeaseTTL/10, or when a held shard's lease may be lost, whichever is first: a
		// term ends before its lease can expire in Redis, never a round later.
		now := s.cfg.Clock.Now()
		wait := s.cfg.LeaseTTL/10 - now.Sub(start)
		for _, sh := range s.shards {
			if sh.token != 0 {
				wait = min(wait, sh.validUntil.Sub(now))
			}
		}
		t := s.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// agreeShards stores this scheduler's shard count as the fleet's or adopts the stored one, and reports
// whether it could ask.
func (s *Scheduler) agreeShards(ctx context.Context, reg shardRegistry) bool {
	octx, cancel := context.WithTimeout(ctx, s.cfg.LeaseTTL/3)
	defer cancel()
	n, err := reg.AgreeShards(octx, s.cfg.LeaseName, s.cfg.Shards)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("scheduler: reading the fleet's shard count; leading no shard until it is agreed", "err", err)
		}
		return false
	}
	if n != len(s.shards) {
		s.log.Warn("scheduler: the fleet splits targets into another number of shards than this scheduler: using the fleet's (every scheduler must agree)",
			"shards", n, "had", len(s.shards), "configured", s.cfg.Shards)
		for _, sh := range s.shards { // only when Redis lost the count and another count was stored meanwhile
			if sh.token != 0 {
				s.releaseShard(ctx, sh, "shard count changed")
			}
		}
		s.adoptShards(n)
	}
	return true
}

// heartbeat announces this scheduler in the lease group (every round: a dead member's departure is seen
// within a round of its expiry) and counts the members.
func (s *Scheduler) heartbeat(ctx context.Context, reg shardRegistry, beat *time.Time, now time.Time) {
	octx, cancel := context.WithTimeout(ctx, s.cfg.LeaseTTL/3)
	defer cancel()
	members, err := reg.HeartbeatMember(octx, s.cfg.LeaseName, s.lead.holder, s.cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("scheduler: membership heartbeat", "err", err)
		}
		return
	}
	*beat = now
	n := int64(max(len(members), 1))
	if old := s.members.Swap(n); old != n {
		s.log.Info("scheduler: schedulers of the fleet", "members", n, "previous", old)
	}
}

// shardRound renews the shards held, drops those whose lease may be lost, releases those above the fair share
// and acquires free ones up to it.
func (s *Scheduler) shardRound(ctx context.Context, start time.Time) {
	ttl := s.cfg.LeaseTTL
	n := len(s.shards)
	share := (n + int(s.members.Load()) - 1) / int(s.members.Load())
	held := 0
	for _, sh := range s.shards {
		if sh.token == 0 {
			continue
		}
		if !start.Before(sh.validUntil) {
			s.loseShard(sh, "lease expired without renewal")
			continue
		}
		if start.Sub(sh.renewed) >= ttl/3 {
			octx, cancel := context.WithTimeout(ctx, ttl/3)
			ok, err := s.lead.leaser.RenewLease(octx, sh.name, s.lead.holder, sh.token, ttl)
			cancel()
			switch {
			case err != nil:
				if ctx.Err() == nil {
					s.log.Warn("scheduler: renewing a shard lease", "shard", sh.idx, "err", err)
				}
			case !ok:
				s.loseShard(sh, "renewal refused")
				continue
			default:
				sh.validUntil, sh.renewed = start.Add(ttl-ttl/10), start
			}
		}
		held++
	}
	order := s.shardOrder()
	for i := len(order) - 1; i >= 0 && held > share; i-- {
		if sh := s.shards[order[i]]; sh.token != 0 {
			s.releaseShard(ctx, sh, "rebalance")
			held--
		}
	}
	var acquired []*shard
	for _, i := range order {
		if held >= share || ctx.Err() != nil {
			break
		}
		sh := s.shards[i]
		if sh.token != 0 {
			continue
		}
		octx, cancel := context.WithTimeout(ctx, ttl/3)
		tok, ok, err := s.lead.leaser.AcquireLease(octx, sh.name, s.lead.holder, ttl)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("scheduler: acquiring a shard lease", "shard", sh.idx, "err", err)
			}
			continue
		}
		if ok {
			sh.token, sh.validUntil, sh.renewed = tok, start.Add(ttl-ttl/10), start
			acquired = append(acquired, sh)
			held++
		}
	}
	if len(acquired) > 0 {
		s.beginTerms(ctx, acquired, start)
	}
	if s.metrics != nil {
		s.metrics.shardsLed.Set(float64(held))
	}
}

// shardOrder returns the shards in this scheduler's order of preference: from an offset hashed from its
// holder id, so schedulers starting together try different shards first. Shards above the fair share are
// released from the end.
func (s *Scheduler) shardOrder() []int {
	n := len(s.shards)
	first := int(shardOf(s.lead.holder, n))
	out := make([]int, n)
	for i := range out {
		out[i] = (first + i) % n
	}
	return out
}

// beginTerms starts a term on every shard acquired: its targets are queued at their stored next rechecks
// (one read of the stored decisions for all of them), else spread from now.
func (s *Scheduler) beginTerms(ctx context.Context, acquired []*shard, start time.Time) {
	var stored map[string]time.Time
	if s.dueScan != nil {
		want := make([]bool, len(s.shards))
		for _, sh := range acquired {
			want[sh.idx] = true
		}
		sctx, cancel := context.WithTimeout(ctx, s.cfg.LeaseTTL/3)
		m, err := s.dueScan(sctx, want)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler: reading stored recheck times; spreading rechecks from now", "err", err)
		}
		stored = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	begun := make([]bool, len(s.shards))
	idx := make([]int, 0, len(acquired))
	for _, sh := range acquired {
		tctx, cancel := context.WithCancel(ctx)
		sh.term = &Term{Ctx: tctx, Lease: sh.name, Token: sh.token, Seq: s.termSeq.Add(1), Start: start}
		sh.cancel, sh.late = cancel, nil
		begun[sh.idx] = true
		idx = append(idx, sh.idx)
		if s.metrics != nil {
			s.metrics.shardHandovers.WithLabelValues("acquired").Inc()
		}
	}
	s.log.Info("scheduler: leading shards", "acquired", idx, "shards", len(s.shards), "members", s.members.Load())
	for app, at := range stored {
		if st, ok := s.targets[app]; ok && st.run == nil {
			continue // queued below
		}
		if sh := s.shards[shardOf(app, len(s.shards))]; begun[sh.idx] {
			if sh.late == nil {
				sh.late = map[string]time.Time{}
			}
			sh.late[app] = at
		}
	}
	for app, st := range s.targets {
		if !begun[st.shard] || st.run != nil || st.removed {
			continue
		}
		term := s.shards[st.shard].term
		s.pushLocked(st, s.dueLocked(term, st, func(string) (time.Time, bool) { at, ok := stored[app]; return at, ok }))
	}
}

// endTerm stops leading sh: its rechecks are cancelled and its targets leave the heap. It returns a channel
// closed once no recheck of the shard runs any more (nil: none runs).
func (s *Scheduler) endTerm(sh *shard) <-chan struct{} {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	sh.token = 0
	if sh.term == nil {
		return nil
	}
	sh.cancel()
	sh.term, sh.cancel, sh.late = nil, nil, nil
	s.unqueueShardLocked(sh.idx)
	if sh.inflight == 0 {
		return nil
	}
	if sh.drained == nil {
		sh.drained = make(chan struct{})
	}
	return sh.drained
}

// loseShard ends sh's term when its lease may be lost (refused or not renewed in time).
func (s *Scheduler) loseShard(sh *shard, why string) {
	tok := sh.token
	s.endTerm(sh)
	s.log.Warn("scheduler: lost a shard", "shard", sh.idx, "lease", sh.name, "token", tok, "reason", why)
	if s.metrics != nil {
		s.metrics.shardHandovers.WithLabelValues("lost").Inc()
	}
}

// releaseShard ends sh's term and gives its lease up once the shard's rechecks stopped, so its next leader
// never checks a target this one still checks. Rechecks that do not stop within LeaseTTL/10 (they are
// cancelled: a recheck ignoring its context) leave the lease to expire instead, and the other shards' renewals
// are not held up.
func (s *Scheduler) releaseShard(ctx context.Context, sh *shard, why string) {
	tok, until := sh.token, sh.validUntil
	drained := s.endTerm(sh)
	if drained != nil {
		t := s.cfg.Clock.NewTimer(max(min(until.Sub(s.cfg.Clock.Now()), s.cfg.LeaseTTL/10), 0))
		select {
		case <-drained:
			t.Stop()
		case <-t.C():
			t.Stop()
			s.log.Warn("scheduler: a shard's rechecks did not stop; its lease is left to expire", "shard", sh.idx, "token", tok)
			return
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	lvl := slog.LevelInfo
	if err := s.lead.leaser.ReleaseLease(rctx, sh.name, s.lead.holder, tok); err != nil {
		s.log.Warn("scheduler: releasing a shard lease (it expires instead)", "shard", sh.idx, "err", err)
		lvl = slog.LevelDebug
	}
	s.log.Log(ctx, lvl, "scheduler: released a shard", "shard", sh.idx, "lease", sh.name, "token", tok, "reason", why)
	if s.metrics != nil {
		s.metrics.shardHandovers.WithLabelValues("released").Inc()
	}
}

// releaseShards releases every shard held and leaves the group (Run's end).
func (s *Scheduler) releaseShards(ctx context.Context, reg shardRegistry) {
	for _, sh := range s.shards {
		if sh.token != 0 {
			s.releaseShard(ctx, sh, "shutdown")
		}
	}
	if s.metrics != nil {
		s.metrics.shardsLed.Set(0)
	}
	if reg != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := reg.LeaveMember(rctx, s.cfg.LeaseName, s.lead.holder); err != nil {
			s.log.Debug("scheduler: leaving the lease group (it expires instead)", "err", err)
		}
	}
}
