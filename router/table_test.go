package router

import "testing"

// TestGeneration checks that every change of what Route reads (a snapshot, a fleet, an ingress) changes the
// generation, and that Place counts no route.
func TestGeneration(t *testing.T) {
	r := newTestRouter(t, noSource{}, nil)
	g := r.Generation()
	for _, step := range []struct {
		name string
		do   func()
	}{
		{"snapshot", func() { install(t, r, dec("api", "LHR", "LHR:10")) }},
		{"fleet", func() { r.setFleet(pops("LHR-")) }},
		{"ingress", func() {
			if err := r.setIngress("EWR"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		step.do()
		if n := r.Generation(); n == g {
			t.Errorf("%s: generation still %d", step.name, n)
		} else {
			g = n
		}
	}
	if got := r.Place("api", "EWR"); got != (Result{"EWR", "local-EWR", ReasonUnavailable, false}) {
		t.Errorf("Place with the best PoP down = %+v", got)
	}
	for reason := range NumReasons {
		if n := r.m.routes[reason].load(); n != 0 {
			t.Errorf("Place counted %d routes with reason %v", n, reason)
		}
	}
}
