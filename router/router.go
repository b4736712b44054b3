// Package router answers per request where an application's request should run, from an in-memory snapshot
// of the placement decisions in Redis, and forwards requests there (the HTTP front).
package router

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// Source is what the router reads from Redis. *storage.Store satisfies it.
type Source interface {
	// ScanDecisions calls fn for every stored decision.
	ScanDecisions(ctx context.Context, fn func(placement.Decision) error) error
	// WatchDecisions blocks until ctx is done, calling fn for every decision-change notification.
	WatchDecisions(ctx context.Context, fn func(app string)) error
	// Fleet returns every known PoP's state (up, drained), sorted by PoP.
	Fleet(ctx context.Context) ([]storage.PoPState, error)
}

var _ Source = (*storage.Store)(nil)

// ErrRunning is returned by Run when the router is already running.
var ErrRunning = errors.New("router: already running")

// Router routes requests from an immutable snapshot of the decisions, swapped atomically by Run's reloads.
// Route never waits on Redis. All methods are safe for concurrent use.
type Router struct {
	cfg  Config
	src  Source
	log  *slog.Logger
	now  func() time.Time
	seed maphash.Seed // application fingerprints: fixed for the router's lifetime, random per process

	checkSeed maphash.Seed // a second hash of names, to tell duplicates from fingerprint collisions at build

	snap  atomic.Pointer[snapshot]
	pops  atomic.Pointer[popTable]
	popMu sync.Mutex // serialises interning (copy-on-write of pops)
	fleet atomic.Pointer[fleetView]
	hint  atomic.Pointer[ingressHint] // the usual ingress PoP: Route skips the map lookup for it

	clockMs   atomic.Int64 // coarse clock (Unix ms), advanced every ClockResolution by Run
	contactMs atomic.Int64 // last successful reload, i.e. full decision scan (Unix ms); 0: never
	kickMs    atomic.Int64 // last decision-change notification or reload request (Unix ms)
	running   atomic.Bool
	reloadMu  sync.Mutex // one reload at a time
	notify    chan struct{}

	// Precomputed from cfg.
	baselineThr uint64 // request ids with idHash>>11 below this are the baseline
	spreadEpsUs uint64
	failExtraUs uint64
	spreadCount uint64 // per-window count above which an application is spread; 0: spreading disabled
	windowMs    int64
	maxAgeMs    int64
	useCapacity bool

	capacity [MaxPoPs]uint64 // per PoP index: capacity per rate window, 0 unknown; written before pops publishes
	popRate  [MaxPoPs]uint64 // per PoP index: rate words of what this router sent there

	m *metrics
}

// ingressHint is the ingress PoP of a front (or the first of Config.PoPs) with its index.
type ingressHint struct {
	name string
	idx  uint16
}

// fleetView is the fleet state by PoP index, replaced whole by each refresh.
type fleetView struct {
	known bool   // a fleet with at least one PoP was loaded
	avail []bool // by PoP index: up and not drained
}

// available reports whether requests may be sent to the PoP. Until a fleet with at least one PoP has been
// loaded every PoP is available (no fleet information is not evidence of an outage); after that a PoP absent
// from the fleet (no heartbeat) is unavailable.
func (v *fleetView) available(idx uint16) bool {
	if v == nil || !v.known {
		return true
	}
	return int(idx) < len(v.avail) && v.avail[idx]
}

// New returns a Router reading from src. It loads nothing: Run (or Reload) does.
func New(src Source, cfg Config) (*Router, error) {
	if src == nil {
		return nil, errors.New("router: nil Source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, src: src, log: cfg.Logger, now: cfg.Now, seed: maphash.MakeSeed(), checkSeed: maphash.MakeSeed(), notify: make(chan struct{}, 1)}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.pops.Store(&popTable{index: map[string]uint16{}})
	r.baselineThr = uint64(cfg.BaselineFraction * (1 << 53))
	r.spreadEpsUs = uint64(math.Round(cfg.SpreadEpsilonMs * 1000))
	r.failExtraUs = uint64(math.Round(cfg.FailoverExtraMs * 1000))
	r.windowMs = max(cfg.RateWindow.Milliseconds(), 1)
	r.maxAgeMs = cfg.MaxAge.Milliseconds()
	if cfg.SpreadAboveRPS > 0 {
		r.spreadCount = uint64(math.Ceil(cfg.SpreadAboveRPS * float64(r.windowMs) / 1000))
	}
	r.useCapacity = len(cfg.PoPCapacityRPS) > 0
	r.clockMs.Store(r.now().UnixMilli())
	r.m = newMetrics(r)
	if cfg.Registerer != nil {
		if err := r.m.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	for i, p := range cfg.PoPs {
		idx, err := r.intern(p)
		if err != nil {
			return nil, fmt.Errorf("router: config PoPs: %w", err)
		}
		if i == 0 {
			r.hint.Store(&ingressHint{name: p, idx: idx})
		}
	}
	return r, nil
}

// intern returns code's PoP index, adding it to the table when new.
func (r *Router) intern(code string) (uint16, error) {
	if idx, ok := r.pops.Load().index[code]; ok {
		return idx, nil
	}
	if !validPoP(code) {
		return 0, fmt.Errorf("PoP code %.40q: want 1 to 16 letters, digits, '-' or '_'", code)
	}
	r.popMu.Lock()
	defer r.popMu.Unlock()
	t := r.pops.Load()
	if idx, ok := t.index[code]; ok {
		return idx, nil
	}
	if len(t.names) >= MaxPoPs {
		return 0, fmt.Errorf("PoP code %q: more than %d PoPs", code, MaxPoPs)
	}
	idx := uint16(len(t.names))
	if c, ok := r.cfg.PoPCapacityRPS[code]; ok {
		r.capacity[idx] = max(uint64(c*float64(r.windowMs)/1000), 1)
	}
	r.pops.Store(t.with(code))
	return idx, nil
}

// inFailoverBudget reports whether a candidate RTT (µs) is within the failover budget of the best RTT (µs).
func (r *Router) inFailoverBudget(rtt, best uint64) bool {
	return rtt <= best+r.failExtraUs || float64(rtt) <= float64(best)*r.cfg.FailoverRatio
}

// Route says where to run one request of app that entered at ingressPoP. requestID selects the baseline
// and the spreading share deterministically. It reads only memory (no Redis, no locks, no allocations once
// ingressPoP is known to the router: configured in Config.PoPs or a Front, seen in a decision or in the fleet).
func (r *Router) Route(app, ingressPoP, requestID string, kind Kind) Result {
	res := r.route(r.snap.Load(), app, ingressPoP, requestID, kind)
	r.m.routes[res.Reason].inc(requestID)
	return res
}

// rateSampleMask: one request in rateSampleMask+1 (by request-id hash) updates the application's rate word,
// which counts in units of rateSampleMask+1 requests; the others only read it. Writes to one word from every
// core would make a hot application's requests queue on that cache line.
const rateSampleMask = 7

func (r *Router) route(s *snapshot, app, ingress, requestID string, kind Kind) Result {
	if kind != KindFetch {
		return r.local(ingress, ReasonNotFetch)
	}
	if s == nil {
		return r.local(ingress, ReasonNoSnapshot)
	}
	now := r.clockMs.Load()
	if now-r.contactMs.Load() > r.maxAgeMs {
		return r.local(ingress, ReasonStale)
	}
	c, ok := s.lookup(fingerprint(r.seed, app))
	if !ok {
		return r.local(ingress, ReasonNoDecision)
	}
	meta := s.cells[c+cellMeta]
	if s.expired(meta, now) {
		return r.local(ingress, ReasonStaleDecision)
	}
	switch class(meta) {
	case classStatus:
		return r.local(ingress, ReasonStatus)
	case classVerdict:
		return r.local(ingress, ReasonVerdict)
	case classNoBest:
		return r.local(ingress, ReasonNoDecision)
	}
	pt := r.pops.Load() // loaded after s: it holds every index s uses
	in, inOK := r.ingressIndex(pt, ingress)
	nc := candCount(meta)
	best := uint16(meta>>metaCandShift) & candPoPMask
	if inOK && best == in {
		return Result{ExecPoP: ingress, Header: pt.local[in], Reason: ReasonIngressBest}
	}
	h := idHash(requestID)
	epoch := uint64(now / r.windowMs)
	hot := false
	if r.spreadCount > 0 && nc > 1 {
		var est uint64
		if h&rateSampleMask == 0 {
			est = rateHit(s.rateWord(c), epoch)
		} else {
			est = rateRead(atomic.LoadUint64(s.rateWord(c)), epoch)
		}
		hot = est*(rateSampleMask+1) > r.spreadCount
	}
	if h>>11 < r.baselineThr {
		return r.localIn(pt, in, inOK, ingress, ReasonBaseline)
	}
	fv := r.fleet.Load()
	if hot {
		if idx, ok := r.spread(fv, s, c, nc, h, epoch); ok {
			reason := ReasonSpread
			if idx == best {
				reason = ReasonRemote
			}
			if inOK && idx == in {
				return Result{ExecPoP: ingress, Header: pt.local[in], Reason: reason}
			}
			return r.remote(pt, idx, epoch, reason)
		}
	}
	if fv.available(best) {
		return r.remote(pt, best, epoch, ReasonRemote)
	}
	for i := 1; i < nc; i++ {
		cd := s.cand(c, i)
		if cd&candFailover == 0 {
			continue
		}
		idx := cd & candPoPMask
		if inOK && idx == in {
			return Result{ExecPoP: ingress, Header: pt.local[in], Reason: ReasonFailover}
		}
		if fv.available(idx) {
			return r.remote(pt, idx, epoch, ReasonFailover)
		}
	}
	return r.localIn(pt, in, inOK, ingress, ReasonUnavailable)
}

// spread picks, deterministically from the request-id hash h, one of the available candidates within the
// spread epsilon, weighted by headroom when every one of them has a configured capacity (equal weights
// otherwise). It reports false when fewer than two candidates qualify.
func (r *Router) spread(fv *fleetView, s *snapshot, c uint64, nc int, h, epoch uint64) (uint16, bool) {
	var idx [maxCandidatesLimit]uint16
	var w [maxCandidatesLimit]uint64
	n := 0
	weighted := r.useCapacity
	for i := range nc {
		cd := s.cand(c, i)
		if cd&candSpread == 0 || !fv.available(cd&candPoPMask) {
			continue
		}
		idx[n] = cd & candPoPMask
		if cp := r.capacity[idx[n]]; cp == 0 {
			weighted = false
		} else if used := rateRead(atomic.LoadUint64(&r.popRate[idx[n]]), epoch); used < cp {
			w[n] = cp - used
		}
		n++
	}
	if n < 2 {
		return 0, false
	}
	var total uint64
	for i := range n {
		if !weighted {
			w[i] = 1
		}
		total += w[i]
	}
	if total == 0 { // every PoP at or above capacity: share equally rather than pile onto one
		for i := range n {
			w[i] = 1
		}
		total = uint64(n)
	}
	u, _ := bits.Mul64(fmix64(h^prime2), total) // uniform in [0, total) without a division
	for i := range n {
		if u < w[i] {
			return idx[i], true
		}
		u -= w[i]
	}
	return idx[n-1], true
}

// remote is the result for running at PoP idx, counting the request in the PoP's rate when capacities are
// configured.
func (r *Router) remote(pt *popTable, idx uint16, epoch uint64, reason Reason) Result {
	if r.useCapacity {
		rateHit(&r.popRate[idx], epoch)
	}
	return Result{ExecPoP: pt.names[idx], Header: pt.remote[idx], Reason: reason, Routed: true}
}

// ingressIndex returns the PoP index of ingress in pt.
func (r *Router) ingressIndex(pt *popTable, ingress string) (uint16, bool) {
	if h := r.hint.Load(); h != nil && h.name == ingress {
		return h.idx, true
	}
	idx, ok := pt.index[ingress]
	return idx, ok
}

// local is the result for running at the ingress.
func (r *Router) local(ingress string, reason Reason) Result {
	pt := r.pops.Load()
	in, ok := r.ingressIndex(pt, ingress)
	return r.localIn(pt, in, ok, ingress, reason)
}

func (r *Router) localIn(pt *popTable, in uint16, ok bool, ingress string, reason Reason) Result {
	if ok {
		return Result{ExecPoP: ingress, Header: pt.local[in], Reason: reason}
	}
	return Result{ExecPoP: ingress, Header: "local-" + ingress, Reason: reason} // unknown ingress: allocates
}
