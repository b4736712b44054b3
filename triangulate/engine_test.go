package triangulate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

func newEngine(t testing.TB, mutate func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func pop(t testing.TB, code string) geo.PoP {
	t.Helper()
	p, ok := geo.LookupPoP(code)
	if !ok {
		t.Fatalf("PoP %s not in the catalogue", code)
	}
	return p
}

func pops(t testing.TB, codes ...string) []geo.PoP {
	t.Helper()
	out := make([]geo.PoP, len(codes))
	for i, c := range codes {
		out[i] = pop(t, c)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"negative_max_rtt", func(c *Config) { c.MaxRTTMs = -1 }, "MaxRTTMs = -1"},
		{"nan_tie", func(c *Config) { c.TieMs = math.NaN() }, "TieMs = NaN"},
		{"switch_rel_one", func(c *Config) { c.SwitchRel = 1 }, "SwitchRel = 1"},
		{"min_vps_zero", func(c *Config) { c.MinVPs = 0 }, "MinVPs = 0"},
		{"one_instance", func(c *Config) { c.MaxInstances = 1 }, "MaxInstances = 1"},
		{"grid_too_small", func(c *Config) { c.GridN = 2 }, "GridN = 2"},
		{"negative_outliers", func(c *Config) { c.MaxOutliers = -1 }, "MaxOutliers = -1"},
		{"calibration_scale_below_one", func(c *Config) { c.CalibrationScale = 0.9 }, "CalibrationScale = 0.9"},
		{"calibration_scale_nan", func(c *Config) { c.CalibrationScale = math.NaN() }, "CalibrationScale = NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			_, err := NewEngine(cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewEngine error = %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
}

func TestDecideRejectsInvalidMeasurements(t *testing.T) {
	fra := pop(t, "FRA").Point
	tests := []struct {
		name string
		m    Measurement
		want string
	}{
		{"negative_rtt", Measurement{VP: "FRA", Point: fra, RTTMs: -0.5}, `vp "FRA": rtt_ms = -0.5 is negative`},
		{"nan_rtt", Measurement{VP: "FRA", Point: fra, RTTMs: math.NaN()}, `vp "FRA": rtt_ms = NaN is not a finite number`},
		{"infinite_rtt", Measurement{VP: "FRA", Point: fra, RTTMs: math.Inf(1)}, `rtt_ms = +Inf is not a finite number`},
		{"absurd_rtt", Measurement{VP: "FRA", Point: fra, RTTMs: 90000}, `rtt_ms = 90000 is above the 5000 ms limit`},
		{"empty_vp", Measurement{Point: fra, RTTMs: 3}, `vp is empty`},
		{"bad_latitude", Measurement{VP: "X", Point: geo.Point{Lat: 91}, RTTMs: 3}, `vp "X": location (91, 0) is not a valid lat/lon`},
	}
	e := newEngine(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok := Measurement{VP: "LHR", Point: pop(t, "LHR").Point, RTTMs: 10}
			_, err := e.Decide(Input{Target: "198.18.0.1", Measurements: []Measurement{ok, tc.m}})
			if !errors.Is(err, ErrInvalidMeasurement) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `target "198.18.0.1"`) {
				t.Fatalf("error = %v, want ErrInvalidMeasurement with %q and the target", err, tc.want)
			}
		})
	}
	if _, err := e.Decide(Input{}); !errors.Is(err, ErrNoMeasurements) {
		t.Fatalf("empty input: error = %v, want ErrNoMeasurements", err)
	}
}

func TestDuplicateVPKeepsMinimum(t *testing.T) {
	e := newEngine(t, nil)
	fra, ams, lhr := pop(t, "FRA").Point, pop(t, "AMS").Point, pop(t, "LHR").Point
	r, err := e.Decide(Input{Measurements: []Measurement{
		{VP: "FRA", Point: fra, RTTMs: 9}, {VP: "AMS", Point: ams, RTTMs: 5}, {VP: "FRA", Point: fra, RTTMs: 3}, {VP: "LHR", Point: lhr, RTTMs: 11},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Best.PoP != "FRA" || r.Best.RTTMs != 3 || !r.Flags.Has(FlagDuplicateVP) || r.VPs != 3 {
		t.Fatalf("best %+v flags %v VPs %d, want FRA at 3 ms, duplicate flag, 3 VPs", r.Best, r.Flags, r.VPs)
	}
}

// TestHysteresis steps through decisions the way tailscale's netcheck tests do: each step's choice is the
// next step's previous.
func TestHysteresis(t *testing.T) {
	p := func(code string) geo.Point { return pop(t, code).Point }
	vec := func(rtts map[string]float64) []Measurement {
		var ms []Measurement
		for _, c := range []string{"AMS", "CDG", "FRA", "LHR", "MAD"} {
			if v, ok := rtts[c]; ok {
				ms = append(ms, Measurement{VP: c, Point: p(c), RTTMs: v})
			}
		}
		return ms
	}
	steps := []struct {
		name     string
		rtts     map[string]float64
		want     string
		wantFlag Flags
	}{
		{"first_lowest_wins", map[string]float64{"AMS": 12, "FRA": 10, "LHR": 15, "MAD": 30}, "FRA", 0},
		{"ams_slightly_better_keep_fra", map[string]float64{"AMS": 9.5, "FRA": 10, "LHR": 15, "MAD": 30}, "FRA", FlagKeptPrevious},
		{"ams_better_by_abs_not_rel_keep", map[string]float64{"AMS": 38, "FRA": 40, "LHR": 45, "MAD": 60}, "FRA", FlagKeptPrevious},
		{"ams_better_by_both_switch", map[string]float64{"AMS": 5, "FRA": 10, "LHR": 15, "MAD": 30}, "AMS", 0},
		{"tie_keeps_previous", map[string]float64{"AMS": 5.05, "CDG": 5, "FRA": 10, "LHR": 15}, "AMS", FlagTie},
		{"but_now_ams_gone", map[string]float64{"CDG": 5.05, "FRA": 10, "LHR": 5, "MAD": 30}, "CDG", FlagTie},
		{"lhr_much_better_switch", map[string]float64{"CDG": 20, "FRA": 25, "LHR": 2, "MAD": 30}, "LHR", 0},
	}
	e := newEngine(t, nil)
	prev := ""
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r, err := e.Decide(Input{Measurements: vec(s.rtts), Previous: prev})
			if err != nil {
				t.Fatal(err)
			}
			if r.Best.PoP != s.want || !r.Flags.Has(s.wantFlag) {
				t.Errorf("prev %q: best %s flags %v, want %s with %v", prev, r.Best.PoP, r.Flags, s.want, s.wantFlag)
			}
			if r.Confidence < 0 || r.Confidence > 1 {
				t.Errorf("confidence %v outside [0, 1]", r.Confidence)
			}
			if len(r.Candidates) == 0 || r.Candidates[0].RTTMs > r.Best.RTTMs {
				t.Errorf("candidates %v not ranked ahead of best %v", r.Candidates, r.Best)
			}
			prev = r.Best.PoP
		})
	}
	// Without a previous choice, ties go to the smallest id, whatever the input order.
	r, err := e.Decide(Input{Measurements: []Measurement{{VP: "LHR", Point: p("LHR"), RTTMs: 5}, {VP: "CDG", Point: p("CDG"), RTTMs: 5.05}, {VP: "AMS", Point: p("AMS"), RTTMs: 5.08}}})
	if err != nil || r.Best.PoP != "AMS" {
		t.Fatalf("tie without previous: best %v err %v, want AMS", r.Best, err)
	}
}

func TestConfidence(t *testing.T) {
	e := newEngine(t, nil)
	world := RandomPoPs(rand.New(rand.NewPCG(3, 4)), 40)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 50 {
		target := RandomPoint(rng)
		r, err := e.Decide(Input{Measurements: GenerateUnicast(rng, DefaultPhantomConfig(), world, target)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Confidence < 0 || r.Confidence > 1 {
			t.Fatalf("world %d: confidence %v outside [0, 1]", i, r.Confidence)
		}
	}
	// Co-located with a PoP and measured from many: confident. Two VPs a hair apart: not.
	fra := pop(t, "FRA")
	co, _ := e.Decide(Input{Measurements: GenerateUnicast(rng, PhantomConfig{Inflation: 1.5, BaseMs: 0.2}, append(pops(t, "AMS", "LHR", "CDG", "MAD", "WAW", "ARN", "FCO", "VIE"), fra), fra.Point)})
	close, _ := e.Decide(Input{Measurements: []Measurement{{VP: "AMS", Point: pop(t, "AMS").Point, RTTMs: 30}, {VP: "FRA", Point: fra.Point, RTTMs: 30.2}}})
	if co.Confidence < 0.9 || close.Confidence > 0.3 || co.Best.PoP != "FRA" {
		t.Fatalf("co-located confidence %v (best %s), close-call confidence %v", co.Confidence, co.Best.PoP, close.Confidence)
	}
}

// TestPhantomUnicast locates seeded phantom targets from 60 random PoPs of the catalogue: the fibre-bound
// region always holds the truth, and the estimate is close.
func TestPhantomUnicast(t *testing.T) {
	catalogue := geo.PoPs()
	rng := rand.New(rand.NewPCG(7, 8))
	e := newEngine(t, nil)
	var errs []float64
	for i := range 100 {
		perm := rng.Perm(len(catalogue))
		vps := make([]geo.PoP, 0, 60)
		for _, j := range perm[:60] {
			vps = append(vps, catalogue[j])
		}
		// The target is in another catalogue city (back ends live where PoPs do), up to ~50 km off.
		c := catalogue[perm[60]].Point
		target := geo.Point{Lat: c.Lat + rng.Float64()*0.8 - 0.4, Lon: c.Lon + rng.Float64()*0.8 - 0.4}
		r, err := e.Decide(Input{Measurements: GenerateUnicast(rng, DefaultPhantomConfig(), vps, target)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != placement.VerdictUnicast || !r.HasLoc || r.Status != placement.StatusSuccess {
			t.Fatalf("world %d: %v %v %v, want unicast with a location", i, r.Verdict, r.Status, r.Flags)
		}
		d := geo.DistanceKm(r.Location.Point, target)
		// The grid samples the region: allow one cell of the coarse pass beyond the reported radius.
		if d > r.Location.RadiusKm*1.1+50 {
			t.Errorf("world %d: truth %.0f km from the estimate, outside the region of radius %.0f km", i, d, r.Location.RadiusKm)
		}
		errs = append(errs, d)
	}
	med := percentile(errs, .5)
	t.Logf("phantom unicast (60 random catalogue PoPs, inflation 1.6): median error %.0f km, p90 %.0f km", med, percentile(errs, .9))
	if med > 500 {
		t.Errorf("median error %.0f km, want <= 500", med)
	}
}

func TestPhantomAnycast(t *testing.T) {
	catalogue := geo.PoPs()
	sites := map[string][]string{
		"two_continents":  {"FRA", "IAD"},
		"three":           {"FRA", "NRT", "GRU"},
		"five":            {"LHR", "SJC", "SIN", "JNB", "SYD"},
		"six_with_europe": {"AMS", "MAD", "ORD", "HKG", "SCL", "BOM"},
	}
	e := newEngine(t, nil)
	rng := rand.New(rand.NewPCG(9, 10))
	for name, codes := range sites {
		t.Run(name, func(t *testing.T) {
			var inst []geo.Point
			for _, c := range codes {
				inst = append(inst, pop(t, c).Point)
			}
			r, err := e.Decide(Input{Measurements: GenerateAnycast(rng, PhantomConfig{Inflation: 1.5, BaseMs: 0.3, JitterMs: 0.5}, catalogue, inst)})
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != placement.VerdictAnycast || r.Status != placement.StatusUnsupportedApplication || r.Verdict.Placeable() || r.HasLoc {
				t.Fatalf("verdict %v status %v loc %v, want anycast, unsupported, no location", r.Verdict, r.Status, r.HasLoc)
			}
			if n := len(r.Instances); n < len(codes)-1 || n > len(codes)+1 {
				t.Errorf("%d instances, want %d +- 1: %+v", n, len(codes), r.Instances)
			}
			// Every true site has an instance placed within 1000 km.
			for _, c := range codes {
				near := false
				for _, in := range r.Instances {
					near = near || geo.DistanceKm(in.Point, pop(t, c).Point) < 1000
				}
				if !near {
					t.Errorf("no instance within 1000 km of %s: %+v", c, r.Instances)
				}
			}
		})
	}
}

func TestMislocatedVantagePoint(t *testing.T) {
	catalogue := geo.PoPs()
	rng := rand.New(rand.NewPCG(11, 12))
	e := newEngine(t, nil)
	fra := pop(t, "FRA").Point
	ms := GenerateUnicast(rng, DefaultPhantomConfig(), catalogue, geo.Point{Lat: 50.2, Lon: 8.7})
	// AMS claims to be in Lima (as WonderProxy's La Ceiba claims Honduras).
	bad := Mislocate(ms, "AMS", geo.Point{Lat: -12.05, Lon: -77.04})
	r, err := e.Decide(Input{Measurements: bad})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != placement.VerdictUnicast || !r.Flags.Has(FlagSpeedOfLight) || len(r.Violations) != 1 || r.Violations[0].VP != "AMS" {
		t.Fatalf("verdict %v flags %v violations %+v, want unicast with AMS flagged", r.Verdict, r.Flags, r.Violations)
	}
	if d := geo.DistanceKm(r.Location.Point, fra); d > 300 {
		t.Errorf("estimate %.0f km from the target", d)
	}
	if notes := strings.Join(r.Notes(), "; "); !strings.Contains(notes, "vantage point AMS breaks the speed-of-light bound") {
		t.Errorf("notes %q do not name AMS", notes)
	}
	// Two liars are beyond MaxOutliers = 1: the engine must not call it unicast with confidence.
	worse := Mislocate(bad, "LHR", geo.Point{Lat: -33.9, Lon: 18.4})
	r, err = e.Decide(Input{Measurements: worse})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict == placement.VerdictUnicast && r.Confidence > 0.7 {
		t.Errorf("two mislocated VPs: %v with confidence %v", r.Verdict, r.Confidence)
	}
	t.Logf("two mislocated VPs: %v %v %+v", r.Verdict, r.Flags, r.Violations)
}

func TestTooFewVantagePoints(t *testing.T) {
	e := newEngine(t, nil)
	r, err := e.Decide(Input{Measurements: []Measurement{{VP: "FRA", Point: pop(t, "FRA").Point, RTTMs: 2}, {VP: "LHR", Point: pop(t, "LHR").Point, RTTMs: 12}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != placement.VerdictUnknown || !r.Flags.Has(FlagTooFew) || r.Best.PoP != "FRA" || r.Status != placement.StatusNone || r.Confidence > 0.5 {
		t.Fatalf("got %v %v best %v status %q confidence %v", r.Verdict, r.Flags, r.Best, r.Status, r.Confidence)
	}
}

// TestInconsistentDisksAreUnknown: three disks that meet pairwise but share no point cannot be one host
// measured correctly, and no single vantage point is to blame: the verdict is unknown, not unicast.
func TestInconsistentDisksAreUnknown(t *testing.T) {
	c := toVec(geo.Point{Lat: 10, Lon: 20})
	east, north := tangentBasis(c)
	const side = 2000.0 // km; the circumradius is side/sqrt(3) = 1155 km
	var ms []Measurement
	for i, a := range []float64{90, 210, 330} {
		x, y := math.Cos(a*math.Pi/180)*side/math.Sqrt(3), math.Sin(a*math.Pi/180)*side/math.Sqrt(3)
		p := offset(c, east, north, x, y).point()
		ms = append(ms, Measurement{VP: fmt.Sprintf("V%d", i), Point: p, RTTMs: geo.MinRTTMs(1050)})
	}
	e := newEngine(t, nil)
	r, err := e.Decide(Input{Measurements: ms})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != placement.VerdictUnknown || !r.Flags.Has(FlagInconsistent) || r.HasLoc || r.Status != placement.StatusNone || r.Confidence > 0.5 {
		t.Fatalf("verdict %v flags %v loc %v status %q confidence %v, want unknown/inconsistent", r.Verdict, r.Flags, r.HasLoc, r.Status, r.Confidence)
	}
	// Widen the disks to 1250 km and they share the centre: unicast, located there.
	for i := range ms {
		ms[i].RTTMs = geo.MinRTTMs(1250)
	}
	r, err = e.Decide(Input{Measurements: ms})
	if err != nil || r.Verdict != placement.VerdictUnicast || geo.DistanceKm(r.Location.Point, c.point()) > 150 {
		t.Fatalf("widened: %v %v at %v (err %v)", r.Verdict, r.Flags, r.Location, err)
	}
}

func TestDNSEvidence(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	ms := GenerateUnicast(rng, DefaultPhantomConfig(), pops(t, "FRA", "AMS", "LHR", "CDG", "IAD", "NRT"), pop(t, "FRA").Point)
	tests := []struct {
		name string
		dns  []DNSAnswer
		want placement.Verdict
		flag Flags
	}{
		{"same_answers", []DNSAnswer{{VP: "FRA", Addrs: []string{"192.0.2.1", "192.0.2.2"}}, {VP: "NRT", Addrs: []string{"192.0.2.2", "192.0.2.1"}}}, placement.VerdictUnicast, 0},
		{"round_robin_subsets", []DNSAnswer{{VP: "FRA", Addrs: []string{"192.0.2.1", "192.0.2.2"}}, {VP: "NRT", Addrs: []string{"192.0.2.2", "192.0.2.3"}}}, placement.VerdictUnicast, 0},
		{"geo_dns", []DNSAnswer{{VP: "FRA", Addrs: []string{"192.0.2.1"}}, {VP: "NRT", Addrs: []string{"198.51.100.7"}}}, placement.VerdictReplicated, FlagDNSReplicated},
		{"chaos_differs", []DNSAnswer{{VP: "FRA", ServerID: "fra1.ns"}, {VP: "NRT", ServerID: "nrt3.ns"}}, placement.VerdictAnycast, FlagDNSAnycast},
		{"chaos_same", []DNSAnswer{{VP: "FRA", ServerID: "ns1"}, {VP: "NRT", ServerID: "ns1"}}, placement.VerdictUnicast, 0},
	}
	e := newEngine(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := e.Decide(Input{Measurements: ms, DNS: tc.dns})
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != tc.want || !r.Flags.Has(tc.flag) {
				t.Fatalf("verdict %v flags %v, want %v with %v", r.Verdict, r.Flags, tc.want, tc.flag)
			}
			if tc.want != placement.VerdictUnicast && (r.Status != placement.StatusUnsupportedApplication || r.HasLoc) {
				t.Fatalf("status %v, location %v: a non-unicast target must be unsupported and unplaced", r.Status, r.HasLoc)
			}
		})
	}
}

// TestDNSEvidenceOverDisks: a geo-DNS name whose replicas are far apart also has disjoint disks (each PoP
// reached its nearest replica); the answer sets make it replicated, unless CHAOS answers say anycast.
func TestDNSEvidenceOverDisks(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	vps := pops(t, "FRA", "AMS", "LHR", "IAD", "ORD", "NRT", "SIN")
	ms := GenerateAnycast(rng, DefaultPhantomConfig(), vps, []geo.Point{pop(t, "FRA").Point, pop(t, "IAD").Point, pop(t, "SIN").Point})
	e := newEngine(t, nil)
	r, err := e.Decide(Input{Measurements: ms})
	if err != nil || r.Verdict != placement.VerdictAnycast {
		t.Fatalf("no DNS evidence: verdict %v (err %v), want anycast from the disks", r.Verdict, err)
	}
	geoDNS := []DNSAnswer{{VP: "FRA", Addrs: []string{"198.18.0.1"}}, {VP: "IAD", Addrs: []string{"198.18.0.2"}}, {VP: "SIN", Addrs: []string{"198.18.0.3"}}}
	r, err = e.Decide(Input{Measurements: ms, DNS: geoDNS})
	if err != nil || r.Verdict != placement.VerdictReplicated || !r.Flags.Has(FlagDNSReplicated) || r.Status != placement.StatusUnsupportedApplication {
		t.Fatalf("geo-DNS answers: verdict %v flags %v status %v (err %v), want replicated, unsupported", r.Verdict, r.Flags, r.Status, err)
	}
	if len(r.Instances) < 2 {
		t.Errorf("replicas located: %v, want the disks' instances kept", r.Instances)
	}
	geoDNS[0].ServerID, geoDNS[1].ServerID = "fra1", "iad1"
	r, err = e.Decide(Input{Measurements: ms, DNS: geoDNS})
	if err != nil || r.Verdict != placement.VerdictAnycast || !r.Flags.Has(FlagDNSAnycast|FlagDNSReplicated) {
		t.Fatalf("geo-DNS and CHAOS answers: verdict %v flags %v (err %v), want anycast", r.Verdict, r.Flags, err)
	}
}

func TestDecideRegion(t *testing.T) {
	region, err := geo.LookupRegion("aws:eu-central-1")
	if err != nil {
		t.Fatal(err)
	}
	dist := func(a, b geo.Point) float64 { return 1 + geo.MinRTTMs(geo.DistanceKm(a, b))*2 }
	e := newEngine(t, func(c *Config) { c.Model = dist })
	list := pops(t, "AMS", "FRA", "LHR", "MAD", "NRT", "IAD")
	r, err := e.DecideRegion(region.Point, list, Input{Target: region.ID})
	if err != nil {
		t.Fatal(err)
	}
	if r.Best.PoP != "FRA" || !r.Flags.Has(FlagEstimated) || r.Location.Point != region.Point || r.Verdict != placement.VerdictUnicast || r.Confidence > EstimatedConfidence {
		t.Fatalf("model decision %+v flags %v conf %v, want FRA estimated at the region", r.Best, r.Flags, r.Confidence)
	}
	if len(r.Candidates) != len(list) || r.Candidates[len(r.Candidates)-1].PoP != "NRT" {
		t.Fatalf("candidates %v", r.Candidates)
	}
	// Measurements to the region's endpoint win over the model.
	ms := []Measurement{{VP: "AMS", Point: pop(t, "AMS").Point, RTTMs: 1.2}, {VP: "FRA", Point: pop(t, "FRA").Point, RTTMs: 7}, {VP: "LHR", Point: pop(t, "LHR").Point, RTTMs: 8}}
	r, err = e.DecideRegion(region.Point, list, Input{Measurements: ms})
	if err != nil || r.Best.PoP != "AMS" || r.Flags.Has(FlagEstimated) || !r.Flags.Has(FlagPriorMismatch) {
		t.Fatalf("measured decision %+v flags %v err %v, want AMS measured, away from Frankfurt", r.Best, r.Flags, err)
	}
	ms[0].RTTMs, ms[1].RTTMs = 7, 1.2 // now next to Frankfurt, as configured
	if r, err = e.DecideRegion(region.Point, list, Input{Measurements: ms}); err != nil || r.Best.PoP != "FRA" || r.Flags.Has(FlagPriorMismatch) {
		t.Fatalf("measured decision %+v flags %v err %v, want FRA, no mismatch", r.Best, r.Flags, err)
	}
	if _, err := e.DecideRegion(region.Point, nil, Input{}); !errors.Is(err, ErrNoMeasurements) {
		t.Fatalf("no PoPs: err %v", err)
	}
	// The default model (WonderProxy-fitted) gives a sane choice too.
	def := newEngine(t, nil)
	r, err = def.DecideRegion(region.Point, geo.PoPs(), Input{})
	if err != nil || geo.DistanceKm(pop(t, r.Best.PoP).Point, region.Point) > 500 {
		t.Fatalf("default model picked %v (err %v), more than 500 km from Frankfurt", r.Best, err)
	}
}

func TestResultCloneDoesNotAlias(t *testing.T) {
	e := newEngine(t, nil)
	rng := rand.New(rand.NewPCG(15, 16))
	a, _ := e.Decide(Input{Measurements: GenerateUnicast(rng, DefaultPhantomConfig(), pops(t, "FRA", "AMS", "LHR", "IAD"), pop(t, "IAD").Point)})
	kept := a.Clone()
	first := kept.Candidates[0]
	if _, err := e.Decide(Input{Measurements: GenerateUnicast(rng, DefaultPhantomConfig(), pops(t, "FRA", "AMS", "LHR", "IAD"), pop(t, "FRA").Point)}); err != nil {
		t.Fatal(err)
	}
	if kept.Candidates[0] != first || first.PoP != "IAD" {
		t.Fatalf("clone changed by the next decision: %v", kept.Candidates)
	}
}

func TestResultApply(t *testing.T) {
	e := newEngine(t, nil)
	rng := rand.New(rand.NewPCG(17, 18))
	r, err := e.Decide(Input{Measurements: GenerateUnicast(rng, DefaultPhantomConfig(), pops(t, "FRA", "AMS", "LHR", "IAD"), pop(t, "AMS").Point)})
	if err != nil {
		t.Fatal(err)
	}
	d := placement.Decision{App: "a", Mode: placement.ModeHost, Version: 3}
	r.Apply(&d)
	if d.BestPoP != "AMS" || d.Verdict != placement.VerdictUnicast || d.Status != placement.StatusSuccess || len(d.Candidates) != 4 || d.App != "a" || d.Version != 3 {
		t.Fatalf("decision %+v", d)
	}
	any, err := e.Decide(Input{Measurements: GenerateAnycast(rng, DefaultPhantomConfig(), geo.PoPs(), []geo.Point{pop(t, "AMS").Point, pop(t, "NRT").Point})})
	if err != nil {
		t.Fatal(err)
	}
	any.Apply(&d)
	if d.BestPoP != "" || d.Status != placement.StatusUnsupportedApplication || d.Verdict != placement.VerdictAnycast {
		t.Fatalf("anycast decision %+v", d)
	}
}

func TestFlagsString(t *testing.T) {
	if s := (FlagTie | FlagSpeedOfLight).String(); s != "tie,speed-of-light" {
		t.Fatalf("String = %q", s)
	}
	if len(flagNames) != 12 || FlagPriorFar != 1<<11 {
		t.Fatal("flagNames out of step with the flag constants")
	}
}

// TestVPCacheResetKeepsCall: when the vantage point cache is full, a call with new ids must still merge its
// own duplicates (the reset may not forget the ids seen earlier in the same call).
func TestVPCacheResetKeepsCall(t *testing.T) {
	e := newEngine(t, nil)
	p := geo.Point{Lat: 50, Lon: 8}
	fill := make([]Measurement, maxVPCache-1)
	for i := range fill {
		fill[i] = Measurement{VP: fmt.Sprintf("old-%d", i), Point: p, RTTMs: 10}
	}
	if _, err := e.normalize(fill); err != nil {
		t.Fatal(err)
	}
	in := []Measurement{
		{VP: "new-a", Point: p, RTTMs: 20},
		{VP: "new-b", Point: p, RTTMs: 30}, // the cache is full here
		{VP: "new-a", Point: p, RTTMs: 5},
	}
	dup, err := e.normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if !dup || len(e.ms) != 2 {
		t.Fatalf("normalize across a cache reset: dup %v, %d measurements %v; want the two new-a merged", dup, len(e.ms), e.ms)
	}
	if i, ok := e.lookup("new-a"); !ok || e.ms[i].RTTMs != 5 {
		t.Errorf("lookup(new-a) = %d, %v; want the merged minimum 5 ms", i, ok)
	}
}

// TestPriorIsANoteNeverTheVerdict: a prior inside the measured region says nothing; one far outside it (a
// GeoIP database placing a Frankfurt server in Sydney) becomes a note and changes neither the verdict, the
// best PoP nor the location; an anycast target's prior is not judged (it has no one location).
func TestPriorIsANoteNeverTheVerdict(t *testing.T) {
	model := geo.DefaultModel()
	target := geo.Point{Lat: 50.11, Lon: 8.68}
	var ms []Measurement
	for _, code := range []string{"FRA", "AMS", "CDG", "LHR", "WAW", "MAD", "IAD", "SIN", "NRT", "GRU"} {
		p, _ := geo.LookupPoP(code)
		ms = append(ms, Measurement{VP: code, Point: p.Point, RTTMs: model.RTTMs(p.Point, target)})
	}
	e, err := NewEngine(ProductionConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	base, err := e.Decide(Input{Measurements: ms})
	if err != nil {
		t.Fatal(err)
	}
	base = base.Clone()
	for _, tc := range []struct {
		name  string
		prior Prior
		far   bool
	}{
		{"prior_in_frankfurt", Prior{Point: geo.Point{Lat: 50.1, Lon: 8.6}, AccuracyKm: 20, Source: "GeoIP"}, false},
		{"prior_in_cologne_just_outside", Prior{Point: geo.Point{Lat: 50.94, Lon: 6.96}, Source: "GeoIP"}, false},
		{"prior_in_paris", Prior{Point: geo.Point{Lat: 48.86, Lon: 2.35}, Source: "GeoIP"}, true},
		{"prior_in_sydney", Prior{Point: geo.Point{Lat: -33.87, Lon: 151.21}, AccuracyKm: 50, Source: "GeoIP"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prior := tc.prior
			r, err := e.Decide(Input{Measurements: ms, Prior: &prior})
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != base.Verdict || r.Best != base.Best || r.Location != base.Location || r.Confidence != base.Confidence {
				t.Errorf("the prior changed the decision: %v %v %v %v; without it %v %v %v %v", r.Verdict, r.Best, r.Location, r.Confidence,
					base.Verdict, base.Best, base.Location, base.Confidence)
			}
			if r.Flags.Has(FlagPriorFar) != tc.far {
				t.Errorf("flags %v; want prior-far %v (location %v)", r.Flags, tc.far, r.Location)
			}
			if tc.far && (r.PriorOffKm < 300 || !strings.Contains(strings.Join(r.Notes(), ";"), "GeoIP places the target")) {
				t.Errorf("notes %q, off %.0f km", r.Notes(), r.PriorOffKm)
			}
		})
	}
}

// TestIterateFindsInstanceBehindALargeDisk: instances in Frankfurt, Tokyo and Paris. Brussels sees the Paris
// one through a disk that overlaps Frankfurt's, so iGreedy's set of disjoint disks holds two; collapsed to
// Frankfurt, that instance does not explain Brussels' disk, and the search of the rest finds the third.
func TestIterateFindsInstanceBehindALargeDisk(t *testing.T) {
	pt := func(lat, lon float64) geo.Point { return geo.Point{Lat: lat, Lon: lon} }
	fra, bru := pt(50.03, 8.56), pt(50.85, 4.35)
	ms := []Measurement{
		{VP: "FRA", Point: fra, RTTMs: 0.5},
		{VP: "MZ", Point: pt(49.99, 8.27), RTTMs: 0.6},
		{VP: "NRT", Point: pt(35.77, 140.39), RTTMs: 0.5},
		{VP: "KIX", Point: pt(34.43, 135.23), RTTMs: 5.5}, // 492 km from NRT: served by the Tokyo instance
		{VP: "BRU", Point: bru, RTTMs: 3.0},
		{VP: "IAD", Point: pt(38.95, -77.45), RTTMs: 70},
	}
	// The premise: Brussels' fibre disk reaches Frankfurt's, and does not hold Frankfurt.
	if d := geo.DistanceKm(fra, bru); !(d < geo.MaxDistanceKm(3.0)+geo.MaxDistanceKm(0.5)) || !(d > geo.MaxDistanceKm(3.0)) {
		t.Fatalf("Brussels-Frankfurt %.0f km: the disks do not overlap as the test needs", d)
	}
	for _, tc := range []struct {
		iterate bool
		want    int
	}{{false, 2}, {true, 3}} {
		cfg := DefaultConfig()
		cfg.IterateInstances = tc.iterate
		e, err := NewEngine(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.Decide(Input{Measurements: ms})
		if err != nil {
			t.Fatal(err)
		}
		var vps []string
		for _, in := range r.Instances {
			vps = append(vps, in.VP+":"+in.City)
			if in.City == "" || in.RadiusKm <= 0 {
				t.Errorf("iterate %v: instance %+v without a city or a radius", tc.iterate, in)
			}
		}
		if r.Verdict != placement.VerdictAnycast || len(r.Instances) != tc.want {
			t.Errorf("iterate %v: %v with instances %v; want anycast with %d", tc.iterate, r.Verdict, vps, tc.want)
		}
		if tc.iterate && (len(r.Instances) != 3 || r.Instances[2].VP != "BRU" || geo.DistanceKm(r.Instances[2].Point, bru) > geo.MaxDistanceKm(3.0)) {
			t.Errorf("the third instance %v: want one in Brussels' disk", vps)
		}
		t.Logf("iterate %v: %v", tc.iterate, vps)
	}
}
