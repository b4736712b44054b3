package smartrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/vantage-edge/vantage/storage"
)

// Ingest limits.
const (
	// MaxIngestBytes caps one telemetry batch posted to IngestHandler.
	MaxIngestBytes = 4 << 20
	// MaxIngestRecords caps the records of one batch.
	MaxIngestRecords = 10_000
)

// IngestHandler returns an http.Handler accepting telemetry batches for the scheduler's API (mount it at, e.g.,
// POST /v1/telemetry): the body is a JSON array of storage.Telemetry records, at most MaxIngestBytes and
// MaxIngestRecords; unknown fields are errors. Every record is validated before any is stored with add
// (e.g. (*storage.Store).AddTelemetry, the function worker hosts call directly on Redis). It answers 204 on
// success, 400 naming the bad record, 413 for an oversized batch, 405 for a method other than POST and 503
// when add fails, unless add's error has an HTTPStatus() int method (scheduler.RefusalError: not found, rate
// limited): then that status, with Retry-After when it has a RetryAfter() time.Duration above zero.
func IngestHandler(add func(ctx context.Context, recs []storage.Telemetry) error, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "smart: telemetry: POST only", http.StatusMethodNotAllowed)
			return
		}
		recs, err := decodeBatch(http.MaxBytesReader(w, req.Body, MaxIngestBytes))
		if err != nil {
			code := http.StatusBadRequest
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) || errors.Is(err, errTooMany) {
				code = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), code)
			return
		}
		for i := range recs {
			if err := recs[i].Validate(); err != nil {
				http.Error(w, fmt.Sprintf("smart: telemetry: record %d: %v", i, err), http.StatusBadRequest)
				return
			}
		}
		if err := add(req.Context(), recs); err != nil {
			var refusal interface{ HTTPStatus() int }
			if errors.As(err, &refusal) {
				if ra, ok := refusal.(interface{ RetryAfter() time.Duration }); ok && ra.RetryAfter() > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.RetryAfter().Seconds()))))
				}
				http.Error(w, err.Error(), refusal.HTTPStatus())
				return
			}
			log.Warn("smart: telemetry: storing a batch failed", "records", len(recs), "err", err)
			http.Error(w, "smart: telemetry: storing failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

var errTooMany = fmt.Errorf("smart: telemetry: more than %d records in one batch", MaxIngestRecords)

// decodeBatch reads a JSON array of records. Unknown fields are errors.
func decodeBatch(r io.Reader) ([]storage.Telemetry, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var out []storage.Telemetry
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("smart: telemetry: %w", err)
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("smart: telemetry: body starts with %v: want a JSON array of records", tok)
	}
	for dec.More() {
		if len(out) == MaxIngestRecords {
			return nil, errTooMany
		}
		var t storage.Telemetry
		if err := dec.Decode(&t); err != nil {
			return nil, fmt.Errorf("smart: telemetry: record %d: %w", len(out), err)
		}
		out = append(out, t)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("smart: telemetry: %w", err)
	}
	return out, nil
}
