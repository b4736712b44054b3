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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	LastChecked time.Time `json:"last_checked,omitzero"` // when the decision was last computed
	NextRecheck time.Time `json:"next_recheck,omitzero"`
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
	// telemetry for Smart Placement (scheduler/smartrun.IngestHandler). Nil: not served.
	Telemetry http.Handler
}

// Handler returns the HTTP handler with every route.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern, name string, h http.HandlerFunc) {
		mux.Handle(pattern, a.instrument(name, h))
	}
	route("POST /v1/apps", "apps_post", a.authed(a.postApp))
	route("GET /v1/apps", "apps_list", a.listApps)
	route("DELETE /v1/apps/{name}", "apps_delete", a.authed(a.deleteApp))
	route("POST /v1/apps/{name}/deploys", "deploys_post", a.authed(a.postDeploy))
	route("POST /v1/probes", "probes_post", a.authed(a.postProbe))
	route("GET /v1/probes/{id}", "probes_get", a.authed(a.getProbe))
	route("GET /client/v4/accounts/{account}/workers/services/{name}", "service", a.service)
	if a.Telemetry != nil {
		route("POST /v1/telemetry", "telemetry_post", a.authed(a.Telemetry.ServeHTTP))
	}
	g := a.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if a.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := a.Ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
	return mux
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

type tokenKey struct{}

// authed requires a valid bearer token.
func (a *API) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := "", false
		if a.Auth != nil {
			name, ok = a.Auth.Authenticate(r)
		}
		if !ok {
			if a.Metrics != nil && r.URL.Path == "/v1/probes" {
				a.Metrics.adhoc.WithLabelValues("unauthorized").Inc()
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="vantage"`)
			writeError(w, http.StatusUnauthorized, 10000, "authentication error: a valid bearer token is required")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, name)))
	}
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
	t := Target{App: c.App, Mode: c.Mode, Target: c.Target()}
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
// version. Applications in mode smart go to the app registry only, where the smart runner analyses them.
func (a *API) postApp(w http.ResponseWriter, r *http.Request) {
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
	t, ok, err := TargetFromConfig(c, a.Regions)
	if err != nil {
		writeError(w, http.StatusBadRequest, 10002, err.Error())
		return
	}
	smartMode := c.Mode == placement.ModeSmart
	if !ok && !smartMode {
		writeError(w, http.StatusBadRequest, 10003, fmt.Sprintf("app %q: placement mode %q: nothing to place (want smart, host, hostname or region)", c.App, c.Mode))
		return
	}
	if smartMode {
		t = Target{App: c.App, Mode: c.Mode}
		if a.Apps == nil {
			writeError(w, http.StatusServiceUnavailable, 10004, fmt.Sprintf("app %q: smart placement needs the app registry in Redis", c.App))
			return
		}
	}
	now := time.Now()
	deploy, generated, err := deployVersion(r.URL.Query().Get("deploy"), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, 10002, err.Error())
		return
	}
	t.Account = r.URL.Query().Get("account")
	if a.Apps != nil {
		if old, found, err := a.Apps.App(r.Context(), c.App); err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		} else if found && cmp.Or(old.Source, SourceAPI) != SourceAPI {
			writeError(w, http.StatusConflict, 10008, fmt.Sprintf("app %q is placed by a config file (%s): change the file instead", c.App, old.Source))
			return
		}
		app := storage.App{Name: t.App, Mode: t.Mode, Target: t.Target, Account: t.Account, Source: SourceAPI,
			DeployVersion: deploy, DeployedAt: now, DeployGenerated: generated}
		if err := a.Apps.RegisterApp(r.Context(), app); err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
	}
	if smartMode {
		a.Sched.RemoveTarget(SourceAPI, t.App) // it may have had a probe target before
	} else {
		a.Sched.AddTarget(SourceAPI, t)
	}
	a.log().Info("scheduler: app registered", "app", t.App, "mode", t.Mode, "target", t.Target, "deploy", deploy, "token", r.Context().Value(tokenKey{}))
	writeJSON(w, http.StatusCreated, Registration{Target: t, Deploy: deploy, DeployedAt: now, DeployGenerated: generated})
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
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, 10002, fmt.Sprintf("deploy of %q: body: %v (want {\"version\": \"...\"})", name, err))
			return
		}
	}
	if a.Apps == nil {
		writeError(w, http.StatusServiceUnavailable, 10004, "deploys need the app registry in Redis")
		return
	}
	app, found, err := a.Apps.App(r.Context(), name)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	case !found:
		writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("app %q is not registered through the API", name))
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
	a.log().Info("scheduler: deploy", "app", name, "deploy", deploy, "generated", generated, "token", r.Context().Value(tokenKey{}))
	t := Target{App: app.Name, Mode: app.Mode, Target: app.Target, Account: app.Account, Source: SourceAPI}
	writeJSON(w, http.StatusCreated, Registration{Target: t, Deploy: deploy, DeployedAt: now, DeployGenerated: generated})
}

// SourceAPI is the Target.Source of applications registered through the API.
const SourceAPI = "api"

func (a *API) deleteApp(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	registered := false
	if a.Apps != nil {
		old, found, err := a.Apps.App(r.Context(), name)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
		if found && cmp.Or(old.Source, SourceAPI) != SourceAPI {
			writeError(w, http.StatusConflict, 10008, fmt.Sprintf("app %q is placed by a config file (%s): remove the file instead", name, old.Source))
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
			writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("app %q is not registered through the API", name))
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
	writeJSON(w, http.StatusOK, map[string]string{"app": name})
}

// listApps lists the scheduler's targets and the registry's smart applications (which have none), by app.
func (a *API) listApps(w http.ResponseWriter, r *http.Request) {
	ts := a.Sched.Targets()
	if lister, ok := a.Apps.(interface {
		Apps(ctx context.Context) ([]storage.App, error)
	}); ok {
		apps, err := lister.Apps(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
		for _, app := range apps {
			if app.Mode == placement.ModeSmart {
				ts = append(ts, Target{App: app.Name, Mode: app.Mode, Account: app.Account, Source: cmp.Or(app.Source, SourceAPI)})
			}
		}
		slices.SortFunc(ts, func(x, y Target) int { return cmp.Compare(x.App, y.App) })
	}
	writeJSON(w, http.StatusOK, ts)
}

func (a *API) service(w http.ResponseWriter, r *http.Request) {
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
	if ok && ts.Account != "" && ts.Account != account {
		ok = false
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
	}
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
