package smart

import (
	"maps"
	"math"
	"testing"

	"github.com/vantage-edge/vantage/storage"
)

// aggregated returns in with its records folded into windows, as the runner reads them.
func aggregated(in Input) AggregateInput {
	return AggregateInput{App: in.App, Deploy: in.Deploy, Windows: storage.FoldTelemetry(in.Records), Previous: in.Previous,
		Unsupported: in.Unsupported, UnsupportedDeploy: in.UnsupportedDeploy, Now: in.Now}
}

// near reports whether an estimate from aggregates is within the buckets' error (1 %) of the exact one.
func near(agg, exact float64) bool {
	return math.Abs(agg-exact) <= 0.011*math.Abs(exact)+1e-3 || (math.IsNaN(agg) && math.IsNaN(exact))
}

// TestAggregatesDecideLikeRecords runs every scenario of TestAnalyze on the records and on the windows they fold
// into: the same status, best PoP, unsupported mark, candidates in the same order, and estimates within 1 %.
func TestAggregatesDecideLikeRecords(t *testing.T) {
	for _, tt := range analyzeCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.config(t)
			in := tt.in(t)
			raw := Analyze(cfg, in, tt.lk)
			agg := AnalyzeAggregates(cfg, aggregated(in), tt.lk)
			rd, ad := raw.Decision, agg.Decision
			if ad.Status != rd.Status || ad.BestPoP != rd.BestPoP || ad.Estimated != rd.Estimated || agg.MarkUnsupported != raw.MarkUnsupported {
				t.Fatalf("aggregates: status %q best %q estimated %v mark %v; records: %q %q %v %v", ad.Status, ad.BestPoP,
					ad.Estimated, agg.MarkUnsupported, rd.Status, rd.BestPoP, rd.Estimated, raw.MarkUnsupported)
			}
			if ad.App != rd.App || !ad.ComputedAt.Equal(rd.ComputedAt) || !ad.NextRecheck.Equal(rd.NextRecheck) || ad.Confidence != rd.Confidence {
				t.Errorf("aggregates decision %+v, records %+v", ad, rd)
			}
			if len(ad.Candidates) != len(rd.Candidates) {
				t.Fatalf("aggregates candidates %v, records %v", ad.Candidates, rd.Candidates)
			}
			for i := range rd.Candidates {
				if ad.Candidates[i].PoP != rd.Candidates[i].PoP || !near(ad.Candidates[i].RTTMs, rd.Candidates[i].RTTMs) {
					t.Errorf("candidate %d: aggregates %+v, records %+v", i, ad.Candidates[i], rd.Candidates[i])
				}
			}
			if agg.Deploy != raw.Deploy || agg.Requests != raw.Requests || !maps.Equal(agg.Excluded, raw.Excluded) ||
				!near(agg.PerRequest, raw.PerRequest) || len(agg.Locations) != len(raw.Locations) || len(agg.Hosts) != len(raw.Hosts) {
				t.Errorf("aggregates: deploy %q, %d requests at %v, excluded %v, %.3f per request, %d hosts; records: %q, %d at %v, %v, %.3f, %d",
					agg.Deploy, agg.Requests, agg.Locations, agg.Excluded, agg.PerRequest, len(agg.Hosts),
					raw.Deploy, raw.Requests, raw.Locations, raw.Excluded, raw.PerRequest, len(raw.Hosts))
			}
			for _, v := range [][2]float64{{agg.OverheadMs, raw.OverheadMs}, {agg.LocalMs, raw.LocalMs}, {agg.RoutedMs, raw.RoutedMs}, {agg.BaselineMs, raw.BaselineMs}} {
				if !near(v[0], v[1]) {
					t.Errorf("overhead, local, routed, baseline ms: aggregates %.3f %.3f %.3f %.3f, records %.3f %.3f %.3f %.3f",
						agg.OverheadMs, agg.LocalMs, agg.RoutedMs, agg.BaselineMs, raw.OverheadMs, raw.LocalMs, raw.RoutedMs, raw.BaselineMs)
					break
				}
			}
			if ad.Status != tt.wantStatus || ad.BestPoP != tt.wantBest {
				t.Errorf("aggregates: status %q best %q, the scenario wants %q %q", ad.Status, ad.BestPoP, tt.wantStatus, tt.wantBest)
			}
		})
	}
}
