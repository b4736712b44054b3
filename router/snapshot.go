package router

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
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

// snapshot is an immutable set of decisions in a compact, pointer-free encoding (the GC does not scan it),
// laid out so that Route's lookup stays in the CPU caches with a million applications:
//
//   - slots, the hot table: one 64-bit word per slot, an open-addressing hash table (linear probing from
//     home(fp), load <= 4/5) holding per application its tag (bits 32-63, never 0; 0 is an empty slot), its
//     profile (bits 12-31), its expiry field (bits 1-11) and the hot bit (bit 0, see below). 8 bytes per slot,
//     10 bytes per application: a million applications in 10 MB;
//   - profiles, shared: the class and the candidates (up to 7, 16 bits each with precomputed flags, best
//     first) of a decision, two words per profile, deduplicated across applications: applications served by
//     the same PoPs at the same distances share one (a few thousand profiles are a few tens of KB);
//   - cold, beside the slots: per slot the full fingerprint (for reloads) and the rate word (the only mutable
//     word besides the hot bit, updated atomically; see rate.go). Route touches it only for one request in
//     rateSampleMask+1 and for applications whose hot bit is set.
//
// A lookup reads one slot, usually one cache line, then the profile's line (hot when profiles are shared).
// Names are not stored: the 64-bit keyed fingerprint, maphash.String(Router.seed, app), stands for the name.
// Two applications of a snapshot sharing one are detected at build (the later is skipped and logged; odds
// ~n²/2⁶⁵, 3·10⁻⁸ for a million). The slot holds the fingerprint's home (from its low 32 bits) and a 32-bit tag
// of all 64 bits (tagOf): the build checks that no application's probe run meets another's equal tag before
// its own (else it draws another tag salt), so every application in the snapshot finds its own slot. An
// application absent from the snapshot matches a stored tag with odds ~2⁻³² per slot its probe run meets
// (~3·10⁻⁹ per request at load 4/5): it would then be routed like that other application, which costs
// latency, never correctness (every PoP can run every application).
//
// The hot bit is set when the application's rate estimate exceeded the spreading threshold at a counted
// request (or was carried over above it by a reload), and never cleared in a snapshot's life. Without writes
// an estimate only decreases (rate.go), so a clear bit means the estimate is below the threshold: Route then
// skips reading the rate word, which for the million cold applications would miss the caches.
type snapshot struct {
	pops     *popTable // the table the candidates index, built with the snapshot
	slots    []uint64  // the hot table (see above)
	cold     []uint64  // per slot: fingerprint (coldFP), rate word (coldRate)
	profiles []uint64  // per profile: meta (class, candidate count, candidates 0-2), candidates 3-6
	// overflow holds by slot index the profile of applications beyond maxProfiles distinct profiles (their slot
	// says profOverflow): only a snapshot of more than a million applications with pairwise different
	// candidates needs it.
	overflow map[uint32][2]uint64
	n        uint64 // slot count
	salt     uint64 // the tag salt (tagOf), odd
	tagMask  uint64 // the tag bits kept (slotTagMask; fewer only in tests, to force tag collisions)
	apps     int
	loadedAt time.Time
	// expBaseMs is the time (Unix ms, the reload's start) the slots' expiry fields count from.
	expBaseMs int64
	// reloadBy, when not zero, is when a slot's expiry leaves the field's range: the reload loop reloads by
	// then, so that the decision's expiry is encoded again.
	reloadBy time.Time
	// hotAbove is Router.spreadCount: a rate estimate (in sampled units times rateSampleMask+1) above it sets
	// the hot bit; 0: spreading disabled.
	hotAbove uint64
}

// The fields of a profile's meta word, read by Route through the accessors below. Builder items (pending.meta)
// use the same layout with the expiry field in bits 5-15; a profile's bits 5-15 are 0.
const (
	metaClassMask  = 1<<2 - 1 // bits 0-1: the record class
	metaCountShift = 2        // bits 2-4: the candidate count (at most maxCellCandidates)
	metaCountMask  = 1<<3 - 1
	metaExpShift   = 5 // bits 5-15 (pending only): the expiry field (expiryField)
	metaExpMask    = 1<<11 - 1
	metaCandShift  = 16 // bits 16-63: candidates 0-2
)

// The fields of a slot.
const (
	slotHot       = 1 // bit 0: the hot bit
	slotExpShift  = 1 // bits 1-11: the expiry field
	slotProfShift = 12
	slotProfMask  = 1<<20 - 1 // bits 12-31: the profile index
	slotTagMask   = 0xFFFFFFFF << 32
	// profOverflow in a slot's profile field: the profile is in snapshot.overflow.
	profOverflow = slotProfMask
	// maxProfiles is how many distinct profiles the slots index; more go to snapshot.overflow.
	maxProfiles = profOverflow
)

// Cold word offsets (two words per slot).
const (
	coldFP    = 0
	coldRate  = 1
	coldWords = 2
)

// The expiry field of a slot is 0 when the decision does not expire within the field's range, else 1 + the
// whole expiry units (1.024 s) from snapshot.expBaseMs to the decision's ExpiresAt: Route compares it with the
// coarse clock in two instructions, and an expiry is early by less than a unit. A decision expiring beyond the
// range (about 35 minutes) is encoded again by a later reload (see snapshot.reloadBy).
const (
	expiryUnitShift = 10 // a unit is 1<<10 ms
	expiryRange     = ((metaExpMask - 1) << expiryUnitShift) * time.Millisecond
)

// class returns the record class of a profile's meta word.
func class(meta uint64) uint64 { return meta & metaClassMask }

// candCount returns the candidate count of a profile's meta word.
func candCount(meta uint64) int { return int(meta >> metaCountShift & metaCountMask) }

// expired reports whether a slot says its decision has expired at nowMs (the coarse clock).
func (s *snapshot) expired(slot uint64, nowMs int64) bool {
	e := slot >> slotExpShift & metaExpMask
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

// maxCellCandidates is how many candidates a profile holds.
const maxCellCandidates = 7

// fingerprint returns app's fingerprint under seed (never 0).
func fingerprint(seed maphash.Seed, app string) uint64 {
	return max(maphash.String(seed, app), 1)
}

// home returns the first slot of fingerprint fp's probe run in a table of n slots (n < 2³²).
func home(fp, n uint64) uint64 { return uint64(uint32(fp)) * n >> 32 }

// tagOf returns fingerprint fp's tag: the high 32 bits of fp times the snapshot's salt (odd), in a slot's tag
// bits (never 0). The first salt, 1, keeps fp's high bits, independent of the low bits home uses; the others
// mix the low bits in, so that two fingerprints' tags differ again.
func (s *snapshot) tagOf(fp uint64) uint64 { return max(fp*s.salt&s.tagMask, 1<<32) }

// lookup returns the slot index holding fingerprint fp.
func (s *snapshot) lookup(fp uint64) (uint64, bool) {
	i, _, ok := s.find(fp)
	return i, ok
}

// find returns the slot index and word holding fingerprint fp. Slots are read atomically: the hot bit is set
// while Route reads them.
func (s *snapshot) find(fp uint64) (uint64, uint64, bool) {
	i := home(fp, s.n)
	return s.probe(i, atomic.LoadUint64(&s.slots[i]), s.tagOf(fp))
}

// probe is find from fingerprint's home slot i, already loaded as w, and its tag.
func (s *snapshot) probe(i, w, tag uint64) (uint64, uint64, bool) {
	for {
		if w&slotTagMask == tag {
			return i, w, true
		}
		if w == 0 {
			return 0, 0, false
		}
		if i++; i == s.n {
			i = 0
		}
		w = atomic.LoadUint64(&s.slots[i])
	}
}

// findExact returns the slot index holding fingerprint fp, comparing whole fingerprints (the cold words): for
// reloads, which must not mistake another application for fp.
func (s *snapshot) findExact(fp uint64) (uint64, bool) {
	for i := home(fp, s.n); ; {
		switch s.cold[i*coldWords+coldFP] {
		case fp:
			return i, true
		case 0:
			return 0, false
		}
		if i++; i == s.n {
			i = 0
		}
	}
}

// record is an application's profile: meta (class, count, candidates 0-2) and candidates 3-6.
type record struct{ meta, rest uint64 }

// record returns the profile of the slot i holding word w.
func (s *snapshot) record(i, w uint64) record {
	p := w >> slotProfShift & slotProfMask
	if p == profOverflow {
		o := s.overflow[uint32(i)]
		return record{o[0], o[1]}
	}
	return record{s.profiles[2*p], s.profiles[2*p+1]}
}

// cand returns candidate i of the record.
func (c record) cand(i int) uint16 {
	if i < 3 {
		return uint16(c.meta >> (metaCandShift + 16*i))
	}
	return uint16(c.rest >> (16 * (i - 3)))
}

// hotBytes returns the size of the hot table: what Route reads for every application it finds.
func (s *snapshot) hotBytes() int { return 8 * len(s.slots) }

// bytes returns the memory of the snapshot's tables (the side map counted at its entries' size).
func (s *snapshot) bytes() int {
	return s.hotBytes() + 8*len(s.cold) + 8*len(s.profiles) + 20*len(s.overflow)
}

// rateWord returns slot i's mutable rate word.
func (s *snapshot) rateWord(i uint64) *uint64 { return &s.cold[i*coldWords+coldRate] }

// setHot sets slot i's hot bit.
func (s *snapshot) setHot(i uint64) { atomic.OrUint64(&s.slots[i], slotHot) }

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
	retagged int       // tag salts drawn again (finish)
	// Test seams: maxProfiles (0: the constant), the tag bits (0: slotTagMask).
	maxProfiles int
	tagMask     uint64
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

// finish builds the tables. When an application appears twice (a scan may return a key twice), the higher
// version wins, then the later one.
func (b *builder) finish(now time.Time) *snapshot {
	n := max(uint64(len(b.items))+uint64(len(b.items))/4, 8) // load <= 4/5
	s := &snapshot{pops: b.pops, slots: make([]uint64, n), cold: make([]uint64, n*coldWords), n: n,
		tagMask: slotTagMask, loadedAt: now, expBaseMs: b.baseMs, hotAbove: b.r.spreadCount}
	if b.tagMask != 0 {
		s.tagMask = b.tagMask
	}
	if b.far {
		s.reloadBy = time.UnixMilli(b.baseMs).Add(expiryRange)
	}
	// Place the items by whole fingerprint, the profiles shared: owner is the item index + 1 per slot, to tell
	// duplicates from fingerprint collisions.
	owner := make([]int32, n)
	p := profiler{s: s, ids: map[record]uint64{}, limit: maxProfiles}
	if b.maxProfiles != 0 {
		p.limit = b.maxProfiles
	}
	for i := range b.items {
		it := &b.items[i]
		for j := home(it.fp, n); ; {
			fp := s.cold[j*coldWords+coldFP]
			if fp == 0 {
				s.cold[j*coldWords+coldFP] = it.fp
				s.slots[j] = p.low(j, it)
				owner[j] = int32(i) + 1
				s.apps++
				break
			}
			if fp == it.fp {
				prev := &b.items[owner[j]-1]
				if prev.check != it.check {
					b.skip(fmt.Errorf("router: two applications share fingerprint %#x: the one scanned later (version %d) is skipped", it.fp, it.version))
				} else if it.version >= prev.version {
					s.slots[j] = p.low(j, it) // the loser's profile, if its own, stays unused
					owner[j] = int32(i) + 1
				}
				break
			}
			if j++; j == n {
				j = 0
			}
		}
	}
	s.profiles = slices.Clip(s.profiles)
	// Tag the slots, with another salt while some application's probe run meets its own tag before its slot.
	for attempt := uint64(0); ; attempt++ {
		s.salt = saltFor(attempt)
		if s.tag() {
			break
		}
		b.retagged++
	}
	return s
}

// profiler shares the profiles of a snapshot being built.
type profiler struct {
	s     *snapshot
	ids   map[record]uint64
	limit int // profiles indexed by slots; more go to the side map
}

// low returns the low word of slot j for item it (profile and expiry), adding its profile when new.
func (p *profiler) low(j uint64, it *pending) uint64 {
	exp := it.meta >> metaExpShift & metaExpMask
	rec := record{it.meta &^ (metaExpMask << metaExpShift), it.cands}
	id, ok := p.ids[rec]
	switch {
	case ok:
		delete(p.s.overflow, uint32(j)) // a duplicate replacing a side-map profile
	case len(p.ids) < p.limit:
		id = uint64(len(p.ids))
		p.ids[rec] = id
		p.s.profiles = append(p.s.profiles, rec.meta, rec.rest)
		delete(p.s.overflow, uint32(j))
	default:
		id = profOverflow
		if p.s.overflow == nil {
			p.s.overflow = map[uint32][2]uint64{}
		}
		p.s.overflow[uint32(j)] = [2]uint64{rec.meta, rec.rest}
	}
	return id<<slotProfShift | exp<<slotExpShift
}

// saltFor returns the tag salt of a build's attempt: 1 first, then fixed odd pseudo-random values (the
// snapshot does not depend on anything but its decisions and the router's seed).
func saltFor(attempt uint64) uint64 {
	if attempt == 0 {
		return 1
	}
	return fmix64(attempt*prime1) | 1
}

// tag sets the tags of s's slots under s.salt and reports whether every application finds its own slot: no
// slot of its probe run before its own holds an equal tag.
func (s *snapshot) tag() bool {
	for j := range s.n {
		fp := s.cold[j*coldWords+coldFP]
		if fp == 0 {
			continue
		}
		s.slots[j] = s.slots[j]&^slotTagMask | s.tagOf(fp)
	}
	for j := range s.n {
		fp := s.cold[j*coldWords+coldFP]
		if fp == 0 {
			continue
		}
		tag := s.slots[j] & slotTagMask
		for i := home(fp, s.n); i != j; {
			if s.slots[i]&slotTagMask == tag {
				return false
			}
			if i++; i == s.n {
				i = 0
			}
		}
	}
	return true
}

// rttMicros converts an RTT in ms to whole microseconds; negative, NaN or absurd values are unknown.
func rttMicros(ms float64) uint64 {
	if !(ms >= 0) || ms > 1e6 {
		return rttUnknown
	}
	return uint64(math.Round(ms * 1000))
}

// carryRates copies the recent rate estimates of old's applications into s (fingerprints are stable for the
// router's lifetime), so that a reload does not forget which applications are hot; an estimate above the
// spreading threshold in either of its windows sets the hot bit.
func carryRates(old, s *snapshot, epoch uint64) {
	if old == nil || s == nil {
		return
	}
	for c := uint64(0); c < uint64(len(old.cold)); c += coldWords {
		st := atomic.LoadUint64(&old.cold[c+coldRate])
		if st == 0 || (epoch-rateEpoch(st))&rateEpochMask > 1 {
			continue
		}
		if j, ok := s.findExact(old.cold[c+coldFP]); ok {
			atomic.StoreUint64(s.rateWord(j), st)
			if est := max(st>>rateCountBits&rateCountMax, st&rateCountMax); s.hotAbove > 0 && est*(rateSampleMask+1) > s.hotAbove {
				s.setHot(j)
			}
		}
	}
}
