package storage

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The decoders of the values other writers put in Redis (decodeDecision and decodeJob live beside their
// encoders). Each turns one stored value into its type or an error naming it; none panics or allocates beyond
// the value's size, whatever the bytes (FuzzDecoders).

// decodeApp decodes an application stored under name in KeyApps.
func decodeApp(name, v string) (App, error) {
	var a App
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return App{}, fmt.Errorf("storage: app %.64q: %w", name, err)
	}
	return a, nil
}

// decodeResult decodes a result as stored in a target's history and in an ad-hoc probe's record.
func decodeResult(v string) (Result, error) {
	var r Result
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return Result{}, err
	}
	return r, nil
}

// decodeLatest decodes a PoP's latest result, stored as "<at Unix ms>|<Result JSON>".
func decodeLatest(v string) (Result, error) {
	_, js, ok := strings.Cut(v, "|")
	if !ok {
		return Result{}, fmt.Errorf("%w: no '|'", errCorrupt)
	}
	r, err := decodeResult(js)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return r, nil
}

// decodeTelemetry decodes a telemetry record of app's stream; a record of another app is an error.
func decodeTelemetry(app, raw string) (Telemetry, error) {
	var t Telemetry
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return Telemetry{}, err
	}
	if t.App != app {
		return Telemetry{}, fmt.Errorf("%w: a record of app %.64q in the stream of %.64q", errCorrupt, t.App, app)
	}
	return t, nil
}
