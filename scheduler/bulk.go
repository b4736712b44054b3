package scheduler

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/vantage-edge/vantage/placement"
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

// bulkRegistry is an app registry that reads and writes many applications at once (StoreBackend); without it
// a bulk request reads and writes them one by one.
type bulkRegistry interface {
	RegisterApps(ctx context.Context, apps []storage.App) error
	AppsNamed(ctx context.Context, names []string) (map[string]storage.App, error)
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
	// Parse every line, then read the registry entries of every name at once, then check each line.
	type parsed struct {
		line int
		c    placement.Config
	}
	var (
		configs []parsed
		errs    []lineError
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
		if len(configs)+len(errs) >= MaxBulkApps {
			writeError(w, http.StatusRequestEntityTooLarge, 10001, fmt.Sprintf("line %d: more than %d applications in one request", line, MaxBulkApps))
			return
		}
		c, err := a.Parser.ParseJSONC(fmt.Sprintf("line %d", line), text)
		if err != nil {
			errs = append(errs, lineError{line, APIError{Code: 10002, Message: err.Error()}})
			continue
		}
		if first, dup := seen[c.App]; dup {
			errs = append(errs, lineError{line, APIError{Code: 10002, Message: fmt.Sprintf("line %d: app %q: given on line %d already", line, c.App, first)}})
			continue
		}
		seen[c.App] = line
		configs = append(configs, parsed{line, c})
	}
	if err := sc.Err(); err != nil {
		writeError(w, http.StatusBadRequest, 10002, fmt.Sprintf("line %d: %v", line+1, err))
		return
	}
	ownerOf, err := a.bulkOwners(r.Context(), seen)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	}
	var (
		apps    []storage.App
		targets []Target
	)
	for _, pc := range configs {
		app, t, rerr := a.checkRegistration(r.Context(), p, pc.c, account, deploy, now, ownerOf, countApps)
		if rerr != nil {
			errs = append(errs, lineError{pc.line, APIError{Code: rerr.code, Message: fmt.Sprintf("line %d: %s", pc.line, rerr.msg)}})
			continue
		}
		if app.Account != "" {
			counted[app.Account]++
		}
		apps, targets = append(apps, app), append(targets, t)
	}
	slices.SortStableFunc(errs, func(x, y lineError) int { return cmp.Compare(x.line, y.line) })
	out := make([]APIError, len(errs))
	for i, e := range errs {
		out[i] = e.err
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
	json.NewEncoder(w).Encode(Envelope{Success: len(errs) == 0, Errors: out, Messages: []string{},
		Result: BulkResult{Registered: len(apps), Failed: len(errs)}})
}

// lineError is a refused line of a bulk request.
type lineError struct {
	line int
	err  APIError
}

// bulkOwners reads the registry entries of names at once (bulkRegistry) and returns ownerOf for them; without
// bulkRegistry, API.ownerOf.
func (a *API) bulkOwners(ctx context.Context, names map[string]int) (func(context.Context, string) (owner, error), error) {
	b, ok := a.Apps.(bulkRegistry)
	if !ok {
		return a.ownerOf, nil
	}
	have, err := b.AppsNamed(ctx, slices.Collect(maps.Keys(names)))
	if err != nil {
		return nil, err
	}
	return func(_ context.Context, name string) (owner, error) {
		app, found := have[name]
		return a.ownerFrom(name, app, found), nil
	}, nil
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

// AppsNamed implements bulkRegistry: storage.Store.AppsNamed.
func (b StoreBackend) AppsNamed(ctx context.Context, names []string) (map[string]storage.App, error) {
	return b.Store.AppsNamed(ctx, names)
}
