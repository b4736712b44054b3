package geo

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// heldOutStats are error figures of a model against measured pairs.
type heldOutStats struct {
	pairs          int
	medAbs, p90Abs float64 // ms
	medRel, p90Rel float64 // |model - measured| / measured
	medSigned      float64 // ms, model - measured
}

func (s heldOutStats) String() string {
	return fmt.Sprintf("%d pairs: |error| median %.1f ms, p90 %.1f ms; relative median %.1f %%, p90 %.1f %%; signed median %+.1f ms",
		s.pairs, s.medAbs, s.p90Abs, 100*s.medRel, 100*s.p90Rel, s.medSigned)
}

func quantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

func errorStats(pred func(a, b Point) float64, pairs [][3]float64, pts map[int]Point) heldOutStats {
	var abs, rel, signed []float64
	for _, p := range pairs {
		got := pred(pts[int(p[0])], pts[int(p[1])])
		abs = append(abs, math.Abs(got-p[2]))
		rel = append(rel, math.Abs(got-p[2])/p[2])
		signed = append(signed, got-p[2])
	}
	slices.Sort(abs)
	slices.Sort(rel)
	slices.Sort(signed)
	return heldOutStats{len(pairs), quantile(abs, 0.5), quantile(abs, 0.9), quantile(rel, 0.5), quantile(rel, 0.9), quantile(signed, 0.5)}
}

// heldOut builds a model without every k-th server (by position in the embedded table, starting at offset)
// and measures it on every measured pair that involves a held-out server.
func heldOut(t testing.TB, k, offset int, cfg ModelConfig) (model, fallback heldOutStats) {
	full := EmbeddedLatencyTable()
	var out []int
	isOut := map[int]bool{}
	for i := offset; i < len(full.Servers); i += k {
		out = append(out, full.Servers[i].ID)
		isOut[full.Servers[i].ID] = true
	}
	m, err := NewLatencyModel(full.Without(out...), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pts := map[int]Point{}
	for _, s := range full.Servers {
		pts[s.ID] = s.Point
	}
	var pairs [][3]float64
	for i, a := range full.Servers {
		for _, b := range full.Servers[i+1:] {
			if !isOut[a.ID] && !isOut[b.ID] {
				continue
			}
			if v, ok := full.RTT(a.ID, b.ID); ok {
				pairs = append(pairs, [3]float64{float64(a.ID), float64(b.ID), v})
			}
		}
	}
	return errorStats(m.RTTMs, pairs, pts), errorStats(func(a, b Point) float64 {
		return max(m.FallbackRTTMs(DistanceKm(a, b)), m.Config().FloorMs+MinRTTMs(DistanceKm(a, b)))
	}, pairs, pts)
}

// TestHeldOutError holds out every 5th server of the embedded table, builds the model from the rest and
// compares its error on the held-out servers' measured pairs with the plain fibre fallback's. The figures
// are quoted in doc.go.
func TestHeldOutError(t *testing.T) {
	model, fallback := heldOut(t, 5, 0, DefaultModelConfig())
	t.Logf("model:    %v", model)
	t.Logf("fallback: %v", fallback)
	if model.medRel > 0.15 || model.p90Rel > 0.5 {
		t.Errorf("model error too large: %v", model)
	}
	if model.medRel > 0.8*fallback.medRel || model.p90Rel > fallback.p90Rel {
		t.Errorf("model (%v) is not clearly better than the fibre fallback (%v)", model, fallback)
	}
}
