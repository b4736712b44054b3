package triangulate

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/vantage-edge/vantage/geo"
)

// Phantom worlds: seeded ground truths for tests and benchmarks, in the spirit of serf coordinate's
// phantom.go. Vantage points and targets sit at known places; RTTs follow a simple physical model, so tests
// can assert error bounds against the truth.

// PhantomConfig is the RTT model of a phantom world: RTT = MinRTTMs(distance) x Inflation + BaseMs + a
// uniform jitter in [0, JitterMs).
type PhantomConfig struct {
	Inflation float64 // path inflation over the great-circle fibre bound, >= 1 (WonderProxy's median is ~2)
	BaseMs    float64 // fixed per-RTT cost (access links, host), ms
	JitterMs  float64 // uniform extra delay, ms
}

// DefaultPhantomConfig returns an RTT model close to the WonderProxy matrix's typical pair: inflation 1.6,
// 0.5 ms base, 1 ms jitter.
func DefaultPhantomConfig() PhantomConfig {
	return PhantomConfig{Inflation: 1.6, BaseMs: 0.5, JitterMs: 1}
}

// RTTMs returns the phantom RTT between a and b, drawing the jitter from rng.
func (pc PhantomConfig) RTTMs(rng *rand.Rand, a, b geo.Point) float64 {
	rtt := geo.MinRTTMs(geo.DistanceKm(a, b))*max(pc.Inflation, 1) + pc.BaseMs
	if pc.JitterMs > 0 {
		rtt += rng.Float64() * pc.JitterMs
	}
	return rtt
}

// RandomPoint returns a point uniformly distributed on the sphere between latitudes -60 and 70 (where
// people and PoPs are).
func RandomPoint(rng *rand.Rand) geo.Point {
	lo, hi := math.Sin(-60*deg), math.Sin(70*deg)
	return geo.Point{Lat: math.Asin(lo+rng.Float64()*(hi-lo)) / deg, Lon: rng.Float64()*360 - 180}
}

// RandomPoPs returns n phantom PoPs at random points, coded "P000", "P001", ...
func RandomPoPs(rng *rand.Rand, n int) []geo.PoP {
	out := make([]geo.PoP, n)
	for i := range out {
		out[i] = geo.PoP{Code: fmt.Sprintf("P%03d", i), City: fmt.Sprintf("Phantom %d", i), Point: RandomPoint(rng)}
	}
	return out
}

// GenerateUnicast returns one measurement per vantage point to a single host at target.
func GenerateUnicast(rng *rand.Rand, pc PhantomConfig, vps []geo.PoP, target geo.Point) []Measurement {
	out := make([]Measurement, len(vps))
	for i, v := range vps {
		out[i] = Measurement{VP: v.Code, Point: v.Point, RTTMs: pc.RTTMs(rng, v.Point, target)}
	}
	return out
}

// GenerateAnycast returns one measurement per vantage point to an anycast address served from every point of
// instances: each VP reaches the instance with the lowest RTT.
func GenerateAnycast(rng *rand.Rand, pc PhantomConfig, vps []geo.PoP, instances []geo.Point) []Measurement {
	out := make([]Measurement, len(vps))
	for i, v := range vps {
		best := math.Inf(1)
		for _, in := range instances {
			best = min(best, pc.RTTMs(rng, v.Point, in))
		}
		out[i] = Measurement{VP: v.Code, Point: v.Point, RTTMs: best}
	}
	return out
}

// Mislocate returns a copy of ms in which the measurement of vp claims to be at p instead (a VP listed in the
// wrong city, as WonderProxy's server 220).
func Mislocate(ms []Measurement, vp string, p geo.Point) []Measurement {
	out := append([]Measurement(nil), ms...)
	for i := range out {
		if out[i].VP == vp {
			out[i].Point = p
		}
	}
	return out
}
