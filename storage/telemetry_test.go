package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func init() {
	areas = append(areas,
		area{"telemetry", testTelemetry},
		area{"telemetry_pages", testTelemetryPages},
		area{"unsupported", testUnsupported},
		area{"telemetry_fresh", testTelemetryFresh},
		area{"telemetry_windows", testTelemetryWindows},
		area{"telemetry_sample", testTelemetrySample},
		area{"telemetry_batch_samples", testTelemetryBatchSamples},
	)
}

// telemetryAt returns a valid record of app at time at with one subrequest.
func telemetryAt(app string, at time.Time, ms float64) Telemetry {
	return Telemetry{
		App: app, Deploy: "v1", Ingress: "SYD", Exec: "FRA", Routed: true, Reason: "remote", At: at,
		DurationMs: ms, Subrequests: []Subrequest{{Host: "db:5432", DurationMs: ms / 2}, {Host: "sentry.io", DurationMs: 1, WaitUntil: true}},
	}
}

func testTelemetry(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{TelemetrySampleRate: 1})
	ctx := testCtx(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	old := telemetryAt("shop", now.Add(-20*time.Minute), 100)
	recent := []Telemetry{telemetryAt("shop", now.Add(-5*time.Minute), 200), telemetryAt("shop", now, 300)}
	other := telemetryAt("blog", now.Add(-time.Minute), 50)
	if err := s.AddTelemetry(ctx, append([]Telemetry{old, other}, recent...)); err != nil {
		t.Fatalf("AddTelemetry: %v", err)
	}
	var got []Telemetry
	skipped, err := s.TelemetrySince(ctx, "shop", now.Add(-15*time.Minute), func(r Telemetry) error {
		got = append(got, r)
		return nil
	})
	if err != nil || skipped != 0 {
		t.Fatalf("TelemetrySince: skipped %d, %v", skipped, err)
	}
	for i := range got {
		got[i].At = got[i].At.UTC()
	}
	if !reflect.DeepEqual(got, recent) {
		t.Errorf("TelemetrySince(shop, -15m) = %+v, want %+v", got, recent)
	}

	apps, err := s.TelemetryApps(ctx, now.Add(-2*time.Minute))
	if err != nil || !reflect.DeepEqual(apps, []string{"blog", "shop"}) {
		t.Errorf("TelemetryApps(-2m) = %v, %v; want [blog shop]", apps, err)
	}
	apps, err = s.TelemetryApps(ctx, now.Add(-30*time.Second))
	if err != nil || !reflect.DeepEqual(apps, []string{"shop"}) {
		t.Errorf("TelemetryApps(-30s) = %v, %v; want [shop] (blog last reported a minute ago)", apps, err)
	}
	ttl, err := s.Client().TTL(ctx, KeyTelemetry("shop")).Result()
	if err != nil || ttl <= TelemetryTTL-time.Minute || ttl > TelemetryTTL {
		t.Errorf("TTL(%s) = %v, %v; want about %v", KeyTelemetry("shop"), ttl, err, TelemetryTTL)
	}

	// fn's error stops the scan and comes back as is.
	stop := errors.New("stop")
	n := 0
	if _, err := s.TelemetrySince(ctx, "shop", time.Time{}, func(Telemetry) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("TelemetrySince with a failing fn: %v after %d records, want stop after 1", err, n)
	}

	// A record that does not decode is skipped and counted.
	if err := s.Client().XAdd(ctx, &redis.XAddArgs{Stream: KeyTelemetry("shop"), Values: []any{telemetryField, "not json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	skipped, err = s.TelemetrySince(ctx, "shop", now.Add(-15*time.Minute), func(Telemetry) error { return nil })
	if err != nil || skipped != 1 {
		t.Errorf("TelemetrySince over a bad entry: skipped %d, %v; want 1, nil", skipped, err)
	}
}

// testTelemetryPages reads more records than one XRANGE page.
func testTelemetryPages(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{TelemetrySampleRate: 1})
	ctx := testCtx(t)
	now := time.Now().UTC()
	const n = telemetryPage*2 + 17
	batch := make([]Telemetry, n)
	for i := range batch {
		batch[i] = telemetryAt("big", now.Add(time.Duration(i-n)*time.Millisecond), float64(i))
	}
	if err := s.AddTelemetry(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want := 0.0
	if _, err := s.TelemetrySince(ctx, "big", now.Add(-time.Hour), func(r Telemetry) error {
		if r.DurationMs != want {
			return fmt.Errorf("record %v out of order, want %v", r.DurationMs, want)
		}
		want++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want != n {
		t.Errorf("read %v records, want %d", want, n)
	}
}

func testUnsupported(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	if v, ok, err := s.UnsupportedDeploy(ctx, "shop"); err != nil || ok || v != "" {
		t.Fatalf("UnsupportedDeploy before any mark = %q, %v, %v", v, ok, err)
	}
	for _, v := range []string{"v1", "v2"} {
		if err := s.MarkUnsupported(ctx, "shop", v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := s.UnsupportedDeploy(ctx, "shop"); err != nil || !ok || got != v {
			t.Errorf("UnsupportedDeploy after MarkUnsupported(%s) = %q, %v, %v", v, got, ok, err)
		}
	}
}

func TestTelemetryValidate(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ok := telemetryAt("shop", at, 10)
	tests := []struct {
		name    string
		edit    func(*Telemetry)
		wantErr string
	}{
		{"valid", func(*Telemetry) {}, ""},
		{"no_app", func(r *Telemetry) { r.App = "" }, "storage: telemetry app is empty"},
		{"hash_tag_in_app", func(r *Telemetry) { r.App = "a}b" }, `storage: telemetry app "a}b": contains '}'`},
		{"no_ingress", func(r *Telemetry) { r.Ingress = "" }, "storage: telemetry ingress PoP is empty (app shop)"},
		{"no_exec", func(r *Telemetry) { r.Exec = "" }, "storage: telemetry exec PoP is empty (app shop)"},
		{"negative_duration", func(r *Telemetry) { r.DurationMs = -1 }, "storage: telemetry of shop: duration_ms -1: want 0 to 1e9"},
		{"nan_duration", func(r *Telemetry) { r.DurationMs = math.NaN() }, "storage: telemetry of shop: duration_ms NaN: want 0 to 1e9"},
		{"zero_time", func(r *Telemetry) { r.At = time.Time{} }, "storage: telemetry of shop: at is zero"},
		{"empty_sub_host", func(r *Telemetry) { r.Subrequests[1].Host = "" }, "storage: telemetry of shop: subrequest 1: empty host"},
		{"bad_sub_duration", func(r *Telemetry) { r.Subrequests[0].DurationMs = -3 }, "storage: telemetry of shop: subrequest 0 (db:5432): duration_ms -3: want 0 to 1e9"},
		{"too_many_subs", func(r *Telemetry) { r.Subrequests = make([]Subrequest, MaxSubrequests+1) }, "storage: telemetry of shop: 1001 subrequests, more than 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			r.Subrequests = append([]Subrequest(nil), ok.Subrequests...)
			tt.edit(&r)
			err := r.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
	// An invalid record fails the batch before anything is written (no Redis needed to see it).
	var s Store
	bad := ok
	bad.Ingress = ""
	if err := s.AddTelemetry(context.Background(), []Telemetry{ok, bad}); err == nil || !strings.Contains(err.Error(), "ingress") {
		t.Errorf("AddTelemetry with an invalid record = %v, want the ingress error", err)
	}
}

// testTelemetryFresh checks the fresh-record counters: every batch counts its records per application, a
// consumer takes what it read, and records added meanwhile stay counted.
func testTelemetryFresh(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	now := time.Now().UTC()
	batch := func(app string, n int) {
		t.Helper()
		recs := make([]Telemetry, n)
		for i := range recs {
			recs[i] = telemetryAt(app, now, 10)
		}
		if err := s.AddTelemetry(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	want := func(step string, w map[string]int64) {
		t.Helper()
		got, err := s.FreshTelemetry(ctx)
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("%s: FreshTelemetry = %v, %v; want %v", step, got, err, w)
		}
	}
	want("empty", map[string]int64{})
	batch("shop", 3)
	batch("shop", 4)
	batch("blog", 1)
	want("two apps", map[string]int64{"shop": 7, "blog": 1})
	if err := s.ConsumeFreshTelemetry(ctx, "shop", 5); err != nil {
		t.Fatal(err)
	}
	want("five of shop's taken", map[string]int64{"shop": 2, "blog": 1})
	if err := s.ConsumeFreshTelemetry(ctx, "shop", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.ConsumeFreshTelemetry(ctx, "blog", 0); err != nil {
		t.Fatal(err)
	}
	want("all taken", map[string]int64{})
}
