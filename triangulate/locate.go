package triangulate

import (
	"math"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// locate estimates a unicast target's location CBG-style: every measurement not set aside is a disk (radius
// from the calibrated bestline when there is one, else the fibre bound); the estimate is the centroid of their
// intersection and the radius of the smallest disk about it holding the intersection. When the calibrated
// disks miss each other it falls back to the fibre bound; when even those (widened by AnycastMarginKm) have
// no common point the verdict becomes unknown.
func (e *Engine) locate(r *Result) bool {
	e.region = nil
	e.cal = e.cal[:0]
	if e.calibrated {
		for i := range e.fibre {
			if !e.excluded[i] {
				e.cal = append(e.cal, makeDisk(i, e.fibre[i].centre, e.calR[i]).withContains())
			}
		}
		if len(e.cal) == 0 {
			return false
		}
		if c, rad, ok := e.intersect(e.cal); ok {
			r.Location, r.HasLoc = Location{Point: c.point(), RadiusKm: rad}, true
			e.region = e.cal
			return true
		}
		r.Flags |= FlagCalibrationMiss
	}
	// The fibre bound, each disk widened by half the margin: two disks then meet when their centres are within
	// r1 + r2 + AnycastMarginKm, the same tolerance as the anycast test.
	e.cal = e.cal[:0]
	for i := range e.fibre {
		if d := &e.fibre[i]; !e.excluded[i] {
			// The fibre disk's margin trigonometry is that of this radius: no new sines.
			w := makeDisk(i, d.centre, d.radiusKm+e.cfg.AnycastMarginKm/2)
			w.cosR, w.sinR = d.cosH, d.sinH
			e.cal = append(e.cal, w)
		}
	}
	if len(e.cal) == 0 {
		return false
	}
	if c, rad, ok := e.intersect(e.cal); ok {
		r.Location, r.HasLoc = Location{Point: c.point(), RadiusKm: rad}, true
		e.region = e.cal
		return true
	}
	r.Flags |= FlagInconsistent
	if r.Verdict == placement.VerdictUnicast {
		r.Verdict = placement.VerdictUnknown
	}
	return false
}

// intersect samples the intersection of d (disks prepared by withContains) on a grid over the smallest disk,
// then again on a finer grid over the region found. It returns the centroid of the feasible samples and the radius of the region about it, or
// false when no sample is feasible. It moves the smallest disk to the front of d.
func (e *Engine) intersect(d []disk) (vec3, float64, bool) {
	small := 0
	for j := 1; j < len(d); j++ {
		if d[j].radiusKm < d[small].radiusKm || d[j].radiusKm == d[small].radiusKm && d[j].idx < d[small].idx {
			small = j
		}
	}
	d[0], d[small] = d[small], d[0]
	s := d[0]
	// Disks holding all of s constrain nothing; a disk missing s entirely makes the intersection empty. With
	// the prepared cosines and sines: angle <= rj - rs is dot >= cos(rj - rs), angle > rs + rj is
	// dot < cos(rs + rj), by the angle-sum identities.
	rs := s.radiusKm / geo.EarthRadiusKm
	e.sub = e.sub[:0]
	for j := 1; j < len(d); j++ {
		o := &d[j]
		rj := o.radiusKm / geo.EarthRadiusKm
		dot := s.centre.dot(o.centre)
		switch {
		case rj >= math.Pi || rj >= rs && dot >= o.cosR*s.cosR+o.sinR*s.sinR:
			continue
		case rs+rj < math.Pi && dot < s.cosR*o.cosR-s.sinR*o.sinR:
			return vec3{}, 0, false
		}
		e.sub = append(e.sub, *o)
	}
	if len(e.sub) == 0 {
		return s.centre, s.radiusKm, true
	}
	if s.radiusKm < 1 {
		if e.inside(s.centre, e.sub) {
			return s.centre, s.radiusKm, true
		}
		return vec3{}, 0, false
	}
	n := e.cfg.GridN
	e.feasible = e.sample(e.feasible[:0], &s, s.centre, s.radiusKm, n, e.sub)
	if len(e.feasible) == 0 {
		// A thin intersection can fall between grid points: one finer try before giving up.
		e.feasible = e.sample(e.feasible[:0], &s, s.centre, s.radiusKm, 3*n, e.sub)
		if len(e.feasible) == 0 {
			return vec3{}, 0, false
		}
	}
	c, rad := spread(e.feasible)
	cell := 2 * s.radiusKm / float64(n)
	c2, rad2 := c, rad+cell
	if rad+cell < s.radiusKm {
		// Zoom in: a grid over the region found, checked against s too.
		bound := rad + cell
		e.feasible = e.sample(e.feasible[:0], &s, c, bound, n, e.sub)
		if len(e.feasible) > 0 {
			c2, rad2 = spread(e.feasible)
			rad2 += bound / float64(n) * math.Sqrt2
		}
	}
	return c2, min(rad2, s.radiusKm), true
}

// sample appends to dst the points of an n x n grid over the disk of radiusKm about c (cell centres) that lie
// in s and in every disk of others.
func (e *Engine) sample(dst []vec3, s *disk, c vec3, radiusKm float64, n int, others []disk) []vec3 {
	east, north := tangentBasis(c)
	step := 2 * radiusKm / float64(n)
	for i := range n {
		x := -radiusKm + (float64(i)+0.5)*step
		for j := range n {
			y := -radiusKm + (float64(j)+0.5)*step
			if x*x+y*y > radiusKm*radiusKm {
				continue
			}
			p := offset(c, east, north, x, y)
			if s.contains(p) && e.inside(p, others) {
				dst = append(dst, p)
			}
		}
	}
	return dst
}

func (e *Engine) inside(p vec3, ds []disk) bool {
	for k := range ds {
		if !ds[k].contains(p) {
			return false
		}
	}
	return true
}

// spread returns the spherical centroid of pts and the largest distance from it to any of them, in km.
func spread(pts []vec3) (vec3, float64) {
	var sum vec3
	for _, p := range pts {
		sum = sum.add(p)
	}
	c := sum.unit()
	minDot := 1.0
	for _, p := range pts {
		minDot = min(minDot, p.dot(c))
	}
	return c, math.Acos(min(max(minDot, -1), 1)) * geo.EarthRadiusKm
}

// inRegion reports whether p lies in the feasible region of the last successful location (every disk
// widened by tolKm); false when there was none.
func (e *Engine) inRegion(p vec3, tolKm float64) bool {
	if len(e.region) == 0 {
		return false
	}
	for k := range e.region {
		d := &e.region[k]
		if angle(p, d.centre)*geo.EarthRadiusKm > d.radiusKm+tolKm {
			return false
		}
	}
	return true
}
