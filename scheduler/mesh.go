package scheduler

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

// The PoP mesh: every PoP measures every other PoP's mesh port (probed.ServeMesh) on Config.MeshInterval. The
// leader enqueues the mesh jobs, spread over the interval and capped by Config.MeshBudget; the daemons store
// the RTTs in Redis (storage.MeshRTT); every scheduler reads them back every meshRefresh, fits the engine's
// calibration from them (triangulate.MeshCalibration, as `vantage triangulate --mesh` does) when they
// changed, and flags the PoPs whose catalogue location contradicts them. Decisions use the calibrated disks;
// a flagged PoP is set aside (see upPoPs) until the mesh agrees with its location again.

// Defaults of the mesh's Config fields.
const (
	// DefaultMeshInterval is how often every PoP measures every other: PoP-to-PoP paths change on routing
	// timescales, and a round of a 300-PoP fleet is ~90,000 probes.
	DefaultMeshInterval = 10 * time.Minute
	// DefaultMeshBudget is the most mesh probes enqueued per minute, fleet-wide: 100 a second, spread over
	// every PoP (each one's share is 1/N of it, a few TCP handshakes a second at most). A fleet of up to ~245
	// PoPs measures its whole mesh within the default interval; a larger one's round stretches past it.
	DefaultMeshBudget = 6000
	// DefaultMeshProbeCount is the samples per mesh probe; the minimum is kept.
	DefaultMeshProbeCount = 3
	// MeshMaxAgeIntervals is how many mesh intervals a pair's measurement counts: a missed round (a PoP
	// restarting) keeps the calibration, a PoP gone for longer leaves it.
	MeshMaxAgeIntervals = 3
	// meshRefreshMin and meshRefreshMax bound how often the mesh is read back (a tenth of the interval).
	meshRefreshMin = time.Second
	meshRefreshMax = time.Minute
)

// MeshBackend is the storage the mesh runs on; StoreBackend implements it.
type MeshBackend interface {
	// MeshPeers returns the PoPs that are up, not drained and answer mesh probes, with their mesh address.
	MeshPeers(ctx context.Context) (map[string]string, error)
	// MeshRTTs returns the mesh's measurements no older than maxAge.
	MeshRTTs(ctx context.Context, maxAge time.Duration) ([]storage.MeshRTT, error)
	EnqueueJob(ctx context.Context, pop string, j storage.Job) (string, error)
}

// MeshPeers implements MeshBackend.
func (b StoreBackend) MeshPeers(ctx context.Context) (map[string]string, error) {
	fleet, err := b.Fleet(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range fleet {
		if !p.Up || p.Drained {
			continue
		}
		// The newest daemon's address: any daemon of the PoP answers for it.
		var at time.Time
		for _, d := range p.Daemons {
			if d.MeshAddr != "" && d.At.After(at) {
				out[p.PoP], at = d.MeshAddr, d.At
			}
		}
	}
	return out, nil
}

// MeshPair is one measured pair of the mesh as the API serves it (GET /v1/mesh).
type MeshPair struct {
	Src   string    `json:"src"`
	Dst   string    `json:"dst"`
	RTTMs float64   `json:"rtt_ms"`
	At    time.Time `json:"at"`
}

// MislocatedPoP is a PoP whose catalogue location contradicts its mesh RTTs: it is set aside until fixed.
type MislocatedPoP struct {
	PoP    string `json:"pop"`
	Reason string `json:"reason"`
}

// MeshView is the mesh as the API serves it: the measured pairs (sorted by src, dst) and the mislocated PoPs.
type MeshView struct {
	Pairs      []MeshPair      `json:"pairs"`
	Mislocated []MislocatedPoP `json:"mislocated"`
}

// meshState is the mesh as this scheduler last read it, and the calibration fitted from it.
type meshState struct {
	b       MeshBackend
	cc      triangulate.CalibrationConfig
	refresh time.Duration
	metrics *meshMetrics // nil: none

	// gen counts calibrations: pooled engines built under an older one are rebuilt (workers.gen).
	gen atomic.Int64
	cal atomic.Pointer[triangulate.Calibration]

	mu         sync.Mutex
	view       MeshView
	rtt        map[[2]string]float64 // (src, dst) -> RTT ms, for MeshRTT
	mislocated map[string]bool       // PoP -> set aside
	fitted     []triangulate.MeshRTT // the pairs of the latest fit, to tell a changed mesh
}

// meshMetrics are the mesh's series (namespace vantage, subsystem mesh).
type meshMetrics struct {
	mislocated *prometheus.GaugeVec // pop
	enqueued   prometheus.Counter
	pairs      prometheus.Gauge
	fits       *prometheus.CounterVec // outcome: success, failure
}

func newMeshMetrics(reg prometheus.Registerer) *meshMetrics {
	m := &meshMetrics{
		mislocated: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "mesh",
			Name: "pop_mislocated", Help: "1 while the PoP's catalogue location contradicts its mesh RTTs (it is set aside), 0 otherwise."}, []string{"pop"}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "mesh",
			Name: "probes_enqueued_total", Help: "Mesh probe jobs sent to PoP job streams."}),
		pairs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "vantage", Subsystem: "mesh",
			Name: "pairs", Help: "Measured PoP pairs of the mesh at its latest read."}),
		fits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "mesh",
			Name: "calibrations_total", Help: "Calibrations fitted from a changed mesh, by outcome."}, []string{"outcome"}),
	}
	m.fits.WithLabelValues("success")
	m.fits.WithLabelValues("failure")
	if reg != nil {
		reg.MustRegister(m.mislocated, m.enqueued, m.pairs, m.fits)
	}
	return m
}

// Mesh returns the mesh as this scheduler last read it (every scheduler reads it, leading or not).
func (s *Scheduler) Mesh() MeshView {
	m := s.meshState()
	if m == nil {
		return MeshView{Pairs: []MeshPair{}, Mislocated: []MislocatedPoP{}}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return MeshView{Pairs: slices.Clone(m.view.Pairs), Mislocated: slices.Clone(m.view.Mislocated)}
}

// MeshRTT returns the mesh's RTT in ms between PoPs a and b (the smaller of the two directions measured),
// NaN when neither direction is: smart mode's forwarding RTT (smartrun.Sources.PoPRTT), the latency model
// being the fallback.
func (s *Scheduler) MeshRTT(a, b string) float64 {
	m := s.meshState()
	if m == nil {
		return math.NaN()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ab, okab := m.rtt[[2]string{a, b}]
	ba, okba := m.rtt[[2]string{b, a}]
	switch {
	case okab && okba:
		return min(ab, ba)
	case okab:
		return ab
	case okba:
		return ba
	}
	return math.NaN()
}

// Mislocated reports whether the mesh flagged pop's catalogue location as wrong: it is set aside.
func (s *Scheduler) Mislocated(pop string) bool {
	m := s.meshState()
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mislocated[pop]
}

// Calibration returns the calibration the engine decides with: the mesh's latest fit, nil before any.
func (s *Scheduler) Calibration() *triangulate.Calibration {
	if m := s.meshState(); m != nil {
		return m.cal.Load()
	}
	return nil
}

func (s *Scheduler) meshState() *meshState {
	if s.deps == nil {
		return nil
	}
	return s.deps.mesh
}

// runMesh reads the mesh back every refresh period, and, while this scheduler leads, runs the mesh rounds.
func (s *Scheduler) runMesh(ctx context.Context, m *meshState) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			term := s.lead.wait(ctx)
			if term == nil {
				return
			}
			s.meshRound(term)
		}
	})
	for {
		s.refreshMesh(ctx, m)
		t := s.cfg.Clock.NewTimer(m.refresh)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// meshPairs orders the pairs of peers so that consecutive jobs go to different PoPs and both directions of
// a pair come close together: step k pairs every PoP with the one k places after it.
func meshPairs(peers []string) [][2]string {
	n := len(peers)
	out := make([][2]string, 0, n*(n-1))
	for k := 1; k < n; k++ {
		for i := range peers {
			out = append(out, [2]string{peers[i], peers[(i+k)%n]})
		}
	}
	return out
}

// meshRound enqueues one job per ordered pair of mesh peers, spread evenly over MeshInterval (slower when
// MeshBudget caps it), and returns when the round's time is over or the term ends.
func (s *Scheduler) meshRound(term *Term) {
	ctx := term.Ctx
	m := s.deps.mesh
	start := s.cfg.Clock.Now()
	peers, err := m.b.MeshPeers(ctx)
	var pairs [][2]string
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("scheduler: mesh: reading the fleet; next round in one interval", "err", err)
		}
	} else {
		codes := make([]string, 0, len(peers))
		for p := range peers {
			codes = append(codes, p)
		}
		slices.Sort(codes)
		pairs = meshPairs(codes)
	}
	spacing := s.cfg.MeshInterval
	if len(pairs) > 0 {
		spacing = max(s.cfg.MeshInterval/time.Duration(len(pairs)), time.Minute/time.Duration(s.cfg.MeshBudget))
		if total := spacing * time.Duration(len(pairs)); total > s.cfg.MeshInterval {
			s.log.Info("scheduler: mesh: the round takes longer than the interval under the budget",
				"pairs", len(pairs), "round", total, "interval", s.cfg.MeshInterval, "budget_per_minute", s.cfg.MeshBudget)
		}
	}
	seq := s.seq.Add(1)
	for i, p := range pairs {
		if !s.sleepUntil(ctx, start.Add(time.Duration(i)*spacing)) {
			return
		}
		now := s.cfg.Clock.Now()
		j := storage.Job{
			Target: peers[p[1]], Kind: placement.ProbeTCP, Count: DefaultMeshProbeCount,
			Key:      probed.MeshKeyPrefix + p[1],
			Round:    fmt.Sprintf("mesh/%s/%d/%d", s.cfg.Name, term.Token, seq),
			Deadline: now.Add(max(spacing, s.cfg.ResultTimeout)),
		}
		if _, err := m.b.EnqueueJob(ctx, p[0], j); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("scheduler: mesh: enqueueing a probe", "src", p[0], "dst", p[1], "err", err)
			}
			continue
		}
		if m.metrics != nil {
			m.metrics.enqueued.Inc()
		}
	}
	s.sleepUntil(ctx, start.Add(max(s.cfg.MeshInterval, spacing*time.Duration(len(pairs)))))
}

// sleepUntil waits until at on the scheduler's clock and reports whether ctx is still live.
func (s *Scheduler) sleepUntil(ctx context.Context, at time.Time) bool {
	wait := at.Sub(s.cfg.Clock.Now())
	if wait <= 0 {
		return ctx.Err() == nil
	}
	t := s.cfg.Clock.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// refreshMesh reads the mesh back, refits the calibration when its pairs changed and updates the mislocated
// PoPs (metric, log).
func (s *Scheduler) refreshMesh(ctx context.Context, m *meshState) {
	rtts, err := m.b.MeshRTTs(ctx, MeshMaxAgeIntervals*s.cfg.MeshInterval)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("scheduler: mesh: reading the measurements; keeping the calibration", "err", err)
		}
		return
	}
	view := MeshView{Pairs: make([]MeshPair, 0, len(rtts)), Mislocated: []MislocatedPoP{}}
	rtt := make(map[[2]string]float64, len(rtts))
	var fit []triangulate.MeshRTT
	for _, r := range rtts {
		view.Pairs = append(view.Pairs, MeshPair{Src: r.Src, Dst: r.Dst, RTTMs: r.RTTMs, At: r.At})
		rtt[[2]string{r.Src, r.Dst}] = r.RTTMs
		a, oka := s.deps.pops(r.Src)
		b, okb := s.deps.pops(r.Dst)
		if oka && okb {
			fit = append(fit, triangulate.MeshRTT{Src: r.Src, Dst: r.Dst, SrcPoint: a.Point, DstPoint: b.Point, RTTMs: r.RTTMs})
		}
	}
	if m.metrics != nil {
		m.metrics.pairs.Set(float64(len(rtts)))
	}
	m.mu.Lock()
	changed := !slices.Equal(fit, m.fitted)
	m.mu.Unlock()
	cal := m.cal.Load()
	if changed {
		c, err := triangulate.MeshCalibration(fit, m.cc)
		if err != nil {
			s.log.Warn("scheduler: mesh: fitting the calibration; keeping the previous one", "err", err)
			if m.metrics != nil {
				m.metrics.fits.WithLabelValues("failure").Inc()
			}
			changed = false
		} else {
			if m.metrics != nil {
				m.metrics.fits.WithLabelValues("success").Inc()
			}
			if cal == nil || !reflect.DeepEqual(c.PerVP, cal.PerVP) || !reflect.DeepEqual(c.Suspects, cal.Suspects) {
				cal = c
				m.cal.Store(c)
				m.gen.Add(1)
				s.log.Debug("scheduler: mesh: calibration refitted", "pairs", len(fit), "calibrated", len(c.PerVP), "mislocated", len(c.Suspects))
			}
		}
	}
	flagged := map[string]bool{}
	if cal != nil {
		for _, sp := range cal.Suspects {
			flagged[sp.VP] = true
			view.Mislocated = append(view.Mislocated, MislocatedPoP{PoP: sp.VP, Reason: mislocatedReason(sp)})
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if changed {
		m.fitted = fit
	}
	m.view, m.rtt = view, rtt
	for _, ml := range view.Mislocated {
		if !m.mislocated[ml.PoP] {
			s.log.Warn("scheduler: mesh: PoP mislocated: set aside for placement, location and anycast tests until its catalogue entry is fixed",
				"pop", ml.PoP, "reason", ml.Reason)
		}
		if m.metrics != nil {
			m.metrics.mislocated.WithLabelValues(ml.PoP).Set(1)
		}
	}
	for pop := range m.mislocated {
		if !flagged[pop] {
			s.log.Info("scheduler: mesh: PoP no longer mislocated: trusted again", "pop", pop)
			if m.metrics != nil {
				m.metrics.mislocated.WithLabelValues(pop).Set(0)
			}
		}
	}
	m.mislocated = flagged
}

// mislocatedReason says in words why the mesh flagged a PoP.
func mislocatedReason(sp triangulate.Suspect) string {
	return fmt.Sprintf("%d mesh RTTs are faster than light in fibre over the distances from its catalogue location (worst by %.0f km): the location is wrong",
		sp.Violations, sp.WorstKm)
}

// trusted drops the PoPs the mesh flagged as mislocated from pops (sorted, kept sorted).
func (s *Scheduler) trusted(pops []geo.PoP) []geo.PoP {
	m := s.meshState()
	if m == nil {
		return pops
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.mislocated) == 0 {
		return pops
	}
	return slices.DeleteFunc(slices.Clone(pops), func(p geo.PoP) bool { return m.mislocated[p.Code] })
}

// newMeshState returns the mesh of a scheduler with cfg (filled) on b.
func newMeshState(cfg Config, b MeshBackend, metrics *Metrics) (*meshState, error) {
	cc := triangulate.DefaultCalibrationConfig()
	if cfg.Calibration != nil {
		cc = *cfg.Calibration
	}
	if _, err := triangulate.FitCalibration(nil, cc); err != nil {
		return nil, fmt.Errorf("scheduler: calibration config: %w", err)
	}
	if cfg.MeshBudget <= 0 {
		return nil, fmt.Errorf("scheduler: config: MeshBudget %d: want > 0 mesh probes per minute", cfg.MeshBudget)
	}
	m := &meshState{b: b, cc: cc, refresh: min(max(cfg.MeshInterval/10, meshRefreshMin), meshRefreshMax),
		view: MeshView{Pairs: []MeshPair{}, Mislocated: []MislocatedPoP{}}, mislocated: map[string]bool{}}
	if metrics != nil {
		m.metrics = metrics.mesh
	}
	return m, nil
}

// getWorkers takes a pooled engine and planner, rebuilding the engine when the mesh's calibration changed
// since it was built.
func (d *recheckDeps) getWorkers() *workers {
	w := d.pool.Get()
	if d.mesh == nil {
		return w
	}
	if gen := d.mesh.gen.Load(); w.gen != gen {
		cfg := d.ecfg
		if cal := d.mesh.cal.Load(); cal != nil {
			cfg.Calibration = cal
		}
		e, err := triangulate.NewEngine(cfg) // d.ecfg was validated; a calibration cannot make it invalid
		if err == nil {
			w.engine, w.gen = e, gen
		}
	}
	return w
}
