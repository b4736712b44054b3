// Package smart places applications in placement mode smart: it learns from the requests' own telemetry where
// each application runs fastest.
package smart

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"
)

// Analysis defaults. The request and location thresholds follow the platform's documented behaviour (a few
// dozen requests from more than one place before a decision); the margins are tailscale netcheck's home-region
// rule (an absolute and a relative gain, both required), scaled to request durations of tens to hundreds of ms.
const (
	// DefaultWindow is the telemetry window one analysis looks at.
	DefaultWindow = 15 * time.Minute
	// DefaultMinRequests is the number of requests in the window below which the status is
	// INSUFFICIENT_INVOCATIONS.
	DefaultMinRequests = 20
	// DefaultMinLocations is the number of distinct PoPs the application must have run at: with one, there is
	// nothing to compare.
	DefaultMinLocations = 2
	// DefaultMinSubrequestsPerRequest is the mean number of supported subrequests per request below which the
	// status is INSUFFICIENT_SUBREQUESTS (the platform's "fewer than one per request").
	DefaultMinSubrequestsPerRequest = 1.0
	// DefaultMinObserved is how many executions at a PoP make its observed median the back-end time there;
	// below it the back-end time is modelled.
	DefaultMinObserved = 5
	// DefaultMarginRel and DefaultMarginAbsMs: a placement must cut the estimated mean duration by at least
	// this fraction AND this many ms against running where requests enter (and against the previous choice).
	DefaultMarginRel   = 0.2
	DefaultMarginAbsMs = 10.0
	// DefaultMinCompare is how many routed and how many baseline requests the check for a slower placement
	// needs before it judges.
	DefaultMinCompare = 5
	// DefaultSlowerTolerance: routed requests count as slower than the baseline when their estimated duration
	// seen by the user exceeds the baseline's by more than this fraction (measurement noise).
	DefaultSlowerTolerance = 0.05
	// DefaultMaxCandidates is how many ranked candidates a decision carries.
	DefaultMaxCandidates = 7
	// DefaultMaxLocationRadiusKm: a back end's triangulated location is used for the latency model only when
	// its region is this tight (1000 km is about 10-20 ms of RTT at intercontinental distances); a looser one
	// (e.g. from a single PoP's RTTs) falls back to the relay bound.
	DefaultMaxLocationRadiusKm = 1000.0
	// DefaultInterval is the runner's period.
	DefaultInterval = time.Minute
)

// DefaultAnalyticsHosts are analytics, logging and monitoring services: their subrequests are fire-and-forget
// for the application's response, so they never count towards placement. A host matches an entry when it is
// the entry or a subdomain of it.
var DefaultAnalyticsHosts = []string{
	"google-analytics.com", "analytics.google.com", "googletagmanager.com", "doubleclick.net",
	"segment.io", "segment.com", "sentry.io", "datadoghq.com", "datadoghq.eu", "logflare.app",
	"newrelic.com", "nr-data.net", "honeycomb.io", "logtail.com", "betterstack.com", "axiom.co",
	"mixpanel.com", "amplitude.com", "posthog.com", "plausible.io", "loggly.com", "papertrailapp.com",
	"splunkcloud.com", "bugsnag.com", "rollbar.com", "hotjar.com", "baselime.io",
}

// Config tunes the analysis and the runner. Start from DefaultConfig.
type Config struct {
	// Window is how much telemetry one analysis reads (default 15 min).
	Window time.Duration
	// MinRequests and MinLocations: fewer requests in the window, or fewer distinct execution PoPs, give
	// INSUFFICIENT_INVOCATIONS (defaults 20 and 2).
	MinRequests  int
	MinLocations int
	// MinSubrequestsPerRequest: fewer supported subrequests per request on average give INSUFFICIENT_SUBREQUESTS
	// (default 1).
	MinSubrequestsPerRequest float64
	// MinObserved executions at a PoP make the observed median duration its back-end time (default 5).
	MinObserved int
	// MarginRel and MarginAbsMs: the best PoP is chosen only when its estimated mean duration is below
	// (1-MarginRel) x and at least MarginAbsMs ms below the alternative (running at the ingress, or the
	// previous choice). Defaults 0.2 and 10 ms.
	MarginRel   float64
	MarginAbsMs float64
	// MinCompare routed and baseline requests are needed to judge whether placement made things slower
	// (default 5 each); SlowerTolerance is the fraction by which the routed ones must be slower (default 0.05).
	MinCompare      int
	SlowerTolerance float64
	// MaxCandidates caps the ranked candidates of a decision (default 7).
	MaxCandidates int
	// MaxLocationRadiusKm bounds the radius of a triangulated back-end location the model trusts (default 1000).
	MaxLocationRadiusKm float64
	// AnalyticsHosts never count (default DefaultAnalyticsHosts); entries match the host and its subdomains.
	AnalyticsHosts []string
	// Interval is the runner's period (default 1 min).
	Interval time.Duration
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		Window:                   DefaultWindow,
		MinRequests:              DefaultMinRequests,
		MinLocations:             DefaultMinLocations,
		MinSubrequestsPerRequest: DefaultMinSubrequestsPerRequest,
		MinObserved:              DefaultMinObserved,
		MarginRel:                DefaultMarginRel,
		MarginAbsMs:              DefaultMarginAbsMs,
		MinCompare:               DefaultMinCompare,
		SlowerTolerance:          DefaultSlowerTolerance,
		MaxCandidates:            DefaultMaxCandidates,
		MaxLocationRadiusKm:      DefaultMaxLocationRadiusKm,
		AnalyticsHosts:           DefaultAnalyticsHosts,
		Interval:                 DefaultInterval,
	}
}

// Validate reports every invalid field, naming it and its value (joined with errors.Join).
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, v any, want string) {
		errs = append(errs, fmt.Errorf("smart: config %s = %v: want %s", field, v, want))
	}
	if c.Window <= 0 {
		bad("Window", c.Window, "> 0")
	}
	if c.MinRequests < 1 {
		bad("MinRequests", c.MinRequests, ">= 1")
	}
	if c.MinLocations < 1 {
		bad("MinLocations", c.MinLocations, ">= 1")
	}
	if !(c.MinSubrequestsPerRequest >= 0) || math.IsInf(c.MinSubrequestsPerRequest, 0) {
		bad("MinSubrequestsPerRequest", c.MinSubrequestsPerRequest, "a finite number >= 0")
	}
	if c.MinObserved < 1 {
		bad("MinObserved", c.MinObserved, ">= 1")
	}
	if !(c.MarginRel >= 0 && c.MarginRel < 1) {
		bad("MarginRel", c.MarginRel, "in [0, 1)")
	}
	if !(c.MarginAbsMs >= 0) || math.IsInf(c.MarginAbsMs, 0) {
		bad("MarginAbsMs", c.MarginAbsMs, "a finite number >= 0")
	}
	if c.MinCompare < 1 {
		bad("MinCompare", c.MinCompare, ">= 1")
	}
	if !(c.SlowerTolerance >= 0) || math.IsInf(c.SlowerTolerance, 0) {
		bad("SlowerTolerance", c.SlowerTolerance, "a finite number >= 0")
	}
	if c.MaxCandidates < 1 {
		bad("MaxCandidates", c.MaxCandidates, ">= 1")
	}
	if !(c.MaxLocationRadiusKm > 0) || math.IsInf(c.MaxLocationRadiusKm, 0) {
		bad("MaxLocationRadiusKm", c.MaxLocationRadiusKm, "a finite number > 0")
	}
	for _, h := range c.AnalyticsHosts {
		if h == "" || strings.ContainsAny(h, ":/ ") {
			bad("AnalyticsHosts", fmt.Sprintf("%q", h), "host names without port, scheme or spaces")
		}
	}
	if c.Interval <= 0 {
		bad("Interval", c.Interval, "> 0")
	}
	return errors.Join(errs...)
}

// isAnalytics reports whether host (with or without a port) is one of list or a subdomain of one.
func isAnalytics(list []string, host string) bool {
	h := hostOnly(host)
	for _, a := range list {
		if h == a || strings.HasSuffix(h, "."+a) {
			return true
		}
	}
	return false
}

// hostOnly returns host without its port and trailing dot, lower-cased.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}
