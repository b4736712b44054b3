package smartrun

import (
	"bufio"
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

	"github.com/vantage-edge/vantage/internal/strictjson"
	"github.com/vantage-edge/vantage/storage"
)

// Ingest limits.
const (
	// MaxIngestBytes caps one telemetry batch posted to IngestHandler.
	MaxIngestBytes = 4 << 20
	// MaxIngestRecords caps the records of one batch, and its windows, and its samples.
	MaxIngestRecords = 10_000
)

// IngestHandler returns an http.Handler accepting telemetry batches for the scheduler's API (mount it at, e.g.,
// POST /v1/telemetry): the body is a JSON array of storage.Telemetry records, or a storage.TelemetryBatch object
// {"records": [...], "windows": [...], "samples": [...]} carrying aggregated windows and the sampled records of
// a worker host that aggregates itself, at most MaxIngestBytes and MaxIngestRecords records and as many windows
// and samples; unknown fields are errors. Every record and window is validated
// before any is stored with add (e.g. (*storage.Store).AddTelemetryBatch, which folds the records into windows). It answers 204 on
// success, 400 naming the bad record, 413 for an oversized batch, 405 for a method other than POST and 503
// when add fails, unless add's error has an HTTPStatus() int method (scheduler.RefusalError: not found, rate
// limited): then that status, with Retry-After when it has a RetryAfter() time.Duration above zero.
func IngestHandler(add func(ctx context.Context, b storage.TelemetryBatch) error, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "smart: telemetry: POST only", http.StatusMethodNotAllowed)
			return
		}
		b, err := decodeBatch(http.MaxBytesReader(w, req.Body, MaxIngestBytes))
		if err != nil {
			code := http.StatusBadRequest
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) || errors.Is(err, errTooMany) {
				code = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), code)
			return
		}
		if err := b.Validate(); err != nil {
			http.Error(w, "smart: telemetry: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := add(req.Context(), b); err != nil {
			var refusal interface{ HTTPStatus() int }
			if errors.As(err, &refusal) {
				if ra, ok := refusal.(interface{ RetryAfter() time.Duration }); ok && ra.RetryAfter() > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.RetryAfter().Seconds()))))
				}
				http.Error(w, err.Error(), refusal.HTTPStatus())
				return
			}
			log.Warn("smart: telemetry: storing a batch failed", "records", len(b.Records), "windows", len(b.Windows), "samples", len(b.Samples), "err", err)
			http.Error(w, "smart: telemetry: storing failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

var errTooMany = fmt.Errorf("smart: telemetry: more than %d records, windows or samples in one batch", MaxIngestRecords)

// decodeBatch reads a JSON array of records or a batch object. Unknown fields are errors, and so are known
// ones spelled in another case (strictjson), which openapi.json refuses too.
func decodeBatch(r io.Reader) (storage.TelemetryBatch, error) {
	var b storage.TelemetryBatch
	br := bufio.NewReader(r)
	for {
		c, err := br.Peek(1)
		if err != nil {
			return b, fmt.Errorf("smart: telemetry: %w", err)
		}
		if c[0] != ' ' && c[0] != '\t' && c[0] != '\n' && c[0] != '\r' {
			break
		}
		br.ReadByte()
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if c, _ := br.Peek(1); c[0] == '{' {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == nil {
			err = strictjson.Unmarshal(raw, &b)
		}
		if err != nil {
			return b, fmt.Errorf("smart: telemetry: batch: %w", err)
		}
		if len(b.Records) > MaxIngestRecords || len(b.Windows) > MaxIngestRecords || len(b.Samples) > MaxIngestRecords {
			return b, errTooMany
		}
		return b, nil
	}
	tok, err := dec.Token()
	if err != nil {
		return b, fmt.Errorf("smart: telemetry: %w", err)
	}
	if tok != json.Delim('[') {
		return b, fmt.Errorf("smart: telemetry: body starts with %v: want a JSON array of records or a batch object", tok)
	}
	for dec.More() {
		if len(b.Records) == MaxIngestRecords {
			return b, errTooMany
		}
		var t storage.Telemetry
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == nil {
			err = strictjson.Unmarshal(raw, &t)
		}
		if err != nil {
			return b, fmt.Errorf("smart: telemetry: record %d: %w", len(b.Records), err)
		}
		b.Records = append(b.Records, t)
	}
	if _, err := dec.Token(); err != nil {
		return b, fmt.Errorf("smart: telemetry: %w", err)
	}
	return b, nil
}
