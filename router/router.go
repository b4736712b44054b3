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
	"maps"
	"math"
	"math/bits"
	"slices"
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

	view atomic.Pointer[view] // the snapshot, the PoP table and the fleet view, published together
	gen  atomic.Uint64        // view publications (Generation)
	// popMu serialises publishing view, and guards ingress and fleetUp.
	popMu   sync.Mutex
	ingress string          // the usual ingress PoP (a front's, or Config.PoPs[0]); "" none
	fleetUp map[string]bool // the last fleet: PoP code -> up and not drained; nil: none loaded yet

	clockMs   atomic.Int64 // coarse clock (Unix ms), advanced every ClockResolution by Run
	contactMs atomic.Int64 // last successful reload, i.e. full decision scan (Unix ms); 0: never
	kickMs    atomic.Int64 // last decision-change notification or reload request (Unix ms)
	running   atomic.Bool
	reloadMu  sync.Mutex // one reload at a time
	notify    chan struct{}

	// Precomputed from cfg.
	baselineThr uint64 // request ids whose MurmurHash2 is below this are the baseline (baseline.go)
	spreadEpsUs uint64
	failExtraUs uint64
	spreadCount uint64 // per-window count above which an application is spread; 0: spreading disabled
	windowMs    int64
	maxAgeMs    int64
	useCapacity bool

	m *metrics
}

// view is what Route reads, published as one pointer so that the snapshot, the table its indexes refer to and
// the fleet view indexed by the same table are always consistent. pops holds every index snap and fleet use.
type view struct {
	snap  *snapshot // nil before the first load
	pops  *popTable
	fleet *fleetView // nil: no fleet loaded
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
	r.baselineThr = BaselineThreshold(cfg.BaselineFraction)
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
	t := newPopTable()
	for _, p := range cfg.PoPs {
		if _, err := t.add(r, p); err != nil {
			return nil, fmt.Errorf("router: config PoPs: %w", err)
		}
	}
	if len(cfg.PoPs) > 0 {
		r.ingress = cfg.PoPs[0]
		t.setHint(r.ingress)
	}
	r.view.Store(&view{pops: t})
	return r, nil
}

// snapshot returns the current snapshot (nil before the first load).
func (r *Router) snapshot() *snapshot { return r.view.Load().snap }

// freshPoPs returns a new unpublished table holding the PoPs in use outside the decisions: the configured ones,
// the ingress and the last fleet's, in that order (so that the configured ones always fit).
func (r *Router) freshPoPs() *popTable {
	r.popMu.Lock()
	defer r.popMu.Unlock()
	return r.freshPoPsLocked()
}

func (r *Router) freshPoPsLocked() *popTable {
	t := newPopTable()
	for _, p := range r.cfg.PoPs {
		t.add(r, p) // validated by New
	}
	t.add(r, r.ingress)
	for _, p := range slices.Sorted(maps.Keys(r.fleetUp)) {
		t.add(r, p) // a full table: setFleet logs the PoPs it cannot hold
	}
	t.setHint(r.ingress)
	return t
}

// storeSnapshot publishes s with its table (completed with the PoPs in use that arrived after its build: the
// fleet's, the ingress), the fleet view rebuilt for that table and the per-PoP rates carried over by name.
func (r *Router) storeSnapshot(s *snapshot) {
	r.popMu.Lock()
	defer r.popMu.Unlock()
	old := r.view.Load()
	t := s.pops
	if t == nil { // a snapshot built elsewhere than by a builder: only the PoPs in use outside decisions
		t = r.freshPoPsLocked()
	}
	missing := r.ingress != "" && !slices.Contains(t.names, r.ingress)
	for p := range r.fleetUp {
		_, ok := t.index[p]
		missing = missing || (!ok && validPoP(p))
	}
	if missing {
		t = t.clone()
		t.add(r, r.ingress)
		for _, p := range slices.Sorted(maps.Keys(r.fleetUp)) {
			t.add(r, p)
		}
		t.setHint(r.ingress)
	}
	carryPoPRates(old.pops, t)
	r.publishLocked(&view{snap: s, pops: t, fleet: r.fleetViewLocked(t)})
}

// fleetViewLocked builds the fleet view of the last fleet for table t (nil when no fleet was loaded).
func (r *Router) fleetViewLocked(t *popTable) *fleetView {
	if r.fleetUp == nil {
		return nil
	}
	v := &fleetView{avail: make([]bool, len(t.names))}
	for p, ok := range r.fleetUp {
		if idx, in := t.index[p]; in {
			v.avail[idx] = ok
			v.known = true
		}
	}
	return v
}

// setIngress makes code the usual ingress PoP (a front's): it stays in every table, and Route recognises it
// without a map lookup.
func (r *Router) setIngress(code string) error {
	r.popMu.Lock()
	defer r.popMu.Unlock()
	v := r.view.Load()
	t := v.pops.clone()
	if _, err := t.add(r, code); err != nil {
		return err
	}
	r.ingress = code
	t.setHint(code)
	r.publishLocked(&view{snap: v.snap, pops: t, fleet: v.fleet})
	return nil
}

// inFailoverBudget reports whether a candidate RTT (µs) is within the failover budget of the best RTT (µs).
func (r *Router) inFailoverBudget(rtt, best uint64) bool {
	return rtt <= best+r.failExtraUs || float64(rtt) <= float64(best)*r.cfg.FailoverRatio
}

// Route says where to run one request of app that entered at ingressPoP. requestID selects the baseline
// and the spreading share deterministically. It reads only memory (no Redis, no locks, no allocations once
// ingressPoP is known to the router: configured in Config.PoPs or a Front, seen in a decision or in the fleet).
func (r *Router) Route(app, ingressPoP, requestID string, kind Kind) (res Result) {
	v := r.view.Load()
	d := r.decide(v, app, ingressPoP, requestID, kind, false)
	r.m.routes[d.reason].inc(requestID)
	v.pops.spell(&res, ingressPoP, d)
	return res
}

// verdict is decide's answer before it is spelled as a Result: where (a PoP index) and why. It is 4 bytes and
// stays in registers through decide's layers; a Result (40 bytes) does not: the compiler keeps structs larger
// than 4 words in memory, and returning one through a layer copied it with 16-byte loads of what 8-byte stores
// had just written, which the CPU cannot forward from its store buffer (a stall of ~20 cycles per layer, most
// of Route's own time). Route and Place spell the verdict once (popTable.spell).
type verdict struct {
	idx    uint16 // the execution PoP when routed, else the ingress (when in the table)
	reason Reason
	at     verdictAt
}

// verdictAt says which PoP a verdict's index is.
type verdictAt uint8

const (
	atIngressUnknown verdictAt = iota // run at an ingress the table does not hold (idx unused)
	atIngress                         // run at the ingress, idx
	atRemote                          // routed to idx
)

// spell writes verdict d for a request that entered at ingress into res, a zero Result, field by field: a
// Result literal would be built in a temporary and copied, the copy stalling as above.
func (t *popTable) spell(res *Result, ingress string, d verdict) {
	res.Reason = d.reason
	switch d.at {
	case atRemote:
		res.ExecPoP, res.Header, res.Routed = t.names[d.idx], t.remote[d.idx], true
	case atIngress:
		res.ExecPoP, res.Header = ingress, t.local[d.idx]
	default:
		res.ExecPoP, res.Header = ingress, "local-"+ingress // unknown ingress: allocates
	}
}

// rateSampleMask: one request in rateSampleMask+1 (by request-id hash) updates the application's rate word,
// which counts in units of rateSampleMask+1 requests; the others only read it. Writes to one word from every
// core would make a hot application's requests queue on that cache line.
const rateSampleMask = 7

// decide is Route's rule. With table set it answers for a proxy's table (Place): no baseline, no spreading and
// no rate counted, whatever requestID.
func (r *Router) decide(v *view, app, ingress, requestID string, kind Kind, table bool) verdict {
	s, pt := v.snap, v.pops
	if kind != KindFetch {
		return r.local(pt, ingress, ReasonNotFetch)
	}
	if s == nil {
		return r.local(pt, ingress, ReasonNoSnapshot)
	}
	now := r.clockMs.Load()
	if now-r.contactMs.Load() > r.maxAgeMs {
		return r.local(pt, ingress, ReasonStale)
	}
	// The home slot's load is issued first: under uniform popularity over a million applications it usually
	// misses the caches (~40 ns). What does not depend on it comes next, before the first branch on it, so that
	// it runs while the cache line is on its way and a mispredicted probe (40 % of applications are not in
	// their home slot) does not throw it away to run it again after the miss.
	fp := fingerprint(r.seed, app)
	i := home(fp, s.n)
	w := atomic.LoadUint64(&s.slots[i])
	h, baseline := idHash(requestID), r.inBaseline(requestID)
	in, inOK := r.ingressIndex(pt, ingress)
	epoch := uint64(now / r.windowMs)
	c, slot, ok := s.probe(i, w, s.tagOf(fp))
	if !ok {
		return localIn(in, inOK, ReasonNoDecision)
	}
	if s.expired(slot, now) {
		return localIn(in, inOK, ReasonStaleDecision)
	}
	rec := s.record(c, slot)
	meta := rec.meta
	switch class(meta) {
	case classStatus:
		return localIn(in, inOK, ReasonStatus)
	case classVerdict:
		return localIn(in, inOK, ReasonVerdict)
	case classNoBest:
		return localIn(in, inOK, ReasonNoDecision)
	}
	nc := candCount(meta)
	best := uint16(meta>>metaCandShift) & candPoPMask
	if inOK && best == in {
		return verdict{in, ReasonIngressBest, atIngress}
	}
	if table {
		return r.failover(pt, v.fleet, rec, nc, best, in, inOK, epoch, false)
	}
	hot := false
	if r.spreadCount > 0 && nc > 1 {
		// A clear hot bit means the estimate is at most the threshold (snapshot): only counted requests and
		// hot applications read the rate word, which is cold for the many rarely requested applications.
		if h&rateSampleMask == 0 {
			hot = rateHit(s.rateWord(c), epoch)*(rateSampleMask+1) > r.spreadCount
			if hot && slot&slotHot == 0 {
				s.setHot(c)
			}
		} else if slot&slotHot != 0 {
			hot = rateRead(atomic.LoadUint64(s.rateWord(c)), epoch)*(rateSampleMask+1) > r.spreadCount
		}
	}
	if baseline {
		return localIn(in, inOK, ReasonBaseline)
	}
	fv := v.fleet
	if hot {
		if idx, ok := r.spread(pt, fv, rec, nc, h, epoch); ok {
			reason := ReasonSpread
			if idx == best {
				reason = ReasonRemote
			}
			if inOK && idx == in {
				return verdict{in, reason, atIngress}
			}
			return r.remote(pt, idx, epoch, reason)
		}
	}
	return r.failover(pt, fv, rec, nc, best, in, inOK, epoch, true)
}

// failover routes to the best PoP when available, else to the first available candidate within the failover
// budget, else locally. count says whether the PoP's rate counts the request (Route) or not (Place).
func (r *Router) failover(pt *popTable, fv *fleetView, rec record, nc int, best, in uint16, inOK bool, epoch uint64, count bool) verdict {
	if fv.available(best) {
		return r.remoteCounted(pt, best, epoch, ReasonRemote, count)
	}
	for i := 1; i < nc; i++ {
		cd := rec.cand(i)
		if cd&candFailover == 0 {
			continue
		}
		idx := cd & candPoPMask
		if inOK && idx == in {
			return verdict{in, ReasonFailover, atIngress}
		}
		if fv.available(idx) {
			return r.remoteCounted(pt, idx, epoch, ReasonFailover, count)
		}
	}
	return localIn(in, inOK, ReasonUnavailable)
}

func (r *Router) remoteCounted(pt *popTable, idx uint16, epoch uint64, reason Reason, count bool) verdict {
	if !count {
		return verdict{idx, reason, atRemote}
	}
	return r.remote(pt, idx, epoch, reason)
}

// spread picks, deterministically from the request-id hash h, one of the available candidates within the
// spread epsilon, weighted by headroom when every one of them has a configured capacity (equal weights
// otherwise). It reports false when fewer than two candidates qualify.
func (r *Router) spread(pt *popTable, fv *fleetView, rec record, nc int, h, epoch uint64) (uint16, bool) {
	var idx [maxCandidatesLimit]uint16
	var w [maxCandidatesLimit]uint64
	n := 0
	weighted := r.useCapacity
	for i := range nc {
		cd := rec.cand(i)
		if cd&candSpread == 0 || !fv.available(cd&candPoPMask) {
			continue
		}
		idx[n] = cd & candPoPMask
		if cp := pt.capacity[idx[n]]; cp == 0 {
			weighted = false
		} else if used := rateRead(atomic.LoadUint64(&pt.rate[idx[n]]), epoch); used < cp {
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
func (r *Router) remote(pt *popTable, idx uint16, epoch uint64, reason Reason) verdict {
	if r.useCapacity {
		rateHit(&pt.rate[idx], epoch)
	}
	return verdict{idx, reason, atRemote}
}

// ingressIndex returns the PoP index of ingress in pt.
func (r *Router) ingressIndex(pt *popTable, ingress string) (uint16, bool) {
	if pt.hint.name == ingress && ingress != "" {
		return pt.hint.idx, true
	}
	idx, ok := pt.index[ingress]
	return idx, ok
}

// local is the verdict for running at the ingress.
func (r *Router) local(pt *popTable, ingress string, reason Reason) verdict {
	in, ok := r.ingressIndex(pt, ingress)
	return localIn(in, ok, reason)
}

// localIn is the verdict for running at the ingress, at index in when ok (in the table).
func localIn(in uint16, ok bool, reason Reason) verdict {
	if ok {
		return verdict{in, reason, atIngress}
	}
	return verdict{0, reason, atIngressUnknown}
}
