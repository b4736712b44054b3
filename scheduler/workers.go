package scheduler

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// The Workers API's placement subset, in the platform's shapes (the official SDK's
// resources/workers/scripts/script-and-version-settings.d.ts and scripts.d.ts): a script is an application,
// its placement the application's.

// PlatformPlacement is a script's placement as the platform spells it: {mode: "smart"}, {region}, {host} or
// {hostname} (with mode "targeted" on read), with the analysis's status and time once analysed.
type PlatformPlacement struct {
	Mode           string           `json:"mode,omitempty"` // "smart" or "targeted"
	Region         string           `json:"region,omitempty"`
	Host           string           `json:"host,omitempty"`
	Hostname       string           `json:"hostname,omitempty"`
	Status         placement.Status `json:"status,omitempty"`
	LastAnalyzedAt *time.Time       `json:"last_analyzed_at,omitempty"`
}

// WorkerScript is a script of GET .../workers/scripts and of the upload's answer (the SDK's Script).
type WorkerScript struct {
	ID              string             `json:"id"`
	ModifiedOn      *time.Time         `json:"modified_on,omitempty"`
	Placement       *PlatformPlacement `json:"placement,omitempty"`
	PlacementMode   string             `json:"placement_mode,omitempty"` // "smart" or "targeted"
	PlacementStatus placement.Status   `json:"placement_status,omitempty"`
	Vantage         *VantageDetail     `json:"vantage,omitempty"`
}

// ScriptSettings is the result of GET and PATCH .../workers/scripts/{name}/settings.
type ScriptSettings struct {
	Placement *PlatformPlacement `json:"placement,omitempty"`
	Vantage   *VantageDetail     `json:"vantage,omitempty"`
}

// ServiceEnvironment is result.default_environment of GET .../workers/services/{name}, as wrangler reads it.
type ServiceEnvironment struct {
	Environment string       `json:"environment"`
	Script      WorkerScript `json:"script"`
}

// scriptState is what Vantage knows of a script: its target (mode and target) and its decision.
type scriptState struct {
	Target
	decision placement.Decision
	decided  bool
	deployed time.Time
	deploy   string
}

// platformMode is mode in the platform's spelling: "smart" or "targeted" ("" for none).
func platformMode(mode placement.Mode) string {
	switch mode {
	case placement.ModeSmart:
		return "smart"
	case placement.ModeRegion, placement.ModeHost, placement.ModeHostname:
		return "targeted"
	}
	return ""
}

// script returns s in the platform's shape, with Vantage's detail when detail.
func (s scriptState) script(detail bool) WorkerScript {
	ws := WorkerScript{ID: s.App, PlacementMode: platformMode(s.Mode)}
	if ws.PlacementMode == "" {
		return ws
	}
	pp := &PlatformPlacement{Mode: ws.PlacementMode}
	switch s.Mode {
	case placement.ModeRegion:
		pp.Region = s.Target.Target
	case placement.ModeHost:
		pp.Host = s.Target.Target
	case placement.ModeHostname:
		pp.Hostname = s.Target.Target
	}
	if s.decided {
		pp.Status, ws.PlacementStatus = s.decision.Status, s.decision.Status
		if !s.decision.ComputedAt.IsZero() {
			at := s.decision.ComputedAt.UTC()
			pp.LastAnalyzedAt = &at
		}
	}
	ws.Placement = pp
	if !s.deployed.IsZero() {
		on := s.deployed.UTC()
		ws.ModifiedOn = &on
	}
	if detail {
		d := s.decision
		ws.Vantage = &VantageDetail{Target: s.Target.Target, Endpoint: s.Endpoint, BestPoP: d.BestPoP,
			Candidates: d.Candidates, Verdict: d.Verdict, Reason: d.Reason, Estimated: d.Estimated,
			Confidence: d.Confidence, Version: d.Version, LastChecked: d.ComputedAt, NextRecheck: d.NextRecheck,
			Deploy: s.deploy}
	}
	return ws
}

// lookupScript returns the script name of account as the caller p sees it: found=false for an absent script
// and for another account's (the same answer).
func (a *API) lookupScript(ctx context.Context, p Principal, account, name string) (scriptState, bool, error) {
	var s scriptState
	ts, ok := a.Sched.Target(name)
	if ok {
		s.Target = ts.Target
	}
	if a.Apps != nil {
		app, found, err := a.Apps.App(ctx, name)
		if err != nil {
			return s, false, fmt.Errorf("reading the app %q: %w", name, err)
		}
		if found {
			s.deployed, s.deploy = app.DeployedAt, app.DeployVersion
			if !ok {
				s.Target, ok = Target{App: app.Name, Mode: app.Mode, Target: app.Target, Account: app.Account, Source: cmp.Or(app.Source, SourceAPI)}, true
			}
		}
	}
	if !ok || !p.Sees(s.Account) || s.Account != account {
		return s, false, nil
	}
	d, found, err := a.Decisions.Decision(ctx, name)
	if err != nil {
		return s, false, fmt.Errorf("reading the decision of %q: %w", name, err)
	}
	s.decision, s.decided = d, found
	return s, true, nil
}

func scriptNotFound(w http.ResponseWriter, name string) {
	writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("workers.api.error.script_not_found: %q", name))
}

// getScriptSettings is GET /client/v4/accounts/{account}/workers/scripts/{name}/settings.
func (a *API) getScriptSettings(w http.ResponseWriter, r *http.Request) {
	name, account := r.PathValue("name"), r.PathValue("account")
	s, found, err := a.lookupScript(r.Context(), principal(r), account, name)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	case !found:
		scriptNotFound(w, name)
		return
	}
	ws := s.script(true)
	writeJSON(w, http.StatusOK, ScriptSettings{Placement: ws.Placement, Vantage: ws.Vantage})
}

// patchScriptSettings is PATCH /client/v4/accounts/{account}/workers/scripts/{name}/settings: a multipart form
// whose "settings" is a JSON part or, as the SDK sends it, fields settings[placement][mode] and the like; or a
// plain JSON body. A placement registers the script (or changes its placement: a new deploy); settings without
// one leave the placement as it is.
func (a *API) patchScriptSettings(w http.ResponseWriter, r *http.Request) {
	name, account := r.PathValue("name"), r.PathValue("account")
	settings, code, err := formObject(w, r, "settings")
	if err != nil {
		writeError(w, code, 10002, err.Error())
		return
	}
	if raw, ok := settings["placement"]; ok {
		if _, ok := a.placeScript(w, r, name, account, raw); !ok {
			return
		}
	}
	a.getScriptSettings(w, r)
}

// placeScript registers script name of account with the placement raw (the settings' or the upload
// metadata's), a new deploy. ok=false means it has answered r with the error.
func (a *API) placeScript(w http.ResponseWriter, r *http.Request, name, account string, raw any) (Registration, bool) {
	if err := checkPlatformPlacement(raw); err != nil {
		writeError(w, http.StatusBadRequest, 10021, err.Error())
		return Registration{}, false
	}
	doc, err := json.Marshal(map[string]any{"name": name, "placement": raw})
	if err != nil {
		writeError(w, http.StatusBadRequest, 10021, fmt.Sprintf("placement: %v", err))
		return Registration{}, false
	}
	c, err := a.Parser.ParseJSONC("placement", doc)
	if err != nil {
		writeError(w, http.StatusBadRequest, 10021, fmt.Sprintf("placement: %v", err))
		return Registration{}, false
	}
	return a.registerConfig(w, r, c, account, "")
}

// checkPlatformPlacement checks a placement is one of the platform's shapes: {mode: "smart"}, or exactly one of
// region, host, hostname (a non-empty string), optionally with mode "targeted". The error names the field.
func checkPlatformPlacement(raw any) error {
	m, ok := raw.(map[string]any)
	if !ok {
		return fmt.Errorf("placement: want an object, got %s", jsonType(raw))
	}
	targets := 0
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v, isString := m[k].(string)
		switch k {
		case "mode":
			if !isString || v != "smart" && v != "targeted" {
				return fmt.Errorf("placement.mode: %s: want \"smart\" or \"targeted\"", jsonText(m[k]))
			}
		case "region", "host", "hostname":
			if !isString || v == "" {
				return fmt.Errorf("placement.%s: %s: want a non-empty string", k, jsonText(m[k]))
			}
			targets++
		default:
			return fmt.Errorf("placement.%s: unknown field (want mode, region, host or hostname)", k)
		}
	}
	mode, _ := m["mode"].(string)
	switch {
	case targets > 1:
		return fmt.Errorf("placement: region, host and hostname are exclusive: name one")
	case mode == "smart" && targets > 0:
		return fmt.Errorf("placement.mode: \"smart\" takes no region, host or hostname (want mode \"targeted\")")
	case targets == 0 && mode != "smart":
		return fmt.Errorf("placement: want {mode: \"smart\"} or one of region, host, hostname")
	}
	return nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	}
	return "an object"
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// formObject reads the object key of r's body: from a multipart form, a JSON part or field named key, or
// fields key[a][b] (as the SDK encodes nested objects; every value a string); from any other body, the JSON
// object that is the body (or its member key). An empty body is an empty object.
func formObject(w http.ResponseWriter, r *http.Request, key string) (map[string]any, int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("reading body: %w", err)
	}
	out := map[string]any{}
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if first, _, _ := bytes.Cut(body, []byte("\n")); ct != "multipart/form-data" && bytes.HasPrefix(first, []byte("--")) {
		// The SDK's script upload sends its multipart form as Content-Type application/javascript: the form's
		// first line names the boundary.
		ct, params = "multipart/form-data", map[string]string{"boundary": string(bytes.TrimSpace(first[2:]))}
	}
	if ct != "multipart/form-data" {
		if len(bytes.TrimSpace(body)) == 0 {
			return out, 0, nil
		}
		if err := json.Unmarshal(body, &out); err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("%s: body: %w (want a JSON object)", key, err)
		}
		if inner, ok := out[key].(map[string]any); ok { // {"settings": {...}} as well as {...}
			return inner, 0, nil
		}
		return out, 0, nil
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return out, 0, nil
		}
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("%s: multipart body: %w", key, err)
		}
		field := part.FormName()
		if field != key && !strings.HasPrefix(field, key+"[") {
			continue // e.g. an upload's modules: nothing Vantage reads
		}
		val, err := io.ReadAll(part)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("%s: multipart part %q: %w", key, field, err)
		}
		if field == key {
			if err := json.Unmarshal(val, &out); err != nil {
				return nil, http.StatusBadRequest, fmt.Errorf("%s: part: %w (want a JSON object)", key, err)
			}
			continue
		}
		path := strings.Split(strings.TrimSuffix(strings.TrimPrefix(field, key+"["), "]"), "][")
		m := out
		for i, k := range path {
			if i == len(path)-1 {
				m[k] = string(val)
				break
			}
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
	}
}

// listScripts is GET /client/v4/accounts/{account}/workers/scripts: the account's scripts that the caller sees,
// each with its placement.
func (a *API) listScripts(w http.ResponseWriter, r *http.Request) {
	p, account := principal(r), r.PathValue("account")
	names := map[string]bool{}
	for _, t := range a.Sched.Targets() {
		if t.Account == account {
			names[t.App] = true
		}
	}
	if lister, ok := a.Apps.(interface {
		Apps(ctx context.Context) ([]storage.App, error)
	}); ok {
		apps, err := lister.Apps(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
		for _, app := range apps {
			if app.Account == account {
				names[app.Name] = true
			}
		}
	}
	scripts := []WorkerScript{}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		s, found, err := a.lookupScript(r.Context(), p, account, name)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		}
		if found {
			scripts = append(scripts, s.script(false))
		}
	}
	writeJSON(w, http.StatusOK, scripts)
}

// deleteScript is DELETE /client/v4/accounts/{account}/workers/scripts/{name}: as DELETE /v1/apps/{name}, of
// an application of {account}.
func (a *API) deleteScript(w http.ResponseWriter, r *http.Request) {
	name, account := r.PathValue("name"), r.PathValue("account")
	if _, found, err := a.lookupScript(r.Context(), principal(r), account, name); err != nil {
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	} else if !found {
		scriptNotFound(w, name)
		return
	}
	a.removeApp(w, r, name, account)
}

// putScript is PUT /client/v4/accounts/{account}/workers/scripts/{name}, the script upload: of its multipart
// form only the metadata matters (a JSON part, as wrangler sends it, or metadata[...] fields, as the SDK does).
// metadata.placement sets the placement; without one the script keeps its own (a new script needs one). Every
// upload is a new deploy with a generated version, as POST /v1/apps/{name}/deploys: a smart script leaves
// UNSUPPORTED_APPLICATION and is analysed afresh.
func (a *API) putScript(w http.ResponseWriter, r *http.Request) {
	name, account := r.PathValue("name"), r.PathValue("account")
	meta, code, err := formObject(w, r, "metadata")
	if err != nil {
		writeError(w, code, 10002, err.Error())
		return
	}
	raw, ok := meta["placement"]
	if !ok {
		s, found, err := a.lookupScript(r.Context(), principal(r), account, name)
		switch {
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
			return
		case !found || s.Mode == placement.ModeNone:
			writeError(w, http.StatusBadRequest, 10021, fmt.Sprintf("metadata.placement: script %q has no placement: Vantage places scripts that name one", name))
			return
		}
		pp := s.script(false).Placement
		b, _ := json.Marshal(PlatformPlacement{Mode: pp.Mode, Region: pp.Region, Host: pp.Host, Hostname: pp.Hostname})
		json.Unmarshal(b, &raw) // the platform's shape again, for placeScript's checks
	}
	if _, ok := a.placeScript(w, r, name, account, raw); !ok {
		return
	}
	s, found, err := a.lookupScript(r.Context(), principal(r), account, name)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	case !found: // deleted meanwhile
		scriptNotFound(w, name)
		return
	}
	writeJSON(w, http.StatusOK, s.script(true))
}
