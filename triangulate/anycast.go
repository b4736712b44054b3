package triangulate

import (
	"slices"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// verdict builds the fibre disks and judges the target the way iGreedy does (Cicalese, Auge, Joumblatt,
// Friedman, Rossi, "Characterizing IPv4 anycast adoption and deployment", CoNEXT 2015; "A Fistful of Pings",
// INFOCOM 2015): two vantage points whose speed-of-light disks do not intersect cannot be reaching one host,
// so the target has at least two instances; a greedy maximum set of pairwise disjoint disks, smallest first,
// counts and places them. With Config.RobustAnycast the evidence must survive dropping the single most
// inconsistent vantage point; if it does not, that VP is reported as a speed-of-light violation and the target
// is judged without it.
func (e *Engine) verdict(r *Result) {
	n := len(e.ms)
	e.vecs = e.vecs[:0]
	e.fibre = e.fibre[:0]
	for i := range e.ms {
		v := toVec(e.ms[i].Point)
		e.vecs = append(e.vecs, v)
		e.fibre = append(e.fibre, makeDisk(i, v, geo.MaxDistanceKm(e.ms[i].RTTMs)))
	}
	sortDisks(e.fibre)
	e.excluded = slices.Grow(e.excluded[:0], n)[:n]
	clear(e.excluded)
	e.instances = e.instances[:0]
	e.violations = e.violations[:0]

	// Vantage points the calibration found mislocated are never trusted; say so when they matter here.
	if cal := e.cfg.Calibration; cal != nil && len(cal.Suspects) > 0 {
		for i := range e.fibre {
			if cal.Suspect(e.ms[e.fibre[i].idx].VP) {
				e.excluded[e.fibre[i].idx] = true
			}
		}
		for i := range e.fibre {
			if d := &e.fibre[i]; e.excluded[d.idx] {
				if c := e.conflictsOf(d); c > 0 {
					e.violate(r, d.idx, c)
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
	outliers := 0
	if e.greedy() >= 2 {
		if !e.cfg.RobustAnycast {
			e.anycast(r)
			return
		}
		for outliers < e.cfg.MaxOutliers {
			worst, conflicts := e.mostInconsistent()
			if conflicts == 0 {
				break
			}
			e.excluded[worst] = true
			e.violate(r, worst, conflicts)
			outliers++
			if e.greedy() < 2 {
				break
			}
		}
		if len(e.picked) >= 2 {
			e.anycast(r)
			return
		}
	}
	r.Verdict = placement.VerdictUnicast
	for !e.locate(r) && outliers < e.cfg.MaxOutliers {
		// Pairwise the disks met, but they have no common point: set the most inconsistent VP aside and retry.
		worst, conflicts := e.mostInconsistent()
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

// violate records measurement idx as a speed-of-light violation.
func (e *Engine) violate(r *Result, idx, conflicts int) {
	r.Flags |= FlagSpeedOfLight
	e.violations = append(e.violations, Violation{VP: e.ms[idx].VP, Conflicts: conflicts})
	r.Violations = e.violations
}

// conflictsOf counts the trusted fibre disks that d misses by more than AnycastMarginKm.
func (e *Engine) conflictsOf(d *disk) int {
	c := 0
	for j := range e.fibre {
		if o := &e.fibre[j]; !e.excluded[o.idx] && disjoint(d, o, e.cfg.AnycastMarginKm) {
			c++
		}
	}
	return c
}

// greedy fills e.picked with a maximal set of pairwise disjoint fibre disks (by AnycastMarginKm), smallest
// first, skipping excluded VPs, and returns its size (capped at MaxInstances).
func (e *Engine) greedy() int {
	e.picked = e.picked[:0]
	for i := range e.fibre {
		d := &e.fibre[i]
		if e.excluded[d.idx] {
			continue
		}
		ok := true
		for _, p := range e.picked {
			if !disjoint(d, &e.fibre[p], e.cfg.AnycastMarginKm) {
				ok = false
				break
			}
		}
		if ok {
			e.picked = append(e.picked, i)
			if len(e.picked) == e.cfg.MaxInstances {
				break
			}
		}
	}
	return len(e.picked)
}

// mostInconsistent returns the measurement index whose fibre disk misses the most others, and that count.
// Ties go to the larger disk (the less informative VP), then the later one in radius order.
func (e *Engine) mostInconsistent() (int, int) {
	e.conflicts = slices.Grow(e.conflicts[:0], len(e.fibre))[:len(e.fibre)]
	clear(e.conflicts)
	for i := range e.fibre {
		if e.excluded[e.fibre[i].idx] {
			continue
		}
		for j := i + 1; j < len(e.fibre); j++ {
			if !e.excluded[e.fibre[j].idx] && disjoint(&e.fibre[i], &e.fibre[j], e.cfg.AnycastMarginKm) {
				e.conflicts[i]++
				e.conflicts[j]++
			}
		}
	}
	best := 0
	for i := 1; i < len(e.fibre); i++ {
		ci, cb := e.conflicts[i], e.conflicts[best]
		switch {
		case ci > cb:
			best = i
		case ci == cb && ci > 0:
			best = i // sorted by radius: a later disk is at least as large
		}
	}
	return e.fibre[best].idx, e.conflicts[best]
}

// anycast records the verdict and places one instance per picked disk: the catalogue city nearest the VP that
// lies inside its disk (iGreedy places instances at the most populous city in the disk; the PoP catalogue is
// our list of large cities), else the VP itself.
func (e *Engine) anycast(r *Result) {
	r.Verdict = placement.VerdictAnycast
	for _, p := range e.picked {
		d := &e.fibre[p]
		m := &e.ms[d.idx]
		inst := Instance{VP: m.VP, Point: m.Point, RadiusKm: d.radiusKm}
		bestDot := -2.0
		for ci := range e.cityV {
			if dot := e.cityV[ci].dot(d.centre); dot >= d.cosR && dot > bestDot {
				bestDot = dot
				inst.Point, inst.City, inst.PoP = e.cities[ci].Point, e.cities[ci].City, e.cities[ci].Code
			}
		}
		e.instances = append(e.instances, inst)
	}
	r.Instances = e.instances
}

// dnsEvidence applies the DNS answers: vantage points that received disjoint A/AAAA answer sets mean the name
// is replicated (geo-DNS); different CHAOS id.server answers for the one address mean anycast (Fan, Heidemann,
// Govindan, "Evaluating anycast in the domain name system", INFOCOM 2013). Overlapping but different answer
// sets (round-robin subsets of one pool) are not evidence. DNS evidence overrides a latency verdict.
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
		if r.Verdict != placement.VerdictAnycast {
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
