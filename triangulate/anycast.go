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
// counts and places them. With Config.RobustAnycast the evidence must survive setting aside the
// Config.MaxOutliers most inconsistent vantage points; if it does not, they are reported as speed-of-light
// violations and the target is judged without them. With a Calibration the same test also runs on the
// calibrated disks (Config.AnycastCalibrated), where it must survive one more outlier.
func (e *Engine) verdict(r *Result) {
	n := len(e.ms)
	e.fibre = e.fibre[:0]
	e.test = e.test[:0]
	e.calR = e.calR[:0]
	e.calibrated = false
	cal := e.cfg.Calibration
	for i := range e.ms {
		m := &e.ms[i]
		v := toVec(m.Point)
		fr := geo.MaxDistanceKm(m.RTTMs)
		cr, tr := fr, fr
		if cal != nil {
			if l := cal.Line(m.VP); !l.IsZero() {
				br := l.RadiusKm(m.RTTMs)
				cr = min(br+e.cfg.CalibrationSlackKm, fr)
				tr = min(br+e.cfg.AnycastSlackKm, fr)
				e.calibrated = true
			}
		}
		e.calR = append(e.calR, cr)
		e.fibre = append(e.fibre, makeDisk(i, v, fr))
		if e.cfg.AnycastCalibrated {
			e.test = append(e.test, makeDisk(i, v, tr))
		} else {
			e.test = append(e.test, makeDisk(i, v, fr))
		}
	}
	sortDisks(e.fibre)
	sortDisks(e.test)
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
			if d := &e.fibre[i]; e.excluded[d.idx] {
				if c := e.conflictsOf(e.fibre, e.excluded, d); c > 0 {
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

// conflictsOf counts the disks not excluded that d misses by more than AnycastMarginKm.
func (e *Engine) conflictsOf(disks []disk, excluded []bool, d *disk) int {
	c := 0
	for j := range disks {
		if o := &disks[j]; !excluded[o.idx] && disjoint(d, o, e.cfg.AnycastMarginKm) {
			c++
		}
	}
	return c
}

// greedy fills e.picked with a maximal set of pairwise disjoint disks (by AnycastMarginKm), smallest first,
// skipping excluded VPs, and returns its size (capped at MaxInstances).
func (e *Engine) greedy(disks []disk, excluded []bool) int {
	e.picked = e.picked[:0]
	for i := range disks {
		d := &disks[i]
		if excluded[d.idx] {
			continue
		}
		ok := true
		for _, p := range e.picked {
			if !disjoint(d, &disks[p], e.cfg.AnycastMarginKm) {
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

// mostInconsistent returns the measurement index whose disk misses the most others, and that count. Ties go to
// the larger disk (the less informative VP), then the later one in radius order.
func (e *Engine) mostInconsistent(disks []disk, excluded []bool) (int, int) {
	e.conflicts = slices.Grow(e.conflicts[:0], len(disks))[:len(disks)]
	clear(e.conflicts)
	for i := range disks {
		if excluded[disks[i].idx] {
			continue
		}
		for j := i + 1; j < len(disks); j++ {
			if !excluded[disks[j].idx] && disjoint(&disks[i], &disks[j], e.cfg.AnycastMarginKm) {
				e.conflicts[i]++
				e.conflicts[j]++
			}
		}
	}
	best := 0
	for i := 1; i < len(disks); i++ {
		if ci, cb := e.conflicts[i], e.conflicts[best]; ci > cb || ci == cb && ci > 0 {
			best = i // sorted by radius: on a tie, a later disk is at least as large
		}
	}
	return disks[best].idx, e.conflicts[best]
}

// anycast records the verdict and places one instance per picked disk: the catalogue city nearest the VP that
// lies inside its disk (iGreedy places instances at the most populous city in the disk; the PoP catalogue is
// our list of large cities), else the VP itself.
func (e *Engine) anycast(r *Result, disks []disk) {
	r.Verdict = placement.VerdictAnycast
	for _, p := range e.picked {
		d := &disks[p]
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
