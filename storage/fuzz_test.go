package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

// The decoder fuzzers feed arbitrary stored values to the decoders of what other processes (or an attacker
// with access to Redis) wrote: none may panic, a value that decodes must encode back to a value that decodes
// to the same thing, and a refused one names the corruption. They need no Redis. Seeds are in
// testdata/fuzz/<FuzzName>/ beside the f.Add ones; run one with
//
//	go test -run='^$' -fuzz='^FuzzDecodeDecision$' -fuzztime=60s ./storage

func fuzzDecision() placement.Decision {
	return placement.Decision{App: "shop", Mode: placement.ModeHost, Target: "db.example.com:5432", BestPoP: "FRA",
		Candidates: []placement.Candidate{{PoP: "FRA", RTTMs: 1.5}, {PoP: "AMS", RTTMs: 7.25}},
		Verdict:    placement.VerdictUnicast, Status: placement.StatusSuccess, Estimated: true, Confidence: 0.9,
		Version: 3, ComputedAt: t0, NextRecheck: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Hour), Reason: "measured"}
}

func FuzzDecodeDecision(f *testing.F) {
	d := fuzzDecision()
	v := "3|" + fingerprint(&d) + "|" + string(encodeDecision(&d))
	f.Add(v)
	f.Add("1|0|" + string(encodeDecision(&placement.Decision{App: "a"}))[:5]) // truncated
	old := d
	old.ExpiresAt, old.Reason = time.Time{}, ""
	codec1 := encodeDecision(&old)
	codec1[0] = 1
	f.Add("7|ff|" + string(codec1[:len(codec1)-2])) // codec 1: no expiry (varint 0) and no reason (length 0)
	f.Add("x|y|z")
	f.Add("1|")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		d, err := decodeDecision("fuzz", v)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeDecision error %v does not wrap errCorrupt", err)
			}
			return
		}
		if len(d.Candidates) > maxCandidates {
			t.Fatalf("%d candidates decoded, more than %d", len(d.Candidates), maxCandidates)
		}
		// Round trip: what decoded encodes to a value that decodes the same (compared by encoding: NaNs).
		enc := encodeDecision(&d)
		again, err := decodeDecision("fuzz", fmt.Sprintf("%d|%s|%s", d.Version, fingerprint(&d), enc))
		if err != nil {
			t.Fatalf("re-encoded decision %+v does not decode: %v", d, err)
		}
		if again.Version != d.Version || !bytes.Equal(encodeDecision(&again), enc) {
			t.Fatalf("round trip changed the decision:\n%+v\n%+v", d, again)
		}
	})
}

func FuzzDecodeJob(f *testing.F) {
	j := Job{Target: "db.example.com:5432", Kind: placement.ProbeTCP, Count: 3, TimeoutMs: 2000, Round: "r1", Key: "tcp:db",
		CreatedAt: t0, Deadline: t0.Add(time.Minute), Params: json.RawMessage(`{"http":{"host":"x"}}`)}
	b, _ := json.Marshal(j)
	f.Add(string(b))
	f.Add(`{"target":"x:1","kind":"tcp","params":[1,2]}`)
	f.Add(`{"target":"x:1","kind":"tcp","deadline":"not a time"}`)
	f.Add(`{"count":1e400}`)
	f.Add(`null`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, raw string) {
		j, err := decodeJob("FRA", redis.XMessage{ID: "1-0", Values: map[string]any{jobField: raw}})
		if err != nil {
			return
		}
		if j.ID != "1-0" {
			t.Fatalf("decoded job id %q, want the stream id", j.ID)
		}
		b, err := json.Marshal(j)
		if err != nil {
			return // e.g. a time past year 9999: the decoder accepted it, the encoder refuses it
		}
		again, err := decodeJob("FRA", redis.XMessage{ID: "1-0", Values: map[string]any{jobField: string(b)}})
		if err != nil {
			t.Fatalf("re-encoded job %s does not decode: %v", b, err)
		}
		if b2, _ := json.Marshal(again); !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the job:\n%s\n%s", b, b2)
		}
	})
}

// roundTrip checks that v, once decoded by decode, encodes to a value that decodes to the same encoding.
func roundTrip[T any](t *testing.T, v T, decode func(string) (T, error)) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		return // a value the decoder accepts but the encoder refuses (a time past year 9999): not stored by us
	}
	again, err := decode(string(b))
	if err != nil {
		t.Fatalf("re-encoded value %s does not decode: %v", b, err)
	}
	if b2, _ := json.Marshal(again); !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the value:\n%s\n%s", b, b2)
	}
}

func FuzzDecodeApp(f *testing.F) {
	b, _ := json.Marshal(App{Name: "shop", Mode: placement.ModeHost, Target: "db.example.com:5432", Account: "acc1",
		DeployVersion: "v2", UpdatedAt: t0, Config: json.RawMessage(`{"name":"shop"}`)})
	f.Add(string(b))
	f.Add(`{"name":"x","config":{"a":[1,{"b":null}]}}`)
	f.Add(`{"name":1}`)
	f.Add(`{"updated_at":"2026-13-01T00:00:00Z"}`)
	f.Add(`[`)
	f.Fuzz(func(t *testing.T, v string) {
		a, err := decodeApp("fuzz", v)
		if err != nil {
			return
		}
		roundTrip(t, a, func(s string) (App, error) { return decodeApp("fuzz", s) })
	})
}

func FuzzDecodeResult(f *testing.F) {
	b, _ := json.Marshal(Result{Target: "tcp:db:5432", PoP: "FRA", Kind: placement.ProbeTCP, MinMs: 1.2, MedianMs: 1.5,
		Samples: 3, Loss: 0.25, At: t0, JobID: "1-0", Round: "r", Resolved: []string{"192.0.2.1"},
		DNS: json.RawMessage(`{"id":"fra1"}`), Detail: json.RawMessage(`{"samples":[1,2]}`)})
	f.Add("1764000000000|"+string(b), true)
	f.Add(string(b), false)
	f.Add(`{"class":"timeout","error":"i/o timeout"}`, false)
	f.Add("nopipe", true)
	f.Add("1|{", true)
	f.Fuzz(func(t *testing.T, v string, latest bool) {
		decode := decodeResult
		if latest {
			decode = decodeLatest
		}
		r, err := decode(v)
		if err != nil {
			if latest && !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeLatest error %v does not wrap errCorrupt", err)
			}
			return
		}
		roundTrip(t, r, decodeResult)
	})
}

func FuzzDecodeTelemetry(f *testing.F) {
	b, _ := json.Marshal(Telemetry{App: "shop", Deploy: "v2", Ingress: "FRA", Exec: "AMS", Routed: true, Reason: "remote",
		At: t0, DurationMs: 12.5, Subrequests: []Subrequest{{Host: "db.example.com:5432", DurationMs: 3, WaitUntil: true}}})
	f.Add("shop", string(b))
	f.Add("other", string(b))
	f.Add("shop", `{"app":"shop","sub":[{},{}]}`)
	f.Add("shop", `{"app":"shop","duration_ms":"x"}`)
	f.Fuzz(func(t *testing.T, app, raw string) {
		rec, err := decodeTelemetry(app, raw)
		if err != nil {
			return
		}
		if rec.App != app {
			t.Fatalf("record of app %q decoded from the stream of %q", rec.App, app)
		}
		roundTrip(t, rec, func(s string) (Telemetry, error) { return decodeTelemetry(app, s) })
	})
}
