// Package stats holds the small statistics Vantage's packages and tests share.
package stats

import "slices"

// Median returns the median of xs: the middle value, or the mean of the two middle values for an even count
// (computed as a+(b-a)/2, so it does not overflow; integer types round towards the lower one); zero for
// none. xs is not modified.
func Median[T ~int64 | ~float64](xs []T) T {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	a, b := s[n/2-1], s[n/2]
	return a + (b-a)/2
}
