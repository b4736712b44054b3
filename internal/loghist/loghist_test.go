package loghist

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/vantage-edge/vantage/internal/stats"
)

func TestIndexValueWithinOnePercent(t *testing.T) {
	for _, ms := range []float64{0.0011, 0.01, 0.5, 1, 2, 3.3, 17, 99.999, 280, 1e3, 6e4, 1e6, 1e9} {
		i := Index(ms)
		if v := Value(i); math.Abs(v-ms)/ms > (Gamma-1)/(Gamma+1)+1e-12 {
			t.Errorf("Index(%v) = %d, Value = %v: off by %.3f %%", ms, i, v, 100*math.Abs(v-ms)/ms)
		}
	}
	for _, ms := range []float64{0, -1, math.NaN(), MinMs} {
		if i := Index(ms); i != 0 {
			t.Errorf("Index(%v) = %d, want 0", ms, i)
		}
	}
	if i := Index(1e15); i != MaxIndex {
		t.Errorf("Index(1e15) = %d, want %d", i, MaxIndex)
	}
}

func TestMedianMatchesExactMedianAfterMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 10, 101, 1000} {
		var xs []float64
		a, b := Histogram{}, Histogram{}
		for k := range n {
			x := math.Exp(r.NormFloat64()*2 + 3)
			xs = append(xs, x)
			if k%2 == 0 {
				a.Add(x)
			} else {
				b.Add(x)
			}
		}
		a.Merge(b)
		if a.Count() != int64(n) {
			t.Fatalf("n=%d: merged count %d", n, a.Count())
		}
		want, got := stats.Median(xs), a.Median()
		if math.Abs(got-want)/want > 0.01 {
			t.Errorf("n=%d: Median = %v, exact %v", n, got, want)
		}
	}
	if m := (Histogram{}).Median(); m != 0 {
		t.Errorf("empty Median = %v, want 0", m)
	}
}

func TestValidate(t *testing.T) {
	for _, h := range []Histogram{{-1: 1}, {MaxIndex + 1: 1}, {3: -2}} {
		if h.Validate() == nil {
			t.Errorf("Validate(%v) = nil, want an error", h)
		}
	}
	if err := (Histogram{0: 1, MaxIndex: 2}).Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
