package router

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits of the compact snapshot encoding.
const (
	// MaxPoPs bounds the number of distinct PoP codes the router tracks at once (decisions, fleet, ingress).
	// Each full reload builds its table afresh from the codes in use, so retired codes do not count. The real
	// network has a few hundred; the bound keeps per-PoP arrays small and indexes in 16 bits.
	MaxPoPs = 4096
	// maxCandidatesLimit bounds Config.MaxCandidates: candidates per application a snapshot profile holds.
	maxCandidatesLimit = maxCellCandidates
)

// Config tunes a Router. Start from DefaultConfig; the zero value is not valid.
type Config struct {
	// RecheckInterval is the period of full snapshot reloads from Redis (default 30 s). Change notifications
	// reload earlier.
	RecheckInterval time.Duration
	// Debounce is how long the router waits after a decision-change notification before reloading, so that a
	// burst of changes costs one reload (default 250 ms).
	Debounce time.Duration
	// MinReloadGap caps the least time between the starts of two notification-driven reloads (default 1 s): a
	// reload of a million decisions takes seconds, and notifications must not keep the router reloading. The
	// gap is four times the last reload's duration up to this cap, so a small table follows changes within
	// Debounce.
	MinReloadGap time.Duration
	// RetryInterval is the wait before retrying a failed reload (default 1 s).
	RetryInterval time.Duration
	// ReloadTimeout bounds one reload (default 60 s).
	ReloadTimeout time.Duration
	// FleetInterval is the period of fleet (PoP up/down/drained) refreshes (default 2 s). It drives failover,
	// so keep it well below the heartbeat timeout.
	FleetInterval time.Duration
	// MaxAge is the staleness bound: when the router has not loaded the decisions (a successful reload, i.e. a
	// full decision scan) for longer than this, every request runs locally with ReasonStale (default 2 min). It
	// must exceed RecheckInterval, the period of the reloads that keep the router fresh.
	MaxAge time.Duration

	// BaselineFraction of the requests that would be routed are held back and run locally (ReasonBaseline),
	// chosen by a hash of the request id, to measure what routing gains (default 0.01; 0 disables).
	BaselineFraction float64

	// FailoverExtraMs and FailoverRatio are the failover latency budget: when the best PoP is down or drained,
	// the next candidate (in rank order) that is available and has RTT <= best+FailoverExtraMs or
	// RTT <= best*FailoverRatio is used (defaults 10 ms and 1.5); none: run locally (ReasonUnavailable).
	FailoverExtraMs float64
	FailoverRatio   float64

	// SpreadAboveRPS is the per-application request rate (requests per second seen by this router, estimated
	// from one request in 8) above which requests are spread over the available candidates within
	// SpreadEpsilonMs of the best (default 1000; 0 disables spreading and the rate estimate). Requests whose
	// best PoP is the ingress are not spread: they run where they are.
	SpreadAboveRPS float64
	// SpreadEpsilonMs is how much slower than the best a candidate may be to share the load (default 5 ms).
	SpreadEpsilonMs float64
	// PoPCapacityRPS is the configured capacity per PoP (requests per second from this router). When every
	// candidate in a spread has one, the weights are the headrooms (capacity minus the current rate this router
	// sends there); otherwise the weights are equal. Nil: equal weights.
	PoPCapacityRPS map[string]float64
	// RateWindow is the window of the per-application and per-PoP rate estimates (default 1 s).
	RateWindow time.Duration

	// MaxCandidates is how many candidates per application the snapshot keeps, best first (default and maximum
	// 7). Only candidates within the failover budget or the spread epsilon are kept.
	MaxCandidates int
	// ClockResolution is the period of the coarse clock Route reads for rates and staleness instead of calling
	// time.Now (default 10 ms).
	ClockResolution time.Duration
	// PoPs are PoP codes to know from the start, so that their headers are ready before the first snapshot.
	// The first is taken as the usual ingress PoP (a front's), which Route recognises without a map lookup.
	// Optional; NewFront adds its ingress PoP itself.
	PoPs []string

	// Logger receives reload and fleet events (default: discard).
	Logger *slog.Logger
	// Registerer, when set, registers the router's metrics (namespace vantage, subsystem router).
	Registerer prometheus.Registerer
	// Now reads the time (default time.Now); tests inject a clock.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		RecheckInterval:  30 * time.Second,
		Debounce:         250 * time.Millisecond,
		MinReloadGap:     time.Second,
		RetryInterval:    time.Second,
		ReloadTimeout:    60 * time.Second,
		FleetInterval:    2 * time.Second,
		MaxAge:           2 * time.Minute,
		BaselineFraction: 0.01,
		FailoverExtraMs:  10,
		FailoverRatio:    1.5,
		SpreadAboveRPS:   1000,
		SpreadEpsilonMs:  5,
		RateWindow:       time.Second,
		MaxCandidates:    maxCandidatesLimit,
		ClockResolution:  10 * time.Millisecond,
	}
}

// Validate reports every invalid field, naming it and its value (joined with errors.Join).
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("router: config %s = %v: must be > 0", name, d))
		}
	}
	pos("RecheckInterval", c.RecheckInterval)
	pos("RetryInterval", c.RetryInterval)
	pos("ReloadTimeout", c.ReloadTimeout)
	pos("FleetInterval", c.FleetInterval)
	pos("MaxAge", c.MaxAge)
	pos("RateWindow", c.RateWindow)
	pos("ClockResolution", c.ClockResolution)
	if c.MaxAge > 0 && c.RecheckInterval >= c.MaxAge {
		errs = append(errs, fmt.Errorf("router: config MaxAge = %v: must exceed RecheckInterval (%v), or the router goes stale between reloads",
			c.MaxAge, c.RecheckInterval))
	}
	if c.Debounce < 0 {
		errs = append(errs, fmt.Errorf("router: config Debounce = %v: must be >= 0", c.Debounce))
	}
	if c.MinReloadGap < 0 {
		errs = append(errs, fmt.Errorf("router: config MinReloadGap = %v: must be >= 0", c.MinReloadGap))
	}
	if !(c.BaselineFraction >= 0 && c.BaselineFraction <= 1) {
		errs = append(errs, fmt.Errorf("router: config BaselineFraction = %v: must be in [0, 1]", c.BaselineFraction))
	}
	finite := func(name string, v float64) {
		if !(v >= 0) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("router: config %s = %v: must be finite and >= 0", name, v))
		}
	}
	finite("FailoverExtraMs", c.FailoverExtraMs)
	finite("FailoverRatio", c.FailoverRatio)
	finite("SpreadAboveRPS", c.SpreadAboveRPS)
	finite("SpreadEpsilonMs", c.SpreadEpsilonMs)
	for pop, v := range c.PoPCapacityRPS {
		if !(v >= 0) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("router: config PoPCapacityRPS[%q] = %v: must be finite and >= 0", pop, v))
		}
	}
	if c.MaxCandidates < 1 || c.MaxCandidates > maxCandidatesLimit {
		errs = append(errs, fmt.Errorf("router: config MaxCandidates = %d: must be in [1, %d]", c.MaxCandidates, maxCandidatesLimit))
	}
	if len(c.PoPs) > MaxPoPs {
		errs = append(errs, fmt.Errorf("router: config PoPs: %d codes, at most %d", len(c.PoPs), MaxPoPs))
	}
	return errors.Join(errs...)
}
