package smartrun

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/smart"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

// DecisionTTLIntervals is how many runner intervals (smart.Config.Interval) a smart decision stays valid: a
// round that fails or runs late must not expire it, but the decision of an app nobody analyses any more (its
// runner gone, the app deleted while no scheduler ran) must not route forever. Routers treat an expired
// decision as none.
const DecisionTTLIntervals = 3

// Store is what the runner reads and writes. *storage.Store satisfies it.
type Store interface {
	Apps(ctx context.Context) ([]storage.App, error)
	TelemetryWindows(ctx context.Context, app string, since, until time.Time) ([]storage.TelemetryWindow, int, error)
	Decision(ctx context.Context, app string) (placement.Decision, bool, error)
	PutDecisionFenced(ctx context.Context, d placement.Decision, f storage.Fence) (bool, error)
	UnsupportedDeploy(ctx context.Context, app string) (string, bool, error)
	MarkUnsupported(ctx context.Context, app, deploy string) error
}

// Sources are the runner's lookups that may wait on I/O. Every field is optional.
type Sources struct {
	// Verdict returns the engine's verdict on a back end and whether there is one (see FleetSources).
	Verdict func(ctx context.Context, host string) (placement.Verdict, bool, error)
	// HostRTTs returns the fleet's RTTs in ms by PoP to a probed back end; nil when it is not probed.
	HostRTTs func(ctx context.Context, host string) (map[string]float64, error)
	// PoPRTT returns the fleet's measured RTT in ms between two PoPs, NaN when not measured.
	PoPRTT func(a, b string) float64
}

// freshCounter is implemented by *storage.Store: the per-application counts of records added since the runner
// last analysed them, which every process writing telemetry (AddTelemetry) increments.
type freshCounter interface {
	FreshTelemetry(ctx context.Context) (map[string]int64, error)
	ConsumeFreshTelemetry(ctx context.Context, app string, n int64) error
}

// appWatcher is implemented by *storage.Store: notifications of registered, changed (a new deploy) and deleted
// applications.
type appWatcher interface {
	WatchApps(ctx context.Context, fn func(name string)) error
}

// Runner analyses every application in placement mode smart on an interval, as soon as one has
// smart.Config.MinRequests new records, and when one is registered or deployed, and stores the decisions,
// which the routers pick up.
type Runner struct {
	cfg    smart.Config
	st     Store
	src    Sources
	log    *slog.Logger
	now    func() time.Time
	tick   func(d time.Duration) (<-chan time.Time, func())
	lead   func() (bool, storage.Fence)
	runs   *prometheus.CounterVec
	poll   time.Duration
	minGap time.Duration
	last   map[string]time.Time // app -> its latest early analysis (Run's goroutine only)
}

// Defaults of RunnerOptions.
const (
	// DefaultPoll is how often Run looks for applications with enough new telemetry: one HGETALL of a small hash.
	DefaultPoll = time.Second
	// DefaultMinGap is the shortest time between two early analyses of one application: an application with
	// thousands of requests a second reaches MinRequests new records every poll, and each analysis reads its
	// whole window.
	DefaultMinGap = 5 * time.Second
)

// RunnerOptions are the runner's optional seams.
type RunnerOptions struct {
	Logger *slog.Logger // default: discard
	// Registerer, when set, registers vantage_smart_analyses_total{status}.
	Registerer prometheus.Registerer
	// Now reads the clock (default time.Now).
	Now func() time.Time
	// Tick returns a channel that fires every d and its stop function (default time.NewTicker).
	Tick func(d time.Duration) (<-chan time.Time, func())
	// Leading, when set, is asked before every round of Run; rounds run only while it returns true (e.g. while
	// this scheduler holds the fleet-wide lease: Scheduler.Leading), and their decisions are written under the
	// fence (lease name and token) it returns, so a runner that lost the lease mid-round cannot overwrite its
	// successor's decisions. Nil: always, unfenced.
	Leading func() (leading bool, fence storage.Fence)
	// Poll is how often Run checks the fresh-telemetry counters (default DefaultPoll; negative: never, only
	// Config.Interval and registrations trigger analyses). It needs a Store with FreshTelemetry.
	Poll time.Duration
	// MinGap is the shortest time between two early analyses of one application (default DefaultMinGap).
	MinGap time.Duration
}

// NewRunner returns a runner; cfg must be valid.
func NewRunner(cfg smart.Config, st Store, src Sources, o RunnerOptions) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("smart: nil Store")
	}
	r := &Runner{cfg: cfg, st: st, src: src, log: o.Logger, now: o.Now, tick: o.Tick, lead: o.Leading,
		poll: cmp.Or(o.Poll, DefaultPoll), minGap: cmp.Or(o.MinGap, DefaultMinGap), last: map[string]time.Time{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.tick == nil {
		r.tick = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	r.runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "vantage", Subsystem: "smart", Name: "analyses_total",
		Help: "Smart placement analyses by resulting status (error: the analysis could not run).",
	}, []string{"status"})
	for _, s := range []string{"SUCCESS", "INSUFFICIENT_INVOCATIONS", "NO_VALID_HOSTS", "INSUFFICIENT_SUBREQUESTS", "UNSUPPORTED_APPLICATION", "error"} {
		r.runs.WithLabelValues(s)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(r.runs); err != nil {
			return nil, fmt.Errorf("smart: registering metrics: %w", err)
		}
	}
	return r, nil
}

// Run analyses every smart application at once and then every Config.Interval until ctx is done; in between
// it analyses an application as soon as it has Config.MinRequests new records (checked every
// RunnerOptions.Poll, at most once per RunnerOptions.MinGap) and when it is registered or deployed (a change
// notification of the registry). It runs a full round at once when it comes to lead (checked every Poll) and
// when its subscription to the registry's notifications is (re)made, since notifications may have been lost
// in between. Everything is skipped while RunnerOptions.Leading says this instance does not
// lead, and written under its fencing token. Failures are logged; Run returns nil when ctx is done.
func (r *Runner) Run(ctx context.Context) error {
	c, stop := r.tick(r.cfg.Interval)
	defer stop()
	// poll drives the early analyses (a Store that counts fresh telemetry) and, with Leading set, the check
	// for a lease gained between rounds: a scheduler that takes over analyses at once, not an interval later.
	var poll <-chan time.Time
	if _, ok := r.st.(freshCounter); (ok || r.lead != nil) && r.poll > 0 {
		t := time.NewTicker(r.poll)
		defer t.Stop()
		poll = t.C
	}
	changed := make(chan string, 256)
	resync := make(chan struct{}, 1)
	if w, ok := r.st.(appWatcher); ok {
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() { cancel(); wg.Wait() }()
		wg.Go(func() {
			w.WatchApps(wctx, func(name string) {
				if name == storage.Resync { // (re)subscribed: notifications may have been lost, run a round
					select {
					case resync <- struct{}{}:
					default: // one is pending
					}
					return
				}
				select {
				case changed <- name:
				default: // full: the next round sees it
				}
			})
		})
	}
	for {
		leading, fence := r.leading()
		if leading {
			if _, err := r.runOnce(ctx, fence); err != nil && ctx.Err() == nil {
				r.log.Warn("smart: analysis round failed", "err", err)
			}
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-c:
				break wait
			case <-resync:
				break wait
			case <-poll:
				was := leading
				if leading, _ = r.leading(); leading && !was {
					r.log.Info("smart: leading, analysing every application")
					break wait
				}
				if _, ok := r.st.(freshCounter); !ok || !leading {
					continue
				}
				if err := r.runFresh(ctx); err != nil && ctx.Err() == nil {
					r.log.Warn("smart: analysing applications with new telemetry", "err", err)
				}
			case name := <-changed:
				names := map[string]bool{name: true}
				for len(changed) > 0 {
					names[<-changed] = true
				}
				if err := r.runApps(ctx, names); err != nil && ctx.Err() == nil {
					r.log.Warn("smart: analysing registered or deployed applications", "err", err)
				}
			}
		}
	}
}

// leading asks RunnerOptions.Leading (nil: always, unfenced).
func (r *Runner) leading() (bool, storage.Fence) {
	if r.lead == nil {
		return true, storage.Fence{}
	}
	return r.lead()
}

// runFresh analyses the smart applications with enough new records (freshEnough) whose last early analysis is
// MinGap old, and drops the counts of applications that are not smart.
func (r *Runner) runFresh(ctx context.Context) error {
	fc := r.st.(freshCounter)
	fresh, err := fc.FreshTelemetry(ctx)
	if err != nil {
		return err
	}
	due := map[string]bool{}
	for app, n := range fresh {
		if n >= r.freshEnough() && time.Since(r.last[app]) >= r.minGap {
			due[app] = true
		}
	}
	if len(due) == 0 {
		return nil
	}
	return r.runApps(ctx, due)
}

// freshEnough is how many new records make an application worth analysing before the interval: what the
// smallest judgement needs, a first placement (Config.MinRequests) or the check that a placement made things
// slower (Config.MinCompare routed and as many held-back requests).
func (r *Runner) freshEnough() int64 {
	return int64(min(r.cfg.MinRequests, 2*r.cfg.MinCompare))
}

// runApps analyses those of names that are smart applications of the registry, while leading.
func (r *Runner) runApps(ctx context.Context, names map[string]bool) error {
	leading, fence := r.leading()
	if !leading {
		return nil
	}
	apps, err := r.appsAmong(ctx, names)
	if err != nil {
		return fmt.Errorf("smart: listing apps: %w", err)
	}
	fresh := r.freshCounts(ctx)
	var errs []error
	for _, app := range apps {
		if !names[app.Name] {
			continue
		}
		delete(names, app.Name)
		if app.Mode != placement.ModeSmart {
			r.consume(ctx, app.Name, 0)
			continue
		}
		r.last[app.Name] = time.Now()
		if _, err := r.analyzeRegistered(ctx, app, fence, fresh[app.Name]); err != nil {
			r.runs.WithLabelValues("error").Inc()
			errs = append(errs, err)
		}
	}
	for name := range names { // telemetry of an application that is not registered (or was deleted)
		if _, ok := fresh[name]; ok {
			r.consume(ctx, name, 0)
		}
		delete(r.last, name)
	}
	return errors.Join(errs...)
}

// namedReader is a Store that reads applications by name (storage.Store.AppsNamed).
type namedReader interface {
	AppsNamed(ctx context.Context, names []string) (map[string]storage.App, error)
}

// appsAmong returns the registered applications named in names (by name when the Store can: a registration
// notice must not cost a read of a registry of a million applications), else every application.
func (r *Runner) appsAmong(ctx context.Context, names map[string]bool) ([]storage.App, error) {
	nr, ok := r.st.(namedReader)
	if !ok {
		return r.st.Apps(ctx)
	}
	m, err := nr.AppsNamed(ctx, slices.Sorted(maps.Keys(names)))
	if err != nil {
		return nil, err
	}
	return slices.SortedFunc(maps.Values(m), func(a, b storage.App) int { return strings.Compare(a.Name, b.Name) }), nil
}

// appScanner is implemented by *storage.Store: the registry page by page (storage.Store.ScanApps).
type appScanner interface {
	ScanApps(ctx context.Context, fn func(storage.App) error) error
}

// smartApps returns the registered applications in placement mode smart, sorted by name. From a Store that
// scans, only those are kept: a registry of a million host applications is not held to find a few smart ones.
func (r *Runner) smartApps(ctx context.Context) ([]storage.App, error) {
	var apps []storage.App
	if sc, ok := r.st.(appScanner); ok {
		err := sc.ScanApps(ctx, func(a storage.App) error {
			if a.Mode == placement.ModeSmart {
				apps = append(apps, a)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.SortFunc(apps, func(a, b storage.App) int { return strings.Compare(a.Name, b.Name) })
		return slices.CompactFunc(apps, func(a, b storage.App) bool { return a.Name == b.Name }), nil // HSCAN repeats
	}
	all, err := r.st.Apps(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(a storage.App) bool { return a.Mode != placement.ModeSmart }), nil
}

// freshCounts reads the fresh-telemetry counts (none when the Store does not count them or the read fails:
// they are only an early trigger).
func (r *Runner) freshCounts(ctx context.Context) map[string]int64 {
	fc, ok := r.st.(freshCounter)
	if !ok {
		return nil
	}
	m, err := fc.FreshTelemetry(ctx)
	if err != nil {
		r.log.Debug("smart: reading the fresh-telemetry counts", "err", err)
		return nil
	}
	return m
}

// consume takes n analysed records from app's fresh-telemetry count (n <= 0: all).
func (r *Runner) consume(ctx context.Context, app string, n int64) {
	if fc, ok := r.st.(freshCounter); ok {
		if err := fc.ConsumeFreshTelemetry(ctx, app, n); err != nil {
			r.log.Debug("smart: consuming the fresh-telemetry count", "app", app, "err", err)
		}
	}
}

// RunOnce analyses every registered application in placement mode smart and stores its decision. It returns
// the analyses made and the errors of the applications that failed (joined); the others are still stored.
func (r *Runner) RunOnce(ctx context.Context) ([]smart.Analysis, error) {
	return r.runOnce(ctx, storage.Fence{})
}

// runOnce is RunOnce writing under fence (zero: unfenced).
func (r *Runner) runOnce(ctx context.Context, fence storage.Fence) ([]smart.Analysis, error) {
	apps, err := r.smartApps(ctx)
	if err != nil {
		return nil, fmt.Errorf("smart: listing apps: %w", err)
	}
	fresh := r.freshCounts(ctx)
	var out []smart.Analysis
	var errs []error
	for _, app := range apps {
		a, err := r.analyzeRegistered(ctx, app, fence, fresh[app.Name])
		if err != nil {
			r.runs.WithLabelValues("error").Inc()
			errs = append(errs, err)
			continue
		}
		out = append(out, a)
	}
	return out, errors.Join(errs...)
}

// AnalyzeApp reads app's telemetry window, state and lookups, runs Analyze, marks an unsupported deploy and
// stores the decision. deploy is the application's current deploy version ("" : the newest reported).
func (r *Runner) AnalyzeApp(ctx context.Context, app, deploy string) (smart.Analysis, error) {
	return r.analyzeApp(ctx, storage.App{Name: app, Mode: placement.ModeSmart, DeployVersion: deploy}, storage.Fence{})
}

// analyzeRegistered is analyzeApp, then takes the fresh records counted before it (fresh) from app's count.
func (r *Runner) analyzeRegistered(ctx context.Context, app storage.App, fence storage.Fence, fresh int64) (smart.Analysis, error) {
	a, err := r.analyzeApp(ctx, app, fence)
	if err == nil && fresh > 0 {
		r.consume(ctx, app.Name, fresh)
	}
	return a, err
}

// deployWindow relabels w's cells and back ends for app's current deploy, dropping those that do not count.
// Workers report the versions they were given (vantage worker --deploy); a version Vantage generated (none given
// to the API, a config file's hash) or a cell without one is matched by time instead: the cells with a request
// since Vantage was told of the deploy are the deploy's (to the window: the window holding the deploy counts
// whole), the earlier ones an earlier deploy's.
func deployWindow(app storage.App, w storage.TelemetryWindow) storage.TelemetryWindow {
	if app.DeployVersion == "" {
		return w // AnalyzeAggregates keeps those of the newest deploy
	}
	byTime := func(deploy string) bool { return app.DeployGenerated || deploy == "" }
	out := storage.TelemetryWindow{App: w.App, Start: w.Start}
	var latest time.Time
	for _, c := range w.Cells {
		if byTime(c.Deploy) {
			if c.Last.Before(app.DeployedAt) {
				continue
			}
			c.Deploy = app.DeployVersion
		}
		if c.Last.After(latest) {
			latest = c.Last
		}
		out.Cells = append(out.Cells, c)
	}
	for _, h := range w.Hosts {
		if byTime(h.Deploy) {
			if latest.Before(app.DeployedAt) {
				continue // no request of the window counted
			}
			h.Deploy = app.DeployVersion
		}
		out.Hosts = append(out.Hosts, h)
	}
	return out
}

// analyzeApp is AnalyzeApp for a registered application, writing the decision under fence (zero: unfenced). A
// placement that works is not thrown away for want of telemetry: when the window has too few requests of the
// current deploy (a deploy just happened) and the previous decision places the application, that placement
// stays until the new deploy's telemetry says otherwise.
func (r *Runner) analyzeApp(ctx context.Context, reg storage.App, fence storage.Fence) (smart.Analysis, error) {
	app := reg.Name
	now := r.now()
	in := smart.AggregateInput{App: app, Deploy: reg.DeployVersion, Now: now}
	ws, skipped, err := r.st.TelemetryWindows(ctx, app, now.Add(-r.cfg.Window), now)
	if err != nil {
		return smart.Analysis{}, fmt.Errorf("smart: app %s: %w", app, err)
	}
	if skipped > 0 {
		r.log.Warn("smart: telemetry fields that do not parse skipped", "app", app, "fields", skipped)
	}
	for _, w := range ws {
		in.Windows = append(in.Windows, deployWindow(reg, w))
	}
	prev, _, err := r.st.Decision(ctx, app)
	if err != nil {
		return smart.Analysis{}, fmt.Errorf("smart: app %s: %w", app, err)
	}
	if prev.Mode == placement.ModeSmart {
		in.Previous = prev
	}
	if in.UnsupportedDeploy, in.Unsupported, err = r.st.UnsupportedDeploy(ctx, app); err != nil {
		return smart.Analysis{}, fmt.Errorf("smart: app %s: %w", app, err)
	}
	lk, err := r.lookups(ctx, in.Windows)
	if err != nil {
		return smart.Analysis{}, fmt.Errorf("smart: app %s: %w", app, err)
	}
	a := smart.AnalyzeAggregates(r.cfg, in, lk)
	if a.Decision.Status != placement.StatusSuccess {
		a.Decision.Reason = reason(r.cfg, a)
	}
	if a.Decision.Status == placement.StatusInsufficientInvocations && in.Previous.Status == placement.StatusSuccess &&
		in.Previous.BestPoP != "" {
		kept := in.Previous
		kept.ComputedAt, kept.NextRecheck, kept.ExpiresAt = a.Decision.ComputedAt, a.Decision.NextRecheck, a.Decision.ExpiresAt
		kept.Reason = ""
		r.log.Debug("smart: keeping the placement until the deploy has enough telemetry", "app", app,
			"deploy", a.Deploy, "best", kept.BestPoP, "why", a.Decision.Reason)
		a.Decision = kept
	}
	if a.MarkUnsupported {
		if err := r.st.MarkUnsupported(ctx, app, a.Deploy); err != nil {
			return a, fmt.Errorf("smart: app %s: %w", app, err)
		}
	}
	a.Decision.ExpiresAt = now.Add(DecisionTTLIntervals * r.cfg.Interval)
	changed, err := r.st.PutDecisionFenced(ctx, a.Decision, fence)
	if err != nil {
		return a, fmt.Errorf("smart: app %s: %w", app, err)
	}
	r.runs.WithLabelValues(string(a.Decision.Status)).Inc()
	if changed {
		r.log.Info("smart: decision changed", "app", app, "deploy", a.Deploy, "status", a.Decision.Status,
			"best", a.Decision.BestPoP, "requests", a.Requests, "local_ms", a.LocalMs, "routed_ms", a.RoutedMs, "baseline_ms", a.BaselineMs)
	}
	return a, nil
}

// reason says in words why an analysis did not end in SUCCESS.
func reason(cfg smart.Config, a smart.Analysis) string {
	switch a.Decision.Status {
	case placement.StatusInsufficientInvocations:
		return fmt.Sprintf("%d requests of deploy %q from %d PoPs in the last %v; the analysis needs %d from at least %d",
			a.Requests, a.Deploy, len(a.Locations), cfg.Window, cfg.MinRequests, cfg.MinLocations)
	case placement.StatusNoValidHosts:
		if len(a.Excluded) == 0 {
			return fmt.Sprintf("the %d requests made no subrequest to a back end: nothing to be near", a.Requests)
		}
		var parts []string
		for _, why := range slices.Sorted(maps.Keys(a.Excluded)) {
			parts = append(parts, fmt.Sprintf("%d %s", a.Excluded[why], why))
		}
		return "no subrequest counts towards placement (" + strings.Join(parts, ", ") + ")"
	case placement.StatusInsufficientSubrequests:
		return fmt.Sprintf("%.2f supported subrequests per request; placement needs at least %.2f", a.PerRequest, cfg.MinSubrequestsPerRequest)
	case placement.StatusUnsupportedApplication:
		if a.MarkUnsupported {
			return fmt.Sprintf("deploy %q was slower when placed (%.0f ms per request routed, %.0f ms run where requests entered): running locally until the next deploy",
				a.Deploy, a.RoutedMs, a.BaselineMs)
		}
		return fmt.Sprintf("deploy %q was found slower when placed: running locally until the next deploy", a.Deploy)
	}
	return ""
}

// lookups resolves the Sources for every back end in ws, so that the analysis stays pure.
func (r *Runner) lookups(ctx context.Context, ws []storage.TelemetryWindow) (smart.Lookups, error) {
	verdicts := map[string]placement.Verdict{}
	rtts := map[string]map[string]float64{}
	for _, w := range ws {
		for _, s := range w.Hosts {
			if _, seen := rtts[s.Host]; seen || s.Count == 0 {
				continue
			}
			rtts[s.Host] = nil
			if r.src.Verdict != nil {
				v, ok, err := r.src.Verdict(ctx, s.Host)
				if err != nil {
					return smart.Lookups{}, fmt.Errorf("verdict of %s: %w", s.Host, err)
				}
				if ok {
					verdicts[s.Host] = v
				}
			}
			if r.src.HostRTTs != nil {
				m, err := r.src.HostRTTs(ctx, s.Host)
				if err != nil {
					return smart.Lookups{}, fmt.Errorf("fleet RTTs of %s: %w", s.Host, err)
				}
				rtts[s.Host] = m
			}
		}
	}
	return smart.Lookups{
		Verdict:  func(h string) (placement.Verdict, bool) { v, ok := verdicts[h]; return v, ok },
		HostRTTs: func(h string) map[string]float64 { return rtts[h] },
		PoPRTT:   r.src.PoPRTT,
	}, nil
}

// FleetSources returns Sources reading the fleet's latest probe results from st: the results of a back end are
// stored under key(host); nil means DefaultTargetKey. HostRTTs are their minimum RTTs by PoP, and Verdict is the
// triangulation engine's verdict on them. A back end without results has no verdict and no RTTs.
func FleetSources(st *storage.Store, key func(host string) string) Sources {
	if key == nil {
		key = DefaultTargetKey
	}
	rtts := func(ctx context.Context, host string) (map[string]float64, error) {
		res, err := st.LatestResults(ctx, key(host))
		if err != nil {
			return nil, err
		}
		out := map[string]float64{}
		for pop, r := range res {
			if r.Error == "" && r.Samples > 0 && r.MinMs >= 0 {
				out[pop] = r.MinMs
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
	return Sources{
		HostRTTs: rtts,
		Verdict: func(ctx context.Context, host string) (placement.Verdict, bool, error) {
			m, err := rtts(ctx, host)
			if err != nil || len(m) == 0 {
				return "", false, err
			}
			v := FleetVerdict(host, m)
			return v, v != placement.VerdictUnknown, nil
		},
	}
}

// DefaultTargetKey returns the key the scheduler stores a back end's probe results under (the same as
// storage.TargetKey): "tcp:<host:port>" for a subrequest host with a port (placement mode host), else
// "http:<host>" (mode hostname).
func DefaultTargetKey(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return storage.TargetKey(placement.ProbeTCP, host)
	}
	return storage.TargetKey(placement.ProbeHTTP, host)
}

// FleetVerdict runs the triangulation engine (triangulate.ProductionConfig) on a back end's RTTs by PoP (PoPs outside geo's
// catalogue are left out) and returns its verdict.
func FleetVerdict(host string, rtts map[string]float64) placement.Verdict {
	eng, _ := triangulate.NewEngine(triangulate.ProductionConfig(nil)) // the fleet's configuration; valid
	var ms []triangulate.Measurement
	for _, p := range slices.Sorted(maps.Keys(rtts)) {
		if pop, ok := geo.LookupPoP(p); ok {
			ms = append(ms, triangulate.Measurement{VP: strings.ToUpper(p), Point: pop.Point, RTTMs: rtts[p]})
		}
	}
	res, err := eng.Decide(triangulate.Input{Target: host, Measurements: ms})
	if err != nil {
		return placement.VerdictUnknown
	}
	return res.Verdict
}
