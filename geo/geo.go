package geo

import "math"

// EarthRadiusKm is the mean Earth radius (IUGG R1) used by DistanceKm, in km.
const EarthRadiusKm = 6371.0088

// SpeedOfLightKmPerMs is the speed of light in vacuum, in km per ms.
const SpeedOfLightKmPerMs = 299.792458

// FibreKmPerMs is the one-way distance covered per ms of round-trip time when light travels at 2/3 c (the
// speed in optical fibre, refractive index ~1.5): RTT/2 x 2/3 c = 99.93 km per ms of RTT.
const FibreKmPerMs = SpeedOfLightKmPerMs * 2 / 3 / 2

// Point is a location on Earth in decimal degrees (WGS 84): Lat in [-90, 90], Lon in [-180, 180].
type Point struct {
	Lat, Lon float64
}

// Valid reports whether p is a finite coordinate within the ranges above.
func (p Point) Valid() bool {
	return !math.IsNaN(p.Lat) && !math.IsNaN(p.Lon) && p.Lat >= -90 && p.Lat <= 90 && p.Lon >= -180 && p.Lon <= 180
}

// DistanceKm returns the great-circle distance between a and b in km (haversine formula, EarthRadiusKm).
func DistanceKm(a, b Point) float64 {
	const rad = math.Pi / 180
	lat1, lat2 := a.Lat*rad, b.Lat*rad
	dLat := lat2 - lat1
	dLon := (b.Lon - a.Lon) * rad
	s1, s2 := math.Sin(dLat/2), math.Sin(dLon/2)
	h := s1*s1 + math.Cos(lat1)*math.Cos(lat2)*s2*s2
	h = min(max(h, 0), 1)
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(h))
}

// MaxDistanceKm returns the speed-of-light-in-fibre bound for an RTT in ms: a target answering in rttMs
// cannot be farther than rttMs/2 x 2/3 c (FibreKmPerMs km per ms) from the vantage point. Negative RTTs give 0.
func MaxDistanceKm(rttMs float64) float64 {
	return max(rttMs, 0) * FibreKmPerMs
}

// MinRTTMs returns the smallest RTT in ms physically possible over distKm of fibre laid along the great
// circle (the inverse of MaxDistanceKm). Negative distances give 0.
func MinRTTMs(distKm float64) float64 {
	return max(distKm, 0) / FibreKmPerMs
}
