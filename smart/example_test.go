package smart_test

import (
	"fmt"
	"time"

	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/storage"
)

// A shop whose database is in Frankfurt: Sydney's users wait six 274 ms round trips when it runs in Sydney, and
// about one forwarding round trip when it runs in Frankfurt. The analytics call does not count.
func ExampleAnalyze() {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var recs []storage.Telemetry
	add := func(n int, pop string, dbMs float64) {
		for i := range n {
			r := storage.Telemetry{App: "shop", Deploy: "v1", Ingress: pop, Exec: pop,
				At: now.Add(-time.Duration(i+1) * time.Second), DurationMs: 2 + 6*dbMs}
			for range 6 {
				r.Subrequests = append(r.Subrequests, storage.Subrequest{Host: "db.shop.example:5432", DurationMs: dbMs})
			}
			r.Subrequests = append(r.Subrequests, storage.Subrequest{Host: "www.google-analytics.com", DurationMs: 30})
			recs = append(recs, r)
		}
	}
	add(30, "SYD", 274)
	add(10, "FRA", 0.8)
	a := smart.Analyze(smart.DefaultConfig(), smart.Input{App: "shop", Records: recs, Now: now}, smart.Lookups{})
	fmt.Println(a.Decision.Status, a.Decision.BestPoP)
	fmt.Printf("unplaced %.0f ms, at %s %.0f ms; %d analytics subrequests left out\n",
		a.LocalMs, a.Estimates[0].PoP, a.Estimates[0].MeanMs, a.Excluded[smart.ExcludedAnalytics])
	// Output:
	// SUCCESS FRA
	// unplaced 1236 ms, at FRA 212 ms; 40 analytics subrequests left out
}
