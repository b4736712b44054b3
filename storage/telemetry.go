package storage

// Telemetry schema (rows for doc.go's table, same columns; (***) renewed by every batch):
//
//	vantage:{tel:<app>}:requests      stream  entries {r: Telemetry JSON}, a sample of the  MAXLEN ~  worker    debugging
//	                                          requests (Options.TelemetrySampleRate, 1 %)
//	                                          {app, deploy, ingress, exec, routed, reason,  100 000;  hosts
//	                                          at, duration_ms, sub: [{host, duration_ms,    24 h
//	                                          wait_until}]}                                 (***)
//	vantage:{tel}:apps                zset    app -> Unix ms of its latest report           none      worker    smart runner
//	                                                                                                  hosts
//	vantage:{tel:<app>}:unsupported   string  deploy version found slower when placed:      30 d      smart     smart runner
//	                                          UNSUPPORTED_APPLICATION until the next one              runner
//	vantage:{tel}:fresh               hash    app -> records added since the runner last        none      worker    smart runner
//	                                          consumed them (ConsumeFreshTelemetry)                     hosts
//
// AddTelemetry folds records into aggregated windows (telemagg.go: what the analysis reads) and pipelines, per
// sampled record, one XADD (MAXLEN ~, server-assigned id) and, per application, one EXPIRE; in a Cluster
// go-redis splits the pipeline by slot. TelemetrySince reads an application's
// stream with XRANGE from the stream id of since minus TelemetryClockSlack (ids carry the Redis server's clock,
// At the worker's), in pages of telemetryPage, and keeps the records whose At is not before since.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Telemetry tunables.
const (
	// TelemetryStreamMaxLen caps each application's request stream, approximately: an application above about
	// 110 requests/s has its 15-minute analysis window cut to its most recent 100 000 requests, plenty for
	// medians per PoP, and its stream stays a few tens of MB.
	TelemetryStreamMaxLen = 100_000
	// TelemetryTTL is how long an application's stream lives after its last batch: well beyond any analysis
	// window, so that silent applications' streams go away by themselves.
	TelemetryTTL = 24 * time.Hour
	// TelemetryClockSlack widens the XRANGE of TelemetrySince: stream ids carry the Redis server's time, records
	// the worker's, and the two clocks may differ by this much.
	TelemetryClockSlack = time.Minute
	// UnsupportedTTL is how long an UNSUPPORTED_APPLICATION mark outlives its last write. A new deploy version
	// lifts it at once; the TTL only cleans up after deleted applications.
	UnsupportedTTL = 30 * 24 * time.Hour
	// MaxSubrequests caps the subrequests one record may carry (a worker reports at most this many).
	MaxSubrequests = 1000

	// KeyTelemetryApps is the sorted set of applications with telemetry, scored by their latest report (Unix ms).
	KeyTelemetryApps = "vantage:{tel}:apps"
	// KeyTelemetryFresh is the hash of applications' records added since the smart runner last analysed them:
	// whichever process writes telemetry counts it here, and the runner analyses an application as soon as it
	// has enough new records instead of waiting for its interval.
	KeyTelemetryFresh = "vantage:{tel}:fresh"

	telemetryField = "r"
	telemetryPage  = 1000
)

// KeyTelemetry returns app's request telemetry stream.
func KeyTelemetry(app string) string { return "vantage:{tel:" + app + "}:requests" }

// KeyUnsupported returns the key holding the deploy version of app found slower when placed.
func KeyUnsupported(app string) string { return "vantage:{tel:" + app + "}:unsupported" }

// Telemetry is what a worker host reports about one request of an application.
type Telemetry struct {
	App     string `json:"app"`
	Deploy  string `json:"deploy,omitempty"` // the application's deploy version
	Ingress string `json:"ingress"`          // PoP where the request entered
	Exec    string `json:"exec"`             // PoP that ran it
	// Routed reports that the router sent the request away from its ingress (Exec != Ingress).
	Routed bool `json:"routed,omitempty"`
	// Reason is the router's placement reason as the worker received it ("remote", "baseline", "no_decision",
	// ...), empty when the router did not pass it on.
	Reason string `json:"reason,omitempty"`
	// At is when the request started, on the worker's clock.
	At time.Time `json:"at"`
	// DurationMs is the request's duration at the worker (execution, back-end round trips included), in ms.
	DurationMs  float64      `json:"duration_ms"`
	Subrequests []Subrequest `json:"sub,omitempty"`
}

// Subrequest is one round trip a request made to a back end.
type Subrequest struct {
	Host       string  `json:"host"`        // "db.example.com:5432", "api.example.com"
	DurationMs float64 `json:"duration_ms"` // ms
	WaitUntil  bool    `json:"wait_until,omitempty"`
}

// Validate checks a record before it is stored, naming the bad field and its value.
func (t *Telemetry) Validate() error {
	if err := validName("telemetry app", t.App); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"ingress", t.Ingress}, {"exec", t.Exec}} {
		if err := validName("telemetry "+f.name+" PoP", f.v); err != nil {
			return fmt.Errorf("%w (app %s)", err, t.App)
		}
	}
	if strings.Contains(t.Deploy, aggSep) {
		return fmt.Errorf("storage: telemetry of %s: deploy %q contains %q", t.App, t.Deploy, aggSep)
	}
	if !(t.DurationMs >= 0) || t.DurationMs > 1e9 {
		return fmt.Errorf("storage: telemetry of %s: duration_ms %v: want 0 to 1e9", t.App, t.DurationMs)
	}
	if t.At.IsZero() {
		return fmt.Errorf("storage: telemetry of %s: at is zero", t.App)
	}
	if len(t.Subrequests) > MaxSubrequests {
		return fmt.Errorf("storage: telemetry of %s: %d subrequests, more than %d", t.App, len(t.Subrequests), MaxSubrequests)
	}
	for i, s := range t.Subrequests {
		if s.Host == "" {
			return fmt.Errorf("storage: telemetry of %s: subrequest %d: empty host", t.App, i)
		}
		if strings.Contains(s.Host, aggSep) {
			return fmt.Errorf("storage: telemetry of %s: subrequest %d: host %q contains %q", t.App, i, s.Host, aggSep)
		}
		if !(s.DurationMs >= 0) || s.DurationMs > 1e9 {
			return fmt.Errorf("storage: telemetry of %s: subrequest %d (%s): duration_ms %v: want 0 to 1e9", t.App, i, s.Host, s.DurationMs)
		}
	}
	return nil
}

// AddTelemetry folds a batch of records into their applications' aggregated windows (AddTelemetryWindows: what
// the analysis reads) and keeps a sample of them (Options.TelemetrySampleRate) on their streams for debugging
// (capped at about TelemetryStreamMaxLen entries, TTL renewed). An invalid record fails the whole batch before
// anything is written.
func (s *Store) AddTelemetry(ctx context.Context, recs []Telemetry) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		if err := recs[i].Validate(); err != nil {
			return err
		}
	}
	if err := s.AddTelemetryWindows(ctx, FoldTelemetry(recs)); err != nil {
		return err
	}
	return s.AddTelemetrySample(ctx, sampled(recs, s.o.TelemetrySampleRate))
}

// AddTelemetrySample stores records on their applications' streams (capped at about TelemetryStreamMaxLen
// entries) and renews the streams' TTL: the per-request records kept for debugging. The analysis does not read
// them; a worker host that aggregates itself sends its sample here and its windows to AddTelemetryWindows.
func (s *Store) AddTelemetrySample(ctx context.Context, recs []Telemetry) error {
	if len(recs) == 0 {
		return nil
	}
	apps := map[string]bool{}
	payloads := make([][]byte, len(recs))
	for i := range recs {
		if err := recs[i].Validate(); err != nil {
			return err
		}
		b, err := json.Marshal(&recs[i])
		if err != nil {
			return fmt.Errorf("storage: telemetry of %s: %w", recs[i].App, err)
		}
		payloads[i] = b
		apps[recs[i].App] = true
	}
	pipe := s.c.Pipeline()
	for i := range recs {
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: KeyTelemetry(recs[i].App), MaxLen: TelemetryStreamMaxLen, Approx: true,
			Values: []any{telemetryField, payloads[i]},
		})
	}
	for _, app := range slices.Sorted(maps.Keys(apps)) {
		pipe.Expire(ctx, KeyTelemetry(app), TelemetryTTL)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("storage: add %d sampled telemetry records (first app %s): %w", len(recs), recs[0].App, err)
	}
	return nil
}

// TelemetrySince calls fn for every record of app whose At is not before since, oldest first. Records that do
// not decode are skipped and counted in the returned skipped number. An error from fn stops the scan and is
// returned.
func (s *Store) TelemetrySince(ctx context.Context, app string, since time.Time, fn func(Telemetry) error) (skipped int, err error) {
	if err := validName("telemetry app", app); err != nil {
		return 0, err
	}
	start := strconv.FormatInt(max(since.Add(-TelemetryClockSlack).UnixMilli(), 0), 10)
	for {
		msgs, err := s.c.XRangeN(ctx, KeyTelemetry(app), start, "+", telemetryPage).Result()
		if err != nil {
			return skipped, fmt.Errorf("storage: telemetry of %s: %w", app, err)
		}
		for _, m := range msgs {
			raw, _ := m.Values[telemetryField].(string)
			t, err := decodeTelemetry(app, raw)
			if err != nil {
				skipped++
				continue
			}
			if t.At.Before(since) {
				continue
			}
			if err := fn(t); err != nil {
				return skipped, err
			}
		}
		if len(msgs) < telemetryPage {
			return skipped, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// TelemetryApps returns the applications that reported telemetry at or after since, sorted by name.
func (s *Store) TelemetryApps(ctx context.Context, since time.Time) ([]string, error) {
	apps, err := s.c.ZRangeByScore(ctx, KeyTelemetryApps, &redis.ZRangeBy{
		Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("storage: telemetry apps: %w", err)
	}
	slices.Sort(apps)
	return apps, nil
}

// MarkUnsupported records that app's deploy version was found slower when placed: it stays
// UNSUPPORTED_APPLICATION until another deploy version reports.
func (s *Store) MarkUnsupported(ctx context.Context, app, deploy string) error {
	if err := validName("telemetry app", app); err != nil {
		return err
	}
	if err := s.c.Set(ctx, KeyUnsupported(app), deploy, UnsupportedTTL).Err(); err != nil {
		return fmt.Errorf("storage: mark %s unsupported (deploy %q): %w", app, deploy, err)
	}
	return nil
}

// UnsupportedDeploy returns the deploy version of app marked by MarkUnsupported, and whether there is one.
func (s *Store) UnsupportedDeploy(ctx context.Context, app string) (string, bool, error) {
	if err := validName("telemetry app", app); err != nil {
		return "", false, err
	}
	v, err := s.c.Get(ctx, KeyUnsupported(app)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("storage: unsupported mark of %s: %w", app, err)
	}
	return v, true, nil
}

// FreshTelemetry returns, by application, the records added since ConsumeFreshTelemetry last took them.
func (s *Store) FreshTelemetry(ctx context.Context) (map[string]int64, error) {
	m, err := s.c.HGetAll(ctx, KeyTelemetryFresh).Result()
	if err != nil {
		return nil, fmt.Errorf("storage: fresh telemetry counts: %w", err)
	}
	out := make(map[string]int64, len(m))
	for app, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("storage: fresh telemetry count of %s: %q: %w", app, v, err)
		}
		out[app] = n
	}
	return out, nil
}

// consumeFreshScript takes ARGV[2] from the counter of ARGV[1] in KEYS[1], deleting it when nothing is left.
var consumeFreshScript = redis.NewScript(`
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if v <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
`)

// ConsumeFreshTelemetry takes n records (the count FreshTelemetry returned before an analysis) from app's
// fresh-record counter; records added meanwhile stay counted. n <= 0 removes the counter.
func (s *Store) ConsumeFreshTelemetry(ctx context.Context, app string, n int64) error {
	if n <= 0 {
		if err := s.c.HDel(ctx, KeyTelemetryFresh, app).Err(); err != nil {
			return fmt.Errorf("storage: consume fresh telemetry of %s: %w", app, err)
		}
		return nil
	}
	if err := consumeFreshScript.Run(ctx, s.c, []string{KeyTelemetryFresh}, app, n).Err(); err != nil {
		return fmt.Errorf("storage: consume fresh telemetry of %s: %w", app, err)
	}
	return nil
}
