package router

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// popTable interns PoP codes to 16-bit indexes and holds their header values and per-PoP state. A published
// table is immutable but for its rate words: a PoP new to the fleet or an ingress is added by copy-on-write
// (clone, then add), which keeps every index, so a snapshot built with a table stays valid with its extensions.
// Each full reload builds a fresh table holding only the PoPs in use (the snapshot's, the fleet's, the
// configured ones): retired or bogus codes leave it, and MaxPoPs cannot be exhausted by churn. The table is
// published with the snapshot and the fleet view indexed by it (Router.view), so Route never mixes indexes of
// two tables.
type popTable struct {
	index    map[string]uint16
	names    []string
	remote   []string // "remote-" + name: the cf-placement value when routed there
	local    []string // "local-" + name: the cf-placement value when run at that ingress
	capacity []uint64 // per index: capacity per rate window, 0 unknown (Config.PoPCapacityRPS)
	// rate holds per index the rate words of what this router sent there. Shared by a table's extensions
	// (their indexes agree); a fresh table gets new words, carried over by name (carryPoPRates).
	rate *[MaxPoPs]uint64
	hint ingressHint // the usual ingress PoP: Route skips the map lookup for it; name "" none
}

// newPopTable returns an empty table with fresh rate words.
func newPopTable() *popTable {
	return &popTable{index: map[string]uint16{}, rate: new([MaxPoPs]uint64)}
}

// clone returns a copy of t sharing its rate words, to add codes to before publishing it.
func (t *popTable) clone() *popTable {
	n := *t
	n.index = make(map[string]uint16, len(t.names)+1)
	for k, v := range t.index {
		n.index[k] = v
	}
	n.names = slices.Clip(t.names)
	n.remote = slices.Clip(t.remote)
	n.local = slices.Clip(t.local)
	n.capacity = slices.Clip(t.capacity)
	return &n
}

// add returns code's index in t, adding it when new. t must not be published yet (or be a clone).
func (t *popTable) add(r *Router, code string) (uint16, error) {
	if idx, ok := t.index[code]; ok {
		return idx, nil
	}
	if !validPoP(code) {
		return 0, fmt.Errorf("PoP code %.40q: want 1 to 16 letters, digits, '-' or '_'", code)
	}
	if len(t.names) >= MaxPoPs {
		return 0, fmt.Errorf("PoP code %q: more than %d PoPs", code, MaxPoPs)
	}
	idx := uint16(len(t.names))
	var capacity uint64
	if c, ok := r.cfg.PoPCapacityRPS[code]; ok {
		capacity = max(uint64(c*float64(r.windowMs)/1000), 1)
	}
	t.index[code] = idx
	t.names = append(t.names, code)
	t.remote = append(t.remote, "remote-"+code)
	t.local = append(t.local, "local-"+code)
	t.capacity = append(t.capacity, capacity)
	return idx, nil
}

// setHint makes name the table's usual ingress, when the table holds it.
func (t *popTable) setHint(name string) {
	if idx, ok := t.index[name]; ok && name != "" {
		t.hint = ingressHint{name: name, idx: idx}
	}
}

// carryPoPRates copies old's per-PoP rate words into t by name, when t has rate words of its own.
func carryPoPRates(old, t *popTable) {
	if old == nil || old.rate == t.rate {
		return
	}
	for i, name := range old.names {
		if j, ok := t.index[name]; ok {
			atomic.StoreUint64(&t.rate[j], atomic.LoadUint64(&old.rate[i]))
		}
	}
}

// validPoP reports whether code can be a PoP code: 1 to 16 letters, digits, '-' or '_' (it goes into a header).
func validPoP(code string) bool {
	if len(code) == 0 || len(code) > 16 {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Record classes: what a decision allows, decided once at snapshot build.
const (
	classPlace   = iota // SUCCESS, placeable verdict, a best PoP
	classStatus         // status other than SUCCESS
	classVerdict        // anycast or replicated
	classNoBest         // no best PoP
)

// A candidate is 16 bits in a cell: the PoP index (bits 0-11, MaxPoPs = 4096) and two flags precomputed at
// build from the router's fixed Config, so that Route does no RTT arithmetic.
const (
	candPoPMask  = 1<<12 - 1
	candFailover = 1 << 14 // within the failover budget of the best
	candSpread   = 1 << 15 // within SpreadEpsilonMs of the best
)

// rttUnknown marks a best PoP whose RTT the decision does not give: no other candidate is then within budget.
const rttUnknown = math.MaxUint32

// snapshot is an immutable set of decisions in a compact, pointer-free encoding (the GC does not scan it): an
// open-addressing hash table (linear probing, load <= 1/2) of 32-byte cells, four words each:
//
//	word 0: the application's fingerprint, maphash.String(Router.seed, app), 0 mapped to 1; 0 is an empty cell;
//	word 1: class (bits 0-1) | candidate count (2-4) | expiry (5-15) | candidates 0-2 (16 bits each from bit
//	        16), best first;
//	word 2: the application's rate estimate (the only mutable word, updated atomically; see rate.go);
//	word 3: candidates 3-6.
//
// A lookup reads one cell, usually one cache line: for a cold application that is one memory access, where a
// map of names to records costs three or four. Names are not stored: the 64-bit keyed fingerprint stands for
// the name. Two applications of a snapshot sharing one is detected at build (the later is skipped and logged;
// odds ~n²/2⁶⁵, 3·10⁻⁸ for a million). An application absent from the snapshot matches a stored fingerprint
// with odds ~2⁻⁶³ per request: it would then be routed like that other application, which costs latency,
// never correctness (every PoP can run every application).
type snapshot struct {
	pops     *popTable // the table the candidates index, built with the snapshot
	cells    []uint64
	mask     uint64 // cell count - 1
	apps     int
	loadedAt time.Time
	// expBaseMs is the time (Unix ms, the reload's start) the cells' expiry fields count from.
	expBaseMs int64
	// reloadBy, when not zero, is when a cell's expiry leaves the field's range: the reload loop reloads by
	// then, so that the decision's expiry is encoded again.
	reloadBy time.Time
}

// The fields of cell word 1 (cellMeta), read by Route through the accessors below.
const (
	metaClassMask  = 1<<2 - 1 // bits 0-1: the record class
	metaCountShift = 2        // bits 2-4: the candidate count (at most maxCellCandidates)
	metaCountMask  = 1<<3 - 1
	metaExpShift   = 5 // bits 5-15: the expiry field (expiryField)
	metaExpMask    = 1<<11 - 1
	metaCandShift  = 16 // bits 16-63: candidates 0-2
)

// The expiry field of a cell is 0 when the decision does not expire within the field's range, else 1 + the
// whole expiry units (1.024 s) from snapshot.expBaseMs to the decision's ExpiresAt: Route compares it with the
// coarse clock in two instructions, and an expiry is early by less than a unit. A decision expiring beyond the
// range (about 35 minutes) is encoded again by a later reload (see snapshot.reloadBy).
const (
	expiryUnitShift = 10 // a unit is 1<<10 ms
	expiryRange     = ((metaExpMask - 1) << expiryUnitShift) * time.Millisecond
)

// class returns the record class of a cell's meta word.
func class(meta uint64) uint64 { return meta & metaClassMask }

// candCount returns the candidate count of a cell's meta word.
func candCount(meta uint64) int { return int(meta >> metaCountShift & metaCountMask) }

// expired reports whether a cell's meta word says its decision has expired at nowMs (the coarse clock).
func (s *snapshot) expired(meta uint64, nowMs int64) bool {
	e := meta >> metaExpShift & metaExpMask
	return e != 0 && uint64(max(nowMs-s.expBaseMs, 0))>>expiryUnitShift >= e-1
}

// expiryField returns the expiry field for a decision expiring at exp (zero: never), counted from baseMs.
func expiryField(exp time.Time, baseMs int64) uint64 {
	if exp.IsZero() {
		return 0
	}
	d := exp.UnixMilli() - baseMs
	if d <= 0 {
		return 1 // expired already
	}
	k := uint64(d) >> expiryUnitShift
	if k+1 > metaExpMask {
		return 0 // beyond the range: a later reload encodes it
	}
	return k + 1
}

// Cell word offsets.
const (
	cellFP    = 0
	cellMeta  = 1
	cellRate  = 2
	cellCands = 3
	cellWords = 4
)

// maxCellCandidates is how many candidates a cell holds.
const maxCellCandidates = 7

// fingerprint returns app's fingerprint under seed (never 0).
func fingerprint(seed maphash.Seed, app string) uint64 {
	return max(maphash.String(seed, app), 1)
}

// lookup returns the cell (word index) holding fingerprint fp.
func (s *snapshot) lookup(fp uint64) (uint64, bool) {
	for i := fp & s.mask; ; i = (i + 1) & s.mask {
		c := i * cellWords
		switch s.cells[c+cellFP] {
		case fp:
			return c, true
		case 0:
			return 0, false
		}
	}
}

// cand returns candidate i of the cell at c.
func (s *snapshot) cand(c uint64, i int) uint16 {
	if i < 3 {
		return uint16(s.cells[c+cellMeta] >> (metaCandShift + 16*i))
	}
	return uint16(s.cells[c+cellCands] >> (16 * (i - 3)))
}

// rateWord returns the cell's mutable rate word.
func (s *snapshot) rateWord(c uint64) *uint64 { return &s.cells[c+cellRate] }

// pending is one decision's cell before the table is built. It holds no pointers (a million of them must not
// cost the GC a scan, nor keep the decoded names alive): check, a second keyed hash of the name, tells a
// duplicate of an application (same fp, same check) from a fingerprint collision (same fp, other check).
type pending struct {
	fp, check, meta, cands uint64
	version                int64
}

// builder accumulates decisions into a new snapshot.
type builder struct {
	r        *Router
	items    []pending
	skipped  int
	firstErr error
	baseMs   int64     // snapshot.expBaseMs: the reload's start (Unix ms)
	far      bool      // a decision expires beyond the expiry field's range
	expired  int       // decisions already expired when loaded
	pops     *popTable // the fresh table, unpublished until the snapshot is: only the build goroutine adds
}

// newBuilder returns a builder for a reload that started at start; old, when not nil, sizes it.
func newBuilder(r *Router, old *snapshot, start time.Time) *builder {
	b := &builder{r: r, baseMs: start.UnixMilli(), pops: r.freshPoPs()}
	if old != nil {
		b.items = make([]pending, 0, old.apps+old.apps/8)
	}
	return b
}

// skip counts a decision the snapshot cannot hold and keeps the first reason for the log.
func (b *builder) skip(err error) {
	b.skipped++
	if b.firstErr == nil {
		b.firstErr = err
	}
}

// add appends d. Decisions the encoding cannot hold (an empty name, a bad best PoP code) are counted and
// skipped: one bad decision must not keep the others from loading.
func (b *builder) add(d placement.Decision) {
	app := d.App
	if app == "" {
		b.skip(errors.New("router: decision with an empty app name"))
		return
	}
	class := classPlace
	switch {
	case d.Status != placement.StatusSuccess:
		class = classStatus
	case d.Verdict == placement.VerdictAnycast || d.Verdict == placement.VerdictReplicated:
		class = classVerdict
	case d.BestPoP == "":
		class = classNoBest
	}
	var cands [maxCellCandidates]uint64
	nc := 0
	if class == classPlace {
		best, err := b.pops.add(b.r, d.BestPoP)
		if err != nil {
			b.skip(fmt.Errorf("router: decision app %q best_pop: %w", app, err))
			return
		}
		bestRTT := uint64(rttUnknown)
		for _, c := range d.Candidates {
			if c.PoP == d.BestPoP {
				bestRTT = rttMicros(c.RTTMs)
				break
			}
		}
		cands[0] = uint64(best) | candFailover | candSpread
		nc = 1
		for _, c := range d.Candidates {
			if nc >= b.r.cfg.MaxCandidates || bestRTT == rttUnknown {
				break
			}
			if c.PoP == d.BestPoP {
				continue
			}
			rtt := rttMicros(c.RTTMs)
			if rtt == rttUnknown {
				continue
			}
			var flags uint64
			if b.r.inFailoverBudget(rtt, bestRTT) {
				flags |= candFailover
			}
			if rtt <= bestRTT+b.r.spreadEpsUs {
				flags |= candSpread
			}
			if flags == 0 {
				continue
			}
			idx, err := b.pops.add(b.r, c.PoP)
			if err != nil {
				continue // a bad candidate code loses that candidate only
			}
			dup := false
			for _, w := range cands[:nc] {
				dup = dup || w&candPoPMask == uint64(idx)
			}
			if !dup {
				cands[nc] = uint64(idx) | flags
				nc++
			}
		}
	}
	exp := expiryField(d.ExpiresAt, b.baseMs)
	switch {
	case exp == 0 && !d.ExpiresAt.IsZero():
		b.far = true
	case exp == 1:
		b.expired++
	}
	meta := uint64(class) | uint64(nc)<<metaCountShift | exp<<metaExpShift
	var rest uint64
	for i, c := range cands[:nc] {
		if i < 3 {
			meta |= c << (metaCandShift + 16*i)
		} else {
			rest |= c << (16 * (i - 3))
		}
	}
	b.items = append(b.items, pending{fp: fingerprint(b.r.seed, app), check: maphash.String(b.r.checkSeed, app),
		meta: meta, cands: rest, version: d.Version})
}

// finish builds the hash table. When an application appears twice (a scan may return a key twice), the higher
// version wins, then the later one.
func (b *builder) finish(now time.Time) *snapshot {
	size := uint64(8)
	if n := uint64(len(b.items)) * 2; n > size {
		size = 1 << bits.Len64(n-1)
	}
	s := &snapshot{pops: b.pops, cells: make([]uint64, size*cellWords), mask: size - 1, loadedAt: now, expBaseMs: b.baseMs}
	if b.far {
		s.reloadBy = time.UnixMilli(b.baseMs).Add(expiryRange)
	}
	owner := make([]int32, size) // item index + 1 per cell, to tell duplicates from fingerprint collisions
	for i := range b.items {
		it := &b.items[i]
		for j := it.fp & s.mask; ; j = (j + 1) & s.mask {
			c := j * cellWords
			fp := s.cells[c+cellFP]
			if fp == 0 {
				s.cells[c+cellFP], s.cells[c+cellMeta], s.cells[c+cellCands] = it.fp, it.meta, it.cands
				owner[j] = int32(i) + 1
				s.apps++
				break
			}
			if fp != it.fp {
				continue
			}
			prev := &b.items[owner[j]-1]
			if prev.check != it.check {
				b.skip(fmt.Errorf("router: two applications share fingerprint %#x: the one scanned later (version %d) is skipped", it.fp, it.version))
			} else if it.version >= prev.version {
				s.cells[c+cellMeta], s.cells[c+cellCands] = it.meta, it.cands
				owner[j] = int32(i) + 1
			}
			break
		}
	}
	return s
}

// rttMicros converts an RTT in ms to whole microseconds; negative, NaN or absurd values are unknown.
func rttMicros(ms float64) uint64 {
	if !(ms >= 0) || ms > 1e6 {
		return rttUnknown
	}
	return uint64(math.Round(ms * 1000))
}

// carryRates copies the recent rate estimates of old's applications into s (fingerprints are stable for the
// router's lifetime), so that a reload does not forget which applications are hot.
func carryRates(old, s *snapshot, epoch uint64) {
	if old == nil || s == nil {
		return
	}
	for c := uint64(0); c < uint64(len(old.cells)); c += cellWords {
		st := atomic.LoadUint64(&old.cells[c+cellRate])
		if st == 0 || (epoch-rateEpoch(st))&rateEpochMask > 1 {
			continue
		}
		if nc, ok := s.lookup(old.cells[c+cellFP]); ok {
			atomic.StoreUint64(s.rateWord(nc), st)
		}
	}
}
