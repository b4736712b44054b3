package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vantage-edge/vantage/internal/strictjson"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// MaxBodyBytes caps request bodies: a wrangler config or an ad-hoc probe request is a few KiB.
const MaxBodyBytes = 1 << 20

// Envelope is the platform API's response shape.
type Envelope struct {
	Success  bool       `json:"success"`
	Errors   []APIError `json:"errors"`
	Messages []string   `json:"messages"`
	Result   any        `json:"result"`
}

// APIError is one error of an Envelope.
type APIError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// ServiceStatus is the result of GET /client/v4/accounts/{account}/workers/services/{name}: the platform's
// fields, then Vantage's detail.
type ServiceStatus struct {
	ID              string           `json:"id"`
	PlacementMode   placement.Mode   `json:"placement_mode,omitempty"`
	PlacementStatus placement.Status `json:"placement_status,omitempty"` // absent before analysis
	Placement       *PlacementHint   `json:"placement,omitempty"`
	Vantage         VantageDetail    `json:"vantage"`
	// DefaultEnvironment is where the platform (and wrangler) read the placement:
	// default_environment.script.{placement_mode, placement_status, placement}, in the platform's spelling.
	DefaultEnvironment ServiceEnvironment `json:"default_environment"`
}

// PlacementHint is the application's placement as configured, in the wrangler config's spelling.
type PlacementHint struct {
	Mode     string `json:"mode,omitempty"` // "smart" or "targeted"
	Region   string `json:"region,omitempty"`
	Host     string `json:"host,omitempty"`
	Hostname string `json:"hostname,omitempty"`
}

// VantageDetail is Vantage's view of an application: the decision and the recheck loop.
type VantageDetail struct {
	Target     string                `json:"target,omitempty"`
	Endpoint   string                `json:"endpoint,omitempty"` // region mode: the endpoint probed
	BestPoP    string                `json:"best_pop,omitempty"`
	Candidates []placement.Candidate `json:"candidates,omitempty"`
	Verdict    placement.Verdict     `json:"verdict,omitempty"`
	// Reason says why the status is not SUCCESS (e.g. why no host was valid); empty on SUCCESS.
	Reason      string    `json:"reason,omitempty"`
	Estimated   bool      `json:"estimated,omitempty"`
	Confidence  float64   `json:"confidence,omitempty"`
	Version     int64     `json:"version,omitempty"`
	Deploy      string    `json:"deploy,omitempty"`      // the current deploy (scripts' answers only)
	LastChecked time.Time `json:"last_checked,omitzero"` // when the decision was last computed
	NextRecheck time.Time `json:"next_recheck,omitzero"`
	// Explanation says why the decision is what it is (the engine's notes, the PoPs set aside, the
	// calibration, the history window); absent when none is stored (it expires with the decision).
	Explanation *storage.Explanation `json:"explanation,omitempty"`
}

// explanationReader reads a decision's explanation; StoreBackend implements it.
type explanationReader interface {
	Explanation(ctx context.Context, app string) (storage.Explanation, bool, error)
}

// decisionReader is the part of storage the status API reads.
type decisionReader interface {
	Decision(ctx context.Context, app string) (placement.Decision, bool, error)
}

// appRegistry stores applications registered through the API, shared by every scheduler (and read by the
// smart runner); StoreBackend implements it.
type appRegistry interface {
	RegisterApp(ctx context.Context, app storage.App) error
	App(ctx context.Context, name string) (storage.App, bool, error)
	DeleteApp(ctx context.Context, app string) error
}

// API is the scheduler's HTTP front: apps, ad-hoc probes, the status API, metrics and health.
type API struct {
	Sched     *Scheduler
	Decisions decisionReader
	Apps      appRegistry
	AdHoc     *AdHoc
	Auth      *Auth
	Parser    placement.Parser // parses POSTed wrangler configs; its Policy should match the probers' allow-list
	Regions   RegionEndpoints
	Gatherer  prometheus.Gatherer // for /metrics; nil: prometheus.DefaultGatherer
	Ready     func(ctx context.Context) error
	Metrics   *Metrics
	Logger    *slog.Logger
	// Telemetry, when set, serves POST /v1/telemetry behind the bearer token: worker hosts' per-request
	// telemetry for Smart Placement (scheduler/smartrun.IngestHandler, whose store function GuardTelemetry
	// should wrap, so that a token writes only its account's applications' telemetry, within the account's
	// rate). Nil: not served.
	Telemetry http.Handler
	// Limits caps each account's applications and telemetry rate (zero fields: the defaults).
	Limits Limits
	// Quotas keeps the per-account telemetry rate where every scheduler shares it (StoreBackend: in Redis);
	// nil: GuardTelemetry does not limit the rate.
	Quotas TelemetryQuotaStore
}

// Defaults of Limits.
const (
	// DefaultMaxAppsPerAccount caps the applications one account may register: each costs a recheck loop and
	// probes from the fleet, so one account cannot crowd out the others.
	DefaultMaxAppsPerAccount = 1000
	// DefaultTelemetryPerSecond is the telemetry records per second one account may send (a busy Worker's
	// sampled traffic), refilled continuously.
	DefaultTelemetryPerSecond = 5000
	// DefaultTelemetryBurst is how many records an idle account may send at once: two full batches
	// (smartrun.MaxIngestRecords is 10,000).
	DefaultTelemetryBurst = 20_000
)

// Limits are the per-account caps of the API.
type Limits struct {
	MaxAppsPerAccount  int     // applications per account; default DefaultMaxAppsPerAccount
	TelemetryPerSecond float64 // telemetry records per second per account; default DefaultTelemetryPerSecond
	TelemetryBurst     float64 // records at once; default DefaultTelemetryBurst (at least one batch)
}

// withDefaults returns l with zero fields defaulted.
func (l Limits) withDefaults() Limits {
	l.MaxAppsPerAccount = cmp.Or(l.MaxAppsPerAccount, DefaultMaxAppsPerAccount)
	l.TelemetryPerSecond = cmp.Or(l.TelemetryPerSecond, DefaultTelemetryPerSecond)
	l.TelemetryBurst = cmp.Or(l.TelemetryBurst, DefaultTelemetryBurst)
	return l
}

// Validate checks the limits (after defaults).
func (l Limits) Validate() error {
	l = l.withDefaults()
	switch {
	case l.MaxAppsPerAccount < 0:
		return fmt.Errorf("scheduler: max apps per account %d: want > 0", l.MaxAppsPerAccount)
	case !(l.TelemetryPerSecond > 0):
		return fmt.Errorf("scheduler: telemetry per second %v: want > 0", l.TelemetryPerSecond)
	case !(l.TelemetryBurst >= 1):
		return fmt.Errorf("scheduler: telemetry burst %v: want >= 1", l.TelemetryBurst)
	}
	return nil
}

// TelemetryQuotaStore keeps the telemetry quota where every scheduler shares it (storage.Store.TakeQuotaN).
type TelemetryQuotaStore interface {
	TakeQuotaN(ctx context.Context, kind, name string, n, perMinute, burst float64) (ok bool, wait time.Duration, err error)
}

// QuotaKindTelemetry is the TelemetryQuotaStore kind of the per-account telemetry rate.
const QuotaKindTelemetry = "telemetry"

// apiRoute is one route of Handler: its mux pattern, its metrics name and its handler.
type apiRoute struct {
	pattern, name string
	handler       func(a *API) http.HandlerFunc
	instrumented  bool // counted in the API's request metrics
}

// routes is every route Handler serves, the one table the mux and the OpenAPI document's test read
// (TestOpenAPIDocumentsEveryRoute).
func (a *API) routes() []apiRoute {
	authed := func(pattern, name string, h func(a *API) http.HandlerFunc) apiRoute {
		return apiRoute{pattern: pattern, name: name, instrumented: true, handler: func(a *API) http.HandlerFunc { return a.authed(h(a)) }}
	}
	rs := []apiRoute{
		authed("POST /v1/apps", "apps_post", func(a *API) http.HandlerFunc { return a.postApp }),
		authed("POST /v1/apps/bulk", "apps_bulk", func(a *API) http.HandlerFunc { return a.postAppsBulk }),
		authed("GET /v1/apps", "apps_list", func(a *API) http.HandlerFunc { return a.listApps }),
		authed("DELETE /v1/apps/{name}", "apps_delete", func(a *API) http.HandlerFunc { return a.deleteApp }),
		authed("POST /v1/apps/{name}/deploys", "deploys_post", func(a *API) http.HandlerFunc { return a.postDeploy }),
		authed("GET /v1/apps/{name}/history", "history_get", func(a *API) http.HandlerFunc { return a.appHistory }),
		authed("POST /v1/probes", "probes_post", func(a *API) http.HandlerFunc { return a.postProbe }),
		authed("GET /v1/probes/{id}", "probes_get", func(a *API) http.HandlerFunc { return a.getProbe }),
		authed("GET /v1/mesh", "mesh_get", func(a *API) http.HandlerFunc { return a.getMesh }),
		authed("GET /client/v4/accounts/{account}/workers/services/{name}", "service", func(a *API) http.HandlerFunc { return a.service }),
		authed("PUT /client/v4/accounts/{account}/workers/services/{name}", "service_put", func(a *API) http.HandlerFunc { return a.putService }),
		authed("DELETE /client/v4/accounts/{account}/workers/services/{name}", "service_delete", func(a *API) http.HandlerFunc { return a.deleteService }),
		authed("GET /client/v4/accounts/{account}/workers/scripts", "scripts_list", func(a *API) http.HandlerFunc { return a.listScripts }),
		authed("DELETE /client/v4/accounts/{account}/workers/scripts/{name}", "script_delete", func(a *API) http.HandlerFunc { return a.deleteScript }),
		authed("PUT /client/v4/accounts/{account}/workers/scripts/{name}", "script_put", func(a *API) http.HandlerFunc { return a.putScript }),
		authed("GET /client/v4/accounts/{account}/workers/scripts/{name}/settings", "script_settings", func(a *API) http.HandlerFunc { return a.getScriptSettings }),
		authed("PATCH /client/v4/accounts/{account}/workers/scripts/{name}/settings", "script_settings_patch", func(a *API) http.HandlerFunc { return a.patchScriptSettings }),
	}
	if a.Telemetry != nil {
		rs = append(rs, authed("POST /v1/telemetry", "telemetry_post", func(a *API) http.HandlerFunc { return a.Telemetry.ServeHTTP }))
	}
	return append(rs,
		apiRoute{pattern: "GET /metrics", name: "metrics", handler: func(a *API) http.HandlerFunc {
			return a.authed(a.operatorOnly(a.MetricsHandler().ServeHTTP))
		}},
		apiRoute{pattern: "GET /healthz", name: "healthz", handler: func(a *API) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }
		}},
		apiRoute{pattern: "GET /readyz", name: "readyz", handler: func(a *API) http.HandlerFunc { return a.readyz }},
		apiRoute{pattern: "GET /openapi.json", name: "openapi", handler: func(a *API) http.HandlerFunc { return serveOpenAPI }},
	)
}

// Handler returns the HTTP handler with every route.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		var h http.Handler = rt.handler(a)
		if rt.instrumented {
			h = a.instrument(rt.name, h)
		}
		mux.Handle(rt.pattern, h)
	}
	return mux
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	io.WriteString(w, "ok\n")
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

func (a *API) instrument(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		if a.Metrics != nil {
			a.Metrics.apiRequests.WithLabelValues(name, fmt.Sprint(rec.code)).Inc()
		}
	})
}

// MetricsHandler returns the /metrics handler without authentication, for a listener of its own that only
// the operators' scrapers reach (on the API's listener /metrics needs an operator's token).
func (a *API) MetricsHandler() http.Handler {
	g := a.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// authed requires a valid bearer token and leaves whom it acts for in the request's context (PrincipalFrom).
func (a *API) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := Principal{}, false
		if a.Auth != nil {
			p, ok = a.Auth.Authenticate(r)
		}
		if !ok {
			if a.Metrics != nil && r.URL.Path == "/v1/probes" {
				a.Metrics.adhoc.WithLabelValues("unauthorized").Inc()
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="vantage"`)
			writeError(w, http.StatusUnauthorized, 10000, "authentication error: a valid bearer token is required")
			return
		}
		h(w, r.WithContext(WithPrincipal(r.Context(), p)))
	}
}

// operatorOnly refuses tokens of one account: h is for operators (AllAccounts).
func (a *API) operatorOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, _ := PrincipalFrom(r.Context()); !p.IsOperator() {
			writeError(w, http.StatusForbidden, 10010, "this endpoint needs an operator's token (account \"*\")")
			return
		}
		h(w, r)
	}
}

// principal returns whom r acts for (authed put it there); the zero Principal, which sees nothing, otherwise.
func principal(r *http.Request) Principal {
	p, _ := PrincipalFrom(r.Context())
	return p
}

// owner is who holds an application name: its account and source, from the app registry or, for a config
// file's probe target, from this scheduler's targets.
type owner struct {
	account, source string
	exists          bool
}

// ownerOf returns who holds the application name.
func (a *API) ownerOf(ctx context.Context, name string) (owner, error) {
	if a.Apps != nil {
		app, found, err := a.Apps.App(ctx, name)
		if err != nil {
			return owner{}, err
		}
		return a.ownerFrom(name, app, found), nil
	}
	return a.ownerFrom(name, storage.App{}, false), nil
}

// ownerFrom is ownerOf given name's registry entry (found false: none).
func (a *API) ownerFrom(name string, app storage.App, found bool) owner {
	if found {
		return owner{account: app.Account, source: cmp.Or(app.Source, SourceAPI), exists: true}
	}
	if ts, ok := a.Sched.Target(name); ok {
		return owner{account: ts.Account, source: cmp.Or(ts.Source, SourceAPI), exists: true}
	}
	return owner{}
}

// notFound answers that app is not there for the caller: absent, or another account's (the same answer, so that
// the API is no oracle of other accounts' names).
func notFound(w http.ResponseWriter, app string) {
	writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("app %q is not registered through the API", app))
}

// accountApps counts the applications of account: the registry's and this scheduler's config-file targets.
func (a *API) accountApps(ctx context.Context, account string) (int, error) {
	names := map[string]bool{}
	if lister, ok := a.Apps.(interface {
		Apps(ctx context.Context) ([]storage.App, error)
	}); ok {
		apps, err := lister.Apps(ctx)
		if err != nil {
			return 0, err
		}
		for _, app := range apps {
			if app.Account == account {
				names[app.Name] = true
			}
		}
	}
	for _, t := range a.Sched.Targets() {
		if t.Account == account {
			names[t.App] = true
		}
	}
	return len(names), nil
}

// resolveAccount returns the account an API write of p registers an application in: the one asked for
// (?account=, the path of the platform's routes, a config's account_id; those given must agree), else p's own. A
// token of one account writes only there (403 otherwise); an operator may leave it empty.
func resolveAccount(p Principal, asked ...string) (string, int, error) {
	account := ""
	for _, acc := range asked {
		switch {
		case acc == "":
		case account != "" && acc != account:
			return "", http.StatusBadRequest, fmt.Errorf("account %q and account %q disagree: name one account", account, acc)
		default:
			if err := placement.CheckAccountID(acc); err != nil {
				return "", http.StatusBadRequest, err
			}
			account = acc
		}
	}
	if p.IsOperator() {
		return account, 0, nil
	}
	if account != "" && account != p.Account {
		return "", http.StatusForbidden, fmt.Errorf("token %q acts for account %q, not %q", p.Name, p.Account, account)
	}
	return p.Account, 0, nil
}

// getMesh is GET /v1/mesh: the PoP mesh and the mislocated PoPs (Scheduler.Mesh), not enveloped.
func (a *API) getMesh(w http.ResponseWriter, r *http.Request) {
	v := MeshView{Pairs: []MeshPair{}, Mislocated: []MislocatedPoP{}}
	if a.Sched != nil {
		v = a.Sched.Mesh()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeJSON(w http.ResponseWriter, code int, result any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(Envelope{Success: true, Errors: []APIError{}, Messages: []string{}, Result: result})
}

func writeError(w http.ResponseWriter, code, apiCode int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(Envelope{Success: false, Errors: []APIError{{Code: apiCode, Message: msg}}, Messages: []string{}})
}

// TargetFromConfig turns a parsed placement config into a probe target, resolving a region's endpoint. It
// returns ok=false for modes with nothing to probe (smart, none).
func TargetFromConfig(c placement.Config, regions RegionEndpoints) (Target, bool, error) {
	t := Target{App: c.App, Account: c.AccountID, Mode: c.Mode, Target: c.Target()}
	switch c.Mode {
	case placement.ModeHost, placement.ModeHostname:
	case placement.ModeRegion:
		ep, err := regions.Endpoint(c.Region)
		if err != nil {
			return Target{}, false, fmt.Errorf("scheduler: app %q: %w", c.App, err)
		}
		t.Endpoint = ep
	default:
		return Target{}, false, nil
	}
	return t, true, t.Validate()
}

// Registration is the result of POST /v1/apps and POST /v1/apps/{name}/deploys: the application's target (for
// mode smart only app, mode and account) and its deploy.
type Registration struct {
	Target
	Deploy     string    `json:"deploy"`
	DeployedAt time.Time `json:"deployed_at"`
	// DeployGenerated reports that no version was given and Vantage made Deploy up.
	DeployGenerated bool `json:"deploy_generated,omitempty"`
}

// MaxDeployLen bounds a deploy version given to the API.
const MaxDeployLen = 128

// deployVersion returns the deploy version given (v), or a generated one; an error for a version that is too
// long or has spaces or control characters.
func deployVersion(v string, now time.Time) (string, bool, error) {
	if v == "" {
		return fmt.Sprintf("vantage-%s-%04x", now.UTC().Format("20060102T150405.000Z"), rand.N(1<<16)), true, nil
	}
	if len(v) > MaxDeployLen || strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "", false, fmt.Errorf("deploy version %.40q: want at most %d printable characters without spaces", v, MaxDeployLen)
	}
	return v, false, nil
}

// postApp registers an application from a wrangler config: TOML (Content-Type application/toml or
// text/x-toml, or ?format=toml) or JSON/JSONC (anything else). ?deploy=VERSION names the deploy (the version
// the workers report with their telemetry); without it every registration is a new deploy with a generated
// version. ?account= (or the config's account_id) names the owning account: a token of one account registers
// only there (its own, when none is named). Applications in mode smart go to the app registry only, where the
// smart runner analyses them.
func (a *API) postApp(w http.ResponseWriter, r *http.Request) {
	a.registerApp(w, r, "", r.URL.Query().Get("account"))
}

// putService is the platform-shaped registration: PUT /client/v4/accounts/{account}/workers/services/{name}
// with a wrangler config naming the application {name}, owned by {account}; otherwise as POST /v1/apps.
func (a *API) putService(w http.ResponseWriter, r *http.Request) {
	a.registerApp(w, r, r.PathValue("name"), r.PathValue("account"))
}

// registerApp is postApp and putService: name, when not empty, must be the config's application.
func (a *API) registerApp(w http.ResponseWriter, r *http.Request, name, account string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, 10001, fmt.Sprintf("reading body: %v", err))
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var c placement.Config
	if strings.Contains(ct, "toml") || r.URL.Query().Get("format") == "toml" {
		c, err = a.Parser.ParseTOML("request", body)
	} else {
		c, err = a.Parser.ParseJSONC("request", body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, 10002, err.Error())
		return
	}
	if name != "" && c.App != name {
		writeError(w, http.StatusBadRequest, 10002, fmt.Sprintf("the config names app %q, the path %q", c.App, name))
		return
	}
	if reg, ok := a.registerConfig(w, r, c, account, r.URL.Query().Get("deploy")); ok {
		writeJSON(w, http.StatusCreated, reg)
	}
}

// registerConfig registers the application of c for r's caller in account (as registerApp), deploy naming the
// deploy ("": a generated version). ok=false means it has answered r with the error.
func (a *API) registerConfig(w http.ResponseWriter, r *http.Request, c placement.Config, account, deployParam string) (reg Registration, ok bool) {
	p := principal(r)
	app, t, rerr := a.checkRegistration(r.Context(), p, c, account, deployParam, time.Now(), a.ownerOf, a.accountApps)
	if rerr != nil {
		writeError(w, rerr.status, rerr.code, rerr.msg)
		return Registration{}, false
	}
	if a.Apps != nil {
		if err := a.Apps.RegisterApp(r.Context(), app); err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return Registration{}, false
		}
	}
	a.applyRegistration(t)
	a.log().Info("scheduler: app registered", "app", t.App, "account", t.Account, "mode", t.Mode, "target", t.Target, "deploy", app.DeployVersion, "token", p.Name)
	return Registration{Target: t, Deploy: app.DeployVersion, DeployedAt: app.DeployedAt, DeployGenerated: app.DeployGenerated}, true
}

// registrationError is a refused registration: its HTTP status, API error code and message.
type registrationError struct {
	status, code int
	msg          string
}

// checkRegistration checks the registration of c's application by p in account at now (deployParam naming the
// deploy, "": generated) and returns the registry entry and the target to hold; ownerOf says who holds a name
// (API.ownerOf), accountApps counts an account's applications for its cap (API.accountApps).
func (a *API) checkRegistration(ctx context.Context, p Principal, c placement.Config, account, deployParam string, now time.Time,
	ownerOf func(ctx context.Context, name string) (owner, error),
	accountApps func(ctx context.Context, account string) (int, error)) (storage.App, Target, *registrationError) {
	fail := func(status, code int, msg string) (storage.App, Target, *registrationError) {
		return storage.App{}, Target{}, &registrationError{status, code, msg}
	}
	t, ok, err := TargetFromConfig(c, a.Regions)
	if err != nil {
		return fail(http.StatusBadRequest, 10002, err.Error())
	}
	smartMode := c.Mode == placement.ModeSmart
	if !ok && !smartMode {
		return fail(http.StatusBadRequest, 10003, fmt.Sprintf("app %q: placement mode %q: nothing to place (want smart, host, hostname or region)", c.App, c.Mode))
	}
	if smartMode {
		t = Target{App: c.App, Mode: c.Mode}
		if a.Apps == nil {
			return fail(http.StatusServiceUnavailable, 10004, fmt.Sprintf("app %q: smart placement needs the app registry in Redis", c.App))
		}
	}
	deploy, generated, err := deployVersion(deployParam, now)
	if err != nil {
		return fail(http.StatusBadRequest, 10002, err.Error())
	}
	acct, code, err := resolveAccount(p, account, c.AccountID)
	if err != nil {
		return fail(code, 10011, fmt.Sprintf("app %q: %v", c.App, err))
	}
	t.Account = acct
	old, err := ownerOf(ctx, c.App)
	switch {
	case err != nil:
		return fail(http.StatusServiceUnavailable, 10004, err.Error())
	case old.exists && !p.Sees(old.account):
		// Application names are one namespace (the router routes by name): the name is taken, by whom is not
		// said.
		return fail(http.StatusConflict, 10009, fmt.Sprintf("app %q: the name is not available", c.App))
	case old.exists && old.source != SourceAPI:
		return fail(http.StatusConflict, 10008, fmt.Sprintf("app %q is placed by a config file (%s): change the file instead", c.App, old.source))
	}
	if limit := a.Limits.withDefaults().MaxAppsPerAccount; acct != "" && (!old.exists || old.account != acct) {
		n, err := accountApps(ctx, acct)
		if err != nil {
			return fail(http.StatusServiceUnavailable, 10004, err.Error())
		}
		if n >= limit {
			return fail(http.StatusForbidden, 10012, fmt.Sprintf("app %q: account %q has %d applications, its cap (max apps per account %d): delete one first", c.App, acct, n, limit))
		}
	}
	app := storage.App{Name: t.App, Mode: t.Mode, Target: t.Target, Account: t.Account, Source: SourceAPI,
		DeployVersion: deploy, DeployedAt: now, DeployGenerated: generated}
	return app, t, nil
}

// applyRegistration makes this scheduler hold t, registered (its registry entry written): a smart application
// has no probe target (it may have had one before).
func (a *API) applyRegistration(t Target) {
	if t.Mode == placement.ModeSmart {
		a.Sched.RemoveTarget(SourceAPI, t.App)
	} else {
		a.Sched.AddTarget(SourceAPI, t)
	}
}

// postDeploy tells Vantage of a new deploy of an application registered through the API: the version from
// ?version= or a JSON body {"version": "..."}, else a generated one. A smart application then leaves
// UNSUPPORTED_APPLICATION and is analysed afresh from the new deploy's telemetry (its placement, if any,
// holds until that telemetry says otherwise).
func (a *API) postDeploy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var body struct {
		Version string `json:"version"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, 10001, fmt.Sprintf("reading body: %v", err))
		return
	}
	if len(strings.TrimSpace(string(raw))) > 0 {
		if err := strictjson.Unmarshal(raw, &body); err != nil {
			writeError(w, http.StatusBadRequest, 10002, fmt.Sprintf("deploy of %q: body: %v (want {\"version\": \"...\"})", name, err))
			return
		}
	}
	if a.Apps == nil {
		writeError(w, http.StatusServiceUnavailable, 10004, "deploys need the app registry in Redis")
		return
	}
	p := principal(r)
	app, found, err := a.Apps.App(r.Context(), name)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	case !found || !p.Sees(app.Account):
		notFound(w, name)
		return
	case cmp.Or(app.Source, SourceAPI) != SourceAPI:
		writeError(w, http.StatusConflict, 10008, fmt.Sprintf("app %q is placed by a config file (%s): a changed file is a new deploy", name, app.Source))
		return
	}
	now := time.Now()
	deploy, generated, err := deployVersion(cmp.Or(r.URL.Query().Get("version"), body.Version), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, 10002, err.Error())
		return
	}
	app.DeployVersion, app.DeployedAt, app.DeployGenerated, app.UpdatedAt = deploy, now, generated, time.Time{}
	if err := a.Apps.RegisterApp(r.Context(), app); err != nil {
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	}
	a.log().Info("scheduler: deploy", "app", name, "deploy", deploy, "generated", generated, "token", p.Name)
	t := Target{App: app.Name, Mode: app.Mode, Target: app.Target, Account: app.Account, Source: SourceAPI}
	writeJSON(w, http.StatusCreated, Registration{Target: t, Deploy: deploy, DeployedAt: now, DeployGenerated: generated})
}

// historyReader reads an application's decision history (storage.Store.DecisionHistory, through
// StoreBackend).
type historyReader interface {
	DecisionHistory(ctx context.Context, app string, limit int) ([]storage.DecisionRecord, error)
}

// AppHistory is the result of GET /v1/apps/{name}/history.
type AppHistory struct {
	App string `json:"app"`
	// Decisions are the application's recent decisions, newest first: each change, and an unchanged decision
	// now and then (storage.Options.DecisionHistoryEvery), capped (storage.Options.DecisionHistoryLen).
	Decisions []storage.DecisionRecord `json:"decisions"`
}

// appHistory is GET /v1/apps/{name}/history[?limit=N]: the decision history of an application the token sees
// (any source: API, config file, smart); another account's is not found.
func (a *API) appHistory(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, 10002, fmt.Sprintf("limit %q: want a positive integer", v))
			return
		}
		limit = n
	}
	hr, ok := a.Decisions.(historyReader)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, 10004, "decision histories need the decisions in Redis")
		return
	}
	p := principal(r)
	o, err := a.ownerOf(r.Context(), name)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	case !o.exists || !p.Sees(o.account):
		writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("app %q is not found", name))
		return
	}
	ds, err := hr.DecisionHistory(r.Context(), name, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, AppHistory{App: name, Decisions: ds})
}

// SourceAPI is the Target.Source of applications registered through the API.
const SourceAPI = "api"

func (a *API) deleteApp(w http.ResponseWriter, r *http.Request) {
	a.removeApp(w, r, r.PathValue("name"), "")
}

// deleteService is DELETE /client/v4/accounts/{account}/workers/services/{name}: DELETE /v1/apps/{name} of an
// application of {account}.
func (a *API) deleteService(w http.ResponseWriter, r *http.Request) {
	a.removeApp(w, r, r.PathValue("name"), r.PathValue("account"))
}

// removeApp deletes the application name registered through the API, when the caller sees it (and it belongs
// to account, when not empty); another account's application is not found.
func (a *API) removeApp(w http.ResponseWriter, r *http.Request, name, account string) {
	p := principal(r)
	old, err := a.ownerOf(r.Context(), name)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	case !old.exists || !p.Sees(old.account) || account != "" && old.account != account && old.account != "":
		notFound(w, name)
		return
	case old.source != SourceAPI:
		writeError(w, http.StatusConflict, 10008, fmt.Sprintf("app %q is placed by a config file (%s): remove the file instead", name, old.source))
		return
	}
	registered := false
	if a.Apps != nil {
		_, found, err := a.Apps.App(r.Context(), name)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
		registered = found
		if err := a.Apps.DeleteApp(r.Context(), name); err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
	}
	if !a.Sched.RemoveTarget(SourceAPI, name) {
		if !registered {
			notFound(w, name)
			return
		}
		// A smart application has no target whose removal deletes its decision: delete it here, so routers stop
		// routing it at once.
		if dd, ok := a.Apps.(decisionDeleter); ok {
			if err := dd.DeleteDecision(r.Context(), name); err != nil {
				writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
				return
			}
		}
	}
	a.log().Info("scheduler: app deleted", "app", name, "account", old.account, "token", p.Name)
	writeJSON(w, http.StatusOK, map[string]string{"app": name})
}

// listApps lists the scheduler's targets and the registry's smart applications (which have none), by app: those
// of the token's account (every one for an operator).
func (a *API) listApps(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	ts := slices.DeleteFunc(a.Sched.Targets(), func(t Target) bool { return !p.Sees(t.Account) })
	if lister, ok := a.Apps.(interface {
		Apps(ctx context.Context) ([]storage.App, error)
	}); ok {
		apps, err := lister.Apps(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
		for _, app := range apps {
			if app.Mode == placement.ModeSmart && p.Sees(app.Account) {
				ts = append(ts, Target{App: app.Name, Mode: app.Mode, Account: app.Account, Source: cmp.Or(app.Source, SourceAPI)})
			}
		}
		slices.SortFunc(ts, func(x, y Target) int { return cmp.Compare(x.App, y.App) })
	}
	writeJSON(w, http.StatusOK, ts)
}

// service is the status API. It answers for an application of {account} that the token sees (an operator's
// application without an account answers under any account, for an operator); everything else, another
// account's application included, is not found, even when a decision exists.
func (a *API) service(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	name, account := r.PathValue("name"), r.PathValue("account")
	ts, ok := a.Sched.Target(name)
	if !ok && a.Apps != nil { // a smart application has no target: the registry knows it
		app, found, err := a.Apps.App(r.Context(), name)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, fmt.Sprintf("reading the app %q: %v", name, err))
			return
		}
		if found && app.Mode == placement.ModeSmart {
			ts, ok = TargetStatus{Target: Target{App: app.Name, Mode: app.Mode, Account: app.Account}}, true
		}
	}
	if ok && (!p.Sees(ts.Account) || ts.Account != "" && ts.Account != account) {
		ok = false
	}
	if !ok && !p.IsOperator() { // a decision alone does not say whose it is: only an operator reads it
		writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("workers.api.error.service_not_found: %q", name))
		return
	}
	d, found, err := a.Decisions.Decision(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, 10004, fmt.Sprintf("reading the decision of %q: %v", name, err))
		return
	}
	if !ok && !found {
		writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("workers.api.error.service_not_found: %q", name))
		return
	}
	st := ServiceStatus{ID: name}
	mode := d.Mode
	if ok {
		mode = ts.Mode
		st.Vantage.Target, st.Vantage.Endpoint = ts.Target.Target, ts.Endpoint
	}
	st.PlacementMode = mode
	switch mode {
	case placement.ModeSmart:
		st.Placement = &PlacementHint{Mode: "smart"}
	case placement.ModeRegion:
		st.Placement = &PlacementHint{Mode: "targeted", Region: st.Vantage.Target}
	case placement.ModeHost:
		st.Placement = &PlacementHint{Mode: "targeted", Host: st.Vantage.Target}
	case placement.ModeHostname:
		st.Placement = &PlacementHint{Mode: "targeted", Hostname: st.Vantage.Target}
	}
	if found {
		st.PlacementStatus = d.Status
		st.Vantage.Target = cmp.Or(st.Vantage.Target, d.Target)
		st.Vantage.BestPoP, st.Vantage.Candidates, st.Vantage.Verdict = d.BestPoP, d.Candidates, d.Verdict
		st.Vantage.Reason = d.Reason
		st.Vantage.Estimated, st.Vantage.Confidence, st.Vantage.Version = d.Estimated, d.Confidence, d.Version
		st.Vantage.LastChecked, st.Vantage.NextRecheck = d.ComputedAt, d.NextRecheck
		if er, ok := a.Decisions.(explanationReader); ok {
			// The explanation is extra: a failure to read it is logged, and the status served without it.
			if e, found, err := er.Explanation(r.Context(), name); err != nil {
				a.log().Warn("scheduler: reading a decision's explanation", "app", name, "err", err)
			} else if found {
				st.Vantage.Explanation = &e
			}
		}
	}
	ss := scriptState{Target: Target{App: name, Mode: mode, Target: st.Vantage.Target}, decision: d, decided: found}
	st.DefaultEnvironment = ServiceEnvironment{Environment: "production", Script: ss.script(false)}
	writeJSON(w, http.StatusOK, st)
}

func (a *API) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// errNotFound marks a missing ad-hoc probe.
var errNotFound = errors.New("not found")
