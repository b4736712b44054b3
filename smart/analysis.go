package smart

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

// Lookups are what the analysis knows besides the telemetry. Every field is optional.
type Lookups struct {
	// Verdict returns the triangulation engine's verdict on a back end ("db.example.com:5432",
	// "api.example.com"), and whether the engine has judged it. Anycast and replicated back ends never count.
	Verdict func(host string) (placement.Verdict, bool)
	// HostRTTs returns the fleet's RTTs in ms, by PoP, to a back end that is a probed target; nil otherwise.
	HostRTTs func(host string) map[string]float64
	// PoPRTT returns the forwarding RTT in ms between two PoPs from the fleet's mesh measurements; NaN (or a
	// negative value) when not measured, and then Model on the PoPs' coordinates answers.
	PoPRTT func(a, b string) float64
	// Locate returns a PoP's coordinates (default geo.LookupPoP).
	Locate func(pop string) (geo.Point, bool)
	// Model is the latency model (default geo.DefaultModel()).
	Model interface{ RTTMs(a, b geo.Point) float64 }
}

// Input is one application's telemetry window and state.
type Input struct {
	App string
	// Deploy is the application's current deploy version; empty: the deploy version of the newest record.
	// Only records of this version are analysed.
	Deploy string
	// Records are the application's telemetry; those outside (Now-Window, Now] are ignored.
	Records []storage.Telemetry
	// Previous is the application's current decision (zero: none).
	Previous placement.Decision
	// Unsupported reports that an earlier analysis found UnsupportedDeploy (possibly "", for applications
	// without deploy versions) slower when placed.
	Unsupported       bool
	UnsupportedDeploy string
	// Now is the end of the window and the decision's computation time.
	Now time.Time
}

// Exclusion says why a subrequest does not count.
type Exclusion string

// The exclusion reasons.
const (
	ExcludedWaitUntil  Exclusion = "wait_until" // ran in waitUntil: after the response
	ExcludedAnalytics  Exclusion = "analytics"  // an analytics or logging host (Config.AnalyticsHosts)
	ExcludedAnycast    Exclusion = "anycast"    // the engine's verdict: one address at several places
	ExcludedReplicated Exclusion = "replicated" // the engine's verdict: a name with one address per region
)

// Host is one supported back end and how its RTT from any PoP is obtained.
type Host struct {
	Host       string
	PerRequest float64            // supported subrequests to it per request, on average
	RTTs       map[string]float64 // ms by PoP: fleet results where probed, else the smallest observed subrequest
	Fleet      bool               // RTTs include the fleet's probe results
	Location   geo.Point          // triangulated from RTTs, when HasLoc
	HasLoc     bool
}

// Estimate is one candidate PoP's estimated mean request duration seen by users.
type Estimate struct {
	PoP       string
	BackendMs float64 // back-end time at the PoP: observed median, or modelled
	Observed  bool    // BackendMs is the median of at least Config.MinObserved executions there
	MeanMs    float64 // mean over the window's ingress mix of BackendMs + forwarding RTT ingress<->PoP
}

// Analysis is the outcome of Analyze for one application: the decision and how it was reached.
type Analysis struct {
	Decision placement.Decision
	// MarkUnsupported asks the caller to record Deploy as slower when placed (storage.MarkUnsupported).
	MarkUnsupported bool
	Deploy          string
	Requests        int      // records of Deploy in the window
	Locations       []string // PoPs the application ran at, sorted
	PerRequest      float64  // supported subrequests per request
	Hosts           []Host   // supported back ends, most used first
	// Excluded counts the subrequests that do not count, by reason.
	Excluded map[Exclusion]int
	// OverheadMs is the median request time outside supported subrequests (CPU, excluded subrequests).
	OverheadMs float64
	// LocalMs is the estimated mean duration when every request runs where it enters; NaN when unknown.
	LocalMs   float64
	Estimates []Estimate // candidates, fastest first
	// RoutedMs and BaselineMs are the slower-placement check's estimated durations seen by users (0: not run).
	RoutedMs, BaselineMs float64
}

// Analyze decides where app should run from its telemetry window. It is pure: no I/O, and the same input gives
// the same output. The method:
//
//  1. Only records of the deploy version in the window count. A deploy version marked unsupported stays
//     UNSUPPORTED_APPLICATION (running locally) until the next version.
//  2. When the previous decision routes to L, requests routed to L are compared with the baseline (requests
//     held back at their ingress I: the router's "baseline" reason, or, when the router passes no reasons, every
//     request run at an ingress other than L). Per ingress, a routed request takes its execution time at L plus
//     the forwarding RTT I<->L; a baseline request its execution time at I. When the routed mean (weighted by
//     routed requests per ingress) exceeds the baseline mean by more than SlowerTolerance, the status is
//     UNSUPPORTED_APPLICATION and MarkUnsupported is set.
//  3. Too few requests or execution PoPs: INSUFFICIENT_INVOCATIONS. Subrequests in waitUntil, to analytics hosts,
//     or to back ends the engine judged anycast or replicated do not count. No counted back end: NO_VALID_HOSTS;
//     fewer counted subrequests per request than MinSubrequestsPerRequest: INSUFFICIENT_SUBREQUESTS.
//  4. Back-end time at a PoP P: the median duration of the executions at P when there are MinObserved of them;
//     otherwise modelled as overhead + sum over back ends h of (subrequests to h per request) x RTT(P, h), where
//     overhead is the median request time outside counted subrequests (sequential subrequests assumed), and
//     RTT(P, h) is, in order: the fleet's probe result from P when h is a probed target; the smallest observed
//     subrequest duration to h at P (one subrequest is about one RTT); the latency model from P to h's location,
//     triangulated (CBG, triangulate.Engine) from those per-PoP RTTs when the region is within
//     MaxLocationRadiusKm; or else the relay bound min over measured PoPs Q of RTT(Q, h) + RTT(P, Q).
//  5. Candidates are the PoPs the application ran at. A candidate L's estimate is the mean over the window's
//     requests (by ingress I) of back-end time at L + forwarding RTT I<->L (0 when I = L; PoPRTT, else the model
//     on coordinates). The fastest is kept against the previous choice unless it beats it by both margins, and is
//     chosen only when it beats running at the ingress by both margins; otherwise the decision is SUCCESS with no
//     best PoP (run locally). Ties go to the smaller PoP code. The decision's candidates are the estimates,
//     fastest first, with the estimated mean duration in ms as their RTTMs: the router's failover budget and
//     spreading epsilon then compare durations seen by users.
func Analyze(cfg Config, in Input, lk Lookups) Analysis {
	recs := window(cfg, in)
	deploy := in.Deploy
	if deploy == "" && len(recs) > 0 {
		deploy = recs[len(recs)-1].Deploy
	}
	recs = slices.DeleteFunc(recs, func(r storage.Telemetry) bool { return r.Deploy != deploy })
	return analyze(cfg, in.state(deploy), summarizeRecords(recs), lk)
}

// analyze is Analyze and AnalyzeAggregates from the summary of the window's requests of st.deploy.
func analyze(cfg Config, st state, sum *summary, lk Lookups) Analysis {
	lk = lk.withDefaults()
	a := Analysis{Excluded: map[Exclusion]int{}, LocalMs: math.NaN()}
	d := placement.Decision{App: st.app, Mode: placement.ModeSmart, ComputedAt: st.now, NextRecheck: st.now.Add(cfg.Interval)}
	a.Deploy = st.deploy
	a.Requests = sum.requests
	a.Locations = sum.execPoPs()

	finish := func(status placement.Status) Analysis {
		d.Status = status
		a.Decision = d
		return a
	}
	if st.unsupported && st.unsupportedDeploy == a.Deploy {
		return finish(placement.StatusUnsupportedApplication)
	}
	if slower(cfg, st.previous, sum, lk, &a) {
		a.MarkUnsupported = true
		return finish(placement.StatusUnsupportedApplication)
	}
	if a.Requests < cfg.MinRequests || len(a.Locations) < cfg.MinLocations {
		return finish(placement.StatusInsufficientInvocations)
	}

	// Which subrequests count.
	type hostAcc struct {
		n     int
		fleet map[string]float64
		obs   map[string]float64 // smallest observed duration by exec PoP
	}
	hosts := map[string]*hostAcc{}
	excluded := map[string]bool{}
	counted := 0
	for _, name := range slices.Sorted(maps.Keys(sum.hosts)) {
		hs := sum.hosts[name]
		a.Excluded[ExcludedWaitUntil] += hs.waitUntil
		if hs.n == 0 {
			continue
		}
		if why, out := exclude(cfg, lk, storage.Subrequest{Host: name}); out {
			a.Excluded[why] += hs.n
			excluded[name] = true
			continue
		}
		hosts[name] = &hostAcc{n: hs.n, obs: hs.minByExec, fleet: lk.HostRTTs(name)}
		counted += hs.n
	}
	for why, n := range a.Excluded {
		if n == 0 {
			delete(a.Excluded, why)
		}
	}
	if len(hosts) == 0 {
		return finish(placement.StatusNoValidHosts)
	}
	a.PerRequest = float64(counted) / float64(a.Requests)
	if a.PerRequest < cfg.MinSubrequestsPerRequest {
		return finish(placement.StatusInsufficientSubrequests)
	}
	a.OverheadMs = sum.overhead(excluded)

	// Where each back end is.
	eng, _ := triangulate.NewEngine(triangulate.ProductionConfig(nil)) // the fleet's configuration; valid
	for name, h := range hosts {
		host := Host{Host: name, PerRequest: float64(h.n) / float64(a.Requests), RTTs: map[string]float64{}}
		for p, v := range h.obs {
			host.RTTs[p] = v
		}
		for p, v := range h.fleet {
			if v >= 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
				host.RTTs[p], host.Fleet = v, true
			}
		}
		var ms []triangulate.Measurement
		for _, p := range slices.Sorted(maps.Keys(host.RTTs)) {
			if pt, ok := lk.Locate(p); ok {
				ms = append(ms, triangulate.Measurement{VP: p, Point: pt, RTTMs: host.RTTs[p]})
			}
		}
		if len(ms) > 0 {
			if res, err := eng.Decide(triangulate.Input{Target: name, Measurements: ms}); err == nil && res.HasLoc &&
				res.Location.RadiusKm <= cfg.MaxLocationRadiusKm {
				host.Location, host.HasLoc = res.Location.Point, true
			}
		}
		a.Hosts = append(a.Hosts, host)
	}
	slices.SortFunc(a.Hosts, func(x, y Host) int {
		return cmp.Or(cmp.Compare(y.PerRequest, x.PerRequest), cmp.Compare(x.Host, y.Host))
	})

	// Back-end time at every PoP that matters: candidates and ingresses.
	byExec := map[string]*dist{}
	ingress := map[string]int{}
	for _, g := range sum.groups {
		if byExec[g.exec] == nil {
			byExec[g.exec] = &dist{}
		}
		byExec[g.exec].merge(g.dur)
		ingress[g.ingress] += g.dur.count()
	}
	type bk struct {
		ms  float64
		obs bool
	}
	memo := map[string]bk{}
	backend := func(p string) (float64, bool) {
		if v, ok := memo[p]; ok {
			return v.ms, v.obs
		}
		v := bk{a.model(p, lk), false}
		if ds := byExec[p]; ds != nil && ds.count() >= cfg.MinObserved {
			v = bk{ds.median(), true}
		}
		memo[p] = v
		return v.ms, v.obs
	}
	w, local := 0.0, 0.0
	ingresses := slices.Sorted(maps.Keys(ingress))
	for _, i := range ingresses {
		if b, _ := backend(i); !math.IsNaN(b) {
			w += float64(ingress[i])
			local += float64(ingress[i]) * b
		}
	}
	if w > 0 {
		a.LocalMs = local / w
	}
	for _, l := range a.Locations {
		b, obs := backend(l)
		if math.IsNaN(b) || w == 0 {
			continue
		}
		sum := 0.0
		for _, i := range ingresses {
			if bi, _ := backend(i); math.IsNaN(bi) {
				continue // left out of LocalMs too
			}
			f := lk.forward(i, l)
			if math.IsNaN(f) {
				sum = math.NaN()
				break
			}
			sum += float64(ingress[i]) * (b + f)
		}
		if !math.IsNaN(sum) {
			a.Estimates = append(a.Estimates, Estimate{PoP: l, BackendMs: b, Observed: obs, MeanMs: sum / w})
		}
	}
	slices.SortFunc(a.Estimates, func(x, y Estimate) int { return cmp.Or(cmp.Compare(x.MeanMs, y.MeanMs), cmp.Compare(x.PoP, y.PoP)) })

	d.Status = placement.StatusSuccess
	for i, e := range a.Estimates {
		if i == cfg.MaxCandidates {
			break
		}
		d.Candidates = append(d.Candidates, placement.Candidate{PoP: e.PoP, RTTMs: round3(e.MeanMs)})
	}
	if len(a.Estimates) == 0 || math.IsNaN(a.LocalMs) {
		a.Decision = d
		return a
	}
	best := a.Estimates[0]
	if prev := st.previous; prev.Status == placement.StatusSuccess && prev.BestPoP != "" && prev.BestPoP != best.PoP {
		for _, e := range a.Estimates {
			if e.PoP == prev.BestPoP && !cfg.significant(best.MeanMs, e.MeanMs) {
				best = e // hysteresis: the previous choice holds
			}
		}
	}
	if cfg.significant(best.MeanMs, a.LocalMs) {
		d.BestPoP = best.PoP
		d.Estimated = !best.Observed
		d.Confidence = 1
		if d.Estimated {
			d.Confidence = triangulate.EstimatedConfidence
		}
	}
	a.Decision = d
	return a
}

// significant reports whether newMs beats oldMs by both margins.
func (c Config) significant(newMs, oldMs float64) bool {
	return newMs <= oldMs*(1-c.MarginRel) && oldMs-newMs >= c.MarginAbsMs
}

// window returns in's records in (Now-Window, Now], oldest first.
func window(cfg Config, in Input) []storage.Telemetry {
	from := in.Now.Add(-cfg.Window)
	out := make([]storage.Telemetry, 0, len(in.Records))
	for _, r := range in.Records {
		if (in.App == "" || r.App == in.App) && r.At.After(from) && !r.At.After(in.Now) {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(x, y storage.Telemetry) int { return x.At.Compare(y.At) })
	return out
}

// exclude says whether subrequest s does not count, and why.
func exclude(cfg Config, lk Lookups, s storage.Subrequest) (Exclusion, bool) {
	switch {
	case s.WaitUntil:
		return ExcludedWaitUntil, true
	case isAnalytics(cfg.AnalyticsHosts, s.Host):
		return ExcludedAnalytics, true
	}
	if v, ok := lk.Verdict(s.Host); ok {
		switch v {
		case placement.VerdictAnycast:
			return ExcludedAnycast, true
		case placement.VerdictReplicated:
			return ExcludedReplicated, true
		}
	}
	return "", false
}

// slower runs the slower-placement check (step 2 of Analyze) and reports whether placement made the
// application slower.
func slower(cfg Config, prev placement.Decision, sum *summary, lk Lookups, a *Analysis) bool {
	l := prev.BestPoP
	if prev.Status != placement.StatusSuccess || l == "" {
		return false
	}
	reasons := slices.ContainsFunc(sum.groups, func(g group) bool { return g.reason != "" })
	routed, base := map[string]*dist{}, map[string]*dist{}
	add := func(m map[string]*dist, i string, d dist) {
		if m[i] == nil {
			m[i] = &dist{}
		}
		m[i].merge(d)
	}
	for _, g := range sum.groups {
		switch {
		case g.routed && g.exec == l:
			add(routed, g.ingress, g.dur)
		case !g.routed && g.exec == g.ingress && g.ingress != l && (g.reason == "baseline" || (!reasons && g.reason == "")):
			add(base, g.ingress, g.dur)
		}
	}
	var nr, nb int
	var w, rs, bs float64
	for _, i := range slices.Sorted(maps.Keys(routed)) {
		f := lk.forward(i, l)
		if base[i] == nil || math.IsNaN(f) {
			continue
		}
		nr += routed[i].count()
		nb += base[i].count()
		wi := float64(routed[i].count())
		w += wi
		rs += wi * (routed[i].median() + f)
		bs += wi * base[i].median()
	}
	if nr < cfg.MinCompare || nb < cfg.MinCompare {
		return false
	}
	a.RoutedMs, a.BaselineMs = rs/w, bs/w
	return a.RoutedMs > a.BaselineMs*(1+cfg.SlowerTolerance)
}

// model returns the modelled back-end time at PoP p (step 4 of Analyze), NaN when some back end's RTT from p
// cannot be estimated.
func (a *Analysis) model(p string, lk Lookups) float64 {
	pt, ok := lk.Locate(p)
	if !ok {
		return math.NaN()
	}
	sum := a.OverheadMs
	for _, h := range a.Hosts {
		rtt, ok := h.RTTs[p]
		switch {
		case ok:
		case h.HasLoc:
			rtt = lk.Model.RTTMs(pt, h.Location)
		default:
			rtt = math.NaN()
			for q, v := range h.RTTs {
				if f := lk.forward(p, q); !math.IsNaN(f) && (math.IsNaN(rtt) || v+f < rtt) {
					rtt = v + f
				}
			}
		}
		if math.IsNaN(rtt) {
			return math.NaN()
		}
		sum += h.PerRequest * rtt
	}
	return sum
}

// withDefaults fills the optional lookups.
func (lk Lookups) withDefaults() Lookups {
	if lk.Verdict == nil {
		lk.Verdict = func(string) (placement.Verdict, bool) { return "", false }
	}
	if lk.HostRTTs == nil {
		lk.HostRTTs = func(string) map[string]float64 { return nil }
	}
	if lk.Locate == nil {
		lk.Locate = func(p string) (geo.Point, bool) {
			pop, ok := geo.LookupPoP(p)
			return pop.Point, ok
		}
	}
	if lk.Model == nil {
		lk.Model = geo.DefaultModel()
	}
	return lk
}

// forward returns the forwarding RTT in ms between PoPs a and b: 0 for the same PoP, the fleet's measurement,
// else the model on their coordinates; NaN when neither is known.
func (lk Lookups) forward(a, b string) float64 {
	if a == b {
		return 0
	}
	if lk.PoPRTT != nil {
		if v := lk.PoPRTT(a, b); v >= 0 && !math.IsInf(v, 0) {
			return v
		}
	}
	pa, oka := lk.Locate(a)
	pb, okb := lk.Locate(b)
	if !oka || !okb {
		return math.NaN()
	}
	return lk.Model.RTTMs(pa, pb)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
