package triangulate

import (
	"math"
	"slices"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// verdict builds the fibre disks and judges the target the way iGreedy does (Cicalese, Auge, Joumblatt,
// Friedman, Rossi, "Characterizing IPv4 anycast adoption and deployment", CoNEXT 2015; "A Fistful of Pings",
// INFOCOM 2015): two vantage points whose speed-of-light disks do not intersect cannot be reaching one host,
// so the target has at least two instances; a greedy maximum set of pairwise disjoint disks, smallest first,
// counts and places them. With Config.RobustAnycast the evidence must survive setting aside the
// Config.MaxOutliers most inconsistent vantage points; if it does not, they are reported as speed-of-light
// violations and the target is judged without them. With a Calibration the same test also runs on the
// calibrated disks (Config.AnycastCalibrated), where it must survive Config.AnycastCalibratedOutliers more.
func (e *Engine) verdict(r *Result) {
	n := len(e.ms)
	e.fibre = e.fibre[:0]
	e.calR = e.calR[:0]
	e.testR = e.testR[:0]
	e.calibrated = false
	cal := e.cfg.Calibration
	for i := range e.ms {
		m := &e.ms[i]
		fr := geo.MaxDistanceKm(m.RTTMs)
		cr, tr := fr, fr
		if cal != nil {
			if l := cal.Line(m.VP); !l.IsZero() {
				br := l.RadiusKm(m.RTTMs)
				cr = min(br*e.cfg.CalibrationScale+e.cfg.CalibrationSlackKm, fr)
				if e.cfg.AnycastCalibratedMaxMs <= 0 || m.RTTMs <= e.cfg.AnycastCalibratedMaxMs {
					tr = min(br+e.cfg.AnycastSlackKm, fr)
				}
				e.calibrated = true
			}
		}
		e.calR = append(e.calR, cr)
		e.testR = append(e.testR, tr)
		e.fibre = append(e.fibre, makeDisk(i, e.vecs[i], fr).withMargin(e.cfg.AnycastMarginKm))
	}
	e.test = e.fibre
	if e.calibrated && e.cfg.AnycastCalibrated {
		e.testBuf = e.testBuf[:0]
		for i := range e.fibre {
			e.testBuf = append(e.testBuf, makeDisk(i, e.fibre[i].centre, e.testR[i]).withMargin(e.cfg.AnycastMarginKm))
		}
		e.test = e.testBuf
	}
	e.excluded = slices.Grow(e.excluded[:0], n)[:n]
	clear(e.excluded)
	e.trial = slices.Grow(e.trial[:0], n)[:n]
	e.dropped = e.dropped[:0]
	e.instances = e.instances[:0]
	e.violations = e.violations[:0]

	// Vantage points the calibration found mislocated are never trusted; say so when they matter here.
	if cal != nil && len(cal.Suspects) > 0 {
		for i := range e.ms {
			if cal.Suspect(e.ms[i].VP) {
				e.excluded[i] = true
			}
		}
		for i := range e.fibre {
			if e.excluded[i] {
				if c := e.conflictsOf(e.fibre, e.excluded, &e.fibre[i]); c > 0 {
					e.violate(r, i, c)
				}
			}
		}
	}
	if n < e.cfg.MinVPs {
		r.Verdict = placement.VerdictUnknown
		r.Flags |= FlagTooFew
		e.locate(r)
		return
	}
	if !e.cfg.RobustAnycast {
		copy(e.trial, e.excluded)
		if e.greedy(e.fibre, e.excluded) >= 2 {
			e.anycast(r, e.fibre)
			return
		}
	} else {
		// The calibrated test sees instances the fibre bound cannot separate, but its disks are not physical
		// bounds: it must survive AnycastCalibratedOutliers more outliers than the fibre test.
		if e.calibrated && e.cfg.AnycastCalibrated && e.robust(e.test, e.cfg.MaxOutliers+e.cfg.AnycastCalibratedOutliers) {
			e.anycast(r, e.test)
			return
		}
		if e.robust(e.fibre, e.cfg.MaxOutliers) {
			e.anycast(r, e.fibre)
			return
		}
	}
	// Unicast. The outliers the fibre test set aside are violations.
	outliers := 0
	for _, o := range e.dropped {
		e.excluded[o.idx] = true
		e.violate(r, o.idx, o.conflicts)
		outliers++
	}
	r.Verdict = placement.VerdictUnicast
	for !e.locate(r) && outliers < e.cfg.MaxOutliers {
		// Pairwise the disks met, but they have no common point: set the most inconsistent VP aside and retry.
		worst, conflicts := e.mostInconsistent(e.fibre, e.excluded)
		if conflicts == 0 {
			break
		}
		e.excluded[worst] = true
		e.violate(r, worst, conflicts)
		outliers++
		r.Flags &^= FlagInconsistent | FlagCalibrationMiss
		r.Verdict = placement.VerdictUnicast
	}
}

type dropped struct{ idx, conflicts int }

// robust reports whether disks hold at least two pairwise disjoint ones after setting aside up to drops of
// the most inconsistent vantage points, one at a time. It leaves e.excluded alone (it works on e.trial), the
// greedy pick in e.picked and the VPs it set aside in e.dropped.
func (e *Engine) robust(disks []disk, drops int) bool {
	e.trial = append(e.trial[:0], e.excluded...)
	e.dropped = e.dropped[:0]
	for e.greedy(disks, e.trial) >= 2 {
		if len(e.dropped) == drops {
			return true
		}
		worst, conflicts := e.mostInconsistent(disks, e.trial)
		if conflicts == 0 {
			return true
		}
		e.trial[worst] = true
		e.dropped = append(e.dropped, dropped{worst, conflicts})
	}
	return false
}

// violate records measurement idx as a speed-of-light violation.
func (e *Engine) violate(r *Result, idx, conflicts int) {
	r.Flags |= FlagSpeedOfLight
	e.violations = append(e.violations, Violation{VP: e.ms[idx].VP, Conflicts: conflicts})
	r.Violations = e.violations
}

// conflictsOf counts the disks not excluded that d misses by more than AnycastMarginKm. Disks are indexed
// like e.ms, as every disk slice of the engine but e.cal.
func (e *Engine) conflictsOf(disks []disk, excluded []bool, d *disk) int {
	c := 0
	for j := range disks {
		if !excluded[j] && disjoint(d, &disks[j]) {
			c++
		}
	}
	return c
}

// radiusKey orders disks by radius, then index: the radius as float32 bits (monotone for non-negative
// values) above the index, so one integer comparison or sort does it.
func radiusKey(disks []disk, i int) uint64 {
	return uint64(math.Float32bits(float32(disks[i].radiusKm)))<<32 | uint64(i)
}

// greedy fills e.picked with a maximal set of pairwise disjoint disks (by AnycastMarginKm), smallest first,
// skipping excluded VPs, and returns its size (capped at MaxInstances). Every pick after the smallest disk
// misses it, so only those disks are sorted: for a unicast target, none.
func (e *Engine) greedy(disks []disk, excluded []bool) int {
	e.picked = e.picked[:0]
	first := -1
	for i := range disks {
		if !excluded[i] && (first < 0 || radiusKey(disks, i) < radiusKey(disks, first)) {
			first = i
		}
	}
	if first < 0 {
		return 0
	}
	e.picked = append(e.picked, first)
	e.keys = e.keys[:0]
	for i := range disks {
		if !excluded[i] && i != first && disjoint(&disks[i], &disks[first]) {
			e.keys = append(e.keys, radiusKey(disks, i))
		}
	}
	slices.Sort(e.keys)
	for _, k := range e.keys {
		if len(e.picked) == e.cfg.MaxInstances {
			break
		}
		i := int(uint32(k))
		ok := true
		for _, p := range e.picked[1:] {
			if !disjoint(&disks[i], &disks[p]) {
				ok = false
				break
			}
		}
		if ok {
			e.picked = append(e.picked, i)
		}
	}
	if len(e.picked) >= 2 {
		e.improve(disks, excluded)
	}
	return len(e.picked)
}

// improve grows the greedy set by 1-for-2 swaps (a standard local search for maximum independent sets):
// a picked disk is replaced by two disks that miss each other and every other pick. Smallest disks are tried
// first, so the result stays deterministic.
func (e *Engine) improve(disks []disk, excluded []bool) {
	for changed := true; changed && len(e.picked) < e.cfg.MaxInstances; {
		changed = false
		for pi, p := range e.picked {
			// Candidates: trusted disks, not picked, missing every pick but p.
			e.keys = e.keys[:0]
			for i := range disks {
				if excluded[i] || slices.Contains(e.picked, i) {
					continue
				}
				ok := true
				for _, q := range e.picked {
					if q != p && !disjoint(&disks[i], &disks[q]) {
						ok = false
						break
					}
				}
				if ok {
					e.keys = append(e.keys, radiusKey(disks, i))
				}
			}
			if len(e.keys) < 2 {
				continue
			}
			slices.Sort(e.keys)
			a, b := -1, -1
		search:
			for x := range e.keys {
				for y := x + 1; y < len(e.keys); y++ {
					i, j := int(uint32(e.keys[x])), int(uint32(e.keys[y]))
					if disjoint(&disks[i], &disks[j]) {
						a, b = i, j
						break search
					}
				}
			}
			if a < 0 {
				continue
			}
			e.picked[pi] = a
			e.picked = append(e.picked, b)
			changed = true
			break
		}
	}
}

// mostInconsistent returns the measurement index whose disk misses the most others, and that count. Ties go to
// the larger disk (the less informative VP), then the larger index.
func (e *Engine) mostInconsistent(disks []disk, excluded []bool) (int, int) {
	e.conflicts = slices.Grow(e.conflicts[:0], len(disks))[:len(disks)]
	clear(e.conflicts)
	for i := range disks {
		if excluded[i] {
			continue
		}
		for j := i + 1; j < len(disks); j++ {
			if !excluded[j] && disjoint(&disks[i], &disks[j]) {
				e.conflicts[i]++
				e.conflicts[j]++
			}
		}
	}
	best := 0
	for i := 1; i < len(disks); i++ {
		ci, cb := e.conflicts[i], e.conflicts[best]
		if ci > cb || ci == cb && ci > 0 && disks[i].radiusKm >= disks[best].radiusKm {
			best = i
		}
	}
	return best, e.conflicts[best]
}

// anycast records the verdict, recounts the instances with Config.CountMarginKm (and, with
// Config.CountOutliers, the verdict's outliers back in) and places one instance per
// picked disk: the catalogue city nearest the VP that
// lies inside its disk (iGreedy places instances at the most populous city in the disk; the PoP catalogue is
// our list of large cities), else the VP itself.
func (e *Engine) anycast(r *Result, disks []disk) {
	r.Verdict = placement.VerdictAnycast
	if e.cfg.CountOutliers {
		// Count with the outliers of the verdict back in (only the calibration's suspects stay out): a VP the
		// robust test set aside is most often the one witness of an instance of its own.
		copy(e.trial, e.excluded)
	}
	if e.cfg.CountMarginKm != e.cfg.AnycastMarginKm || e.cfg.CountOutliers {
		// Count again with the counting margin, on the same disks and without the same outliers (with
		// CountOutliers, with every VP but the calibration's suspects); keep the larger set.
		e.countBuf = e.countBuf[:0]
		for i := range disks {
			e.countBuf = append(e.countBuf, makeDisk(i, disks[i].centre, disks[i].radiusKm).withMargin(e.cfg.CountMarginKm))
		}
		e.saved = append(e.saved[:0], e.picked...)
		if e.greedy(e.countBuf, e.trial) >= len(e.saved) {
			disks = e.countBuf
		} else {
			e.picked = append(e.picked[:0], e.saved...)
		}
	}
	e.instV = e.instV[:0]
	for _, p := range e.picked {
		e.place(&disks[p], disks)
	}
	if e.cfg.IterateInstances {
		e.iterate(disks)
	}
	r.Instances = e.instances
}

// place appends the instance of disk d: collapsed to its most likely city (collapse), else the VP itself.
func (e *Engine) place(d *disk, disks []disk) {
	dc := d.withContains()
	m := &e.ms[dc.idx]
	inst := Instance{VP: m.VP, Point: m.Point, RadiusKm: dc.radiusKm}
	v := dc.centre
	if ci := e.collapse(&dc, disks); ci >= 0 {
		inst.Point, inst.City, inst.PoP = e.cities[ci].Point, e.cities[ci].City, e.cities[ci].Code
		v = e.cityV[ci]
	}
	e.instances = append(e.instances, inst)
	e.instV = append(e.instV, v)
}

// collapse returns the city (index into e.cities) an instance seen through disk d (prepared by withContains)
// most likely is, or -1 when no city lies in d. With IterateInstances, the cities of d that the most disks
// (not set aside) contain, within InstanceExplainKm, come first: a city that explains more of the measurements
// is likelier, and a wrong pick would leave disks unexplained and count an instance twice. Among them iGreedy scores each city c in the disk by
// alpha x pop(c)/pop(all cities in the disk) + (1-alpha) x (1 - distance(c, VP)/radius) with alpha 1/2: the
// large city wins unless a smaller one is much nearer the VP. The catalogue has no population: a city's weight
// is the number of catalogue cities within CityWeightKm of it (a metro with several PoPs or airports is a
// large one). Without IterateInstances the city nearest the VP is taken, as before.
func (e *Engine) collapse(d *disk, disks []disk) int {
	best, bestScore := -1, math.Inf(-1)
	if !e.cfg.IterateInstances {
		for ci := range e.cityV {
			if dot := e.cityV[ci].dot(d.centre); dot >= d.cosR && dot > bestScore {
				best, bestScore = ci, dot
			}
		}
		return best
	}
	total := 0.0
	for ci := range e.cityV {
		if e.cityV[ci].dot(d.centre) >= d.cosR {
			total += e.cityW[ci]
		}
	}
	if total == 0 {
		return -1
	}
	const alpha = 0.5 // iGreedy's default weighing of population against distance
	tolAng := e.cfg.InstanceExplainKm / geo.EarthRadiusKm
	bestN := -1
	for ci := range e.cityV {
		dot := e.cityV[ci].dot(d.centre)
		if dot < d.cosR {
			continue
		}
		n := 0
		if disks != nil {
			for i := range disks {
				if !e.trial[i] && angle(e.cityV[ci], disks[i].centre) <= disks[i].radiusKm/geo.EarthRadiusKm+tolAng {
					n++
				}
			}
		}
		near := 1.0
		if d.radiusKm > 0 {
			near = 1 - angle(e.cityV[ci], d.centre)*geo.EarthRadiusKm/d.radiusKm
		}
		if score := alpha*e.cityW[ci]/total + (1-alpha)*near; n > bestN || n == bestN && score > bestScore {
			best, bestScore, bestN = ci, score, n
		}
	}
	return best
}

// iterate finds instances the greedy set of disjoint disks hides behind a large disk: with every instance
// found collapsed to its city, the small disks (RTT <= IterateMaxMs) that contain none of those cities (by
// more than InstanceExplainKm) are unexplained; a greedy set of disjoint disks among them are new instances,
// collapsed in turn, until every small disk is explained or MaxInstances is reached. A hidden instance shows
// in the small disk of a VP near it; a large disk that misses every city found says more about its VP's
// calibration line (a long path over a fast cable) than about an instance. A disk set aside as an outlier is
// never evidence. With PruneInstances, the instances the iteration added are pruned at the end (prune).
func (e *Engine) iterate(disks []disk) {
	e.unexpl = slices.Grow(e.unexpl[:0], len(disks))[:len(disks)]
	found := len(e.instances) // the greedy set's: disjoint disks, each a distinct instance
	for len(e.instances) < e.cfg.MaxInstances {
		any := false
		for i := range disks {
			// unexpl doubles as greedy's exclusion mask: true is "explained or set aside".
			e.unexpl[i] = true
			if e.trial[i] || e.ms[disks[i].idx].RTTMs > e.cfg.IterateMaxMs {
				continue
			}
			if e.explainer(&disks[i], -1) < 0 {
				e.unexpl[i] = false
				any = true
			}
		}
		if !any {
			break
		}
		n := len(e.instances)
		for _, p := range e.picked[:e.greedy(disks, e.unexpl)] {
			if len(e.instances) == e.cfg.MaxInstances {
				break
			}
			e.place(&disks[p], disks)
		}
		if len(e.instances) == n {
			break
		}
	}
	if e.cfg.PruneInstances {
		e.prune(disks, found)
	}
}

// explainer returns the first instance (index into e.instV), other than skip, whose point lies in d (by
// InstanceExplainKm), or -1.
func (e *Engine) explainer(d *disk, skip int) int {
	for x, v := range e.instV {
		if x != skip && e.explains(v, d) {
			return x
		}
	}
	return -1
}

// explains reports whether an instance's point v lies in d, by InstanceExplainKm.
func (e *Engine) explains(v vec3, d *disk) bool {
	return angle(v, d.centre) <= (d.radiusKm+e.cfg.InstanceExplainKm)/geo.EarthRadiusKm
}

// prune drops, among the instances from index from on (those the iteration added), each one that no disk
// needs: every disk not set aside that contains its point also contains another instance's. The iteration
// adds an instance for a disk no instance explained at the time; an instance found later may explain it too
// (an instance of Tallinn: Riga's disk collapsed to Vilnius, then Helsinki's, which Vilnius is outside, to
// Riga, which Riga's disk holds too), and then the first is the same instance counted twice. The instances of
// the greedy set stay: their disks are disjoint, so each is a distinct instance. The instance on the largest
// disk goes first, one at a time, until none is redundant.
func (e *Engine) prune(disks []disk, from int) {
	for {
		drop := -1
		for x := from; x < len(e.instances); x++ {
			if drop >= 0 && e.instances[x].RadiusKm <= e.instances[drop].RadiusKm {
				continue
			}
			needed := false
			for i := range disks {
				if !e.trial[i] && e.explains(e.instV[x], &disks[i]) && e.explainer(&disks[i], x) < 0 {
					needed = true
					break
				}
			}
			if !needed {
				drop = x
			}
		}
		if drop < 0 {
			return
		}
		e.instances = slices.Delete(e.instances, drop, drop+1)
		e.instV = slices.Delete(e.instV, drop, drop+1)
	}
}

// cityWeights returns each city's weight: the number of cities within CityWeightKm of it, itself included.
func cityWeights(vs []vec3) []float64 {
	w := make([]float64, len(vs))
	cosR := math.Cos(CityWeightKm / geo.EarthRadiusKm)
	for i := range vs {
		w[i]++
		for j := i + 1; j < len(vs); j++ {
			if vs[i].dot(vs[j]) >= cosR {
				w[i]++
				w[j]++
			}
		}
	}
	return w
}

// CityWeightKm is the radius of a city's metro when cities are weighed (collapse): cities of the catalogue
// within it count towards one metro's size.
const CityWeightKm = 100

// dnsEvidence applies the DNS answers: vantage points that received disjoint A/AAAA answer sets mean the name
// is replicated (geo-DNS); different CHAOS id.server answers for the one address mean anycast (Fan, Heidemann,
// Govindan, "Evaluating anycast in the domain name system", INFOCOM 2013). Overlapping but different answer
// sets (round-robin subsets of one pool) are not evidence. DNS evidence overrides a latency verdict; CHAOS
// anycast evidence wins over replication.
func (e *Engine) dnsEvidence(r *Result, answers []DNSAnswer) {
	replicated, anycast := false, false
	for i := range answers {
		a := &answers[i]
		for j := i + 1; j < len(answers); j++ {
			b := &answers[j]
			if a.ServerID != "" && b.ServerID != "" && a.ServerID != b.ServerID {
				anycast = true
			}
			if len(a.Addrs) > 0 && len(b.Addrs) > 0 && !overlap(a.Addrs, b.Addrs) {
				replicated = true
			}
		}
	}
	if anycast {
		r.Flags |= FlagDNSAnycast
		if r.Verdict != placement.VerdictAnycast {
			r.Verdict = placement.VerdictAnycast
			r.Instances = nil
		}
	}
	if replicated {
		r.Flags |= FlagDNSReplicated
		// Disjoint answer sets explain disjoint disks too (each PoP reached a different replica): the verdict
		// is replicated, with the disks' instances as the replicas' places, unless CHAOS answers showed that
		// one address is itself anycast.
		if !anycast {
			r.Verdict = placement.VerdictReplicated
		}
	}
}

func overlap(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
