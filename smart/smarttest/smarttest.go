// Package smarttest builds Smart Placement telemetry for tests: requests of one application to a database in
// Frankfurt, timed by the latency model.
package smarttest

import (
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/storage"
)

// Now is the fixed "now" of the generated telemetry.
var Now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// RTT is the modelled RTT in ms between two PoPs, or between a PoP and Frankfurt's AWS region (where the test
// database is) when b is "db".
func RTT(t testing.TB, a, b string) float64 {
	t.Helper()
	pa, ok := geo.LookupPoP(a)
	if !ok {
		t.Fatalf("unknown PoP %s", a)
	}
	var pb geo.Point
	if b == "db" {
		r, err := geo.LookupRegion("aws:eu-central-1")
		if err != nil {
			t.Fatal(err)
		}
		pb = r.Point
	} else {
		p, ok := geo.LookupPoP(b)
		if !ok {
			t.Fatalf("unknown PoP %s", b)
		}
		pb = p.Point
	}
	return geo.DefaultModel().RTTMs(pa.Point, pb)
}

// Gen builds the telemetry records of app "shop", deploy "v1", one second apart, starting ten minutes before
// Now.
type Gen struct {
	t    testing.TB
	Recs []storage.Telemetry
	at   time.Time
}

// NewGen returns an empty generator.
func NewGen(t testing.TB) *Gen { return &Gen{t: t, at: Now.Add(-10 * time.Minute)} }

// Add appends n requests entering at ingress and run at exec, each making q sequential queries to the
// Frankfurt database (host "db:5432", one RTT each, plus one for the connection), 2 ms of CPU, and the extra
// subrequests given.
func (g *Gen) Add(n int, ingress, exec string, q int, extra ...storage.Subrequest) *Gen {
	g.t.Helper()
	for range n {
		g.at = g.at.Add(time.Second)
		r := storage.Telemetry{App: "shop", Deploy: "v1", Ingress: ingress, Exec: exec, Routed: ingress != exec, At: g.at, DurationMs: 2}
		one := RTT(g.t, exec, "db")
		for range q {
			r.Subrequests = append(r.Subrequests, storage.Subrequest{Host: "db:5432", DurationMs: one})
			r.DurationMs += one
		}
		for _, s := range extra {
			r.Subrequests = append(r.Subrequests, s)
			if !s.WaitUntil {
				r.DurationMs += s.DurationMs
			}
		}
		g.Recs = append(g.Recs, r)
	}
	return g
}

// Edit applies fn to the last n records.
func (g *Gen) Edit(n int, fn func(*storage.Telemetry)) *Gen {
	for i := len(g.Recs) - n; i < len(g.Recs); i++ {
		fn(&g.Recs[i])
	}
	return g
}

// SetClock sets the time the next record follows (it is stamped one second later).
func (g *Gen) SetClock(t time.Time) *Gen {
	g.at = t
	return g
}

// Windows returns the records folded into aggregation windows, as worker hosts report them
// (storage.FoldTelemetry).
func (g *Gen) Windows() []storage.TelemetryWindow { return storage.FoldTelemetry(g.Recs) }
