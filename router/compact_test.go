package router

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// refPoPs are the PoP codes of the randomized decisions; "B AD" is not a valid code.
var refPoPs = []string{"LHR", "FRA", "AMS", "CDG", "SIN", "HKG", "NRT", "EWR", "IAD", "SYD", "MEL", "GRU", "B AD"}

// refEntry is one decision as scanned, dropped when the test forced its fingerprint onto another application's.
type refEntry struct {
	d       placement.Decision
	dropped bool
}

// reference answers Place from the decisions as scanned, with maps and the rule written out plainly: what the
// compact snapshot must reproduce.
type reference struct {
	cfg   Config
	now   time.Time
	apps  map[string]placement.Decision
	fleet map[string]bool // nil: no fleet loaded (every PoP available)
}

func newReference(cfg Config, now time.Time, entries []refEntry, fleet []storage.PoPState) *reference {
	ref := &reference{cfg: cfg, now: now, apps: map[string]placement.Decision{}}
	for _, e := range entries {
		d := e.d
		if e.dropped || d.App == "" {
			continue
		}
		if d.Status == placement.StatusSuccess && d.Verdict != placement.VerdictAnycast &&
			d.Verdict != placement.VerdictReplicated && d.BestPoP != "" && !validPoP(d.BestPoP) {
			continue // a bad best PoP: skipped
		}
		if prev, ok := ref.apps[d.App]; !ok || d.Version >= prev.Version {
			ref.apps[d.App] = d
		}
	}
	if fleet != nil {
		ref.fleet = map[string]bool{}
		for _, st := range fleet {
			ref.fleet[st.PoP] = st.Up && !st.Drained
		}
	}
	return ref
}

func (ref *reference) available(pop string) bool {
	return len(ref.fleet) == 0 || ref.fleet[pop]
}

func refLocal(ingress string, reason Reason) Result {
	return Result{ExecPoP: ingress, Header: "local-" + ingress, Reason: reason}
}

func refRemote(pop string, reason Reason) Result {
	return Result{ExecPoP: pop, Header: "remote-" + pop, Reason: reason, Routed: true}
}

// place is the rule: the best PoP when available, else the first candidate within the failover budget that is
// available (the ingress counts as available), else the ingress.
func (ref *reference) place(app, ingress string) Result {
	d, ok := ref.apps[app]
	switch {
	case !ok:
		return refLocal(ingress, ReasonNoDecision)
	case !d.ExpiresAt.IsZero() && !d.ExpiresAt.After(ref.now):
		return refLocal(ingress, ReasonStaleDecision)
	case d.Status != placement.StatusSuccess:
		return refLocal(ingress, ReasonStatus)
	case d.Verdict == placement.VerdictAnycast || d.Verdict == placement.VerdictReplicated:
		return refLocal(ingress, ReasonVerdict)
	case d.BestPoP == "":
		return refLocal(ingress, ReasonNoDecision)
	case d.BestPoP == ingress:
		return refLocal(ingress, ReasonIngressBest)
	case ref.available(d.BestPoP):
		return refRemote(d.BestPoP, ReasonRemote)
	}
	bestMs := -1.0
	for _, c := range d.Candidates {
		if c.PoP == d.BestPoP {
			bestMs = c.RTTMs
			break
		}
	}
	if bestMs < 0 {
		return refLocal(ingress, ReasonUnavailable)
	}
	kept := []string{d.BestPoP}
	for _, c := range d.Candidates {
		if len(kept) >= ref.cfg.MaxCandidates {
			break
		}
		if c.PoP == d.BestPoP || c.RTTMs < 0 || !validPoP(c.PoP) {
			continue
		}
		failover := c.RTTMs <= bestMs+ref.cfg.FailoverExtraMs || c.RTTMs <= bestMs*ref.cfg.FailoverRatio
		spread := c.RTTMs <= bestMs+ref.cfg.SpreadEpsilonMs
		dup := false
		for _, k := range kept {
			dup = dup || k == c.PoP
		}
		if dup || !failover && !spread {
			continue
		}
		kept = append(kept, c.PoP)
		if !failover {
			continue
		}
		if c.PoP == ingress {
			return refLocal(ingress, ReasonFailover)
		}
		if ref.available(c.PoP) {
			return refRemote(c.PoP, ReasonFailover)
		}
	}
	return refLocal(ingress, ReasonUnavailable)
}

// randomEntries returns n decisions over apps "app-0".."app-(apps-1)" (so some appear twice, with random
// versions), with every class, expiry, candidate list and bad code the builder meets. RTTs are whole ms and
// expiries far from the expiry field's 1.024 s steps, so the plain rule needs no rounding.
func randomEntries(rng *rand.Rand, n, apps int, now time.Time) []refEntry {
	pop := func() string { return refPoPs[rng.IntN(len(refPoPs))] }
	statuses := []placement.Status{placement.StatusSuccess, placement.StatusSuccess, placement.StatusSuccess, placement.StatusInsufficientInvocations, placement.StatusNoValidHosts}
	verdicts := []placement.Verdict{placement.VerdictUnicast, placement.VerdictUnicast, placement.VerdictUnknown, placement.VerdictAnycast, placement.VerdictReplicated}
	expiries := []time.Duration{0, 0, 0, -time.Hour, -5 * time.Second, 10 * time.Second, 20 * time.Minute, 3 * time.Hour}
	out := make([]refEntry, 0, n)
	for range n {
		d := placement.Decision{App: fmt.Sprintf("app-%d", rng.IntN(apps)), Mode: placement.ModeHost,
			Status: statuses[rng.IntN(len(statuses))], Verdict: verdicts[rng.IntN(len(verdicts))],
			Version: rng.Int64N(4)}
		if rng.IntN(20) > 0 {
			d.BestPoP = pop()
		}
		if e := expiries[rng.IntN(len(expiries))]; e != 0 {
			d.ExpiresAt = now.Add(e)
		}
		for range rng.IntN(9) {
			c := placement.Candidate{PoP: pop(), RTTMs: float64(rng.IntN(40))}
			if rng.IntN(30) == 0 {
				c.RTTMs = -1
			}
			d.Candidates = append(d.Candidates, c)
		}
		if d.BestPoP != "" && rng.IntN(6) > 0 { // usually the best is among the candidates, with the least RTT
			at := rng.IntN(len(d.Candidates) + 1)
			d.Candidates = append(d.Candidates[:at], append([]placement.Candidate{{PoP: d.BestPoP, RTTMs: float64(rng.IntN(20))}}, d.Candidates[at:]...)...)
		}
		out = append(out, refEntry{d: d})
	}
	return out
}

// randomFleet returns nil (no fleet) or a random state for each valid PoP, some absent.
func randomFleet(rng *rand.Rand) []storage.PoPState {
	if rng.IntN(4) == 0 {
		return nil
	}
	var codes []string
	for _, p := range refPoPs[:len(refPoPs)-1] {
		switch rng.IntN(6) {
		case 0:
			codes = append(codes, p+"-")
		case 1:
			codes = append(codes, p+"~")
		case 2: // absent: no heartbeat
		default:
			codes = append(codes, p)
		}
	}
	return pops(codes...)
}

// buildRandom builds a snapshot of entries into r with the seams set by mod, forcing every collide-th entry's
// fingerprint onto the entry before it (0: none) when that entry is of another application.
func buildRandom(t *testing.T, r *Router, entries []refEntry, collide int, mod func(*builder)) *builder {
	t.Helper()
	b := newBuilder(r, nil, r.now())
	if mod != nil {
		mod(b)
	}
	for i := range entries {
		n := len(b.items)
		b.add(entries[i].d)
		if collide > 0 && i%collide == collide-1 && len(b.items) == n+1 && n > 0 && entries[i-1].d.App != entries[i].d.App &&
			b.items[n-1].fp == fingerprint(r.seed, entries[i-1].d.App) {
			b.items[n].fp = b.items[n-1].fp // scanned later: the builder must skip it
			entries[i].dropped = true
		}
	}
	r.storeSnapshot(b.finish(r.now()))
	r.contactMs.Store(r.now().UnixMilli())
	r.clockMs.Store(r.now().UnixMilli())
	return b
}

// TestCompactSnapshotMatchesReference: over randomized decisions (duplicates, every class, expiries, bad
// codes, forced fingerprint collisions) and fleets, Place and Route (no baseline, no spreading) answer exactly
// what a plain map of the decisions and the rule written out give, for every application and absent ones;
// also when the profiles overflow into the side map.
func TestCompactSnapshotMatchesReference(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ingresses := []string{"EWR", "LHR", "XYZ", "FRA"}
	for round := range 12 {
		seed := uint64(round)
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			r := newTestRouter(t, noSource{}, func(c *Config) {
				c.Now = func() time.Time { return now }
				c.BaselineFraction, c.SpreadAboveRPS = 0, 0
				c.MaxCandidates = 1 + rng.IntN(maxCandidatesLimit)
			})
			fleet := randomFleet(rng)
			r.setFleet(fleet)
			entries := randomEntries(rng, 3000, 2000, now)
			var mod func(*builder)
			if round%3 == 2 {
				mod = func(b *builder) { b.maxProfiles = 5 } // most applications in the side map
			}
			b := buildRandom(t, r, entries, 97, mod)
			ref := newReference(r.cfg, now, entries, fleet)
			if got := r.snapshot().apps; got != len(ref.apps) {
				t.Errorf("snapshot holds %d apps, the reference %d", got, len(ref.apps))
			}
			if mod != nil && len(r.snapshot().overflow) == 0 {
				t.Fatal("no profile in the side map: the overflow path is not exercised")
			}
			collided := 0
			for _, e := range entries {
				if e.dropped {
					collided++
				}
			}
			if collided == 0 || b.skipped < collided {
				t.Fatalf("%d forced collisions, %d skipped", collided, b.skipped)
			}
			checked := 0
			for i := range 2500 { // 2,000 possibly present, 500 absent
				app := fmt.Sprintf("app-%d", i)
				for _, in := range ingresses {
					want := ref.place(app, in)
					if got := r.Place(app, in); got != want {
						t.Fatalf("Place(%q, %q) = %+v, want %+v (decision %+v)", app, in, got, want, ref.apps[app])
					}
					if got := r.Route(app, in, "req", KindFetch); got != want {
						t.Fatalf("Route(%q, %q) = %+v, want %+v (decision %+v)", app, in, got, want, ref.apps[app])
					}
					checked++
				}
			}
			t.Logf("%d apps, %d profiles, %d in the side map, %d forced collisions, %d answers checked", r.snapshot().apps, len(r.snapshot().profiles)/2, len(r.snapshot().overflow), collided, checked)
		})
	}
}

// TestTagCollisionRedrawsSalt: with the tags cut to 6 bits (a test seam; production tags have 32), an
// application's probe run meets an equal tag before its own slot in most builds: the builder draws another
// salt until none does, and every application still gets its own answer.
func TestTagCollisionRedrawsSalt(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for try := range 50 {
		rng := rand.New(rand.NewPCG(uint64(try), 9))
		r := newTestRouter(t, noSource{}, func(c *Config) {
			c.Now = func() time.Time { return now }
			c.BaselineFraction, c.SpreadAboveRPS = 0, 0
		})
		var entries []refEntry
		for i := range 40 {
			best := refPoPs[rng.IntN(len(refPoPs)-1)]
			entries = append(entries, refEntry{d: dec(fmt.Sprintf("app-%d", i), best, best+":10")})
		}
		b := buildRandom(t, r, entries, 0, func(b *builder) { b.tagMask = 0x3F << 58 })
		if b.retagged == 0 {
			continue
		}
		ref := newReference(r.cfg, now, entries, nil)
		for i := range 40 { // present applications only: an absent one matches a 6-bit tag too often
			app := fmt.Sprintf("app-%d", i)
			if got, want := r.Place(app, "EWR"), ref.place(app, "EWR"); got != want {
				t.Fatalf("after %d salts redrawn: Place(%q) = %+v, want %+v", b.retagged, app, got, want)
			}
		}
		t.Logf("build %d: %d salts redrawn", try, b.retagged)
		return
	}
	t.Fatal("no build of 40 applications met a 6-bit tag collision in 50 tries")
}
