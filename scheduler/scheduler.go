// Package scheduler rechecks every application's placement target from the PoPs of the fleet, turns the
// results into decisions with the triangulation engine, elects one active scheduler with a Redis lease, and
// serves the HTTP API (apps, ad-hoc probes, status).
package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

// Defaults of Config.
const (
	// DefaultRecheckInterval is how often a target is probed again: placement follows back ends that move
	// rarely, and a full recheck costs one probe per chosen PoP.
	DefaultRecheckInterval = 5 * time.Minute
	// DefaultJitter spreads rechecks by ±10% so targets added together drift apart.
	DefaultJitter = 0.1
	// DefaultInitialSpread bounds the start offset of a target never checked before: new applications are
	// placed within seconds, yet a config reload of thousands of targets does not probe all at once.
	DefaultInitialSpread = 30 * time.Second
	// DefaultLeaseTTL is the leader lease: a dead scheduler is replaced within this time.
	DefaultLeaseTTL = 10 * time.Second
	// DefaultConcurrency caps rechecks in flight. A recheck mostly waits for the fleet (a few rounds of
	// results, ~1-5 s), so throughput is Concurrency / recheck time: 100,000 targets every 5 min need ~333
	// rechecks/s. Each one in flight costs a goroutine, a few small maps and one Redis read per ResultPoll.
	DefaultConcurrency = 1024
	// DefaultResultTimeout is how long a recheck waits for the fleet's results before deciding with what came.
	DefaultResultTimeout = 30 * time.Second
	// DefaultResultPoll is how often a recheck looks for the results of its jobs.
	DefaultResultPoll = 200 * time.Millisecond
	// DefaultProbeCount is the samples per probe job; the prober keeps the minimum and median.
	DefaultProbeCount = 3
	// DefaultLeaseName is the Redis lease all schedulers of a fleet compete for.
	DefaultLeaseName = "scheduler"
	// DecisionTTLIntervals is how many recheck intervals a decision stays valid (Config.DecisionTTL): one
	// missed or failed recheck (a lease handover, a slow fleet) must not expire it, but a decision nobody
	// rechecks any more (its app deleted while a scheduler was down, every scheduler gone) must not route
	// forever: routers treat an expired decision as none.
	DecisionTTLIntervals = 3
	// DefaultHistoryRounds and DefaultHistoryWindow are the history window of a decision: each PoP's RTT is
	// the minimum of its last 3 results no older than 15 minutes, so one noisy round (a busy PoP, a queue on
	// the path) does not move a placement, and a target that really moved is followed within 3 rechecks.
	// tailscale's netcheck keeps the lowest latency per region over its last 5 minutes of reports for the
	// same reason.
	DefaultHistoryRounds = 3
	DefaultHistoryWindow = 15 * time.Minute
	// DefaultEpochPoll is how often the scheduler checks that Redis still holds its data (Config.EpochPoll): an
	// emptied Redis is noticed within about this time, for one small script per poll.
	DefaultEpochPoll = time.Second
)

// Config tunes a Scheduler. Zero fields take the defaults above.
type Config struct {
	Name            string        // lease holder id, with a random part appended in the lease; default hostname-pid
	LeaseName       string        // default DefaultLeaseName; also the lease group of the shard leases
	Shards          int           // shards of the targets, each led under its own lease (shards.go); default DefaultShards
	LeaseTTL        time.Duration // default DefaultLeaseTTL
	RecheckInterval time.Duration // default DefaultRecheckInterval
	Jitter          float64       // fraction of RecheckInterval, default DefaultJitter; negative: none
	InitialSpread   time.Duration // default DefaultInitialSpread
	Concurrency     int           // default DefaultConcurrency
	ResultTimeout   time.Duration // default DefaultResultTimeout
	ResultPoll      time.Duration // default DefaultResultPoll
	ProbeCount      int           // default DefaultProbeCount
	Budget          int           // PoPs probed per recheck (planner budget); 0: the planner's default
	// BatchTick is how often the rechecks in flight send their jobs (one stream entry per PoP), read their
	// inputs and write their decisions, each in one Redis call per tick (batch.go); default DefaultBatchTick;
	// negative: no batching (one job, read and write per recheck).
	BatchTick time.Duration
	// HistoryRounds and HistoryWindow are the history window: a decision takes each PoP's minimum RTT over
	// its last HistoryRounds results (default DefaultHistoryRounds; 1: the latest only) no older than
	// HistoryWindow (default DefaultHistoryWindow). A PoP whose latest probe failed counts as failed. The
	// storage keeps storage.Options.RecentLen results per PoP: more rounds than that are not read.
	HistoryRounds int
	HistoryWindow time.Duration
	// MeshInterval is how often every PoP measures every other (the PoP mesh that calibrates the engine);
	// default DefaultMeshInterval; negative: no mesh.
	MeshInterval time.Duration
	// MeshBudget caps the mesh probes enqueued per minute (default DefaultMeshBudget): a large fleet's round
	// then takes longer than MeshInterval.
	MeshBudget int
	// Calibration tunes the fit of the mesh's calibration; nil: triangulate.DefaultCalibrationConfig().
	Calibration *triangulate.CalibrationConfig
	// DecisionTTL is how long a written decision stays valid (its ExpiresAt); default DecisionTTLIntervals ×
	// RecheckInterval + ResultTimeout (a recheck's own wait). It must exceed RecheckInterval + ResultTimeout,
	// or decisions expire between rechecks.
	DecisionTTL time.Duration
	// EpochPoll is how often Redis's data set identity is checked (storage.Store.Epoch); default
	// DefaultEpochPoll. When it changes (Redis emptied or restarted without data) every target is rechecked at
	// once and the config dirs are read again.
	EpochPoll time.Duration
	// HostnameScheme, "http" or "https", turns a hostname target into the URL the HTTP HEAD probes ask for
	// ("https://api.example.com/"); empty: the bare hostname, which the prober asks over plain HTTP.
	HostnameScheme string
	Regions        RegionEndpoints
	// PoPs is the catalogue PoP codes of the fleet are located with; nil: geo.PoPs().
	PoPs []geo.PoP
	// Prior returns a target's prior location by the address probed (GeoIPPrior: a GeoIP database, --geoip);
	// nil: none. The planner's first picks start near it, and a prior far outside the measured region is a
	// note on the decision; it never decides.
	Prior   func(addr string) (triangulate.Prior, bool)
	Engine  *triangulate.Config        // nil: triangulate.ProductionConfig(nil)
	Planner *triangulate.PlannerConfig // nil: triangulate.DefaultPlannerConfig() with Engine
	Clock   Clock                      // default RealClock
	Logger  *slog.Logger               // default slog.Default()
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	c := Config{}
	c.fill()
	c.DecisionTTL = 0 // derived in New from the intervals the caller ends up with (e.g. a --recheck flag)
	return c
}

func (c *Config) fill() {
	if c.Name == "" {
		h, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	c.LeaseName = cmp.Or(c.LeaseName, DefaultLeaseName)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, DefaultLeaseTTL)
	c.Shards = cmp.Or(c.Shards, DefaultShards)
	c.RecheckInterval = cmp.Or(c.RecheckInterval, DefaultRecheckInterval)
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	c.InitialSpread = cmp.Or(c.InitialSpread, DefaultInitialSpread)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.ResultTimeout = cmp.Or(c.ResultTimeout, DefaultResultTimeout)
	c.ResultPoll = cmp.Or(c.ResultPoll, DefaultResultPoll)
	c.ProbeCount = cmp.Or(c.ProbeCount, DefaultProbeCount)
	c.BatchTick = cmp.Or(c.BatchTick, DefaultBatchTick)
	c.HistoryRounds = cmp.Or(c.HistoryRounds, DefaultHistoryRounds)
	c.HistoryWindow = cmp.Or(c.HistoryWindow, DefaultHistoryWindow)
	c.MeshInterval = cmp.Or(c.MeshInterval, DefaultMeshInterval)
	c.MeshBudget = cmp.Or(c.MeshBudget, DefaultMeshBudget)
	c.DecisionTTL = cmp.Or(c.DecisionTTL, DecisionTTLIntervals*c.RecheckInterval+c.ResultTimeout)
	c.EpochPoll = cmp.Or(c.EpochPoll, DefaultEpochPoll)
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// checkFunc rechecks one target under a term and returns the decision it wrote.
type checkFunc func(ctx context.Context, term *Term, t Target) (placement.Decision, error)

// dueScanFunc returns the stored next recheck time of the apps of the shards want marks, read once per term.
type dueScanFunc func(ctx context.Context, want []bool) (map[string]time.Time, error)

// Scheduler rechecks the targets of the shards it leads, driven by a timer heap (dispatch.go); it does the
// fleet-wide work (mesh, smart runner) while it holds the single lease Config.LeaseName.
type Scheduler struct {
	cfg     Config
	log     *slog.Logger
	lead    *leadership
	sem     chan struct{}
	check   checkFunc   // the recheck; tests replace it
	dueScan dueScanFunc // may be nil
	metrics *Metrics
	deps    *recheckDeps
	seq     atomic.Int64 // recheck sequence, part of job ids
	// adds counts AddTarget and RemoveTarget calls: a source's listing read before one must not undo it
	// (setTargets).
	adds atomic.Int64
	// decisions deletes the decision of a target that was removed (nil: decisions are left alone, as in the
	// loop tests, which have no store).
	decisions decisionDeleter

	mu      sync.Mutex
	ctx     context.Context // Run's context; nil before Run
	epoch   time.Time       // what the targets' stamps count from
	targets map[string]*targetState
	// removedAt holds, by app, the source and adds count of each RemoveTarget a listing of that source may
	// not have seen yet (setTargets).
	removedAt map[string]removal
	listGen   uint16         // the last listing's generation (listing)
	wg        sync.WaitGroup // rechecks in flight

	// qmu guards the heap of due targets, each target's queue fields and the shards' terms (dispatch.go).
	qmu      sync.Mutex
	queue    dueHeap
	shards   []*shard
	wake     chan struct{} // wakes the dispatcher when the first due target changed
	parked   atomic.Bool   // the dispatcher waits (tests)
	armed    atomic.Bool   // ... on a timer
	inflight atomic.Int64  // rechecks running
	members  atomic.Int64  // schedulers of the fleet as last counted
	termSeq  atomic.Int64  // Term.Seq of the shard terms

	flightMu sync.Mutex
	flights  map[string]*flight // result key -> its measurement in progress

	registry dirRegistry // where config dirs' smart applications go; nil: none (they are skipped)
	dirMu    sync.Mutex
	dirFiles map[string]map[string]ConfigFile // config dir -> path -> the latest load's view

	// lostCh is closed (and replaced) when Redis is found to have lost its data: the sources read again.
	lostCh chan struct{}
}

// removal is one RemoveTarget: of which source, at which Scheduler.adds count.
type removal struct {
	source string
	seq    int64
}

// targetState is a target and its recheck state.
type targetState struct {
	mu          sync.Mutex
	t           packedTarget
	added       stamp // when AddTarget first saw it
	addSeq      int64 // the Scheduler.adds count of the last AddTarget that set t (0: set by a listing)
	term        int64 // Seq of the term next was computed in
	next        stamp // next recheck in that term (noStamp: none)
	lastChecked stamp
	lastErr     string
	checks      uint32 // rechecks run (saturated: 4 billion is 40,000 years of 5-minute rechecks)
	failures    uint8  // consecutive failed rechecks (saturated): the next one comes after recheckRetry(failures)
	urgent      bool   // recheck at once, even in a new term: set when Redis lost its data, cleared by a check

	// Guarded by Scheduler.qmu:
	kicked  bool // recheck at once (changed), as soon as its shard is led and no recheck of it runs
	removed bool
	shard   uint16   // shardOf(app) (MaxShards fits)
	listed  uint16   // guarded by Scheduler.mu: the generation of the last listing that named it (listing)
	hidx    int32    // index in the heap of due targets, -1 when not in it
	at      stamp    // due time while in the heap
	run     *running // the recheck in flight, nil when none
}

// The fields above are ordered and sized to keep a targetState at 160 bytes, a size class of Go's allocator
// (TestTargetStateSize): a million targets hold a million of them.

func (s *Scheduler) newTargetState(t Target, added time.Time, addSeq int64) *targetState {
	return &targetState{t: packTarget(t), added: s.stamp(added), addSeq: addSeq, next: noStamp, lastChecked: noStamp, hidx: -1}
}

// stamp is a time held by a target, in nanoseconds since the Scheduler's epoch: 8 bytes where a time.Time takes
// 24, for the four times a target holds (a million targets: 64 MB less). Differences of stamps follow the
// monotonic clock, as those of the times they came from.
type stamp int64

// noStamp stands for the zero time.
const noStamp stamp = math.MinInt64

// stamp returns t as a stamp.
func (s *Scheduler) stamp(t time.Time) stamp {
	if t.IsZero() {
		return noStamp
	}
	return stamp(max(t.Sub(s.epoch), time.Duration(noStamp+1)))
}

// time returns the time of stamp v.
func (s *Scheduler) time(v stamp) time.Time {
	if v == noStamp {
		return time.Time{}
	}
	return s.epoch.Add(time.Duration(v))
}

// New returns a scheduler that rechecks targets on b with the triangulation engine; metrics may be nil.
func New(cfg Config, b Backend, m *Metrics) (*Scheduler, error) {
	if cfg.Shards < 0 || cfg.Shards > MaxShards {
		return nil, fmt.Errorf("scheduler: config: Shards %d: want 1 to %d (0: the default %d)", cfg.Shards, MaxShards, DefaultShards)
	}
	s := newScheduler(cfg, b, m)
	ecfg := triangulate.ProductionConfig(nil)
	if s.cfg.Engine != nil {
		ecfg = *s.cfg.Engine
	}
	pcfg := triangulate.DefaultPlannerConfig()
	pcfg.Engine = ecfg
	if s.cfg.Planner != nil {
		pcfg = *s.cfg.Planner
	}
	if sc := s.cfg.HostnameScheme; sc != "" && sc != "http" && sc != "https" {
		return nil, fmt.Errorf("scheduler: config: HostnameScheme %q: want http, https or empty", sc)
	}
	if s.cfg.HistoryRounds < 1 || s.cfg.HistoryWindow < 0 {
		return nil, fmt.Errorf("scheduler: config: history window of %d rounds, %v: want at least 1 round and a positive duration",
			s.cfg.HistoryRounds, s.cfg.HistoryWindow)
	}
	if min := s.cfg.RecheckInterval + s.cfg.ResultTimeout; s.cfg.DecisionTTL <= min {
		return nil, fmt.Errorf("scheduler: config: DecisionTTL %v: must exceed RecheckInterval + ResultTimeout (%v), or decisions expire between rechecks",
			s.cfg.DecisionTTL, min)
	}
	if _, err := triangulate.NewEngine(ecfg); err != nil {
		return nil, fmt.Errorf("scheduler: engine config: %w", err)
	}
	if _, err := triangulate.NewPlanner(pcfg); err != nil {
		return nil, fmt.Errorf("scheduler: planner config: %w", err)
	}
	lookup := geo.LookupPoP
	if s.cfg.PoPs != nil {
		byCode := make(map[string]geo.PoP, len(s.cfg.PoPs))
		for _, p := range s.cfg.PoPs {
			byCode[p.Code] = p
		}
		lookup = func(c string) (geo.PoP, bool) { p, ok := byCode[c]; return p, ok }
	}
	s.deps = &recheckDeps{backend: b, pops: lookup, regions: geo.LookupRegion,
		switchAbsMs: ecfg.SwitchAbsMs, switchRel: ecfg.SwitchRel, ecfg: ecfg}
	s.deps.pool = newWorkerPool(2*runtime.GOMAXPROCS(0), func() *workers {
		e, _ := triangulate.NewEngine(ecfg) // validated above
		p, _ := triangulate.NewPlanner(pcfg)
		return &workers{engine: e, planner: p}
	})
	if mb, ok := b.(MeshBackend); ok && s.cfg.MeshInterval > 0 {
		mesh, err := newMeshState(s.cfg, mb, m)
		if err != nil {
			return nil, err
		}
		s.deps.mesh = mesh
	}
	s.check = s.recheck
	s.dueScan = b.NextRechecks
	if r, ok := b.(dirRegistry); ok {
		s.registry = r
	}
	if dd, ok := b.(decisionDeleter); ok {
		s.decisions = dd
	}
	return s, nil
}

// decisionDeleter deletes an application's decision and tells the routers (storage.Store.DeleteDecision).
type decisionDeleter interface {
	DeleteDecision(ctx context.Context, app string) error
}

// forgetTimeout bounds the wait for removed targets' rechecks to stop and the deletion of their decisions.
const forgetTimeout = 30 * time.Second

// forget deletes the decisions of removed targets, each once its recheck has stopped: a recheck in flight would
// otherwise write the decision again after the delete, and routers would keep routing a deleted application.
// DeleteDecision publishes the app, so routers drop it at their next (debounced) reload.
func (s *Scheduler) forget(removed []*targetState) {
	if s.decisions == nil || len(removed) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), forgetTimeout)
	defer cancel()
	for _, st := range removed {
		s.qmu.Lock()
		run := st.run
		s.qmu.Unlock()
		if run != nil {
			select {
			case <-run.done:
			case <-ctx.Done():
			}
		}
		st.mu.Lock()
		app := st.t.app
		st.mu.Unlock()
		if err := s.decisions.DeleteDecision(ctx, app); err != nil {
			s.log.Warn("scheduler: deleting the decision of a removed app", "app", app, "err", err)
			continue
		}
		if ed, ok := s.decisions.(interface {
			DeleteExplanation(ctx context.Context, app string) error
		}); ok {
			if err := ed.DeleteExplanation(ctx, app); err != nil {
				s.log.Warn("scheduler: deleting the explanation of a removed app (it expires with the decision's TTL)", "app", app, "err", err)
			}
		}
		s.log.Info("scheduler: app removed; decision deleted", "app", app)
	}
}

// newScheduler builds the recheck machinery (heap, shards, leases) without the recheck (tests set check).
func newScheduler(cfg Config, leaser Leaser, m *Metrics) *Scheduler {
	cfg.fill()
	s := &Scheduler{
		cfg:      cfg,
		epoch:    cfg.Clock.Now(),
		log:      cfg.Logger.With("component", "scheduler", "scheduler", cfg.Name),
		sem:      make(chan struct{}, cfg.Concurrency),
		metrics:  m,
		targets:  map[string]*targetState{},
		wake:     make(chan struct{}, 1),
		flights:  map[string]*flight{},
		dirFiles: map[string]map[string]ConfigFile{},
		lostCh:   make(chan struct{}),
	}
	s.lead = newLeadership(leaser, cfg.LeaseName, cfg.Name, cfg.LeaseTTL, cfg.Clock, s.log)
	s.shards = newShards(cfg.LeaseName, cfg.Shards)
	s.lead.onTerm = func(leading bool, token int64) {
		if m != nil {
			m.setLeader(leading, token)
		}
	}
	return s
}

// Run leads shards and rechecks their targets, and competes for the fleet-wide lease, until ctx is done; then
// it stops every recheck and releases its leases.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil {
		s.mu.Unlock()
		return errors.New("scheduler: Run called twice")
	}
	s.ctx = ctx
	s.mu.Unlock()

	var lw sync.WaitGroup
	lw.Go(func() { s.lead.run(ctx) })
	lw.Go(func() { s.dispatch(ctx) })
	lw.Go(func() { s.runShards(ctx) })
	if m := s.meshState(); m != nil {
		lw.Go(func() { s.runMesh(ctx, m) })
	}
	if s.deps != nil {
		if e, ok := s.deps.backend.(epochReader); ok {
			lw.Go(func() { s.watchEpoch(ctx, e.Epoch) })
		}
	}
	<-ctx.Done()
	lw.Wait()
	s.wg.Wait()
	if s.deps != nil {
		s.deps.closeBatch()
	}
	return nil
}

// Leading reports whether this scheduler holds the fleet-wide lease now (it then runs the mesh and the smart
// runner), and the fence (lease name and token) to write under. The rechecks follow the shard leases (Shards).
func (s *Scheduler) Leading() (bool, storage.Fence) {
	t, _ := s.lead.current()
	if t == nil || t.Ctx.Err() != nil {
		return false, storage.Fence{}
	}
	return true, t.Fence()
}

// SetTargets replaces the targets of one source ("api", "dir:/etc/vantage/apps") with ts: new targets start
// their rechecks, removed ones stop, changed ones are rechecked at once. An app listed by two sources keeps the
// first one's target. The decisions of removed targets are deleted (see forget).
func (s *Scheduler) SetTargets(source string, ts []Target) { s.setTargets(source, ts, math.MaxInt64) }

// setTargets is SetTargets for a listing read after the first readAfter AddTarget and RemoveTarget calls
// (s.adds before the read): a target that a later AddTarget set (an application registered through the API
// while the listing was read) is neither removed nor changed back by it, and one a later RemoveTarget removed
// is not added back. Without that, SyncAPIApps, reading the registry while
// applications were being registered, removed a just-registered application and deleted its decision; the
// next read added it again, and the new target's probe round raced the removed one's abandoned round on the
// same result key (each PoP keeps one latest result per key), so its first decision waited out ResultTimeout.
func (s *Scheduler) setTargets(source string, ts []Target, readAfter int64) {
	s.mu.Lock()
	removed := s.setTargetsLocked(source, ts, readAfter)
	s.mu.Unlock()
	s.forget(removed)
}

// setTargetsLocked is setTargets' work under s.mu; it returns the removed targets.
func (s *Scheduler) setTargetsLocked(source string, ts []Target, readAfter int64) (removed []*targetState) {
	l := s.beginListingLocked(source, readAfter)
	for _, t := range ts {
		s.listLocked(l, t)
	}
	return s.endListingLocked(l)
}

// A listing applies a source's whole set of targets as setTargets does, but a page at a time (listPage), so
// that a reader of a registry of a million applications never holds it whole (bench/FLEET.md: the full read
// held ~300 MB at a million, more than the targets themselves). Each target a page names is marked with the
// listing's generation; endListing removes the source's targets it did not mark. Between pages the scheduler
// is not locked: AddTarget and RemoveTarget meanwhile are handled as in setTargets (readAfter). One source has
// at most one listing in progress (its sync loop's).
type listing struct {
	source    string
	readAfter int64
	gen       uint16
}

// beginListing starts a listing of source read after the first readAfter AddTarget and RemoveTarget calls.
func (s *Scheduler) beginListing(source string, readAfter int64) *listing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beginListingLocked(source, readAfter)
}

func (s *Scheduler) beginListingLocked(source string, readAfter int64) *listing {
	s.listGen++
	return &listing{source: source, readAfter: readAfter, gen: s.listGen}
}

// listPage applies one page of l's targets.
func (s *Scheduler) listPage(l *listing, ts []Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		s.listLocked(l, t)
	}
}

// listLocked adds or changes t and marks it listed by l. The caller holds s.mu.
func (s *Scheduler) listLocked(l *listing, t Target) {
	if st := s.upsertLocked(l.source, t, l.readAfter); st != nil {
		st.listed = l.gen
	}
}

// endListing removes the targets of l's source that l did not name (and deletes their decisions).
func (s *Scheduler) endListing(l *listing) {
	s.mu.Lock()
	removed := s.endListingLocked(l)
	s.mu.Unlock()
	s.forget(removed)
}

func (s *Scheduler) endListingLocked(l *listing) (removed []*targetState) {
	for app, r := range s.removedAt {
		if r.source == l.source && r.seq <= l.readAfter { // read after the removal: this listing speaks for the app
			delete(s.removedAt, app)
		}
	}
	for _, st := range s.targets {
		if st.listed != l.gen && s.listedByLocked(st, l.source, l.readAfter) {
			s.removeLocked(st)
			removed = append(removed, st)
		}
	}
	if s.metrics != nil {
		s.metrics.targets.Set(float64(len(s.targets)))
	}
	return removed
}

// updateTargets applies a listing of source's apps names, read after the first readAfter AddTarget and
// RemoveTarget calls, as setTargets applies a whole one: a named app in found is added or changed, one not in
// found is removed (and its decision deleted); apps not named are left alone.
func (s *Scheduler) updateTargets(source string, names []string, found map[string]Target, readAfter int64) {
	var removed []*targetState
	s.mu.Lock()
	for _, app := range names {
		if t, ok := found[app]; ok {
			s.upsertLocked(source, t, readAfter)
		} else if st, ok := s.targets[app]; ok && s.listedByLocked(st, source, readAfter) {
			s.removeLocked(st)
			removed = append(removed, st)
		}
		if r, ok := s.removedAt[app]; ok && r.source == source && r.seq <= readAfter {
			delete(s.removedAt, app)
		}
	}
	if s.metrics != nil {
		s.metrics.targets.Set(float64(len(s.targets)))
	}
	s.mu.Unlock()
	s.forget(removed)
}

// upsertLocked adds or changes target t of source from a listing read after readAfter (see setTargets) and
// returns its state; nil when the listing may not set it (another source's, or set or removed since). The
// caller holds s.mu.
func (s *Scheduler) upsertLocked(source string, t Target, readAfter int64) *targetState {
	t.Source = source
	st, ok := s.targets[t.App]
	if !ok {
		if r, ok := s.removedAt[t.App]; ok && r.source == source && r.seq > readAfter {
			return nil // removed while the listing was read
		}
		st = s.newTargetState(t, s.cfg.Clock.Now(), 0)
		s.addLocked(st)
		return st
	}
	st.mu.Lock()
	if st.t.sourceName() != source || st.addSeq > readAfter {
		st.mu.Unlock()
		return nil
	}
	pt := packTarget(t)
	changed := st.t != pt
	st.t = pt
	st.mu.Unlock()
	if changed {
		s.kick(st)
	}
	return st
}

// listedByLocked reports whether a listing of source read after readAfter speaks for st: st is source's and
// no later AddTarget set it.
func (s *Scheduler) listedByLocked(st *targetState, source string, readAfter int64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.t.sourceName() == source && st.addSeq <= readAfter
}

// AddTarget adds or replaces one target of source and rechecks it at once.
func (s *Scheduler) AddTarget(source string, t Target) {
	s.mu.Lock()
	st, ok := s.targets[t.App]
	t.Source = source
	seq := s.adds.Add(1)
	delete(s.removedAt, t.App)
	if !ok {
		s.addLocked(s.newTargetState(t, s.cfg.Clock.Now(), seq))
		if s.metrics != nil {
			s.metrics.targets.Set(float64(len(s.targets)))
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	st.mu.Lock()
	st.t, st.addSeq = packTarget(t), seq
	st.mu.Unlock()
	s.kick(st)
}

// addLocked holds a new target and, when its shard is led, queues it at its due time (at once: it was added
// during the term). The caller holds s.mu.
func (s *Scheduler) addLocked(st *targetState) {
	app := st.t.app
	s.targets[app] = st
	s.qmu.Lock()
	defer s.qmu.Unlock()
	st.shard = shardOf(app, len(s.shards))
	if sh := s.shards[st.shard]; sh.term != nil {
		s.pushLocked(st, s.dueLocked(sh.term, st, sh.lateDue))
	}
}

// removeLocked drops a target: out of the heap, its recheck in flight cancelled. The caller holds s.mu.
func (s *Scheduler) removeLocked(st *targetState) {
	st.mu.Lock()
	app := st.t.app
	st.mu.Unlock()
	delete(s.targets, app)
	s.qmu.Lock()
	defer s.qmu.Unlock()
	st.removed = true
	s.unqueueLocked(st)
	if st.run != nil {
		st.run.cancel()
	}
}

// Target returns the target of app and its recheck state.
func (s *Scheduler) Target(app string) (TargetStatus, bool) {
	s.mu.Lock()
	st, ok := s.targets[app]
	s.mu.Unlock()
	if !ok {
		return TargetStatus{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return TargetStatus{Target: st.t.unpack(), LastChecked: s.time(st.lastChecked), LastError: st.lastErr, Checks: int64(st.checks)}, true
}

// TargetStatus is a target with its latest recheck's outcome.
type TargetStatus struct {
	Target
	LastChecked time.Time `json:"last_checked,omitzero"` // when this scheduler last finished a recheck
	LastError   string    `json:"last_error,omitempty"`
	Checks      int64     `json:"checks"` // rechecks run by this scheduler
}

// Targets returns every target, sorted by app.
func (s *Scheduler) Targets() []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Target, 0, len(s.targets))
	for _, app := range slices.Sorted(maps.Keys(s.targets)) {
		st := s.targets[app]
		st.mu.Lock()
		out = append(out, st.t.unpack())
		st.mu.Unlock()
	}
	return out
}

// offset returns the deterministic start offset of app in [0, spread): a hash of the name, so restarts and
// standbys agree and targets do not start in a herd.
func offset(app string, spread time.Duration) time.Duration {
	if spread <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(app))
	return time.Duration(h.Sum64() % uint64(spread))
}

// jittered returns d ± jitter·d.
func jittered(d time.Duration, jitter float64) time.Duration {
	if jitter <= 0 {
		return d
	}
	return d + time.Duration((rand.Float64()*2-1)*jitter*float64(d))
}

// runCheck runs one recheck under term, turning a panic into a failed check. cctx is the term's context or
// a child cancelled when the target is removed: a removed target's recheck must not write its decision.
func (s *Scheduler) runCheck(cctx context.Context, term *Term, st *targetState) {
	st.mu.Lock()
	t := st.t.unpack()
	st.mu.Unlock()
	start := s.cfg.Clock.Now()
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("scheduler: recheck of app %q panicked: %v\n%s", t.App, r, debug.Stack())
			}
		}()
		_, err = s.check(cctx, term, t)
	}()
	end := s.cfg.Clock.Now()
	if s.metrics != nil {
		s.metrics.observeCheck(err, end.Sub(start))
	}
	if err != nil && cctx.Err() == nil {
		s.log.Warn("scheduler: recheck failed", "app", t.App, "target", t.Target, "err", err)
	}
	st.mu.Lock()
	st.checks = min(st.checks+1, math.MaxUint32-1)
	st.lastChecked = s.stamp(end)
	st.lastErr = ""
	if err != nil {
		st.lastErr = err.Error()
	}
	st.term = term.Seq
	st.next = s.stamp(end.Add(jittered(s.cfg.RecheckInterval, s.cfg.Jitter)))
	if err != nil && cctx.Err() == nil {
		st.failures = min(st.failures+1, math.MaxUint8-1)
		st.next = s.stamp(end.Add(min(recheckRetry(int(st.failures)), s.cfg.RecheckInterval)))
	} else {
		st.failures = 0
	}
	if term.Ctx.Err() == nil { // a check cut short by the lease's loss is not the urgent one
		st.urgent = false
	}
	st.mu.Unlock()
}

// Retries of a failed recheck (no PoP up, Redis unreachable, no result in time): the first after
// RetryMin, each next one twice as late, never later than the recheck interval. A target whose recheck
// failed (e.g. right after Redis lost its data, before the fleet's next heartbeat) is decided within
// seconds of the cause going away, not an interval later.
const RetryMin = 5 * time.Second

// recheckRetry returns the wait before the next recheck after n consecutive failures (n >= 1).
func recheckRetry(n int) time.Duration {
	return RetryMin << min(n-1, 10)
}

// epochReader reads the identity of Redis's data set (storage.Store.Epoch).
type epochReader interface {
	Epoch(ctx context.Context) (string, error)
}

// watchEpoch reads the epoch every Config.EpochPoll until ctx is done, and calls dataLost when it changes.
func (s *Scheduler) watchEpoch(ctx context.Context, epoch func(context.Context) (string, error)) {
	var last string
	failing := false
	for {
		ectx, cancel := context.WithTimeout(ctx, max(s.cfg.EpochPoll, time.Second))
		e, err := epoch(ectx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing { // an outage logs once
				s.log.Warn("scheduler: reading the Redis epoch", "err", err)
			}
			failing = true
		case last == "":
			last, failing = e, false
		case e != last:
			s.log.Warn("scheduler: Redis lost its data (new epoch): rechecking every target at once and reading the config dirs again",
				"epoch", e, "previous", last)
			last, failing = e, false
			s.dataLost()
		default:
			failing = false
		}
		t := s.cfg.Clock.NewTimer(s.cfg.EpochPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// dataLost reacts to a Redis that lost its data (decisions, registry, lease): every target is rechecked at
// once — now, or as soon as this scheduler leads again, since the lease went with the data — instead of at its
// next due time, and the sources read their apps again (WatchDir re-registers its directory's).
func (s *Scheduler) dataLost() {
	if s.metrics != nil {
		s.metrics.redisDataLost.Inc()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.targets {
		st.mu.Lock()
		st.urgent = true
		st.mu.Unlock()
		s.kick(st)
	}
	close(s.lostCh)
	s.lostCh = make(chan struct{})
}

// dataLostSignal returns a channel closed the next time Redis is found to have lost its data.
func (s *Scheduler) dataLostSignal() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostCh
}

// RemoveTarget stops rechecking app if source holds it and deletes its decision (see forget), and reports
// whether it did.
func (s *Scheduler) RemoveTarget(source, app string) bool {
	s.mu.Lock()
	st, ok := s.targets[app]
	if ok {
		st.mu.Lock()
		ok = st.t.sourceName() == source
		st.mu.Unlock()
	}
	if !ok {
		s.mu.Unlock()
		return false
	}
	s.removeLocked(st)
	if s.removedAt == nil {
		s.removedAt = map[string]removal{}
	}
	s.removedAt[app] = removal{source, s.adds.Add(1)}
	if s.metrics != nil {
		s.metrics.targets.Set(float64(len(s.targets)))
	}
	s.mu.Unlock()
	s.forget([]*targetState{st})
	return true
}
