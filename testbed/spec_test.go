package testbed

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/geo"
)

func TestInvalidSpecs(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string // the exact error after "testdata/<file>: testbed: spec: "
		is   error  // for errors from geo, whose wording is geo's: errors.Is and a prefix instead
	}{
		{file: "invalid-unknown-field.yaml", want: "yaml: unmarshal errors:\n  line 5: field port not found in type testbed.HostSpec"},
		{file: "invalid-unknown-field.json", want: `json: unknown field "tpc"`},
		{file: "invalid-no-pops.yaml", want: "pops: at least one PoP is needed"},
		{file: "invalid-pop.yaml", want: `pops[1]: "XYZ" is not a PoP in the catalogue (IATA code, e.g. "FRA")`},
		{file: "invalid-region.yaml", want: "hosts[0] (api).region: ", is: geo.ErrUnknownRegion},
		{file: "invalid-region-syntax.yaml", want: "hosts[0] (api).region: ", is: geo.ErrRegionSyntax},
		{file: "invalid-two-locations.yaml", want: "hosts[0] (db): set exactly one of pop, region, or lat and lon (got 2)"},
		{file: "invalid-no-location.yaml", want: "hosts[0] (db): set exactly one of pop, region, or lat and lon (got 0)"},
		{file: "invalid-lat.yaml", want: "hosts[0] (pole).lat: 95 is outside [-90, 90]"},
		{file: "invalid-lat-only.yaml", want: "hosts[0] (half): lat and lon must both be set"},
		{file: "invalid-port.yaml", want: "hosts[0] (db).tcp[1]: port 70000 is outside 1-65535"},
		{file: "invalid-dup-port.yaml", want: "hosts[0] (web).http[0]: port 80 is already used by tcp"},
		{file: "invalid-name.yaml", want: `hosts[0].name: "DB_1" must be 1-32 lower-case letters, digits or '-' (not at the ends)`},
		{file: "invalid-dup-name.yaml", want: `hosts[0] (fra): node name "fra" is already used by pops[0]`},
		{file: "invalid-two-dns.yaml", want: "hosts[1] (ns2).dns: only one DNS server per testbed (ns1 has it)"},
		{file: "invalid-anycast-empty.yaml", want: "anycast[0] (edge).instances: at least one instance is needed"},
		{file: "invalid-geodns-host.yaml", want: `geodns[0].hosts[1]: "nope" is not a host of the spec`},
		{file: "invalid-geodns-no-dns.yaml", want: `geodns[0]: geo-DNS name "www" needs a host with dns: true`},
		{file: "invalid-alias-dup.yaml", want: `anycast[0] (edge).aliases[0]: "EC2.us-east-1.amazonaws.com." is already an alias`},
		{file: "invalid-alias-no-dns.yaml", want: "aliases need a host with dns: true"},
	} {
		t.Run(strings.TrimSuffix(tc.file, filepath.Ext(tc.file)), func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			_, err := LoadSpec(path)
			if err == nil {
				t.Fatal("no error")
			}
			prefix := path + ": testbed: spec: "
			switch {
			case tc.is != nil:
				if !errors.Is(err, tc.is) || !strings.HasPrefix(err.Error(), prefix+tc.want) {
					t.Errorf("error %q, want one starting %q wrapping %v", err, prefix+tc.want, tc.is)
				}
			case err.Error() != prefix+tc.want:
				t.Errorf("error\n %q\nwant\n %q", err, prefix+tc.want)
			}
		})
	}
}

func TestSpecs(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		s := DefaultSpec()
		p, err := s.resolve()
		if err != nil {
			t.Fatal(err)
		}
		var pops, hosts int
		regions := map[string]bool{}
		for _, n := range p.nodes {
			switch n.kind {
			case KindPoP:
				pops++
				pop, _ := geo.LookupPoP(n.name)
				regions[pop.Region] = true
			case KindHost:
				hosts++
			}
		}
		if pops < 24 || hosts < 10 {
			t.Errorf("default spec has %d PoPs and %d hosts, want >= 24 and >= 10", pops, hosts)
		}
		if len(regions) < 5 {
			t.Errorf("default spec's PoPs cover regions %v: want every continent", regions)
		}
		if len(p.anycast) != 1 || len(p.anycast[0].instances) < 3 || len(p.anycast[0].instances) > 5 {
			t.Errorf("default spec: anycast %+v, want one address with 3-5 instances", p.anycast)
		}
		if len(p.geodns) != 1 || p.dnsNode < 0 {
			t.Errorf("default spec: geo-DNS %+v with DNS node %d", p.geodns, p.dnsNode)
		}
		db := p.nodes[slicesIndex(p.nodes, "db")]
		fra, _ := geo.LookupPoP("FRA")
		if db.point != fra.Point || len(db.services.TCP) != 1 || db.services.TCP[0] != 5432 {
			t.Errorf("db: %+v, want TCP 5432 at Frankfurt %v", db, fra.Point)
		}
		tokyo := p.nodes[slicesIndex(p.nodes, "tokyo")]
		r, _ := geo.LookupRegion("gcp:asia-northeast1")
		if tokyo.point != r.Point {
			t.Errorf("tokyo at %v, want gcp:asia-northeast1's %v", tokyo.point, r.Point)
		}
	})
	t.Run("json", func(t *testing.T) {
		s, err := LoadSpec(filepath.Join("testdata", "valid.json"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.resolve()
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, len(p.nodes))
		for i, n := range p.nodes {
			names[i] = n.name
		}
		if got := strings.Join(names, " "); got != "FRA SYD db api spot edge-fra edge-syd" {
			t.Errorf("nodes %q", got)
		}
		api := p.nodes[slicesIndex(p.nodes, "api")]
		if api.services.ICMP == nil || *api.services.ICMP || api.city != "Ashburn" {
			t.Errorf("api: %+v", api)
		}
	})
}

func slicesIndex(nodes []planNode, name string) int {
	for i, n := range nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// TestAliases checks that a host's aliases resolve to it, inside and outside the zone, and that a bad or
// duplicate alias, or one without a DNS server, is refused naming the field.
func TestAliasesSpec(t *testing.T) {
	base := func() *Spec {
		return &Spec{Name: "alias", PoPs: []string{"FRA"}, Hosts: []HostSpec{
			{Name: "ns", Location: Location{PoP: "FRA"}, Services: Services{DNS: true}},
			{Name: "tokyo", Location: Location{Region: "gcp:asia-northeast1"}, Aliases: []string{"asia-northeast1-run.googleapis.com"}},
		}}
	}
	p, err := base().resolve()
	if err != nil {
		t.Fatal(err)
	}
	if i, ok := p.aliases["asia-northeast1-run.googleapis.com."]; !ok || p.nodes[i].name != "tokyo" {
		t.Errorf("aliases %v: want asia-northeast1-run.googleapis.com. -> tokyo", p.aliases)
	}
	for _, tt := range []struct {
		name string
		edit func(s *Spec)
		want string
	}{
		{"bad", func(s *Spec) { s.Hosts[1].Aliases = []string{"not a name"} }, `hosts[1] (tokyo).aliases[0]: "not a name" is not a domain name`},
		{"dup", func(s *Spec) { s.Hosts[1].Aliases = []string{"a.example", "A.example."} }, `hosts[1] (tokyo).aliases[1]: "A.example." is already an alias`},
		{"no_dns", func(s *Spec) { s.Hosts = s.Hosts[1:] }, "aliases need a host with dns: true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.edit(s)
			if _, err := s.resolve(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("resolve = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
