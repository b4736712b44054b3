package testbed

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/miekg/dns"
	"gopkg.in/yaml.v3"

	"github.com/vantage-edge/vantage/geo"
)

// Spec describes a testbed: the PoPs, the target hosts with their services, the anycast addresses and the
// geo-DNS names. Coordinates are never typed in for PoPs and regions: they come from geo's catalogues.
type Spec struct {
	Name    string        `yaml:"name" json:"name"`       // label shown by `vantage testbed` and in the state file
	Zone    string        `yaml:"zone" json:"zone"`       // DNS zone of the node names; default DefaultZone
	PoPs    []string      `yaml:"pops" json:"pops"`       // IATA codes (geo.LookupPoP); node name = the code
	Hosts   []HostSpec    `yaml:"hosts" json:"hosts"`     // target hosts, one namespace each
	Anycast []AnycastSpec `yaml:"anycast" json:"anycast"` // addresses served from several namespaces
	GeoDNS  []GeoDNSSpec  `yaml:"geodns" json:"geodns"`   // names answered with the replica nearest the asker
}

// DefaultZone is the DNS zone of the testbed's node names when the spec sets none.
const DefaultZone = "vantage.test."

// Location places a host or an anycast instance: exactly one of PoP, Region or Lat+Lon.
type Location struct {
	PoP    string   `yaml:"pop,omitempty" json:"pop,omitempty"`       // in this PoP's city, by IATA code
	Region string   `yaml:"region,omitempty" json:"region,omitempty"` // at a cloud region, e.g. "aws:eu-central-1"
	Lat    *float64 `yaml:"lat,omitempty" json:"lat,omitempty"`       // at these coordinates, degrees
	Lon    *float64 `yaml:"lon,omitempty" json:"lon,omitempty"`
}

// Services are what a host (or every instance of an anycast address) serves. ICMP echo is answered unless
// ICMP is false: the kernel answers it.
type Services struct {
	TCP  []int `yaml:"tcp,omitempty" json:"tcp,omitempty"`   // ports with a listener that accepts and closes
	HTTP []int `yaml:"http,omitempty" json:"http,omitempty"` // ports with an HTTP server naming the node and city
	DNS  bool  `yaml:"dns,omitempty" json:"dns,omitempty"`   // the testbed's DNS server on port 53, UDP and TCP
	ICMP *bool `yaml:"icmp,omitempty" json:"icmp,omitempty"` // answer ICMP echo; default true
}

// HostSpec is one target host.
type HostSpec struct {
	Name     string `yaml:"name" json:"name"` // node name: lower case letters, digits and '-'
	Location `yaml:",inline"`
	Services `yaml:",inline"`
	// Aliases are other DNS names the testbed's DNS server answers with the host's address, inside or outside
	// the zone: e.g. a cloud provider's regional endpoint ("ec2.ap-northeast-1.amazonaws.com") for a host at that
	// region, so that the product's own endpoint templates resolve on the emulated WAN.
	Aliases []string `yaml:"aliases,omitempty" json:"aliases,omitempty"`
}

// AnycastSpec is one anycast address: the router delivers a packet for it to the live instance with the
// lowest delay from the sender, and the instance answers from the same address.
type AnycastSpec struct {
	Name      string `yaml:"name" json:"name"` // name of the address; instance nodes are "<name>-<instance>"
	Services  `yaml:",inline"`
	Instances []InstanceSpec `yaml:"instances" json:"instances"`
	// Aliases are other DNS names the testbed's DNS server answers with the anycast address, as for a host.
	Aliases []string `yaml:"aliases,omitempty" json:"aliases,omitempty"`
}

// InstanceSpec is one instance of an anycast address.
type InstanceSpec struct {
	Name     string `yaml:"name" json:"name"` // suffix of the node name, e.g. "fra"
	Location `yaml:",inline"`
}

// GeoDNSSpec is a replicated target: the testbed's DNS server answers Name with the address of the live host
// among Hosts nearest (lowest emulated delay) to the node the query comes from.
type GeoDNSSpec struct {
	Name  string   `yaml:"name" json:"name"`   // fully qualified or relative to the zone
	Hosts []string `yaml:"hosts" json:"hosts"` // host names of the replicas
}

//go:embed testdata/default.yaml
var defaultSpec []byte

// DefaultSpec returns the shipped topology (testdata/default.yaml): 26 PoPs on every continent and ten hosts,
// among them a database in Frankfurt (TCP 5432), an API in Ashburn (HTTP), a host at gcp:asia-northeast1, an
// anycast address with four instances and a geo-DNS name over three replicas.
func DefaultSpec() *Spec {
	s, err := ParseSpec(bytes.NewReader(defaultSpec), "yaml")
	if err != nil {
		panic("testbed: embedded default spec: " + err.Error())
	}
	return s
}

// LoadSpec reads a spec from a .json, .yaml or .yml file and validates it.
func LoadSpec(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("testbed: spec: %w", err)
	}
	defer f.Close()
	format := "yaml"
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = "json"
	}
	s, err := ParseSpec(f, format)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseSpec decodes a spec in format "yaml" or "json"; unknown fields are errors. The spec is validated.
func ParseSpec(r io.Reader, format string) (*Spec, error) {
	var s Spec
	switch format {
	case "yaml":
		dec := yaml.NewDecoder(r)
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("testbed: spec: %w", err)
		}
	case "json":
		dec := json.NewDecoder(r)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("testbed: spec: %w", err)
		}
	default:
		return nil, fmt.Errorf("testbed: spec format %q: want yaml or json", format)
	}
	if _, err := s.resolve(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks the spec: known PoP codes and regions, coordinates in range, valid and unique names, ports
// in range, anycast instances and geo-DNS replicas that exist. Errors name the field and the value.
func (s *Spec) Validate() error {
	_, err := s.resolve()
	return err
}

// NodeKind says what a node is.
type NodeKind string

// Node kinds.
const (
	KindPoP     NodeKind = "pop"     // a point of presence, named by its IATA code
	KindHost    NodeKind = "host"    // a target host
	KindAnycast NodeKind = "anycast" // one instance of an anycast address
)

// plan is a validated spec with every coordinate looked up.
type plan struct {
	name, zone string
	nodes      []planNode
	anycast    []planAnycast
	geodns     []planGeoDNS
	aliases    map[string]int // canonical alias name -> node index
	anyAliases map[string]int // canonical alias name -> anycast index
	dnsNode    int            // node running the DNS server, or -1
}

type planNode struct {
	name     string
	kind     NodeKind
	city     string
	point    geo.Point
	services Services
	anycast  int // index into plan.anycast for an instance, else -1
}

type planAnycast struct {
	name      string
	instances []int
}

type planGeoDNS struct {
	name  string // FQDN, lower case
	hosts []int
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// hostnameRE matches a canonical (lower-case, fully qualified) host name of letters, digits and hyphens.
var hostnameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+$`)

// resolve validates the spec and looks up every location.
func (s *Spec) resolve() (*plan, error) {
	p := &plan{name: s.Name, zone: s.Zone, dnsNode: -1, aliases: map[string]int{}, anyAliases: map[string]int{}}
	if p.zone == "" {
		p.zone = DefaultZone
	}
	if _, ok := dns.IsDomainName(p.zone); !ok {
		return nil, fmt.Errorf("testbed: spec: zone: %q is not a domain name", s.Zone)
	}
	p.zone = dns.CanonicalName(p.zone)
	seen := map[string]string{} // lower-case node name -> field that defined it
	add := func(field string, n planNode) error {
		key := strings.ToLower(n.name)
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("testbed: spec: %s: node name %q is already used by %s", field, n.name, prev)
		}
		seen[key] = field
		p.nodes = append(p.nodes, n)
		return nil
	}
	if len(s.PoPs) == 0 {
		return nil, errors.New("testbed: spec: pops: at least one PoP is needed")
	}
	for i, code := range s.PoPs {
		field := fmt.Sprintf("pops[%d]", i)
		pop, ok := geo.LookupPoP(code)
		if !ok {
			return nil, fmt.Errorf("testbed: spec: %s: %q is not a PoP in the catalogue (IATA code, e.g. \"FRA\")", field, code)
		}
		if err := add(field, planNode{name: pop.Code, kind: KindPoP, city: pop.City, point: pop.Point, anycast: -1}); err != nil {
			return nil, err
		}
	}
	for i, h := range s.Hosts {
		field := fmt.Sprintf("hosts[%d]", i)
		if err := checkName(field, h.Name); err != nil {
			return nil, err
		}
		field = fmt.Sprintf("hosts[%d] (%s)", i, h.Name)
		city, pt, err := h.Location.resolve(field)
		if err != nil {
			return nil, err
		}
		if err := h.Services.check(field); err != nil {
			return nil, err
		}
		if h.DNS {
			if p.dnsNode >= 0 {
				return nil, fmt.Errorf("testbed: spec: %s.dns: only one DNS server per testbed (%s has it)", field, p.nodes[p.dnsNode].name)
			}
			p.dnsNode = len(p.nodes)
		}
		if err := p.addAliases(field, h.Aliases, p.aliases, len(p.nodes)); err != nil {
			return nil, err
		}
		if err := add(field, planNode{name: h.Name, kind: KindHost, city: city, point: pt, services: h.Services, anycast: -1}); err != nil {
			return nil, err
		}
	}
	for i, a := range s.Anycast {
		field := fmt.Sprintf("anycast[%d]", i)
		if err := checkName(field, a.Name); err != nil {
			return nil, err
		}
		field = fmt.Sprintf("anycast[%d] (%s)", i, a.Name)
		if _, dup := seen[a.Name]; dup {
			return nil, fmt.Errorf("testbed: spec: %s.name: %q is already a node name", field, a.Name)
		}
		seen[a.Name] = field
		if err := a.Services.check(field); err != nil {
			return nil, err
		}
		if a.DNS {
			return nil, fmt.Errorf("testbed: spec: %s.dns: the DNS server runs on a host, not an anycast address", field)
		}
		if len(a.Instances) == 0 {
			return nil, fmt.Errorf("testbed: spec: %s.instances: at least one instance is needed", field)
		}
		if err := p.addAliases(field, a.Aliases, p.anyAliases, len(p.anycast)); err != nil {
			return nil, err
		}
		pa := planAnycast{name: a.Name}
		for j, in := range a.Instances {
			ifield := fmt.Sprintf("%s.instances[%d]", field, j)
			if err := checkName(ifield, in.Name); err != nil {
				return nil, err
			}
			city, pt, err := in.Location.resolve(ifield)
			if err != nil {
				return nil, err
			}
			pa.instances = append(pa.instances, len(p.nodes))
			n := planNode{name: a.Name + "-" + in.Name, kind: KindAnycast, city: city, point: pt, services: a.Services, anycast: i}
			if err := add(ifield, n); err != nil {
				return nil, err
			}
		}
		p.anycast = append(p.anycast, pa)
	}
	for i, g := range s.GeoDNS {
		field := fmt.Sprintf("geodns[%d]", i)
		name := g.Name
		if !dns.IsFqdn(name) {
			name += "." + p.zone
		}
		if _, ok := dns.IsDomainName(name); !ok || g.Name == "" {
			return nil, fmt.Errorf("testbed: spec: %s.name: %q is not a domain name", field, g.Name)
		}
		if p.dnsNode < 0 {
			return nil, fmt.Errorf("testbed: spec: %s: geo-DNS name %q needs a host with dns: true", field, g.Name)
		}
		if len(g.Hosts) == 0 {
			return nil, fmt.Errorf("testbed: spec: %s.hosts: at least one replica is needed", field)
		}
		pg := planGeoDNS{name: dns.CanonicalName(name)}
		for j, h := range g.Hosts {
			idx := -1
			for k, n := range p.nodes {
				if n.kind == KindHost && n.name == h {
					idx = k
				}
			}
			if idx < 0 {
				return nil, fmt.Errorf("testbed: spec: %s.hosts[%d]: %q is not a host of the spec", field, j, h)
			}
			pg.hosts = append(pg.hosts, idx)
		}
		p.geodns = append(p.geodns, pg)
	}
	if len(p.aliases)+len(p.anyAliases) > 0 && p.dnsNode < 0 {
		return nil, errors.New("testbed: spec: aliases need a host with dns: true")
	}
	return p, nil
}

// addAliases checks the aliases of field (a host or an anycast address) and maps each to i in m; a name may
// be the alias of one host or anycast address only.
func (p *plan) addAliases(field string, aliases []string, m map[string]int, i int) error {
	for j, a := range aliases {
		name := dns.CanonicalName(a)
		if !hostnameRE.MatchString(name) {
			return fmt.Errorf("testbed: spec: %s.aliases[%d]: %q is not a domain name", field, j, a)
		}
		_, dupHost := p.aliases[name]
		_, dupAny := p.anyAliases[name]
		if dupHost || dupAny {
			return fmt.Errorf("testbed: spec: %s.aliases[%d]: %q is already an alias", field, j, a)
		}
		m[name] = i
	}
	return nil
}

func checkName(field, name string) error {
	if !nodeNameRE.MatchString(name) {
		return fmt.Errorf("testbed: spec: %s.name: %q must be 1-32 lower-case letters, digits or '-' (not at the ends)", field, name)
	}
	return nil
}

// Point returns the coordinates of the location, from geo's catalogues as the testbed places its nodes.
func (l Location) Point() (geo.Point, error) {
	_, p, err := l.resolve("location")
	return p, err
}

// resolve returns the city and coordinates of a location.
func (l Location) resolve(field string) (string, geo.Point, error) {
	set := 0
	if l.PoP != "" {
		set++
	}
	if l.Region != "" {
		set++
	}
	if l.Lat != nil || l.Lon != nil {
		set++
	}
	if set != 1 {
		return "", geo.Point{}, fmt.Errorf("testbed: spec: %s: set exactly one of pop, region, or lat and lon (got %d)", field, set)
	}
	switch {
	case l.PoP != "":
		pop, ok := geo.LookupPoP(l.PoP)
		if !ok {
			return "", geo.Point{}, fmt.Errorf("testbed: spec: %s.pop: %q is not a PoP in the catalogue", field, l.PoP)
		}
		return pop.City, pop.Point, nil
	case l.Region != "":
		r, err := geo.LookupRegion(l.Region)
		if err != nil {
			return "", geo.Point{}, fmt.Errorf("testbed: spec: %s.region: %w", field, err)
		}
		return r.City, r.Point, nil
	}
	if l.Lat == nil || l.Lon == nil {
		return "", geo.Point{}, fmt.Errorf("testbed: spec: %s: lat and lon must both be set", field)
	}
	if *l.Lat < -90 || *l.Lat > 90 {
		return "", geo.Point{}, fmt.Errorf("testbed: spec: %s.lat: %v is outside [-90, 90]", field, *l.Lat)
	}
	if *l.Lon < -180 || *l.Lon > 180 {
		return "", geo.Point{}, fmt.Errorf("testbed: spec: %s.lon: %v is outside [-180, 180]", field, *l.Lon)
	}
	return fmt.Sprintf("%.3f,%.3f", *l.Lat, *l.Lon), geo.Point{Lat: *l.Lat, Lon: *l.Lon}, nil
}

// check validates the ports.
func (s Services) check(field string) error {
	ports := map[int]string{}
	for _, l := range []struct {
		name  string
		ports []int
	}{{"tcp", s.TCP}, {"http", s.HTTP}} {
		for i, port := range l.ports {
			if port < 1 || port > 65535 {
				return fmt.Errorf("testbed: spec: %s.%s[%d]: port %d is outside 1-65535", field, l.name, i, port)
			}
			if prev, dup := ports[port]; dup {
				return fmt.Errorf("testbed: spec: %s.%s[%d]: port %d is already used by %s", field, l.name, i, port, prev)
			}
			ports[port] = l.name
		}
	}
	if s.DNS {
		if prev, dup := ports[53]; dup {
			return fmt.Errorf("testbed: spec: %s.dns: port 53 is already used by %s", field, prev)
		}
	}
	return nil
}
