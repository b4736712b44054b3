package smartrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
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
	TelemetrySince(ctx context.Context, app string, since time.Time, fn func(storage.Telemetry) error) (int, error)
	Decision(ctx context.Context, app string) (placement.Decision, bool, error)
	PutDecisionFenced(ctx context.Context, d placement.Decision, fence int64) (bool, error)
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

// Runner analyses every application in placement mode smart on an interval and stores the decisions, which
// the routers pick up.
type Runner struct {
	cfg  smart.Config
	st   Store
	src  Sources
	log  *slog.Logger
	now  func() time.Time
	tick func(d time.Duration) (<-chan time.Time, func())
	lead func() (bool, int64)
	runs *prometheus.CounterVec
}

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
	// this scheduler holds the lease: Scheduler.Leading), and their decisions are written under the fencing
	// token it returns, so a runner that lost the lease mid-round cannot overwrite its successor's decisions.
	// Nil: always, unfenced.
	Leading func() (leading bool, fence int64)
}

// NewRunner returns a runner; cfg must be valid.
func NewRunner(cfg smart.Config, st Store, src Sources, o RunnerOptions) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("smart: nil Store")
	}
	r := &Runner{cfg: cfg, st: st, src: src, log: o.Logger, now: o.Now, tick: o.Tick, lead: o.Leading}
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

// Run analyses every smart application at once and then every Config.Interval until ctx is done, skipping the
// rounds when RunnerOptions.Leading says this instance does not lead. Failures of one round are logged; Run
// returns nil when ctx is done.
func (r *Runner) Run(ctx context.Context) error {
	c, stop := r.tick(r.cfg.Interval)
	defer stop()
	for {
		leading, fence := true, int64(0)
		if r.lead != nil {
			leading, fence = r.lead()
		}
		if leading {
			if _, err := r.runOnce(ctx, fence); err != nil && ctx.Err() == nil {
				r.log.Warn("smart: analysis round failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c:
		}
	}
}

// RunOnce analyses every registered application in placement mode smart and stores its decision. It returns
// the analyses made and the errors of the applications that failed (joined); the others are still stored.
func (r *Runner) RunOnce(ctx context.Context) ([]smart.Analysis, error) { return r.runOnce(ctx, 0) }

// runOnce is RunOnce writing under fence (0: unfenced).
func (r *Runner) runOnce(ctx context.Context, fence int64) ([]smart.Analysis, error) {
	apps, err := r.st.Apps(ctx)
	if err != nil {
		return nil, fmt.Errorf("smart: listing apps: %w", err)
	}
	var out []smart.Analysis
	var errs []error
	for _, app := range apps {
		if app.Mode != placement.ModeSmart {
			continue
		}
		a, err := r.analyzeApp(ctx, app.Name, app.DeployVersion, fence)
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
	return r.analyzeApp(ctx, app, deploy, 0)
}

// analyzeApp is AnalyzeApp writing the decision under fence (0: unfenced).
func (r *Runner) analyzeApp(ctx context.Context, app, deploy string, fence int64) (smart.Analysis, error) {
	now := r.now()
	in := smart.Input{App: app, Deploy: deploy, Now: now}
	if _, err := r.st.TelemetrySince(ctx, app, now.Add(-r.cfg.Window), func(t storage.Telemetry) error {
		in.Records = append(in.Records, t)
		return nil
	}); err != nil {
		return smart.Analysis{}, fmt.Errorf("smart: app %s: %w", app, err)
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
	lk, err := r.lookups(ctx, in.Records)
	if err != nil {
		return smart.Analysis{}, fmt.Errorf("smart: app %s: %w", app, err)
	}
	a := smart.Analyze(r.cfg, in, lk)
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

// lookups resolves the Sources for every back end in recs, so that Analyze stays pure.
func (r *Runner) lookups(ctx context.Context, recs []storage.Telemetry) (smart.Lookups, error) {
	verdicts := map[string]placement.Verdict{}
	rtts := map[string]map[string]float64{}
	for _, t := range recs {
		for _, s := range t.Subrequests {
			if _, seen := rtts[s.Host]; seen || s.WaitUntil {
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
// scheduler.TargetKey): "tcp:<host:port>" for a subrequest host with a port (placement mode host), else
// "http:<host>" (mode hostname).
func DefaultTargetKey(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return string(placement.ProbeTCP) + ":" + host
	}
	return string(placement.ProbeHTTP) + ":" + host
}

// FleetVerdict runs the triangulation engine (default config) on a back end's RTTs by PoP (PoPs outside geo's
// catalogue are left out) and returns its verdict.
func FleetVerdict(host string, rtts map[string]float64) placement.Verdict {
	eng, _ := triangulate.NewEngine(triangulate.DefaultConfig()) // the default config is valid
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
