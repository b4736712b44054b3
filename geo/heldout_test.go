package geo

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/vantage-edge/vantage/internal/shareddata"
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

// heldOutPair is a measured pair with at least one endpoint held out of the model.
type heldOutPair struct {
	a, b Point
	ms   float64
}

// heldOut builds a model without every k-th server of the embedded table (by position, starting at
// offset) and returns it with every measured pair that involves a held-out server.
func heldOut(t testing.TB, k, offset int, cfg ModelConfig) (*LatencyModel, []heldOutPair) {
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
	var pairs []heldOutPair
	for i, a := range full.Servers {
		for _, b := range full.Servers[i+1:] {
			if !isOut[a.ID] && !isOut[b.ID] {
				continue
			}
			if v, ok := full.RTT(a.ID, b.ID); ok {
				pairs = append(pairs, heldOutPair{a.Point, b.Point, v})
			}
		}
	}
	return m, pairs
}

func errorStats(pred func(a, b Point) float64, pairs []heldOutPair) heldOutStats {
	preds := make([]float64, len(pairs))
	for i, p := range pairs {
		preds[i] = pred(p.a, p.b)
	}
	return predStats(preds, pairs, func(heldOutPair) bool { return true })
}

// predStats compares predictions with the pairs they were made for (aligned), over the pairs keep accepts.
func predStats(preds []float64, pairs []heldOutPair, keep func(heldOutPair) bool) heldOutStats {
	var abs, rel, signed []float64
	for i, p := range pairs {
		if !keep(p) {
			continue
		}
		abs = append(abs, math.Abs(preds[i]-p.ms))
		rel = append(rel, math.Abs(preds[i]-p.ms)/p.ms)
		signed = append(signed, preds[i]-p.ms)
	}
	slices.Sort(abs)
	slices.Sort(rel)
	slices.Sort(signed)
	return heldOutStats{len(abs), quantile(abs, 0.5), quantile(abs, 0.9), quantile(rel, 0.5), quantile(rel, 0.9), quantile(signed, 0.5)}
}

// fallbackOf is the plain fibre fallback of m (its fitted inflation), floored like the model.
func fallbackOf(m *LatencyModel) func(a, b Point) float64 {
	return func(a, b Point) float64 {
		d := DistanceKm(a, b)
		return max(m.FallbackRTTMs(d), m.Config().FloorMs+MinRTTMs(d))
	}
}

// TestHeldOutError holds out every 5th server of the embedded table (5 folds: offsets 0-4), builds the
// model from the rest and compares its error on the held-out servers' measured pairs with the plain fibre
// fallback's, overall and by distance. The figures are quoted in doc.go.
func TestHeldOutError(t *testing.T) {
	classes := []struct {
		name     string
		from, to float64
	}{{"< 500 km", 0, 500}, {"500-2000 km", 500, 2000}, {"2000-6000 km", 2000, 6000}, {">= 6000 km", 6000, math.Inf(1)}}
	var pooled []heldOutPair
	var pooledModel, pooledFallback []float64 // predictions, aligned with pooled
	for fold := range 5 {
		m, pairs := heldOut(t, 5, fold, DefaultModelConfig())
		preds, fb := make([]float64, len(pairs)), make([]float64, len(pairs))
		for i, p := range pairs {
			preds[i], fb[i] = m.RTTMs(p.a, p.b), fallbackOf(m)(p.a, p.b)
		}
		all := func(heldOutPair) bool { return true }
		model, fallback := predStats(preds, pairs, all), predStats(fb, pairs, all)
		t.Logf("fold %d (inflation %.3f): model %v", fold, m.Inflation(), model)
		t.Logf("fold %d                    fallback %v", fold, fallback)
		if model.medRel > 0.15 || model.p90Rel > 0.5 {
			t.Errorf("fold %d: model error too large: %v", fold, model)
		}
		if model.medRel > 0.7*fallback.medRel || model.p90Rel > fallback.p90Rel {
			t.Errorf("fold %d: model (%v) is not clearly better than the fibre fallback (%v)", fold, model, fallback)
		}
		pooled = append(pooled, pairs...)
		pooledModel = append(pooledModel, preds...)
		pooledFallback = append(pooledFallback, fb...)
	}
	all := func(heldOutPair) bool { return true }
	t.Logf("all folds: model    %v", predStats(pooledModel, pooled, all))
	t.Logf("all folds: fallback %v", predStats(pooledFallback, pooled, all))
	for _, c := range classes {
		in := func(p heldOutPair) bool { d := DistanceKm(p.a, p.b); return d >= c.from && d < c.to }
		t.Logf("%-12s model    %v", c.name, predStats(pooledModel, pooled, in))
		t.Logf("%-12s fallback %v", c.name, predStats(pooledFallback, pooled, in))
	}
}

// TestModelAgainstAWSRegions compares the model between AWS region coordinates with cloudping.co's P50
// inter-region RTTs (shared/data/aws-inter-region-latency): an independent data set, on a private backbone,
// and a median rather than a minimum, so the model is expected a little below it.
func TestModelAgainstAWSRegions(t *testing.T) {
	f, err := os.Open(shareddata.Path(t, "aws-inter-region-latency", "cloudping-p50.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	m := DefaultModel()
	var pairs []heldOutPair
	for i, row := range recs[1:] {
		a, err := LookupRegion("aws:" + row[0])
		if err != nil {
			t.Fatal(err)
		}
		for j := i + 2; j < len(row); j++ {
			b, err := LookupRegion("aws:" + recs[0][j])
			if err != nil {
				t.Fatal(err)
			}
			ms, err := strconv.ParseFloat(row[j], 64)
			if err != nil {
				t.Fatal(err)
			}
			pairs = append(pairs, heldOutPair{a.Point, b.Point, ms})
		}
	}
	model, fallback := errorStats(m.RTTMs, pairs), errorStats(fallbackOf(m), pairs)
	t.Logf("AWS P50: model    %v", model)
	t.Logf("AWS P50: fallback %v", fallback)
	if model.medRel > 0.3 {
		t.Errorf("model vs AWS P50: %v", model)
	}
}
