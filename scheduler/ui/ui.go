// Package ui serves the scheduler's status page: a world map of the fleet and the targets (Natural Earth land
// and borders, the PoPs, each target's disks, location and anycast instances, the PoP mesh's RTTs), the
// applications' table, an application's page with its decision history, and an ad-hoc probe form, from
// embedded static files (no CDN, no external fonts or scripts) and two JSON endpoints.
package ui

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

//go:embed static
var static embed.FS

// Routes of the page. Everything else goes to the API handler Wrap is given.
const (
	// PathState is the JSON endpoint the page polls: the fleet and every application with its decision.
	PathState = "/ui/api/state"
	// PathCatalogue is the JSON endpoint of the PoP catalogue the map draws as background dots.
	PathCatalogue = "/ui/api/catalogue"
	// PathApp prefixes an application's page, PathApp + name (also reachable as "/#app=name").
	PathApp = "/ui/app/"
	// PathStatic prefixes the page's static files (script, style sheet).
	PathStatic = "/ui/static/"
)

const (
	// DefaultMaxApps caps the applications one state read returns (each costs two Redis reads and an engine
	// run): a page of a few hundred rows is what an operator reads; the API lists them all.
	DefaultMaxApps = 500
	// DefaultMaxResultAge is how old a PoP's latest result to a target may be and still be drawn as a disk:
	// two default recheck intervals, as the scheduler counts results of earlier rechecks.
	DefaultMaxResultAge = 2 * scheduler.DefaultRecheckInterval
	// stateTimeout bounds one state read from Redis (a page polls every few seconds).
	stateTimeout = 5 * time.Second
)

// Store is what the page reads from Redis; *storage.Store implements it.
type Store interface {
	Fleet(ctx context.Context) ([]storage.PoPState, error)
	// Apps lists the application registry: applications in mode smart are there, not among the scheduler's
	// targets (they have nothing to probe).
	Apps(ctx context.Context) ([]storage.App, error)
	Decision(ctx context.Context, app string) (placement.Decision, bool, error)
	LatestResults(ctx context.Context, key string) (map[string]storage.Result, error)
}

// Targets lists the applications the scheduler places; *scheduler.Scheduler implements it.
type Targets interface {
	Targets() []scheduler.Target
	Target(app string) (scheduler.TargetStatus, bool)
}

// Config configures a Handler.
type Config struct {
	Sched Targets // required
	Store Store   // required
	// PoPs locates PoP codes (the fleet, the disks); nil: geo.LookupPoP.
	PoPs func(code string) (geo.PoP, bool)
	// Engine is the triangulation engine's configuration used to locate targets for the map (estimated
	// location, anycast instances); nil: triangulate.ProductionConfig(nil). It should match the scheduler's.
	Engine *triangulate.Config
	// MaxResultAge drops older per-PoP results from the map (default DefaultMaxResultAge).
	MaxResultAge time.Duration
	// MaxApps caps the applications of a state read, in app order (default DefaultMaxApps).
	MaxApps int
	// Authenticate says whom a request of PathState acts for (the API's Auth.Authenticate): the state shows
	// that account's applications (every one, and the config dir's skipped files, to an operator). Nil: every
	// state read is refused.
	Authenticate func(r *http.Request) (scheduler.Principal, bool)
	// Now reads the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger // default: discard
}

// Handler serves the status page. It is safe for concurrent use.
type Handler struct {
	cfg    Config
	log    *slog.Logger
	files  http.Handler
	index  []byte
	mu     sync.Mutex // guards engine
	engine *triangulate.Engine
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Sched == nil || cfg.Store == nil {
		return nil, errors.New("ui: Config.Sched and Config.Store are required")
	}
	if cfg.PoPs == nil {
		cfg.PoPs = geo.LookupPoP
	}
	if cfg.MaxApps <= 0 {
		cfg.MaxApps = DefaultMaxApps
	}
	if cfg.MaxResultAge <= 0 {
		cfg.MaxResultAge = DefaultMaxResultAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ec := triangulate.ProductionConfig(nil)
	if cfg.Engine != nil {
		ec = *cfg.Engine
	}
	eng, err := triangulate.NewEngine(ec)
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: embedded files: %w", err)
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, fmt.Errorf("ui: embedded files: %w", err)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, engine: eng, index: index,
		files: http.StripPrefix(PathStatic, http.FileServerFS(sub))}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h, nil
}

// routes are the mux patterns of the page's routes, each documented in the OpenAPI document (scheduler/openapi,
// tag "status page"; TestOpenAPIDocumentsThePage compares the two). GET patterns serve HEAD too.
var routes = []string{
	"GET /{$}",
	"GET /ui/{$}",
	"GET /ui/index.html",
	"GET " + PathState,
	"GET " + PathCatalogue,
	"GET " + PathStatic + "{file}",
	"GET " + PathStatic + "vendor/{file}",
	"GET " + PathApp + "{name}",
}

// Wrap returns a handler serving the page at "/" and under "/ui/", and every other path with api (the
// scheduler's API.Handler()). Other paths under "/ui/" are the page's too: 404, or 405 for a method but GET.
func Wrap(api http.Handler, h *Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api)
	for _, p := range routes {
		mux.Handle(p, h)
	}
	mux.Handle("/ui/", h)
	return mux
}

// ServeHTTP serves the page, its static files and its JSON.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "ui: GET only", http.StatusMethodNotAllowed)
		return
	}
	setSecurityHeaders(w)
	switch p := r.URL.Path; {
	case p == "/" || p == "/ui/" || p == "/ui/index.html" || isAppPage(p):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(h.index)
	case p == PathState:
		who, ok := scheduler.Principal{}, false
		if h.cfg.Authenticate != nil {
			who, ok = h.cfg.Authenticate(r)
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vantage"`)
			http.Error(w, "ui: a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
		defer cancel()
		st, err := h.State(ctx, who)
		if err != nil {
			h.log.Warn("ui: reading the state", "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, st)
	case p == PathCatalogue:
		w.Header().Set("Cache-Control", "max-age=3600")
		writeJSON(w, catalogue())
	case len(p) > len(PathStatic) && p[:len(PathStatic)] == PathStatic:
		w.Header().Set("Cache-Control", "no-cache")
		h.files.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// isAppPage reports whether p is an application's page, PathApp + a name: the page itself, which shows
// that application (its history is read from the API with the page's token).
func isAppPage(p string) bool {
	name, ok := strings.CutPrefix(p, PathApp)
	return ok && name != "" && !strings.Contains(name, "/")
}

// setSecurityHeaders confines the page to its own origin: no script, style, font or image from elsewhere.
func setSecurityHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// State is the JSON of PathState.
type State struct {
	Now       time.Time `json:"now"`
	PoPs      []PoP     `json:"pops"`
	Apps      []App     `json:"apps"`       // the first Config.MaxApps applications, by name
	TotalApps int       `json:"total_apps"` // every application the scheduler places
	// SkippedConfigs are the files of the config dir the scheduler's last load skipped, with the reason.
	SkippedConfigs []scheduler.ConfigFile `json:"skipped_configs"`
	// Shards is which shards of the targets this scheduler leads (an operator's read only).
	Shards *scheduler.ShardStatus `json:"shards,omitempty"`
}

// shardStatus is implemented by *scheduler.Scheduler: the shards it leads.
type shardStatus interface {
	Shards() scheduler.ShardStatus
}

// skippedConfigs is implemented by *scheduler.Scheduler: the config files its last loads skipped.
type skippedConfigs interface {
	SkippedConfigs() []scheduler.ConfigFile
}

// PoP is one PoP of the fleet on the map.
type PoP struct {
	Code     string    `json:"code"`
	City     string    `json:"city,omitempty"`
	Lat      float64   `json:"lat"`
	Lon      float64   `json:"lon"`
	State    string    `json:"state"` // "up", "down" or "drained"
	Daemons  int       `json:"daemons"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Located  bool      `json:"located"` // false: not in the catalogue, drawn nowhere
}

// App is one application: its target, its decision and what the map draws for it.
type App struct {
	App         string                `json:"app"`
	Mode        placement.Mode        `json:"mode"`
	Target      string                `json:"target"`
	Endpoint    string                `json:"endpoint,omitempty"`
	Status      placement.Status      `json:"status,omitempty"`
	Verdict     placement.Verdict     `json:"verdict,omitempty"`
	Reason      string                `json:"reason,omitempty"` // why the status is not SUCCESS
	BestPoP     string                `json:"best_pop,omitempty"`
	BestRTTMs   float64               `json:"best_rtt_ms,omitempty"`
	Estimated   bool                  `json:"estimated,omitempty"`
	Confidence  float64               `json:"confidence,omitempty"`
	Candidates  []placement.Candidate `json:"candidates,omitempty"`
	LastRecheck time.Time             `json:"last_recheck,omitzero"` // when the decision was computed
	NextRecheck time.Time             `json:"next_recheck,omitzero"`
	LastError   string                `json:"last_error,omitempty"`
	Checks      int64                 `json:"checks"`
	// Disks are the fibre-bound disks of the PoPs' latest successful probes: the target is inside each.
	Disks []Disk `json:"disks,omitempty"`
	// Location is the estimated location (unicast targets; a region's coordinates for an estimated region).
	Location *Location `json:"location,omitempty"`
	// Instances are the anycast instances found by latency.
	Instances []Instance `json:"instances,omitempty"`
	Notes     []string   `json:"notes,omitempty"`
	// Explanation is why the stored decision is what it is, as the scheduler wrote it (when the Store
	// reads explanations and one is stored).
	Explanation *storage.Explanation `json:"explanation,omitempty"`
}

// explanationStore reads a decision's explanation; *storage.Store implements it.
type explanationStore interface {
	Explanation(ctx context.Context, app string) (storage.Explanation, bool, error)
}

// Disk is one PoP's disk about a target.
type Disk struct {
	PoP      string  `json:"pop"`
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	RTTMs    float64 `json:"rtt_ms"`
	RadiusKm float64 `json:"radius_km"`
}

// Location is an estimated location: that of "vantage triangulate"'s output.
type Location = triangulate.VerdictLocation

// Instance is one anycast instance: that of "vantage triangulate"'s output.
type Instance = triangulate.VerdictInstance

// State reads the fleet and the applications who sees (scheduler.Principal.Sees); the config dir's skipped
// files only for an operator.
func (h *Handler) State(ctx context.Context, who scheduler.Principal) (State, error) {
	now := h.cfg.Now()
	fleet, err := h.cfg.Store.Fleet(ctx)
	if err != nil {
		return State{}, fmt.Errorf("ui: reading the fleet: %w", err)
	}
	st := State{Now: now, PoPs: make([]PoP, 0, len(fleet)), Apps: []App{}, SkippedConfigs: []scheduler.ConfigFile{}}
	if sc, ok := h.cfg.Sched.(skippedConfigs); ok && who.IsOperator() {
		st.SkippedConfigs = append(st.SkippedConfigs, sc.SkippedConfigs()...)
	}
	if ss, ok := h.cfg.Sched.(shardStatus); ok && who.IsOperator() {
		v := ss.Shards()
		st.Shards = &v
	}
	up := map[string]bool{}
	for _, p := range fleet {
		v := PoP{Code: p.PoP, State: "down", Daemons: len(p.Daemons), LastSeen: p.LastSeen}
		switch {
		case p.Drained:
			v.State = "drained"
		case p.Up:
			v.State = "up"
			up[p.PoP] = true
		}
		if c, ok := h.cfg.PoPs(p.PoP); ok {
			v.City, v.Lat, v.Lon, v.Located = c.City, c.Lat, c.Lon, true
		}
		st.PoPs = append(st.PoPs, v)
	}
	targets := slices.DeleteFunc(h.cfg.Sched.Targets(), func(t scheduler.Target) bool { return !who.Sees(t.Account) })
	reg, err := h.cfg.Store.Apps(ctx)
	if err != nil {
		return State{}, fmt.Errorf("ui: reading the applications: %w", err)
	}
	for _, a := range reg {
		if who.Sees(a.Account) && !slices.ContainsFunc(targets, func(t scheduler.Target) bool { return t.App == a.Name }) {
			targets = append(targets, scheduler.Target{App: a.Name, Mode: a.Mode, Target: a.Target, Account: a.Account})
		}
	}
	slices.SortFunc(targets, func(a, b scheduler.Target) int { return cmp.Compare(a.App, b.App) })
	st.TotalApps = len(targets)
	for _, t := range targets[:min(len(targets), h.cfg.MaxApps)] {
		a, err := h.app(ctx, t, now)
		if err != nil {
			return State{}, err
		}
		st.Apps = append(st.Apps, a)
	}
	return st, nil
}

// app reads one application's decision and latest results and locates it.
func (h *Handler) app(ctx context.Context, t scheduler.Target, now time.Time) (App, error) {
	a := App{App: t.App, Mode: t.Mode, Target: t.Target, Endpoint: t.Endpoint}
	if ts, ok := h.cfg.Sched.Target(t.App); ok {
		a.LastError, a.Checks = ts.LastError, ts.Checks
	}
	d, found, err := h.cfg.Store.Decision(ctx, t.App)
	if err != nil {
		if ctx.Err() != nil {
			return App{}, fmt.Errorf("ui: reading the decision of %q: %w", t.App, err)
		}
		// One undecodable decision is that app's problem, shown on its row, not the page's.
		a.LastError, found = fmt.Sprintf("reading its decision: %v", err), false
	}
	if found {
		a.Status, a.Verdict, a.BestPoP, a.Estimated, a.Reason = d.Status, d.Verdict, d.BestPoP, d.Estimated, d.Reason
		a.Confidence, a.Candidates, a.LastRecheck, a.NextRecheck = d.Confidence, d.Candidates, d.ComputedAt, d.NextRecheck
		for _, c := range d.Candidates {
			if c.PoP == d.BestPoP {
				a.BestRTTMs = c.RTTMs
				break
			}
		}
		if es, ok := h.cfg.Store.(explanationStore); ok {
			if e, found, err := es.Explanation(ctx, t.App); err != nil {
				h.log.Warn("ui: reading a decision's explanation", "app", t.App, "err", err)
			} else if found {
				a.Explanation = &e
			}
		}
	}
	var ms []triangulate.Measurement
	if addr := t.ProbeAddr(); addr != "" {
		rs, err := h.cfg.Store.LatestResults(ctx, storage.TargetKey(t.Kind(), addr))
		if err != nil {
			return App{}, fmt.Errorf("ui: reading the results of %q: %w", t.App, err)
		}
		for pop, r := range rs {
			if r.Class != "" || r.Error != "" || r.Samples == 0 || now.Sub(r.At) > h.cfg.MaxResultAge {
				continue
			}
			p, ok := h.cfg.PoPs(pop)
			if !ok {
				continue
			}
			ms = append(ms, triangulate.Measurement{VP: pop, Point: p.Point, RTTMs: r.MinMs})
			a.Disks = append(a.Disks, Disk{PoP: pop, Lat: p.Lat, Lon: p.Lon, RTTMs: r.MinMs, RadiusKm: math.Round(geo.MaxDistanceKm(r.MinMs))})
		}
		slices.SortFunc(a.Disks, func(x, y Disk) int { return cmp.Or(cmp.Compare(x.RTTMs, y.RTTMs), cmp.Compare(x.PoP, y.PoP)) })
		slices.SortFunc(ms, func(x, y triangulate.Measurement) int { return cmp.Compare(x.VP, y.VP) })
	}
	h.locate(&a, t, ms)
	return a, nil
}

// locate runs the engine on the measurements for the map: the location estimate, or the anycast instances.
// A region decided from the latency model is drawn at the region's coordinates.
func (h *Handler) locate(a *App, t scheduler.Target, ms []triangulate.Measurement) {
	if len(ms) > 0 {
		h.mu.Lock()
		r, err := h.engine.Decide(triangulate.Input{Target: t.Target, Measurements: ms})
		var v triangulate.Verdict
		if err == nil {
			v = triangulate.NewVerdict(r) // copies what it keeps from the engine's buffers
		}
		h.mu.Unlock()
		if err == nil {
			if r.Verdict.Placeable() {
				a.Location = v.Location
			}
			a.Instances, a.Notes = v.Instances, v.Notes
		}
	}
	if a.Location == nil && t.Mode == placement.ModeRegion && (a.Estimated || len(ms) == 0) {
		if reg, err := geo.LookupRegion(t.Target); err == nil {
			a.Location = &Location{Lat: reg.Lat, Lon: reg.Lon}
		}
	}
}

// CataloguePoP is one entry of PathCatalogue.
type CataloguePoP struct {
	Code string  `json:"code"`
	City string  `json:"city"`
	Lat  float64 `json:"lat"`
	Lon  float64 `json:"lon"`
}

var (
	catalogueOnce sync.Once
	catalogueList []CataloguePoP
)

// catalogue returns geo's PoP catalogue (its attribution is geo/NOTICE), which the map draws faintly to
// suggest the inhabited world without shipping coastlines.
func catalogue() []CataloguePoP {
	catalogueOnce.Do(func() {
		for _, p := range geo.PoPs() {
			catalogueList = append(catalogueList, CataloguePoP{Code: p.Code, City: p.City, Lat: p.Lat, Lon: p.Lon})
		}
	})
	return catalogueList
}
