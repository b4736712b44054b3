package scheduler

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/triangulate"
)

// Bounds of ad-hoc probes.
const (
	// DefaultAdHocTimeout is how long an ad-hoc probe waits for its PoPs before giving its verdict.
	DefaultAdHocTimeout = 30 * time.Second
	// AdHocTTL is how long an ad-hoc probe's record and results are kept.
	AdHocTTL = time.Hour
)

// ProbeRequest is the body of POST /v1/probes.
type ProbeRequest struct {
	Target string              `json:"target"` // host:port (tcp), URL or hostname (http), address (icmp), name (dns)
	Kind   placement.ProbeKind `json:"kind"`
	PoPs   PoPList             `json:"pops"`  // PoP codes, or "all" (every PoP that is up)
	Count  int                 `json:"count"` // samples per PoP; 0: DefaultProbeCount, at most prober.MaxCount
}

// PoPList is a list of PoP codes; in JSON either an array or the string "all" (nil).
type PoPList []string

// UnmarshalJSON accepts ["FRA","LHR"], "FRA,LHR" or "all".
func (p *PoPList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if strings.EqualFold(s, "all") || s == "" {
			*p = nil
			return nil
		}
		*p = strings.Split(s, ",")
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("pops: want an array of PoP codes or \"all\": %w", err)
	}
	*p = l
	return nil
}

// AdHocRecord is a stored ad-hoc probe: the request and where its jobs went.
type AdHocRecord struct {
	ID       string              `json:"id"`
	Target   string              `json:"target"`
	Kind     placement.ProbeKind `json:"kind"`
	Count    int                 `json:"count"`
	PoPs     []string            `json:"pops"`
	Token    string              `json:"token,omitempty"` // name of the token that asked
	Created  time.Time           `json:"created"`
	Deadline time.Time           `json:"deadline"`
}

// AdHocStatus is GET /v1/probes/{id}: per-PoP results as they arrive and, once every PoP answered (or the
// deadline passed), the engine's verdict.
type AdHocStatus struct {
	AdHocRecord
	Results map[string]storage.Result `json:"results"`           // by PoP; detail holds the prober's full result
	Pending []string                  `json:"pending,omitempty"` // PoPs without a result yet
	Done    bool                      `json:"done"`
	Verdict *AdHocVerdict             `json:"verdict,omitempty"`
}

// AdHocVerdict is the engine's answer on an ad-hoc probe's results.
type AdHocVerdict struct {
	BestPoP    string                `json:"best_pop,omitempty"`
	Candidates []placement.Candidate `json:"candidates"`
	Verdict    placement.Verdict     `json:"verdict"`
	Confidence float64               `json:"confidence"`
	Location   *geo.Point            `json:"location,omitempty"`
	RadiusKm   float64               `json:"radius_km,omitempty"`
	Notes      []string              `json:"notes,omitempty"`
}

// AdHoc starts ad-hoc probes and reports on them.
type AdHoc struct {
	Backend Backend
	Timeout time.Duration // default DefaultAdHocTimeout
	PoPs    func(code string) (geo.PoP, bool)
	Now     func() time.Time

	mu      sync.Mutex
	engines []*triangulate.Engine
}

// ErrBadRequest wraps every refusal of an ad-hoc probe request.
var ErrBadRequest = errors.New("bad ad-hoc probe request")

// Start validates req, enqueues one job per PoP and stores the record.
func (a *AdHoc) Start(ctx context.Context, req ProbeRequest, token string) (AdHocRecord, error) {
	if _, err := placement.ParseProbeKind(string(req.Kind)); err != nil {
		return AdHocRecord{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if req.Target == "" {
		return AdHocRecord{}, fmt.Errorf("%w: target is empty", ErrBadRequest)
	}
	if req.Count < 0 || req.Count > prober.MaxCount {
		return AdHocRecord{}, fmt.Errorf("%w: count %d: want 1..%d", ErrBadRequest, req.Count, prober.MaxCount)
	}
	count := cmp.Or(req.Count, DefaultProbeCount)
	up, err := a.Backend.UpPoPs(ctx)
	if err != nil {
		return AdHocRecord{}, fmt.Errorf("scheduler: ad-hoc probe: reading the fleet: %w", err)
	}
	pops := up
	if req.PoPs != nil {
		upSet := map[string]bool{}
		for _, p := range up {
			upSet[p] = true
		}
		pops = nil
		seen := map[string]bool{}
		for _, p := range req.PoPs {
			p = strings.ToUpper(strings.TrimSpace(p))
			if seen[p] {
				continue
			}
			seen[p] = true
			if !upSet[p] {
				return AdHocRecord{}, fmt.Errorf("%w: PoP %q has no live daemon (up: %s)", ErrBadRequest, p, strings.Join(up, ","))
			}
			pops = append(pops, p)
		}
	}
	if len(pops) == 0 {
		return AdHocRecord{}, fmt.Errorf("%w: %w", ErrBadRequest, ErrNoPoPs)
	}
	now := a.now()
	rec := AdHocRecord{ID: newID(), Target: req.Target, Kind: req.Kind, Count: count, PoPs: pops, Token: token,
		Created: now, Deadline: now.Add(cmp.Or(a.Timeout, DefaultAdHocTimeout))}
	reqJSON, _ := json.Marshal(rec)
	if err := a.Backend.PutAdHocProbe(ctx, storage.AdHocProbe{ID: rec.ID, Request: reqJSON, CreatedAt: now}, AdHocTTL); err != nil {
		return AdHocRecord{}, fmt.Errorf("scheduler: ad-hoc probe: storing the record: %w", err)
	}
	for _, pop := range pops {
		j := storage.Job{Round: rec.ID, Key: probed.AdHocKeyPrefix + rec.ID, Kind: rec.Kind, Target: rec.Target, Count: count, Deadline: rec.Deadline}
		if _, err := a.Backend.EnqueueJob(ctx, pop, j); err != nil {
			return AdHocRecord{}, fmt.Errorf("scheduler: ad-hoc probe %s: enqueueing for PoP %s: %w", rec.ID, pop, err)
		}
	}
	return rec, nil
}

func (a *AdHoc) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Status returns the ad-hoc probe id with the results so far; found is false for an unknown (or expired) id.
func (a *AdHoc) Status(ctx context.Context, id string) (AdHocStatus, bool, error) {
	p, ok, err := a.Backend.AdHocProbe(ctx, id)
	if err != nil || !ok {
		return AdHocStatus{}, ok, err
	}
	var rec AdHocRecord
	if err := json.Unmarshal(p.Request, &rec); err != nil {
		return AdHocStatus{}, true, fmt.Errorf("scheduler: ad-hoc probe %s: stored request: %w", id, err)
	}
	st := AdHocStatus{AdHocRecord: rec, Results: map[string]storage.Result{}}
	for _, r := range p.Results {
		st.Results[r.PoP] = r
	}
	for _, p := range rec.PoPs {
		if _, ok := st.Results[p]; !ok {
			st.Pending = append(st.Pending, p)
		}
	}
	st.Done = len(st.Pending) == 0 || !a.now().Before(rec.Deadline)
	if st.Done {
		st.Verdict = a.verdict(rec, st.Results)
		if !p.Done { // record the end once, for whoever reads the record later
			v, _ := json.Marshal(st.Verdict)
			p.Done, p.Verdict, p.Results = true, v, nil
			if err := a.Backend.PutAdHocProbe(ctx, p, AdHocTTL); err != nil {
				return st, true, fmt.Errorf("scheduler: ad-hoc probe %s: storing the verdict: %w", id, err)
			}
		}
	}
	return st, true, nil
}

func (a *AdHoc) verdict(rec AdHocRecord, rs map[string]storage.Result) *AdHocVerdict {
	lookup := a.PoPs
	if lookup == nil {
		lookup = geo.LookupPoP
	}
	ms := measurements(rs, lookup)
	v := &AdHocVerdict{Verdict: placement.VerdictUnknown, Candidates: []placement.Candidate{}}
	if len(ms) == 0 {
		v.Notes = []string{"no PoP got an answer"}
		return v
	}
	a.mu.Lock()
	var e *triangulate.Engine
	if n := len(a.engines); n > 0 {
		e, a.engines = a.engines[n-1], a.engines[:n-1]
	}
	a.mu.Unlock()
	if e == nil {
		e, _ = triangulate.NewEngine(triangulate.DefaultConfig())
	}
	defer func() { a.mu.Lock(); a.engines = append(a.engines, e); a.mu.Unlock() }()
	r, err := e.Decide(triangulate.Input{Target: rec.Target, Measurements: ms})
	if err != nil {
		v.Notes = []string{err.Error()}
		return v
	}
	v.Verdict, v.Confidence = r.Verdict, r.Confidence
	v.Candidates = append(v.Candidates, r.Candidates...)
	if r.Verdict.Placeable() {
		v.BestPoP = r.Best.PoP
	}
	if r.HasLoc {
		p := r.Location.Point
		v.Location, v.RadiusKm = &p, r.Location.RadiusKm
	}
	v.Notes = r.Notes()
	return v
}

func (a *API) postProbe(w http.ResponseWriter, r *http.Request) {
	token, _ := r.Context().Value(tokenKey{}).(string)
	var req ProbeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.countAdHoc("invalid")
		writeError(w, http.StatusBadRequest, 10002, fmt.Sprintf("ad-hoc probe request: %v", err))
		return
	}
	if ok, wait := a.Auth.Allow(token); !ok {
		a.countAdHoc("rate_limited")
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, 10429, fmt.Sprintf("ad-hoc probe quota of token %q exhausted; retry in %s", token, wait.Round(time.Millisecond)))
		return
	}
	rec, err := a.AdHoc.Start(r.Context(), req, token)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, ErrBadRequest) {
			code = http.StatusBadRequest
			a.countAdHoc("invalid")
		}
		writeError(w, code, 10002, err.Error())
		return
	}
	a.countAdHoc("accepted")
	a.log().Info("scheduler: ad-hoc probe", "id", rec.ID, "kind", rec.Kind, "target", rec.Target, "pops", len(rec.PoPs), "token", token)
	w.Header().Set("Location", "/v1/probes/"+rec.ID)
	writeJSON(w, http.StatusAccepted, rec)
}

func (a *API) countAdHoc(outcome string) {
	if a.Metrics != nil {
		a.Metrics.adhoc.WithLabelValues(outcome).Inc()
	}
}

func (a *API) getProbe(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, ok, err := a.AdHoc.Status(r.Context(), id)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("ad-hoc probe %q: %v", id, errNotFound))
	default:
		writeJSON(w, http.StatusOK, st)
	}
}
