package demo

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

func TestCheckRoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		euid int
		want error
	}{
		{"root", 0, nil},
		{"user", 1000, ErrNotRoot},
		{"nobody", 65534, ErrNotRoot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckRoot(tc.euid); !errors.Is(err, tc.want) {
				t.Fatalf("CheckRoot(%d) = %v, want %v", tc.euid, err, tc.want)
			}
		})
	}
	if strings.Contains(ErrNotRoot.Error(), "\n") {
		t.Errorf("the not-root message is not one line: %q", ErrNotRoot)
	}
}

// TestSpec checks the demo's WAN: at least 24 PoPs on every inhabited continent, the showcase's hosts, and the
// database's port left to the demo's own server.
func TestSpec(t *testing.T) {
	s := Spec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(s.PoPs) < 24 {
		t.Errorf("%d PoPs, want at least 24", len(s.PoPs))
	}
	regions := map[string]bool{}
	for _, c := range s.PoPs {
		p, ok := geo.LookupPoP(c)
		if !ok {
			t.Fatalf("PoP %s is not in the catalogue", c)
		}
		regions[p.Region] = true
	}
	for _, r := range []string{"Europe", "North America", "Latin America & the Caribbean", "Africa", "Asia", "Oceania"} {
		if !regions[r] {
			t.Errorf("no PoP in %s (regions %v)", r, regions)
		}
	}
	if !slices.Contains(s.PoPs, Ingress) {
		t.Errorf("the ingress PoP %s is not in the spec", Ingress)
	}
	hosts := map[string]bool{}
	for _, h := range s.Hosts {
		hosts[h.Name] = true
		if h.Name == "db" && slices.Contains(h.TCP, DBPort) {
			t.Errorf("db still has the testbed's listener on %d: %v", DBPort, h.TCP)
		}
	}
	for _, h := range []string{"db", "api", "tokyo", "ns", "web-eu", "web-us", "web-ap"} {
		if !hosts[h] {
			t.Errorf("no host %s", h)
		}
	}
	if len(s.Anycast) == 0 || len(s.GeoDNS) == 0 {
		t.Errorf("want an anycast address and a geo-DNS name: %d, %d", len(s.Anycast), len(s.GeoDNS))
	}
}

// TestScenariosParse checks that every showcase wrangler.toml parses to the intended placement.
func TestScenariosParse(t *testing.T) {
	for _, s := range Scenarios {
		t.Run(s.App, func(t *testing.T) {
			c, err := placement.ParseWranglerTOML("wrangler.toml", []byte(s.wrangler("vantage.test")))
			if err != nil {
				t.Fatal(err)
			}
			if c.App != s.App || c.Mode != s.Mode || c.Target() != s.target("vantage.test") {
				t.Errorf("parsed %+v, want app %s mode %s target %s", c, s.App, s.Mode, s.target("vantage.test"))
			}
		})
	}
}

// TestNearestPoP checks the emulator's nearest PoP of the demo's hosts (the truth TestDemoOnce and the e2e
// placement tests compare decisions with): in their own city, or the PoP nearest their region.
func TestNearestPoP(t *testing.T) {
	spec := Spec()
	for _, tc := range []struct{ host, want string }{
		{"db", "FRA"},       // pop: FRA
		{"mumbai", "BOM"},   // pop: BOM
		{"api", "IAD"},      // aws:us-east-1, Ashburn
		{"tokyo", "NRT"},    // gcp:asia-northeast1
		{"ns", "LHR"},       // aws:eu-west-1, Dublin
		{"saopaulo", "GRU"}, // aws:sa-east-1
	} {
		t.Run(tc.host, func(t *testing.T) {
			n, err := NearestPoP(spec, tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if n.PoP != tc.want || n.Next == "" || n.Next == n.PoP || n.NextMs < n.RTTMs {
				t.Errorf("NearestPoP(%s) = %+v, want %s, and a slower runner-up", tc.host, n, tc.want)
			}
		})
	}
	if _, err := NearestPoP(spec, "nope"); err == nil {
		t.Error("NearestPoP of a host not in the spec: no error")
	}
}
