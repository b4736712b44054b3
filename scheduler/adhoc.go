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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/strictjson"
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
	// MaxAdHocCount caps an ad-hoc probe's samples per PoP: the median of 20 samples is stable, and more turn a
	// look at a target into a load test of it (times the PoPs asked), well below prober.MaxCount.
	MaxAdHocCount = 20
	// DefaultAdHocSampleTimeout is an ad-hoc probe's timeout per sample when the request names none: the
	// prober's own default.
	DefaultAdHocSampleTimeout = prober.DefaultTimeout
	// MaxAdHocSampleTimeout caps the timeout per sample: a back end slower than 10 s to connect or answer is
	// down for placement's purposes.
	MaxAdHocSampleTimeout = 10 * time.Second
	// MaxAdHocProbeTime caps count × timeout, the longest one PoP's probe may take: a PoP daemon's probe slot is
	// held that long by a black-holed target (count 100 × 2 s held one ~210 s). It stays under
	// DefaultAdHocTimeout, so a probe that uses all of it still reports before the verdict.
	MaxAdHocProbeTime = 20 * time.Second
	// MaxAdHocPoPs bounds an explicit PoP list: more than the catalogue's 340 PoPs can only be repeats.
	MaxAdHocPoPs = 400
	// maxPoPCodeLen bounds one PoP code (IATA codes have 3 letters; fleets may name theirs a little longer).
	maxPoPCodeLen = 16
	// maxQuotedValue is how much of a refused value an error message quotes.
	maxQuotedValue = 64
)

// ProbeRequest is the body of POST /v1/probes.
type ProbeRequest struct {
	Target string              `json:"target"` // host:port (tcp), URL or hostname (http), address (icmp), name (dns)
	Kind   placement.ProbeKind `json:"kind"`
	PoPs   PoPList             `json:"pops"`  // PoP codes, or "all" (every PoP that is up)
	Count  int                 `json:"count"` // samples per PoP; 0: DefaultProbeCount, at most MaxAdHocCount
	// TimeoutMs is the timeout per sample in milliseconds; 0: DefaultAdHocSampleTimeout, at most
	// MaxAdHocSampleTimeout, and Count × TimeoutMs at most MaxAdHocProbeTime.
	TimeoutMs int `json:"timeout_ms,omitempty"`
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
	ID        string              `json:"id"`
	Target    string              `json:"target"`
	Kind      placement.ProbeKind `json:"kind"`
	Count     int                 `json:"count"`
	TimeoutMs int                 `json:"timeout_ms,omitempty"` // per sample
	PoPs      []string            `json:"pops"`
	Token     string              `json:"token,omitempty"`   // name of the token that asked
	Account   string              `json:"account,omitempty"` // its account: only this account (and operators) read the probe
	Created   time.Time           `json:"created"`
	Deadline  time.Time           `json:"deadline"`
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
	// Backend stores the records and enqueues the jobs. When it also keeps quotas (QuotaStore, as
	// StoreBackend does in Redis), the API's ad-hoc quota is taken there, shared by every scheduler on it.
	Backend Backend
	// Parser validates targets by the rules of configs; its Policy should match the probers' allow-list. The
	// zero Parser checks the syntax only (the probers still apply their policy).
	Parser  placement.Parser
	Timeout time.Duration // default DefaultAdHocTimeout
	PoPs    func(code string) (geo.PoP, bool)
	Now     func() time.Time

	mu      sync.Mutex
	engines []*triangulate.Engine
}

// ErrBadRequest wraps every refusal of an ad-hoc probe request.
var ErrBadRequest = errors.New("bad ad-hoc probe request")

// Check validates req without I/O and returns it normalised: the kind, the target by the rules of configs
// (placement.Parser.CheckProbeTarget), count and timeout within their caps and defaults, the PoP codes
// upper-cased, without repeats, at most MaxAdHocPoPs. Errors wrap ErrBadRequest and name the field and (up to
// 64 bytes of) the value.
func (a *AdHoc) Check(req ProbeRequest) (ProbeRequest, error) {
	bad := func(field string, value any, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s: %s", ErrBadRequest, field, quoteValue(value), fmt.Sprintf(format, args...))
	}
	if _, err := placement.ParseProbeKind(string(req.Kind)); err != nil {
		return req, bad("kind", string(req.Kind), "want one of tcp, http, icmp, dns")
	}
	target, err := a.Parser.CheckProbeTarget(req.Kind, req.Target)
	if err != nil {
		return req, bad("target", req.Target, "%v", err)
	}
	req.Target = target
	if req.Count < 0 || req.Count > MaxAdHocCount {
		return req, bad("count", req.Count, "want 1..%d", MaxAdHocCount)
	}
	req.Count = cmp.Or(req.Count, DefaultProbeCount)
	if req.TimeoutMs < 0 || time.Duration(req.TimeoutMs)*time.Millisecond > MaxAdHocSampleTimeout {
		return req, bad("timeout_ms", req.TimeoutMs, "want 1..%d", MaxAdHocSampleTimeout.Milliseconds())
	}
	req.TimeoutMs = cmp.Or(req.TimeoutMs, int(DefaultAdHocSampleTimeout.Milliseconds()))
	if total := time.Duration(req.Count) * time.Duration(req.TimeoutMs) * time.Millisecond; total > MaxAdHocProbeTime {
		return req, bad("count × timeout_ms", req.Count*req.TimeoutMs,
			"%v per PoP, more than %v: fewer samples or a shorter timeout", total, MaxAdHocProbeTime)
	}
	if req.PoPs == nil {
		return req, nil
	}
	if len(req.PoPs) > MaxAdHocPoPs {
		return req, bad("pops", len(req.PoPs), "more than %d codes: use \"all\"", MaxAdHocPoPs)
	}
	pops := PoPList{}
	for _, p := range req.PoPs {
		p = strings.ToUpper(strings.TrimSpace(p))
		if !validPoPCode(p) {
			return req, bad("pops", p, "not a PoP code (1 to %d letters, digits, '-' or '_')", maxPoPCodeLen)
		}
		if !slices.Contains(pops, p) {
			pops = append(pops, p)
		}
	}
	req.PoPs = pops
	return req, nil
}

// validPoPCode reports whether p can be a PoP code: 1 to maxPoPCodeLen upper-case letters, digits, '-', '_'.
func validPoPCode(p string) bool {
	if p == "" || len(p) > maxPoPCodeLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// quoteValue formats a refused value for an error: a string quoted, cut to maxQuotedValue bytes with its length
// when longer.
func quoteValue(v any) string {
	s, ok := v.(string)
	switch {
	case !ok:
		return fmt.Sprint(v)
	case len(s) > maxQuotedValue:
		return fmt.Sprintf("%q... (%d bytes)", s[:maxQuotedValue], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// Start validates req (Check), enqueues one job per PoP and stores the record, as asked by by. Every PoP asked
// must have a live daemon; a nil PoP list asks every PoP that is up.
func (a *AdHoc) Start(ctx context.Context, req ProbeRequest, by Principal) (AdHocRecord, error) {
	req, err := a.Check(req)
	if err != nil {
		return AdHocRecord{}, err
	}
	up, err := a.Backend.UpPoPs(ctx)
	if err != nil {
		return AdHocRecord{}, fmt.Errorf("scheduler: ad-hoc probe: reading the fleet: %w", err)
	}
	pops := up
	if req.PoPs != nil {
		for _, p := range req.PoPs {
			if !slices.Contains(up, p) {
				return AdHocRecord{}, fmt.Errorf("%w: pops %q: no live daemon (up: %s)", ErrBadRequest, p, strings.Join(up, ","))
			}
		}
		pops = req.PoPs
	}
	if len(pops) == 0 {
		return AdHocRecord{}, fmt.Errorf("%w: %w", ErrBadRequest, ErrNoPoPs)
	}
	now := a.now()
	rec := AdHocRecord{ID: newID(), Target: req.Target, Kind: req.Kind, Count: req.Count, TimeoutMs: req.TimeoutMs, PoPs: pops,
		Token: by.Name, Account: by.Account, Created: now, Deadline: now.Add(cmp.Or(a.Timeout, DefaultAdHocTimeout))}
	reqJSON, _ := json.Marshal(rec)
	if err := a.Backend.PutAdHocProbe(ctx, storage.AdHocProbe{ID: rec.ID, Request: reqJSON, CreatedAt: now}, AdHocTTL); err != nil {
		return AdHocRecord{}, fmt.Errorf("scheduler: ad-hoc probe: storing the record: %w", err)
	}
	for _, pop := range pops {
		j := storage.Job{Round: rec.ID, Key: probed.AdHocKeyPrefix + rec.ID, Kind: rec.Kind, Target: rec.Target,
			Count: rec.Count, TimeoutMs: rec.TimeoutMs, Deadline: rec.Deadline}
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
		e, _ = triangulate.NewEngine(triangulate.ProductionConfig(nil)) // the fleet's configuration; valid
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
	p := principal(r)
	token := p.Name
	var req ProbeRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes))
	if err == nil {
		// Strict: unknown fields and known ones in another case ("tArget") are refused, as openapi.json does.
		err = strictjson.Unmarshal(body, &req)
	}
	if err == nil {
		req, err = a.AdHoc.Check(req) // refused before it costs quota or Redis
	} else {
		err = fmt.Errorf("ad-hoc probe request: %w", err)
	}
	if err != nil {
		a.countAdHoc("invalid")
		writeError(w, http.StatusBadRequest, 10002, err.Error())
		return
	}
	quota, _ := a.AdHoc.Backend.(QuotaStore)
	// Buckets are per token; two accounts may both name a token "ci", so the account is part of the bucket's name.
	ok, wait, err := a.Auth.Take(r.Context(), quota, p.Account+":"+token)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
		return
	}
	if !ok {
		a.countAdHoc("rate_limited")
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, 10429, fmt.Sprintf("ad-hoc probe quota of token %q exhausted; retry in %s", token, wait.Round(time.Millisecond)))
		return
	}
	rec, err := a.AdHoc.Start(r.Context(), req, p)
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

// getProbe reports an ad-hoc probe to its account's tokens (and operators'); another account's is not found.
func (a *API) getProbe(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, ok, err := a.AdHoc.Status(r.Context(), id)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, 10004, err.Error())
	case !ok || !principal(r).Sees(st.Account):
		writeError(w, http.StatusNotFound, 10007, fmt.Sprintf("ad-hoc probe %q: %v", id, errNotFound))
	default:
		writeJSON(w, http.StatusOK, st)
	}
}
