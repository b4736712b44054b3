// Package loghist is a mergeable histogram of durations in fixed log-scale buckets.
//
// Bucket 0 holds durations up to MinMs (zero included); bucket i >= 1 holds (MinMs·Gamma^(i-1), MinMs·Gamma^i]
// and stands for 2·MinMs·Gamma^i/(Gamma+1), within (Gamma-1)/(Gamma+1) (under 1 %) of every duration in it,
// like DDSketch's buckets. The bucket of a duration never changes, so two histograms merge by adding their
// counts per bucket: in Go (Merge) or in Redis (HINCRBY per bucket).
package loghist

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// The bucket scheme. Changing any of these changes the meaning of stored histograms.
const (
	// Gamma is the ratio of consecutive bucket bounds: a value read back is within 1 % of the one added.
	Gamma = 1.02
	// MinMs is the upper bound of bucket 0 (1 µs): durations this short are all alike for placement.
	MinMs = 0.001
	// MaxIndex is the last bucket; it holds everything above about 1e9 ms too.
	MaxIndex = 1396
)

var lnGamma = math.Log(Gamma)

// Histogram counts durations by bucket index. The zero value (nil) is empty; Add needs a made map.
type Histogram map[int]int64

// Index returns the bucket of a duration in ms (NaN and negative durations go to bucket 0).
func Index(ms float64) int {
	if !(ms > MinMs) {
		return 0
	}
	i := int(math.Ceil(math.Log(ms/MinMs) / lnGamma))
	return min(max(i, 1), MaxIndex)
}

// Value returns the duration in ms bucket i stands for: 0 for bucket 0.
func Value(i int) float64 {
	if i <= 0 {
		return 0
	}
	return 2 * MinMs * math.Pow(Gamma, float64(i)) / (Gamma + 1)
}

// Add counts one duration in ms.
func (h Histogram) Add(ms float64) { h[Index(ms)]++ }

// Merge adds o's counts to h.
func (h Histogram) Merge(o Histogram) {
	for i, n := range o {
		h[i] += n
	}
}

// Count returns the number of durations counted.
func (h Histogram) Count() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// Validate checks the indices and counts of a histogram received from outside.
func (h Histogram) Validate() error {
	for i, n := range h {
		if i < 0 || i > MaxIndex {
			return fmt.Errorf("loghist: bucket %d: want 0 to %d", i, MaxIndex)
		}
		if n < 0 {
			return fmt.Errorf("loghist: bucket %d: count %d is negative", i, n)
		}
	}
	return nil
}

// Median returns the median duration in ms as stats.Median computes it on the durations themselves (the middle
// one, or the mean of the two middle ones), each read as its bucket's value; 0 when empty.
func (h Histogram) Median() float64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return h.rank(n / 2)
	}
	a, b := h.rank(n/2-1), h.rank(n/2)
	return a + (b-a)/2
}

// rank returns the value of the r-th smallest duration (0-based).
func (h Histogram) rank(r int64) float64 {
	var seen int64
	for _, i := range slices.Sorted(maps.Keys(h)) {
		seen += h[i]
		if seen > r {
			return Value(i)
		}
	}
	return math.NaN() // unreachable for r < Count()
}
