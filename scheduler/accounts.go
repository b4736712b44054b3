package scheduler

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/vantage-edge/vantage/storage"
)

// RefusalError is a refusal with the HTTP status it is answered with, and, for a rate limit, how long to wait
// (scheduler/smartrun.IngestHandler answers a store function's RefusalError with them).
type RefusalError struct {
	Code int           // HTTP status
	Wait time.Duration // Retry-After, for 429; 0 otherwise
	Msg  string
}

func (e *RefusalError) Error() string { return "scheduler: " + e.Msg }

// HTTPStatus returns the status the refusal is answered with.
func (e *RefusalError) HTTPStatus() int { return e.Code }

// RetryAfter returns how long the caller should wait before trying again (0: not said).
func (e *RefusalError) RetryAfter() time.Duration { return e.Wait }

// GuardTelemetry wraps add (the store function of scheduler/smartrun.IngestHandler) with the accounts' rules,
// for requests the API authenticated: a token of one account sends telemetry only for its account's
// applications (another's, or an unknown one, is a 404 that does not say which); every record counts against
// the rate of its application's account (Limits.TelemetryPerSecond, shared in Quotas; an aggregated window counts as one record), over which the batch
// is refused whole with a 429 naming the cap. An operator's records of applications without an account count
// against no account.
func (a *API) GuardTelemetry(add func(ctx context.Context, b storage.TelemetryBatch) error) func(ctx context.Context, b storage.TelemetryBatch) error {
	return func(ctx context.Context, b storage.TelemetryBatch) error {
		p, ok := PrincipalFrom(ctx)
		if !ok {
			return &RefusalError{Code: http.StatusUnauthorized, Msg: "telemetry: a valid bearer token is required"}
		}
		perAccount := map[string]int{}
		apps, units := b.Apps()
		for _, app := range apps {
			o, err := a.ownerOf(ctx, app)
			if err != nil {
				return fmt.Errorf("scheduler: telemetry: the owner of app %q: %w", app, err)
			}
			if !p.IsOperator() && (!o.exists || !p.Sees(o.account)) {
				return &RefusalError{Code: http.StatusNotFound,
					Msg: fmt.Sprintf("telemetry: app %q is not registered through the API", app)}
			}
			if o.account != "" {
				perAccount[o.account] += units[app]
			}
		}
		if a.Quotas != nil {
			l := a.Limits.withDefaults()
			for _, acct := range slices.Sorted(maps.Keys(perAccount)) {
				n := float64(perAccount[acct])
				if n > l.TelemetryBurst {
					return &RefusalError{Code: http.StatusTooManyRequests, Wait: time.Second, Msg: fmt.Sprintf(
						"telemetry: %v records of account %q in one batch, more than its burst (%v): send smaller batches", n, acct, l.TelemetryBurst)}
				}
				ok, wait, err := a.Quotas.TakeQuotaN(ctx, QuotaKindTelemetry, acct, n, l.TelemetryPerSecond*60, l.TelemetryBurst)
				if err != nil {
					return fmt.Errorf("scheduler: telemetry quota of account %q: %w", acct, err)
				}
				if !ok {
					return &RefusalError{Code: http.StatusTooManyRequests, Wait: wait, Msg: fmt.Sprintf(
						"telemetry: account %q is over its rate (telemetry per second %v, burst %v): %v records refused, retry in %s",
						acct, l.TelemetryPerSecond, l.TelemetryBurst, n, wait.Round(time.Millisecond))}
				}
			}
		}
		return add(ctx, b)
	}
}
