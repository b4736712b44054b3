// Package simulate answers probes from the latency model instead of the network: a stand-in prober for
// scale runs of the fleet, whose results are marked simulated and are never measurements.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/prober"
)

// Marker is the word every simulated result, log line and flag help carries.
const Marker = "simulated"

// DefaultJitterMs is the default jitter added to each sample: a few ms, as queueing adds on real paths, so
// that the engine sees samples that are not all equal.
const DefaultJitterMs = 2

// ErrSimulatedTimeout is wrapped by the error of a probe answered as a failure (Config.FailFraction).
var ErrSimulatedTimeout = fmt.Errorf("%s: %w", Marker, prober.ErrTimeout)

// Config tunes a Prober. Zero fields take the defaults documented on them.
type Config struct {
	// From is the PoP the simulated probes leave from; required (its Point).
	From geo.PoP
	// Model gives the minimum RTT between From and the target's location; default geo.DefaultModel().
	Model *geo.LatencyModel
	// Locate places a target on the globe from the host part of its address; default TargetPoint.
	Locate func(host string) geo.Point
	// JitterMs: each sample is the modelled RTT plus a uniform draw in [0, JitterMs). Default DefaultJitterMs;
	// negative: none (every sample is the modelled RTT).
	JitterMs float64
	// Rate is the probes per second answered at most (0: unlimited), a leaky bucket on Clock as the real
	// prober's --rate.
	Rate int
	// FailFraction of the probes (0..1) is answered as a timeout instead of an RTT.
	FailFraction float64
	// Count is the samples of a probe whose target gives none; default prober.DefaultCount.
	Count int
	// Seed seeds the jitter and the failures (0: a fixed default), so that a run can be repeated.
	Seed uint64
	// Clock stamps results and paces the rate limit; default the wall clock.
	Clock prober.Clock
	// Metrics counts the probes answered (nil: not counted).
	Metrics *Metrics
}

// Validate checks the fields New cannot default.
func (c Config) Validate() error {
	switch {
	case !c.From.Point.Valid() || c.From.Code == "":
		return fmt.Errorf("simulate: PoP %q: no location", c.From.Code)
	case c.Rate < 0:
		return fmt.Errorf("simulate: rate %d: want >= 0", c.Rate)
	case !(c.FailFraction >= 0 && c.FailFraction <= 1):
		return fmt.Errorf("simulate: failure fraction %v: want 0..1", c.FailFraction)
	case c.Count < 0 || c.Count > prober.MaxCount:
		return fmt.Errorf("simulate: count %d: want 0..%d", c.Count, prober.MaxCount)
	case math.IsNaN(c.JitterMs) || math.IsInf(c.JitterMs, 0):
		return fmt.Errorf("simulate: jitter %v ms: want a number", c.JitterMs)
	}
	return nil
}

// Prober answers probes from the latency model; it implements probed.Prober. It opens no socket and
// resolves no name. Safe for concurrent use.
type Prober struct {
	cfg   Config
	limit *prober.Limiter

	mu  sync.Mutex
	rng *rand.Rand
}

// New returns the simulated prober of cfg.From.
func New(cfg Config) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Model == nil {
		cfg.Model = geo.DefaultModel()
	}
	if cfg.Locate == nil {
		cfg.Locate = TargetPoint
	}
	switch {
	case cfg.JitterMs == 0:
		cfg.JitterMs = DefaultJitterMs
	case cfg.JitterMs < 0:
		cfg.JitterMs = 0
	}
	if cfg.Count == 0 {
		cfg.Count = prober.DefaultCount
	}
	if cfg.Clock == nil {
		cfg.Clock = prober.RealClock{}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = 0x5eed
	}
	return &Prober{cfg: cfg, limit: prober.NewLimiter(cfg.Rate, 0, cfg.Clock),
		rng: rand.New(rand.NewPCG(seed, hash64(cfg.From.Code)))}, nil
}

// RTTMs returns the modelled minimum RTT from the prober's PoP to the target address addr, without jitter.
func (p *Prober) RTTMs(addr string) float64 {
	return p.cfg.Model.RTTMs(p.cfg.From.Point, p.cfg.Locate(Host(addr)))
}

// Probe answers t from the model after waiting for the rate limit: Count samples of the modelled RTT plus
// jitter, or a timeout for FailFraction of the probes. It takes no other time. The result has Simulated set.
func (p *Prober) Probe(ctx context.Context, t prober.Target) prober.Result {
	now := p.cfg.Clock.Now()
	r := prober.Result{Kind: t.Kind, Target: t.Addr, Start: now, Simulated: true}
	if err := p.limit.Wait(ctx); err != nil {
		r.Class, r.Err = prober.ClassOther, fmt.Errorf("%s probe of %s: %w", Marker, t.Addr, err)
		r.Error = r.Err.Error()
		p.cfg.Metrics.count("failure")
		return r
	}
	r.Start = p.cfg.Clock.Now()
	n := cmpOr(t.Count, p.cfg.Count)
	base := p.RTTMs(t.Addr)
	p.mu.Lock()
	fail := p.cfg.FailFraction > 0 && p.rng.Float64() < p.cfg.FailFraction
	r.Samples = make([]prober.Duration, 0, n)
	for range n {
		if fail {
			break
		}
		ms := base + p.cfg.JitterMs*p.rng.Float64()
		r.Samples = append(r.Samples, prober.Duration(ms*float64(time.Millisecond)))
	}
	p.mu.Unlock()
	r.Sent = n
	if fail || math.IsNaN(base) {
		r.Samples = nil
		r.Loss, r.Class = 1, prober.ClassTimeout
		r.Err = fmt.Errorf("%s probe of %s from %s: %w", Marker, t.Addr, p.cfg.From.Code, ErrSimulatedTimeout)
		r.Error = r.Err.Error()
		p.cfg.Metrics.count("failure")
		return r
	}
	r.Received, r.Success = n, true
	sorted := slices.Clone(r.Samples)
	slices.Sort(sorted)
	r.Min, r.Median = sorted[0], sorted[len(sorted)/2]
	for _, s := range r.Samples {
		r.Duration += s
	}
	p.cfg.Metrics.count("success")
	return r
}

// TargetPoint places a target deterministically on the globe from its host (a name or an address), uniformly
// over the sphere's area: the same host is always at the same place, for every PoP and every run.
func TargetPoint(host string) geo.Point {
	v := hash64(host)
	u1 := float64(v&0xffffffff) / (1 << 32)
	u2 := float64(v>>32) / (1 << 32)
	return geo.Point{Lat: math.Asin(2*u1-1) * 180 / math.Pi, Lon: u2*360 - 180}
}

// Host returns the host part of a probe target's address ("db.example.com:5432", "https://api.example.com/x",
// "192.0.2.1", "[2001:db8::1]:443"), so that probes of one host by different kinds land at one place.
func Host(addr string) string {
	if strings.Contains(addr, "://") {
		if u, err := url.Parse(addr); err == nil && u.Hostname() != "" {
			return strings.ToLower(u.Hostname())
		}
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return strings.ToLower(h)
	}
	if i := strings.IndexByte(addr, '/'); i > 0 {
		addr = addr[:i]
	}
	return strings.ToLower(strings.Trim(addr, "[]"))
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func cmpOr(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// Metrics are the series of a process answering simulated probes: vantage_probed_simulated (1, so that a
// dashboard can never mistake the process's results for measurements) and
// vantage_probed_simulated_probes_total{outcome}.
type Metrics struct {
	simulated prometheus.Gauge
	probes    *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered). Create one per process
// and share it between the process's simulated PoPs.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		simulated: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "probed", Name: "simulated",
			Help: "1: this probe daemon answers jobs from the latency model (a simulation for scale runs), not from the network."}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "probed", Name: "simulated_probes_total",
			Help: "Probes answered from the latency model, by outcome (success, failure)."}, []string{"outcome"}),
	}
	m.simulated.Set(1)
	for _, o := range []string{"success", "failure"} {
		m.probes.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.simulated, m.probes)
	}
	return m
}

func (m *Metrics) count(outcome string) {
	if m != nil {
		m.probes.WithLabelValues(outcome).Inc()
	}
}

// errNoPoP is wrapped when a PoP code is not in the catalogue.
var errNoPoP = errors.New("not in the PoP catalogue")

// LookupPoPs returns the catalogue's PoPs of the codes (geo.LookupPoP), in order, refusing unknown codes and
// duplicates.
func LookupPoPs(codes []string) ([]geo.PoP, error) {
	seen := map[string]bool{}
	out := make([]geo.PoP, 0, len(codes))
	for _, c := range codes {
		p, ok := geo.LookupPoP(c)
		if !ok {
			return nil, fmt.Errorf("simulate: PoP %q: %w", c, errNoPoP)
		}
		if seen[p.Code] {
			return nil, fmt.Errorf("simulate: PoP %q given twice", p.Code)
		}
		seen[p.Code] = true
		out = append(out, p)
	}
	return out, nil
}
