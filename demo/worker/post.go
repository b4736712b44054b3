package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/vantage-edge/vantage/storage"
)

// maxErrorBody bounds the part of a refusal's body quoted in PostTelemetry's error.
const maxErrorBody = 512

// PostTelemetry returns a Config.Report that posts each batch as JSON to url, a scheduler's POST /v1/telemetry
// (e.g. "https://scheduler:9100/v1/telemetry"), with token as its bearer token when not empty, through client
// (nil: http.DefaultClient; the caller's context bounds each call). An answer other than 2xx is an error
// quoting the status and the start of the body.
func PostTelemetry(client *http.Client, url, token string) func(ctx context.Context, b storage.TelemetryBatch) error {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context, b storage.TelemetryBatch) error {
		body, err := json.Marshal(&b)
		if err != nil {
			return fmt.Errorf("worker: telemetry for %s: %w", url, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("worker: telemetry for %s: %w", url, err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("worker: POST %s: %w", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
			return fmt.Errorf("worker: POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // let the connection be reused
		return nil
	}
}
