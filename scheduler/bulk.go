package scheduler

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vantage-edge/vantage/storage"
)

// Limits of POST /v1/apps/bulk.
const (
	// MaxBulkApps caps the applications of one bulk request: a request is one Redis transaction, so that a
	// million applications go in a hundred requests, none holding Redis for long.
	MaxBulkApps = 10_000
	// MaxBulkBodyBytes caps a bulk request's body: MaxBulkApps configs of ~1.5 KiB.
	MaxBulkBodyBytes = 16 << 20
)

// bulkRegistry is an app registry that writes many applications at once (StoreBackend); without it a bulk
// request writes them one by one.
type bulkRegistry interface {
	RegisterApps(ctx context.Context, apps []storage.App) error
}

// BulkResult is the result of POST /v1/apps/bulk.
type BulkResult struct {
	Registered int `json:"registered"` // applications registered (or replaced)
	Failed     int `json:"failed"`     // lines refused, each one an error of the envelope ("line N: ...")
}

// postAppsBulk registers many applications in one request: the body is JSON Lines, one wrangler config (as
// POST /v1/apps takes as JSON) per line, blank lines skipped, at most MaxBulkApps. Each line is checked as
// POST /v1/apps checks its body (?account= and ?deploy= apply to every line); the valid ones are written to
// the registry in one transaction with one notification, the others are reported by line number. It answers
// 200 with success true when every line was registered.
func (a *API) postAppsBulk(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBulkBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, 10001, fmt.Sprintf("reading body: %v (at most %d bytes)", err, MaxBulkBodyBytes))
		return
	}
	p, now := principal(r), time.Now()
	account, deploy := r.URL.Query().Get("account"), r.URL.Query().Get("deploy")
	// The account cap counts each account's applications once per request, then those this request adds.
	counted := map[string]int{}
	countApps := func(ctx context.Context, acct string) (int, error) {
		if n, ok := counted[acct]; ok {
			return n, nil
		}
		n, err := a.accountApps(ctx, acct)
		counted[acct] = n
		return n, err
	}
	var (
		apps    []storage.App
		targets []Target
		errs    []APIError
		seen    = map[string]int{}
	)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), MaxBodyBytes)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if len(apps)+len(errs) >= MaxBulkApps {
			writeError(w, http.StatusRequestEntityTooLarge, 10001, fmt.Sprintf("line %d: more than %d applications in one request", line, MaxBulkApps))
			return
		}
		c, err := a.Parser.ParseJSONC(fmt.Sprintf("line %d", line), text)
		if err != nil {
			errs = append(errs, APIError{Code: 10002, Message: err.Error()})
			continue
		}
		if first, dup := seen[c.App]; dup {
			errs = append(errs, APIError{Code: 10002, Message: fmt.Sprintf("line %d: app %q: given on line %d already", line, c.App, first)})
			continue
		}
		seen[c.App] = line
		app, t, rerr := a.checkRegistration(r.Context(), p, c, account, deploy, now, countApps)
		if rerr != nil {
			errs = append(errs, APIError{Code: rerr.code, Message: fmt.Sprintf("line %d: %s", line, rerr.msg)})
			continue
		}
		if app.Account != "" {
			counted[app.Account]++
		}
		apps, targets = append(apps, app), append(targets, t)
	}
	if err := sc.Err(); err != nil {
		writeError(w, http.StatusBadRequest, 10002, fmt.Sprintf("line %d: %v", line+1, err))
		return
	}
	if err := a.registerApps(r.Context(), apps); err != nil {
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	}
	for _, t := range targets {
		a.applyRegistration(t)
	}
	a.log().Info("scheduler: apps registered in bulk", "registered", len(apps), "failed", len(errs), "account", account, "token", p.Name)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(Envelope{Success: len(errs) == 0, Errors: append([]APIError{}, errs...), Messages: []string{},
		Result: BulkResult{Registered: len(apps), Failed: len(errs)}})
}

// registerApps writes apps to the registry: at once when it can, else one by one.
func (a *API) registerApps(ctx context.Context, apps []storage.App) error {
	if a.Apps == nil || len(apps) == 0 {
		return nil
	}
	if b, ok := a.Apps.(bulkRegistry); ok {
		return b.RegisterApps(ctx, apps)
	}
	for _, app := range apps {
		if err := a.Apps.RegisterApp(ctx, app); err != nil {
			return err
		}
	}
	return nil
}

// RegisterApps implements bulkRegistry: storage.Store.PutApps.
func (b StoreBackend) RegisterApps(ctx context.Context, apps []storage.App) error {
	return b.Store.PutApps(ctx, apps)
}
