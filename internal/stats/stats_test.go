package stats

import (
	"slices"
	"testing"
	"time"
)

// medianCase is one row of a Median table test.
type medianCase[T ~int64 | ~float64] struct {
	name string
	in   []T
	want T
}

// testMedian runs a table of cases, checking the answer and that the input is left alone.
func testMedian[T ~int64 | ~float64](t *testing.T, cases []medianCase[T]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			if got := Median(in); got != tc.want {
				t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("Median modified its input: %v, was %v", in, tc.in)
			}
		})
	}
}

func TestMedianFloat(t *testing.T) {
	testMedian(t, []medianCase[float64]{
		{"empty", nil, 0},
		{"one", []float64{3}, 3},
		{"odd", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
		{"negative", []float64{-4, -1}, -2.5},
		{"duplicates", []float64{7, 7, 1, 7}, 7},
		{"huge", []float64{1.5e308, 1.7e308}, 1.6e308},
	})
}

func TestMedianDuration(t *testing.T) {
	ms := time.Millisecond
	testMedian(t, []medianCase[time.Duration]{
		{"empty", nil, 0},
		{"odd", []time.Duration{30 * ms, 10 * ms, 20 * ms}, 20 * ms},
		{"even", []time.Duration{40 * ms, 10 * ms, 20 * ms, 30 * ms}, 25 * ms},
		{"even_rounds_down", []time.Duration{1, 2}, 1},
		{"no_overflow", []time.Duration{1<<62 + 2, 1<<62 + 4}, 1<<62 + 3},
	})
}
