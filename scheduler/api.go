package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vantage-edge/vantage/placement"
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
	Target      string                `json:"target,omitempty"`
	Endpoint    string                `json:"endpoint,omitempty"` // region mode: the endpoint probed
	BestPoP     string                `json:"best_pop,omitempty"`
	Candidates  []placement.Candidate `json:"candidates,omitempty"`
	Verdict     placement.Verdict     `json:"verdict,omitempty"`
	Estimated   bool                  `json:"estimated,omitempty"`
	Confidence  float64               `json:"confidence,omitempty"`
	Version     int64                 `json:"version,omitempty"`
	LastChecked time.Time             `json:"last_checked,omitzero"` // when the decision was last computed
	NextRecheck time.Time             `json:"next_recheck,omitzero"`
}

// decisionReader is the part of storage the status API reads.
type decisionReader interface {
	Decision(ctx context.Context, app string) (placement.Decision, bool, error)
}

// appRegistry stores applications registered through the API, shared by every scheduler.
type appRegistry interface {
	PutApp(ctx context.Context, t Target) error
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

// postApp registers an application from a wrangler config: TOML (Content-Type application/toml or
// text/x-toml, or ?format=toml) or JSON/JSONC (anything else).
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
	if !ok {
		writeError(w, http.StatusBadRequest, 10003, fmt.Sprintf("app %q: placement mode %q has no target to probe (want host, hostname or region)", c.App, c.Mode))
		return
	}
	t.Account = r.URL.Query().Get("account")
	if a.Apps != nil {
		if err := a.Apps.PutApp(r.Context(), t); err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
	}
	a.Sched.AddTarget(SourceAPI, t)
	a.log().Info("scheduler: app registered", "app", t.App, "mode", t.Mode, "target", t.Target, "token", r.Context().Value(tokenKey{}))
	writeJSON(w, http.StatusCreated, t)
}

// SourceAPI is the Target.Source of applications registered through the API.
const SourceAPI = "api"

func (a *API) deleteApp(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if a.Apps != nil {
		if err := a.Apps.DeleteApp(r.Context(), name); err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
	}
	if !a.Sched.RemoveTarget(SourceAPI, name) {
		writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("app %q is not registered through the API", name))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"app": name})
}

func (a *API) listApps(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Sched.Targets())
}

func (a *API) service(w http.ResponseWriter, r *http.Request) {
	name, account := r.PathValue("name"), r.PathValue("account")
	ts, ok := a.Sched.Target(name)
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
		st.Vantage.Target = cmpOr(st.Vantage.Target, d.Target)
		st.Vantage.BestPoP, st.Vantage.Candidates, st.Vantage.Verdict = d.BestPoP, d.Candidates, d.Verdict
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
