package triangulate

import (
	"math"

	"github.com/vantage-edge/vantage/geo"
)

// The engine works on unit vectors: a point-in-disk test is one dot product against the cosine of the disk's
// angular radius, with no trigonometry in the inner loops. Distances agree with geo.DistanceKm (same Earth
// radius).

const deg = math.Pi / 180

type vec3 struct{ x, y, z float64 }

func toVec(p geo.Point) vec3 {
	lat, lon := p.Lat*deg, p.Lon*deg
	sl, cl := math.Sincos(lat)
	so, co := math.Sincos(lon)
	return vec3{cl * co, cl * so, sl}
}

func (v vec3) point() geo.Point {
	return geo.Point{
		Lat: math.Atan2(v.z, math.Hypot(v.x, v.y)) / deg,
		Lon: math.Atan2(v.y, v.x) / deg,
	}
}

func (v vec3) dot(w vec3) float64 { return v.x*w.x + v.y*w.y + v.z*w.z }

func (v vec3) add(w vec3) vec3 { return vec3{v.x + w.x, v.y + w.y, v.z + w.z} }

func (v vec3) scale(s float64) vec3 { return vec3{v.x * s, v.y * s, v.z * s} }

func (v vec3) cross(w vec3) vec3 {
	return vec3{v.y*w.z - v.z*w.y, v.z*w.x - v.x*w.z, v.x*w.y - v.y*w.x}
}

func (v vec3) norm() float64 { return math.Sqrt(v.dot(v)) }

func (v vec3) unit() vec3 {
	n := v.norm()
	if n == 0 {
		return vec3{1, 0, 0}
	}
	return v.scale(1 / n)
}

// angle returns the angle between two unit vectors in radians, accurate at all scales.
func angle(a, b vec3) float64 { return math.Atan2(a.cross(b).norm(), a.dot(b)) }

// distKm is the great-circle distance between two unit vectors.
func distKm(a, b vec3) float64 { return angle(a, b) * geo.EarthRadiusKm }

// disk is a spherical cap: every point within radiusKm of centre. The trigonometry the tests need is
// computed once per disk, on demand: withContains for point tests, withMargin for disjointness.
type disk struct {
	idx      int // index of the measurement it comes from
	centre   vec3
	radiusKm float64
	cosR     float64 // cos and sin of the angular radius (capped at pi); set by withContains
	sinR     float64
	hAng     float64 // angular radius plus half the disjointness margin; set by withMargin
	cosH     float64 // cos and sin of hAng
	sinH     float64
}

func makeDisk(idx int, centre vec3, radiusKm float64) disk {
	return disk{idx: idx, centre: centre, radiusKm: radiusKm}
}

// withContains prepares d for contains (and for intersect's pruning).
func (d disk) withContains() disk {
	d.sinR, d.cosR = math.Sincos(min(d.radiusKm/geo.EarthRadiusKm, math.Pi))
	return d
}

// withMargin prepares d for disjoint with a margin of marginKm between two disks (half on each).
func (d disk) withMargin(marginKm float64) disk {
	d.hAng = (d.radiusKm + marginKm/2) / geo.EarthRadiusKm
	d.sinH, d.cosH = math.Sincos(min(d.hAng, math.Pi))
	return d
}

// contains reports whether unit vector p lies in the disk (prepared by withContains).
func (d *disk) contains(p vec3) bool { return p.dot(d.centre) >= d.cosR }

// disjoint reports whether two disks prepared by withMargin miss each other by more than the margin: the
// angle between their centres exceeds the sum of their widened angular radii. cos(a+b) comes from the
// prepared cosines and sines, so the test is a few multiplications.
func disjoint(a, b *disk) bool {
	if a.hAng+b.hAng >= math.Pi {
		return false
	}
	return a.centre.dot(b.centre) < a.cosH*b.cosH-a.sinH*b.sinH
}

// tangentBasis returns east and north unit vectors at c (an arbitrary orthonormal pair at the poles).
func tangentBasis(c vec3) (east, north vec3) {
	east = vec3{-c.y, c.x, 0}
	if east.norm() < 1e-12 {
		east = vec3{0, 1, 0}
	}
	east = east.unit()
	north = c.cross(east)
	return east, north
}

// offset returns the point reached from c by going xKm east and yKm north along the great circle
// (azimuthal equidistant projection centred at c).
func offset(c, east, north vec3, xKm, yKm float64) vec3 {
	d := math.Hypot(xKm, yKm)
	if d == 0 {
		return c
	}
	s, co := math.Sincos(d / geo.EarthRadiusKm)
	dir := east.scale(xKm / d).add(north.scale(yKm / d))
	return c.scale(co).add(dir.scale(s))
}
