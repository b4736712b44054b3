package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

// Backend is the storage the recheck and the ad-hoc probes run on; StoreBackend adapts a storage.Store.
type Backend interface {
	Leaser
	// UpPoPs returns the PoPs with a live daemon that are not drained, sorted.
	UpPoPs(ctx context.Context) ([]string, error)
	Decision(ctx context.Context, app string) (placement.Decision, bool, error)
	// PutDecisionFenced writes d under a lease's name and fencing token; storage.ErrFenced when a newer token of
	// the same lease wrote.
	PutDecisionFenced(ctx context.Context, d placement.Decision, f storage.Fence) (changed bool, err error)
	// NextRechecks returns the stored NextRecheck, by app, of the apps of the shards want marks (want[i]: shard
	// i of len(want), shardOf).
	NextRechecks(ctx context.Context, want []bool) (map[string]time.Time, error)
	EnqueueJob(ctx context.Context, pop string, j storage.Job) (string, error)
	// LatestResults returns the latest stored result of each PoP for a result key, by PoP.
	LatestResults(ctx context.Context, key string) (map[string]storage.Result, error)
	// RecentResults returns each PoP's recent results for a result key, newest first: the history window.
	RecentResults(ctx context.Context, key string) (map[string][]storage.Sample, error)
	// PutExplanation stores why a decision is what it is, for ttl.
	PutExplanation(ctx context.Context, e storage.Explanation, ttl time.Duration) error
	PutAdHocProbe(ctx context.Context, p storage.AdHocProbe, ttl time.Duration) error
	AdHocProbe(ctx context.Context, id string) (storage.AdHocProbe, bool, error)
}

// ErrNoPoPs is returned by a recheck when no PoP of the fleet is up.
var ErrNoPoPs = errors.New("scheduler: no PoP of the fleet is up")

// workers are the per-goroutine engine and planner (neither is safe for concurrent use).
type workers struct {
	engine  *triangulate.Engine
	planner *triangulate.Planner
	gen     int64 // the mesh calibration the engine was built with (meshState.gen)
}

// workerPool keeps idle workers for reuse, at most cap(free) of them: their engines' buffers (~170 KiB) and
// planners' PoP-pair caches (up to ~0.7 MiB at 300 PoPs) scale with the CPUs, not with the rechecks that
// happened to plan at once, and, unlike in a sync.Pool, survive garbage collections (a planner's cache would
// be rebuilt after each).
type workerPool struct {
	free chan *workers
	new  func() *workers
}

func newWorkerPool(n int, fn func() *workers) *workerPool {
	return &workerPool{free: make(chan *workers, n), new: fn}
}

// Get returns an idle worker, or a new one when none is idle.
func (p *workerPool) Get() *workers {
	select {
	case w := <-p.free:
		return w
	default:
		return p.new()
	}
}

// Put returns w to the pool; beyond its capacity w is dropped.
func (p *workerPool) Put(w *workers) {
	select {
	case p.free <- w:
	default:
	}
}

// recheckDeps are the recheck's collaborators.
type recheckDeps struct {
	backend Backend
	pool    *workerPool
	pops    func(code string) (geo.PoP, bool)
	regions func(id string) (geo.Region, error)

	// switchAbsMs and switchRel are the engine's hysteresis margins, reused to keep the candidates' order
	// when their RTTs moved by less.
	switchAbsMs, switchRel float64

	// ecfg is the engine's configuration without the mesh's calibration; mesh, when not nil, supplies that.
	ecfg triangulate.Config
	mesh *meshState

	fleetMu   sync.Mutex
	fleetAt   time.Time
	fleetPoPs []geo.PoP

	batchOnce sync.Once
	batch     *batcher // nil: no batching (batchFor)
}

// MaxResultPoll is the longest pause between two looks for a recheck's results (the pause doubles from
// Config.ResultPoll): results of a healthy fleet arrive within a second, and a slow one is not helped by polling.
const MaxResultPoll = time.Second

// FleetCacheTTL is how long one read of the fleet serves rechecks: at 100,000 targets a recheck starts
// every few milliseconds, and PoPs come and go on heartbeat timescales.
const FleetCacheTTL = time.Second

// upPoPs returns the catalogue entries of the PoPs that are up.
func (s *Scheduler) upPoPs(ctx context.Context) ([]geo.PoP, error) {
	d := s.deps
	d.fleetMu.Lock()
	defer d.fleetMu.Unlock()
	now := s.cfg.Clock.Now()
	if d.fleetPoPs != nil && now.Sub(d.fleetAt) < FleetCacheTTL {
		return s.trusted(d.fleetPoPs), nil
	}
	codes, err := d.backend.UpPoPs(ctx)
	if err != nil {
		return nil, fmt.Errorf("scheduler: reading the fleet: %w", err)
	}
	out := make([]geo.PoP, 0, len(codes))
	for _, c := range codes {
		p, ok := d.pops(c)
		if !ok {
			s.log.Warn("scheduler: PoP of the fleet is not in the catalogue; ignored", "pop", c)
			continue
		}
		out = append(out, p)
	}
	d.fleetPoPs, d.fleetAt = out, now
	return s.trusted(out), nil
}

// recheck probes t from a planned set of PoPs, runs the engine and writes the decision.
func (s *Scheduler) recheck(ctx context.Context, term *Term, t Target) (placement.Decision, error) {
	d := s.deps
	// With a batcher, the previous decision is read with the recent results once the results are in, in the
	// tick's one read for every recheck (it is used only then).
	bt := d.batchFor(s)
	var prev placement.Decision
	var hasPrev bool
	var err error
	if bt == nil {
		if prev, hasPrev, err = d.backend.Decision(ctx, t.App); err != nil {
			return placement.Decision{}, fmt.Errorf("scheduler: app %q: reading the previous decision: %w", t.App, err)
		}
	}
	pops, err := s.upPoPs(ctx)
	if err != nil {
		return placement.Decision{}, err
	}
	if len(pops) == 0 {
		return placement.Decision{}, ErrNoPoPs
	}
	var results map[string]storage.Result
	var fromHistory []storage.WindowedPoPRT
	addr := t.ProbeAddr()
	key := storage.TargetKey(t.Kind(), s.probeAddr(t))
	if addr != "" {
		results, err = s.measure(ctx, term, t, pops)
		if err != nil {
			return placement.Decision{}, err
		}
	}
	var recent map[string][]storage.Sample
	var recentErr error
	if bt != nil {
		in := storage.RecheckRead{App: t.App}
		if addr != "" {
			in.Key = key
		}
		st, err := bt.read(ctx, in)
		if err != nil {
			return placement.Decision{}, fmt.Errorf("scheduler: app %q: reading the previous decision: %w", t.App, err)
		}
		prev, hasPrev, recent, recentErr = st.Decision, st.HasDecision, st.Recent, st.RecentErr
		if addr != "" && recentErr == nil {
			s.addRecent(results, recent, pops, t, key)
		}
	} else if addr != "" {
		recent, recentErr = d.backend.RecentResults(ctx, key)
	}
	if addr != "" {
		if recentErr != nil {
			// The latest round alone still decides; one noisy round may then move the placement.
			s.log.Warn("scheduler: reading the history window; deciding on the latest round", "app", t.App, "key", key, "err", recentErr)
		} else {
			results, fromHistory = windowed(results, recent, s.cfg.Clock.Now(), s.cfg.HistoryRounds, s.cfg.HistoryWindow)
		}
	}
	in := triangulateInput(t.Target, results, d.pops)
	if hasPrev {
		in.Previous = prev.BestPoP
	}
	if prior, ok := s.prior(t); ok {
		in.Prior = &prior
	}

	// The engine is taken from the pool only now: a recheck spends most of its time waiting for results,
	// and the engines' buffers (~170 KiB each) should scale with the CPUs, not with rechecks in flight.
	w := d.getWorkers()
	release := sync.OnceFunc(func() { d.pool.Put(w) })
	defer release()
	var r triangulate.Result
	switch t.Mode {
	case placement.ModeRegion:
		region, rerr := d.regions(t.Target)
		if rerr != nil {
			return placement.Decision{}, fmt.Errorf("scheduler: app %q: %w", t.App, rerr)
		}
		if len(in.Measurements) > 0 {
			r, err = w.engine.Decide(in)
			// An endpoint that is anycast (or otherwise not placeable) is not the region: fall back to the
			// latency model from the region's coordinates.
			if err != nil || !r.Verdict.Placeable() {
				in.Measurements, in.DNS = nil, nil
			}
		}
		if len(in.Measurements) == 0 {
			r, err = w.engine.DecideRegion(region.Point, pops, in)
		}
	default:
		if len(in.Measurements) == 0 {
			r = triangulate.Result{Target: t.Target, Verdict: placement.VerdictUnknown, Status: placement.StatusNoValidHosts}
		} else {
			r, err = w.engine.Decide(in)
		}
	}
	if err != nil {
		return placement.Decision{}, fmt.Errorf("scheduler: app %q: deciding: %w", t.App, err)
	}
	now := s.cfg.Clock.Now()
	dec := placement.Decision{
		App: t.App, Mode: t.Mode, Target: t.Target,
		Candidates: append([]placement.Candidate(nil), r.Candidates...),
		Verdict:    r.Verdict, Status: r.Status,
		Estimated:  r.Flags.Has(triangulate.FlagEstimated),
		Confidence: r.Confidence,
		ComputedAt: now, NextRecheck: now.Add(s.cfg.RecheckInterval), ExpiresAt: now.Add(s.cfg.DecisionTTL),
	}
	if r.Verdict.Placeable() {
		dec.BestPoP = r.Best.PoP
	}
	if dec.Status != placement.StatusSuccess {
		dec.Reason = s.reason(t, r, results)
	}
	if hasPrev {
		stabilise(dec.Candidates, prev.Candidates, d.switchAbsMs, d.switchRel)
	}
	if ctx.Err() != nil { // the lease was lost (the new leader writes) or the target was removed
		return dec, fmt.Errorf("scheduler: app %q: lease lost or app removed before writing: %w", t.App, ctx.Err())
	}
	var changed bool
	if bt != nil {
		// Fenced per app, with its explanation, in the tick's one write for every recheck.
		e := s.explanation(w.engine.Config().Calibration, dec, &r, results, fromHistory)
		notes := r.Notes()
		release() // not held while waiting for the tick
		out, err := bt.write(ctx, s.decisionWrite(dec, &e, term))
		if err != nil {
			return dec, fmt.Errorf("scheduler: app %q: writing the decision: %w", t.App, err)
		}
		changed = out.Changed
		s.countExplanation(len(fromHistory), nil)
		s.countDecision(dec, changed)
		if changed {
			s.log.Info("scheduler: decision changed", "app", t.App, "best_pop", dec.BestPoP, "previous", in.Previous,
				"verdict", dec.Verdict, "status", dec.Status, "estimated", dec.Estimated, "notes", notes)
		}
		return dec, nil
	}
	// Fenced: if this scheduler paused past its lease, a successor's decision stands.
	changed, err = d.backend.PutDecisionFenced(ctx, dec, term.Fence())
	if err != nil {
		return dec, fmt.Errorf("scheduler: app %q: writing the decision: %w", t.App, err)
	}
	s.countDecision(dec, changed)
	s.explain(ctx, w.engine.Config().Calibration, dec, &r, results, fromHistory)
	if changed {
		s.log.Info("scheduler: decision changed", "app", t.App, "best_pop", dec.BestPoP, "previous", in.Previous,
			"verdict", dec.Verdict, "status", dec.Status, "estimated", dec.Estimated, "notes", r.Notes())
	}
	return dec, nil
}

// countDecision counts a decision written.
func (s *Scheduler) countDecision(dec placement.Decision, changed bool) {
	if s.metrics != nil {
		s.metrics.decisions.WithLabelValues(fmt.Sprint(changed)).Inc()
		if dec.Estimated {
			s.metrics.estimatedDecided.Inc()
		}
	}
}

// addRecent adds to results, for every PoP up that this recheck did not measure, its newest recent result
// when it succeeded and is fresh (2 × RecheckInterval): what the unbatched recheck took from the stored latest
// results (a late result of an earlier recheck's job, or a PoP the planner did not pick this time).
func (s *Scheduler) addRecent(results map[string]storage.Result, recent map[string][]storage.Sample, pops []geo.PoP, t Target, key string) {
	now := s.cfg.Clock.Now()
	for pop, ss := range recent {
		if _, ok := results[pop]; ok || len(ss) == 0 || !ss[0].OK || now.Sub(ss[0].At) > 2*s.cfg.RecheckInterval || !containsPoP(pops, pop) {
			continue
		}
		results[pop] = storage.Result{Target: key, PoP: pop, Kind: t.Kind(), MinMs: ss[0].MinMs, MedianMs: ss[0].MinMs, Samples: 1, At: ss[0].At}
	}
}

// flight is one measurement of a result key in progress. Targets whose probes are the same (a host app and
// a region app whose endpoint is that host:port) share a storage.TargetKey, and the daemons keep one latest
// result per PoP and key: two rechecks probing it at once overwrote each other's results, and each waited out
// ResultTimeout for a result of its own round that was gone. A recheck of a key in flight waits for that
// measurement and shares its results instead.
type flight struct {
	done    chan struct{} // closed when results and err are set
	results map[string]storage.Result
	err     error
}

// measure returns the latest result of every PoP for t's key: from the measurement of the key already in
// flight, else from its own (measureKey).
func (s *Scheduler) measure(ctx context.Context, term *Term, t Target, pops []geo.PoP) (map[string]storage.Result, error) {
	key := storage.TargetKey(t.Kind(), s.probeAddr(t))
	for {
		s.flightMu.Lock()
		f, ok := s.flights[key]
		if !ok {
			f = &flight{done: make(chan struct{})}
			s.flights[key] = f
			s.flightMu.Unlock()
			f.results, f.err = s.measureKey(ctx, term, t, pops)
			s.flightMu.Lock()
			delete(s.flights, key)
			s.flightMu.Unlock()
			close(f.done)
			return f.results, f.err
		}
		s.flightMu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.done:
		}
		if f.err == nil {
			return maps.Clone(f.results), nil
		}
		// That measurement failed (its target was removed, say): measure again.
	}
}

// measureKey runs the planner's rounds: enqueue a job per planned PoP, wait for their results, ask for more.
// It returns the latest result of every PoP for the target, this round's included.
func (s *Scheduler) measureKey(ctx context.Context, term *Term, t Target, pops []geo.PoP) (map[string]storage.Result, error) {
	d := s.deps
	// plan runs fn with a pooled planner (not held while waiting for results).
	plan := func(fn func(p *triangulate.Planner) []string) []string {
		w := d.getWorkers()
		defer d.pool.Put(w)
		return fn(w.planner)
	}
	addr := s.probeAddr(t)
	key := storage.TargetKey(t.Kind(), addr)
	var budget int
	next := plan(func(p *triangulate.Planner) []string {
		budget = p.Budget(len(pops))
		if s.cfg.Budget > 0 {
			budget = min(s.cfg.Budget, len(pops))
		}
		if budget >= len(pops) {
			// The budget covers every PoP up: probe them all in one round (the planner's rounds would pick
			// among them, at a cost in scheduler CPU and in latency of a round trip per round).
			all := make([]string, len(pops))
			for i, p := range pops {
				all[i] = p.Code
			}
			return all
		}
		if prior, ok := s.prior(t); ok {
			return p.FirstFrom(pops, &prior.Point)
		}
		return p.First(pops)
	})
	if len(next) > budget {
		next = next[:budget]
	}
	latest := map[string]storage.Result{}
	probed := map[string]bool{}
	seq := s.seq.Add(1)
	bt := d.batchFor(s)
	for round := 0; len(next) > 0; round++ {
		want := map[string]string{} // pop -> round id
		deadline := s.cfg.Clock.Now().Add(s.cfg.ResultTimeout)
		if bt != nil {
			id := fmt.Sprintf("%s/%s/%d/%d/%d", s.cfg.Name, t.App, term.Token, seq, round)
			for _, pop := range next {
				probed[pop] = true
			}
			w := bt.enqueue(id, s.jobsFor(t, key, addr, id, next, deadline))
			if err := s.awaitBatch(ctx, bt, w, key, deadline, latest); err != nil {
				return nil, fmt.Errorf("scheduler: app %q: %w", t.App, err)
			}
		}
		for _, pop := range next {
			if bt != nil {
				break
			}
			probed[pop] = true
			j := storage.Job{
				Round: fmt.Sprintf("%s/%s/%d/%d/%d", s.cfg.Name, t.App, term.Token, seq, round),
				Key:   key, Target: addr, Kind: t.Kind(), Count: s.cfg.ProbeCount,
				Deadline: deadline,
			}
			if asksChaos(t.Kind(), addr) {
				j.Params = chaosParams
			}
			if _, err := d.backend.EnqueueJob(ctx, pop, j); err != nil {
				return nil, fmt.Errorf("scheduler: app %q: enqueueing a job for PoP %s: %w", t.App, pop, err)
			}
			want[pop] = j.Round
			if s.metrics != nil {
				s.metrics.jobsEnqueued.Inc()
			}
		}
		if bt == nil {
			if err := s.await(ctx, key, want, deadline, latest); err != nil {
				return nil, err
			}
		}
		budget -= len(next)
		if budget <= 0 {
			break
		}
		var sofar []triangulate.Measurement
		for pop, r := range latest {
			if succeeded(r) && probed[pop] {
				if p, ok := d.pops(pop); ok {
					sofar = append(sofar, triangulate.Measurement{VP: pop, Point: p.Point, RTTMs: r.MinMs})
				}
			}
		}
		if len(sofar) == 0 {
			break // nothing answered: more PoPs will not help
		}
		sort.Slice(sofar, func(i, j int) bool { return sofar[i].VP < sofar[j].VP })
		next = plan(func(p *triangulate.Planner) []string { return p.Next(pops, sofar, budget) })
	}
	out := map[string]storage.Result{}
	maxAge := 2 * s.cfg.RecheckInterval
	now := s.cfg.Clock.Now()
	for pop, r := range latest {
		// Only PoPs that are up count; an old result from a PoP probed in an earlier recheck counts while
		// it is fresh (late results of re-claimed jobs arrive this way).
		if !containsPoP(pops, pop) || now.Sub(r.At) > maxAge {
			continue
		}
		out[pop] = r
	}
	return out, nil
}

func containsPoP(pops []geo.PoP, code string) bool {
	i := sort.Search(len(pops), func(i int) bool { return pops[i].Code >= code })
	return i < len(pops) && pops[i].Code == code
}

// await polls the target's latest results until every PoP of want (pop -> round) has a result of its round
// or deadline passes; latest is filled with the latest result per PoP.
func (s *Scheduler) await(ctx context.Context, key string, want map[string]string, deadline time.Time, latest map[string]storage.Result) error {
	poll := s.cfg.ResultPoll
	counted := make(map[string]bool, len(want))
	for {
		rs, err := s.deps.backend.LatestResults(ctx, key)
		if err != nil && ctx.Err() == nil {
			s.log.Debug("scheduler: reading results", "key", key, "err", err)
		}
		got := 0
		for pop, r := range rs {
			latest[pop] = r
		}
		for pop, round := range want {
			if r, ok := latest[pop]; ok && r.Round == round {
				got++
				if !counted[pop] {
					counted[pop] = true
					s.countResult(r)
				}
			}
		}
		if got == len(want) {
			return nil
		}
		// Poll at ResultPoll, backing off to MaxResultPoll: each poll reads (and decodes) every PoP's latest
		// result, and with 1,000 rechecks in flight that is most of the scheduler's CPU.
		wait := min(poll, deadline.Sub(s.cfg.Clock.Now()))
		poll = min(2*poll, max(s.cfg.ResultPoll, MaxResultPoll))
		if wait <= 0 {
			s.log.Debug("scheduler: results missing at the deadline", "key", key, "want", len(want), "got", got)
			return nil
		}
		t := s.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

// measurements turns results into the engine's input: the minimum RTT of each successful probe.
func measurements(rs map[string]storage.Result, lookup func(string) (geo.PoP, bool)) []triangulate.Measurement {
	var ms []triangulate.Measurement
	for _, pop := range slices.Sorted(maps.Keys(rs)) {
		r := rs[pop]
		if !succeeded(r) {
			continue
		}
		p, ok := lookup(pop)
		if !ok {
			continue
		}
		ms = append(ms, triangulate.Measurement{VP: pop, Point: p.Point, RTTMs: r.MinMs})
	}
	return ms
}

// dnsEvidence turns the answer sets the PoPs' probes resolved the target's name to into the engine's DNS
// evidence: a geo-DNS name answers each PoP with a nearby replica, and disjoint answer sets make the target
// replicated. (The whole set, not the one address dialed: with round-robin DNS each PoP picks one of the same
// set.) A probe that failed after resolving still counts: the answer is evidence whatever the back end did.
//
// The CHAOS TXT id.server (else hostname.bind) answer a PoP got from the target itself (a host target on port
// 53: ChaosPort) names the anycast site that answered it: different answers make the one address anycast.
func dnsEvidence(rs map[string]storage.Result) []triangulate.DNSAnswer {
	var ev []triangulate.DNSAnswer
	for _, pop := range slices.Sorted(maps.Keys(rs)) {
		r := rs[pop]
		if id := chaosID(r); len(r.Resolved) > 0 || id != "" {
			ev = append(ev, triangulate.DNSAnswer{VP: pop, Addrs: r.Resolved, ServerID: id})
		}
	}
	return ev
}

// prior returns t's prior location (Config.Prior on the address probed), if any.
func (s *Scheduler) prior(t Target) (triangulate.Prior, bool) {
	if s.cfg.Prior == nil {
		return triangulate.Prior{}, false
	}
	addr := s.probeAddr(t)
	if addr == "" {
		return triangulate.Prior{}, false
	}
	return s.cfg.Prior(addr)
}

// GeoIPPrior returns a Config.Prior looking the probed address's IP up in g: a host:port or IP target whose
// host is an IP literal (a name is not resolved here: the daemons resolve it, each from its PoP). An address
// the database does not locate has no prior.
func GeoIPPrior(g *geo.GeoIP) func(addr string) (triangulate.Prior, bool) {
	return func(addr string) (triangulate.Prior, bool) {
		host := addr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return triangulate.Prior{}, false
		}
		info, err := g.Lookup(ip)
		if err != nil || !info.HasLocation || info.Anycast {
			return triangulate.Prior{}, false
		}
		return triangulate.Prior{Point: info.Point, AccuracyKm: info.AccuracyKm, Source: "GeoIP"}, true
	}
}

// ChaosPort is the port of the host targets whose probes also ask CHAOS TXT id.server and hostname.bind: a
// DNS server's. Different answers from different PoPs are evidence of anycast, as in vantage triangulate.
const ChaosPort = "53"

// chaosParams are the job parameters of such a target: the daemon's tcp probe then asks its own target
// (prober.DNSOptions.Chaos; probed decodes storage.Job.Params into {"http": ..., "dns": ...}).
var chaosParams = json.RawMessage(`{"dns":{"Chaos":true}}`)

// asksChaos reports whether a probe of kind at addr also asks CHAOS questions: tcp to port ChaosPort.
func asksChaos(kind placement.ProbeKind, addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return kind == placement.ProbeTCP && err == nil && port == ChaosPort
}

// chaosID returns the CHAOS TXT id.server answer of r's DNS evidence, else its hostname.bind answer, else "".
func chaosID(r storage.Result) string {
	if len(r.DNS) == 0 {
		return ""
	}
	var d struct {
		ServerID string `json:"id_server"`
		Hostname string `json:"hostname_bind"`
	}
	if json.Unmarshal(r.DNS, &d) != nil {
		return ""
	}
	return cmp.Or(d.ServerID, d.Hostname)
}

// succeeded reports whether r holds an RTT: no failure class and at least one answered sample. (An HTTP
// status outside the accepted range still timed the round trip, but the prober marks it failed; a back end
// that answers 5xx is not a placement target to trust.)
func succeeded(r storage.Result) bool { return r.Class == "" && r.Error == "" && r.Samples > 0 }

// stabilise reorders cands (ranked by RTT) so that two candidates whose RTTs differ by less than the
// hysteresis margins (absMs and rel × RTT, like the engine's switch rule) keep their previous relative order:
// measurement noise between near-equal PoPs then does not reorder the candidates, which would count as a
// decision change (new version, a publish, every router reloading it).
func stabilise(cands, prev []placement.Candidate, absMs, rel float64) {
	if len(prev) == 0 {
		return
	}
	idx := make(map[string]int, len(prev))
	for i, c := range prev {
		idx[c.PoP] = i
	}
	rank := func(c placement.Candidate) int {
		if i, ok := idx[c.PoP]; ok {
			return i
		}
		return len(prev)
	}
	close := func(a, b placement.Candidate) bool {
		d := math.Abs(a.RTTMs - b.RTTMs)
		return d < absMs || d < rel*math.Max(a.RTTMs, b.RTTMs)
	}
	for i := 1; i < len(cands); i++ { // insertion sort: a handful of candidates
		for j := i; j > 0; j-- {
			a, b := cands[j-1], cands[j]
			if !close(a, b) || rank(b) >= rank(a) {
				break
			}
			cands[j-1], cands[j] = b, a
		}
	}
}

// triangulateInput is the engine's input for results by PoP: their RTTs and DNS evidence (a recheck adds the
// previous choice).
func triangulateInput(target string, rs map[string]storage.Result, lookup func(string) (geo.PoP, bool)) triangulate.Input {
	return triangulate.Input{Target: target, Measurements: measurements(rs, lookup), DNS: dnsEvidence(rs)}
}

// countResult counts a result of this scheduler's jobs in vantage_scheduler_results_total{kind,outcome}:
// outcome is "success" or the prober's failure class (a fixed set).
func (s *Scheduler) countResult(r storage.Result) {
	if s.metrics == nil {
		return
	}
	o := "success"
	if !succeeded(r) {
		o = cmp.Or(r.Class, "other")
	}
	s.metrics.results.WithLabelValues(string(r.Kind), o).Inc()
}

// probeAddr is what the daemons probe for t: a hostname becomes a URL when Config.HostnameScheme is set.
func (s *Scheduler) probeAddr(t Target) string {
	if t.Mode == placement.ModeHostname && s.cfg.HostnameScheme != "" {
		return s.cfg.HostnameScheme + "://" + t.Target + "/"
	}
	return t.ProbeAddr()
}

// reason says in words why a recheck of t did not end in SUCCESS: which probes failed and how, or why the
// engine's verdict is not placeable.
func (s *Scheduler) reason(t Target, r triangulate.Result, rs map[string]storage.Result) string {
	addr := s.probeAddr(t)
	if r.Status == placement.StatusNoValidHosts {
		return failureReason(addr, rs, s.cfg.ResultTimeout)
	}
	var why string
	switch r.Verdict {
	case placement.VerdictAnycast:
		why = fmt.Sprintf("%s answers as anycast (one address at several places): requests run where they enter", addr)
	case placement.VerdictReplicated:
		why = fmt.Sprintf("%s is replicated (one address per region): requests run where they enter", addr)
	default:
		why = fmt.Sprintf("verdict %q on %s", cmp.Or(r.Verdict, placement.VerdictUnknown), addr)
	}
	if notes := r.Notes(); len(notes) > 0 {
		why += " (" + strings.Join(notes, "; ") + ")"
	}
	return why
}

// failureReason summarises why no PoP measured addr: the failed probes grouped by class and error, each with
// the PoPs that saw it, e.g. "every PoP's probe of 198.18.0.9:80 failed: refused: connect: connection refused
// (FRA, IAD, SIN)".
func failureReason(addr string, rs map[string]storage.Result, timeout time.Duration) string {
	if len(rs) == 0 {
		return fmt.Sprintf("no PoP returned a result for %s within %v", addr, timeout)
	}
	byCause := map[string][]string{}
	for _, pop := range slices.Sorted(maps.Keys(rs)) {
		r := rs[pop]
		cause := r.Error
		switch {
		case succeeded(r):
			cause = "answered, but the PoP is not in the catalogue"
		case r.Class != "" && cause != "":
			cause = r.Class + ": " + cause
		case r.Class != "":
			cause = r.Class
		case cause == "":
			cause = "no sample answered"
		}
		byCause[cause] = append(byCause[cause], pop)
	}
	parts := make([]string, 0, len(byCause))
	for _, cause := range slices.Sorted(maps.Keys(byCause)) {
		parts = append(parts, fmt.Sprintf("%s (%s)", cause, strings.Join(byCause[cause], ", ")))
	}
	what := "every PoP's probe"
	if len(rs) == 1 {
		what = "the only PoP's probe"
	}
	return fmt.Sprintf("%s of %s failed: %s", what, addr, strings.Join(parts, "; "))
}
