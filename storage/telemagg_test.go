package storage

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/loghist"
)

// aggRecords returns records of shop over three windows, two PoPs and two back ends, one of them in waitUntil.
func aggRecords(now time.Time) []Telemetry {
	var recs []Telemetry
	for i := range 30 {
		at := WindowStart(now).Add(-time.Duration(i%3) * TelemetryAggWindow).Add(time.Duration(i) * time.Millisecond)
		r := telemetryAt("shop", at, 10+float64(i))
		if i%2 == 0 {
			r.Exec, r.Routed, r.Reason = "SYD", false, "baseline"
		}
		recs = append(recs, r)
	}
	return recs
}

// testTelemetryWindows stores records twice (AddTelemetry folds them) and reads back windows equal to the
// records folded in memory, twice over: HINCRBY merges counts, sums and buckets, the script keeps the minima and
// maxima.
func testTelemetryWindows(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{TelemetrySampleRate: -1})
	ctx := testCtx(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := aggRecords(now)
	for range 2 {
		if err := s.AddTelemetry(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	got, skipped, err := s.TelemetryWindows(ctx, "shop", now.Add(-time.Minute), now)
	if err != nil || skipped != 0 {
		t.Fatalf("TelemetryWindows: skipped %d, %v", skipped, err)
	}
	want := FoldTelemetry(append(append([]Telemetry(nil), recs...), recs...))
	if len(got) != 3 || len(want) != 3 {
		t.Fatalf("TelemetryWindows = %d windows, folded %d; want 3", len(got), len(want))
	}
	for i := range want {
		for j := range want[i].Cells {
			want[i].Cells[j].Last = want[i].Cells[j].Last.Truncate(time.Millisecond)
			want[i].Cells[j].SumMs = math.Round(want[i].Cells[j].SumMs*1000) / 1000
		}
		for j := range want[i].Hosts {
			want[i].Hosts[j].SumMs = math.Round(want[i].Hosts[j].SumMs*1000) / 1000
		}
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("window %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if n, _ := s.FreshTelemetry(ctx); n["shop"] != 60 {
		t.Errorf("FreshTelemetry = %v, want shop: 60", n)
	}
	if apps, err := s.TelemetryApps(ctx, now.Add(-time.Minute)); err != nil || !reflect.DeepEqual(apps, []string{"shop"}) {
		t.Errorf("TelemetryApps = %v, %v; want [shop]", apps, err)
	}
	ttl, err := s.c.PTTL(ctx, KeyTelemetryWindow("shop", now)).Result()
	if err != nil || ttl <= TelemetryAggTTL-time.Minute || ttl > TelemetryAggTTL {
		t.Errorf("window TTL %v, %v; want about %v", ttl, err, TelemetryAggTTL)
	}
	if n, err := s.c.Exists(ctx, KeyTelemetry("shop")).Result(); err != nil || n != 0 {
		t.Errorf("stream exists = %d, %v; want no sampled records at rate -1", n, err)
	}
}

// testTelemetrySample keeps every record at rate 1 on the stream, besides the windows.
func testTelemetrySample(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{TelemetrySampleRate: 1})
	ctx := testCtx(t)
	now := time.Now().UTC()
	if err := s.AddTelemetry(ctx, aggRecords(now)); err != nil {
		t.Fatal(err)
	}
	n := 0
	if _, err := s.TelemetrySince(ctx, "shop", now.Add(-time.Hour), func(Telemetry) error { n++; return nil }); err != nil || n != 30 {
		t.Errorf("sampled records = %d, %v; want all 30", n, err)
	}
}

// testTelemetryBatchSamples stores a worker host's batch: windows it folded itself and a sample of its records.
// The windows are what the analysis reads; the samples go to the stream as they are, whatever the store's own
// sample rate, and are not counted a second time.
func testTelemetryBatchSamples(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{TelemetrySampleRate: -1})
	ctx := testCtx(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := aggRecords(now)
	b := TelemetryBatch{Windows: FoldTelemetry(recs), Samples: recs[:2]}
	if err := s.AddTelemetryBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	n := 0
	if _, err := s.TelemetrySince(ctx, "shop", now.Add(-time.Hour), func(Telemetry) error { n++; return nil }); err != nil || n != 2 {
		t.Errorf("records on the stream = %d, %v; want the 2 samples", n, err)
	}
	ws, _, err := s.TelemetryWindows(ctx, "shop", now.Add(-time.Minute), now)
	if err != nil {
		t.Fatal(err)
	}
	var requests int64
	for i := range ws {
		requests += ws[i].Requests()
	}
	if requests != int64(len(recs)) {
		t.Errorf("windows hold %d requests, want %d (samples not counted again)", requests, len(recs))
	}
	if fresh, _ := s.FreshTelemetry(ctx); fresh["shop"] != int64(len(recs)) {
		t.Errorf("FreshTelemetry = %v, want shop: %d", fresh, len(recs))
	}
	bad := TelemetryBatch{Samples: []Telemetry{{App: "shop"}}}
	if err := s.AddTelemetryBatch(ctx, bad); err == nil || !strings.Contains(err.Error(), "sample 0: ") {
		t.Errorf("AddTelemetryBatch(bad sample) = %v, want an error naming sample 0", err)
	}
}

// TestAggregatorCap checks that AddCapped opens no more groups than its cap, and still adds records that fall
// in groups already open.
func TestAggregatorCap(t *testing.T) {
	now := time.Now()
	rec := func(exec, host string) *Telemetry {
		r := telemetryAt("shop", now, 10)
		r.Exec = exec
		r.Subrequests = []Subrequest{{Host: host, DurationMs: 1}, {Host: host, DurationMs: 2}}
		return &r
	}
	a := NewTelemetryAggregator()
	steps := []struct {
		name       string
		rec        *Telemetry
		want       bool
		wantGroups int
	}{
		{"first_opens_cell_and_host", rec("FRA", "db:1"), true, 2},
		{"same_groups", rec("FRA", "db:1"), true, 2},
		{"new_host", rec("FRA", "db:2"), true, 3},
		{"new_cell_and_host_over_cap", rec("SYD", "db:1"), false, 3},
		{"still_open_groups", rec("FRA", "db:2"), true, 3},
	}
	for _, st := range steps {
		if got := a.AddCapped(st.rec, 3); got != st.want || a.Groups() != st.wantGroups {
			t.Errorf("%s: AddCapped = %v with %d groups, want %v with %d", st.name, got, a.Groups(), st.want, st.wantGroups)
		}
	}
	if n := a.Requests(); n != 4 {
		t.Errorf("Requests = %d, want the 4 added", n)
	}
	if ws := a.Drain(); len(ws) != 1 || len(ws[0].Cells) != 1 || len(ws[0].Hosts) != 2 || a.Groups() != 0 {
		t.Errorf("Drain = %+v (then %d groups), want one window of one cell and two hosts, then none", ws, a.Groups())
	}
}

func TestTelemetryWindowValidate(t *testing.T) {
	now := time.Now()
	good := func() TelemetryWindow {
		return TelemetryWindow{App: "shop", Start: now, Cells: []TelemetryCell{{Ingress: "SYD", Exec: "FRA", Count: 2, SumMs: 30, Last: now,
			Durations: loghist.Histogram{loghist.Index(10): 1, loghist.Index(20): 1}, Outside: loghist.Histogram{0: 2}}},
			Hosts: []TelemetryHost{{Exec: "FRA", Host: "db:5432", Count: 2, SumMs: 20, MinMs: 9}}}
	}
	w := good()
	if err := w.Validate(); err != nil {
		t.Fatalf("valid window: %v", err)
	}
	tests := []struct {
		name string
		edit func(*TelemetryWindow)
		want string
	}{
		{"no_app", func(w *TelemetryWindow) { w.App = "" }, "telemetry app is empty"},
		{"no_start", func(w *TelemetryWindow) { w.Start = time.Time{} }, "start is zero"},
		{"no_exec", func(w *TelemetryWindow) { w.Cells[0].Exec = "" }, "cell 0: exec: storage: PoP is empty"},
		{"separator_in_reason", func(w *TelemetryWindow) { w.Cells[0].Reason = "a|b" }, `reason "a|b" contains "|"`},
		{"zero_count", func(w *TelemetryWindow) { w.Cells[0].Count = 0 }, "want count >= 1"},
		{"histogram_short", func(w *TelemetryWindow) { w.Cells[0].Count = 3 }, "durations hold 2 requests, count is 3"},
		{"bad_bucket", func(w *TelemetryWindow) { w.Cells[0].Outside = loghist.Histogram{-1: 2} }, "outside: loghist: bucket -1"},
		{"empty_host", func(w *TelemetryWindow) { w.Hosts[0].Host = "" }, `host 0 (""): empty`},
		{"host_counts", func(w *TelemetryWindow) { w.Hosts[0].Count = 0 }, "not both 0"},
		{"host_nan", func(w *TelemetryWindow) { w.Hosts[0].MinMs = math.NaN() }, "want finite numbers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := good()
			tt.edit(&w)
			if err := w.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestReasonClass(t *testing.T) {
	for in, want := range map[string]string{"": "", "baseline": "baseline", "no_decision": "no_decision",
		"Remote": "other", "a|b": "other", strings.Repeat("x", MaxReasonLen+1): "other"} {
		if got := ReasonClass(in); got != want {
			t.Errorf("ReasonClass(%q) = %q, want %q", in, got, want)
		}
	}
}
