package placement

import (
	"errors"
	"fmt"
	"net/netip"

	"code.dny.dev/ssrf"
)

// ErrDenied is wrapped by every refusal of the deny policy.
var ErrDenied = errors.New("denied by policy")

// A DenyRule is one range of addresses that Vantage never probes or places, with the reason.
type DenyRule struct {
	Name   string // short rule name used in errors and metrics, e.g. "rfc1918"
	Prefix netip.Prefix
}

// DefaultDenyRules are the ranges probes never target unless an allow-list lifts them: a probe fleet must not
// be turned against the platform's own or anyone's internal networks (cloud metadata at 169.254.169.254
// included). The ranges come from the IANA IPv4 and IPv6 special-purpose address registries through
// code.dny.dev/ssrf, which is generated from them (every entry of both registries is denied, globally reachable
// or not, and 224.0.0.0/4), plus all of IPv6 outside global unicast 2000::/3. The emulated WAN's 198.18.0.0/15
// (benchmarking) is denied like the rest: --allow lifts it. The first rule that contains an address names the
// refusal; see defaultDenyRules for the order.
var DefaultDenyRules = defaultDenyRules()

// IPv6GlobalUnicast is the only IPv6 space the default policy lets through (less the registries' entries).
var IPv6GlobalUnicast = ssrf.IPv6GlobalUnicast

// registryLag are entries of the IANA IPv6 special-purpose registry that the pinned code.dny.dev/ssrf does not
// list yet: 5f00::/16, SRv6 SIDs (RFC 9602, 2024, "Globally Reachable: False"). Drop an entry once the library
// has it (TestDefaultRulesCoverTheRegistries keeps both in the rules).
var registryLag = []netip.Prefix{netip.MustParsePrefix("5f00::/16")}

// ruleNames are the short names of the registries' prefixes, for errors and metrics. They only name: which
// prefixes are denied comes from the library, and one the table does not know is named "special-purpose".
var ruleNames = map[netip.Prefix]string{
	netip.MustParsePrefix("0.0.0.0/8"):          "this-network",
	netip.MustParsePrefix("10.0.0.0/8"):         "rfc1918",
	netip.MustParsePrefix("100.64.0.0/10"):      "cgnat",
	netip.MustParsePrefix("127.0.0.0/8"):        "loopback",
	netip.MustParsePrefix("169.254.0.0/16"):     "link-local",
	netip.MustParsePrefix("172.16.0.0/12"):      "rfc1918",
	netip.MustParsePrefix("192.0.0.0/24"):       "ietf-protocol",
	netip.MustParsePrefix("192.0.2.0/24"):       "documentation",
	netip.MustParsePrefix("192.31.196.0/24"):    "as112",
	netip.MustParsePrefix("192.52.193.0/24"):    "amt",
	netip.MustParsePrefix("192.88.99.0/24"):     "6to4-relay",
	netip.MustParsePrefix("192.168.0.0/16"):     "rfc1918",
	netip.MustParsePrefix("192.175.48.0/24"):    "as112",
	netip.MustParsePrefix("198.18.0.0/15"):      "benchmarking",
	netip.MustParsePrefix("198.51.100.0/24"):    "documentation",
	netip.MustParsePrefix("203.0.113.0/24"):     "documentation",
	netip.MustParsePrefix("240.0.0.0/4"):        "reserved",
	netip.MustParsePrefix("224.0.0.0/4"):        "multicast",
	netip.MustParsePrefix("2001::/23"):          "ietf-protocol",
	netip.MustParsePrefix("2001:db8::/32"):      "documentation",
	netip.MustParsePrefix("2002::/16"):          "6to4",
	netip.MustParsePrefix("2620:4f:8000::/48"):  "as112",
	netip.MustParsePrefix("3fff::/20"):          "documentation",
	netip.MustParsePrefix("5f00::/16"):          "srv6-sid",
	netip.MustParsePrefix("255.255.255.255/32"): "broadcast",
}

// notGlobalUnicast names the best-known parts of IPv6 outside 2000::/3. Everything outside 2000::/3 is denied
// by the three "not-global-unicast" rules after them whether listed here or not: these rules only give a
// refusal a sharper name.
var notGlobalUnicast = []DenyRule{
	{"unspecified", netip.MustParsePrefix("::/128")},
	{"loopback", netip.MustParsePrefix("::1/128")},
	{"ipv4-compatible", netip.MustParsePrefix("::/96")},
	{"ipv4-mapped", netip.MustParsePrefix("::ffff:0:0/96")},
	{"siit", netip.MustParsePrefix("::ffff:0:0:0/96")},
	{"nat64", netip.MustParsePrefix("64:ff9b::/96")},
	{"nat64-local", netip.MustParsePrefix("64:ff9b:1::/48")},
	{"discard-only", netip.MustParsePrefix("100::/64")},
	{"ula", netip.MustParsePrefix("fc00::/7")},
	{"link-local", netip.MustParsePrefix("fe80::/10")},
	{"site-local", netip.MustParsePrefix("fec0::/10")},
	{"multicast", netip.MustParsePrefix("ff00::/8")},
	// The complement of 2000::/3.
	{"not-global-unicast", netip.MustParsePrefix("::/3")},
	{"not-global-unicast", netip.MustParsePrefix("4000::/2")},
	{"not-global-unicast", netip.MustParsePrefix("8000::/1")},
}

// defaultDenyRules builds DefaultDenyRules: 255.255.255.255 first (named "broadcast" rather than by the
// reserved 240.0.0.0/4 around it), then the IPv4 registry, the IPv6 registry inside 2000::/3 (Teredo's
// 2001::/32 named ahead of the 2001::/23 around it), and IPv6 outside 2000::/3.
func defaultDenyRules() []DenyRule {
	name := func(p netip.Prefix) string {
		if n, ok := ruleNames[p]; ok {
			return n
		}
		return "special-purpose"
	}
	rules := []DenyRule{{"broadcast", netip.MustParsePrefix("255.255.255.255/32")}}
	for _, p := range ssrf.IPv4DeniedPrefixes {
		rules = append(rules, DenyRule{name(p), p})
	}
	rules = append(rules, DenyRule{"teredo", teredo})
	for _, p := range append(ssrf.IPv6DeniedPrefixes, registryLag...) {
		rules = append(rules, DenyRule{name(p), p})
	}
	return append(rules, notGlobalUnicast...)
}

// Policy decides whether an address may be probed: an address in a deny rule is refused unless it is inside
// one of the Allow prefixes, and an IPv6 address that embeds an IPv4 address (see Embedded) is refused when the
// IPv4 address is, whatever the IPv6 address itself. The zero Policy denies nothing; use DefaultPolicy.
type Policy struct {
	Deny  []DenyRule
	Allow []netip.Prefix // explicit exceptions, e.g. 198.18.0.0/15 for the emulated WAN, 127.0.0.0/8 in tests
}

// DefaultPolicy returns the deny policy on by default, with the given allow-list.
func DefaultPolicy(allow ...netip.Prefix) Policy {
	return Policy{Deny: DefaultDenyRules, Allow: allow}
}

// A DeniedError is a refusal by a Policy. It wraps ErrDenied.
type DeniedError struct {
	Addr     netip.Addr // the address checked, unmapped and without zone
	Embedded Embedding  // set when the refusal is of an IPv4 address that Addr embeds
	Rule     DenyRule   // the rule that refused Addr, or Embedded.Addr; zero for an invalid address
}

// Error names the address, what it embeds, and the rule, e.g. "address 64:ff9b::a9fe:a9fe: denied by policy
// (embeds 169.254.169.254, NAT64 64:ff9b::/96: rule link-local, 169.254.0.0/16)".
func (e *DeniedError) Error() string {
	switch {
	case !e.Addr.IsValid():
		return fmt.Sprintf("address %v: %v (invalid address)", e.Addr, ErrDenied)
	case e.Embedded.Addr.IsValid():
		return fmt.Sprintf("address %v: %v (embeds %s: rule %s, %v)", e.Addr, ErrDenied, e.Embedded, e.Rule.Name, e.Rule.Prefix)
	}
	return fmt.Sprintf("address %v: %v (rule %s, %v)", e.Addr, ErrDenied, e.Rule.Name, e.Rule.Prefix)
}

// Unwrap returns ErrDenied.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// Reason is the refusal without the address: the rule's name, and the form for an embedded address, e.g.
// "link-local" or "link-local via NAT64". It is what may be shown for an address the caller did not write
// (one a name resolved to).
func (e *DeniedError) Reason() string {
	switch {
	case !e.Addr.IsValid():
		return "invalid address"
	case e.Embedded.Addr.IsValid():
		return e.Rule.Name + " via " + e.Embedded.Form
	}
	return e.Rule.Name
}

// Check returns nil when addr may be probed, else a *DeniedError (wrapping ErrDenied) that names the address
// and rule. ::ffff:a.b.c.d is judged as a.b.c.d; any other IPv6 form that embeds an IPv4 address (Embedded)
// must pass twice: its IPv4 address (which an allow of the IPv4 address lifts) and the IPv6 address itself
// (which an allow of the IPv6 address lifts). An allow of 64:ff9b::/96 on a PoP with NAT64 therefore lets
// 64:ff9b::808:808 through but never 64:ff9b::a9fe:a9fe. A zone is ignored (fe80::1%eth0 is fe80::1).
func (p Policy) Check(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return &DeniedError{Addr: addr}
	}
	for _, em := range Embedded(addr) {
		if r, denied := p.denies(em.Addr); denied {
			return &DeniedError{Addr: addr, Embedded: em, Rule: r}
		}
	}
	if r, denied := p.denies(addr); denied {
		return &DeniedError{Addr: addr, Rule: r}
	}
	return nil
}

// denies returns the first deny rule containing a, unless an allow prefix contains it.
func (p Policy) denies(a netip.Addr) (DenyRule, bool) {
	for _, al := range p.Allow {
		if al.Contains(a) {
			return DenyRule{}, false
		}
	}
	for _, r := range p.Deny {
		if r.Prefix.Contains(a) {
			return r, true
		}
	}
	return DenyRule{}, false
}

// An Embedding is an IPv4 address carried inside an IPv6 address, and the form that carries it.
type Embedding struct {
	Addr   netip.Addr   // the IPv4 address
	Form   string       // e.g. "NAT64", "Teredo client"
	Prefix netip.Prefix // the form's prefix, e.g. 64:ff9b::/96
}

// String is e.g. "169.254.169.254, NAT64 64:ff9b::/96".
func (e Embedding) String() string { return fmt.Sprintf("%v, %s %v", e.Addr, e.Form, e.Prefix) }

// The IPv6 forms that embed an IPv4 address, with where they carry it.
var (
	ipv4Mapped     = netip.MustParsePrefix("::ffff:0:0/96")   // RFC 4291 2.5.5.2: ::ffff:a.b.c.d, last 32 bits
	siit           = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 (SIIT), RFC 7915: ::ffff:0:a.b.c.d, last 32 bits
	ipv4Compatible = netip.MustParsePrefix("::/96")           // RFC 4291 2.5.5.1 (deprecated): ::a.b.c.d, last 32 bits
	nat64          = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052: well-known prefix, last 32 bits
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215: local-use, read as a /96 translator prefix
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056: 2002:AABB:CCDD::/48, bits 16-48
	teredo         = netip.MustParsePrefix("2001::/32")       // RFC 4380: server in bits 32-64, client XORed in the last 32
)

// Embedded returns the IPv4 addresses an IPv6 address carries: the last 32 bits of an IPv4-mapped, SIIT,
// IPv4-compatible (not :: or ::1) or NAT64 address (well-known 64:ff9b::/96, and local-use 64:ff9b:1::/48
// read as a /96 translator prefix, the usual length; an operator who allows a local-use prefix of another
// RFC 6052 length gets no embedded check of it), bits 16-48 of a 6to4 address, and a Teredo address's server
// (bits 32-64) and client (the last 32 bits, inverted). An IPv4 address, or an IPv6 address of no such form,
// embeds nothing.
func Embedded(a netip.Addr) []Embedding {
	if !a.Is6() {
		return nil
	}
	a = a.WithZone("")
	b := a.As16()
	last := netip.AddrFrom4([4]byte(b[12:16]))
	switch {
	case ipv4Mapped.Contains(a):
		return []Embedding{{last, "IPv4-mapped", ipv4Mapped}}
	case siit.Contains(a):
		return []Embedding{{last, "SIIT", siit}}
	case ipv4Compatible.Contains(a):
		if a == netip.IPv6Unspecified() || a == netip.IPv6Loopback() {
			return nil
		}
		return []Embedding{{last, "IPv4-compatible", ipv4Compatible}}
	case nat64.Contains(a):
		return []Embedding{{last, "NAT64", nat64}}
	case nat64Local.Contains(a):
		return []Embedding{{last, "NAT64 local-use", nat64Local}}
	case sixToFour.Contains(a):
		return []Embedding{{netip.AddrFrom4([4]byte(b[2:6])), "6to4", sixToFour}}
	case teredo.Contains(a):
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []Embedding{
			{netip.AddrFrom4([4]byte(b[4:8])), "Teredo server", teredo},
			{netip.AddrFrom4(client), "Teredo client", teredo},
		}
	}
	return nil
}

// ParsePrefixes parses a list of CIDRs (or bare addresses, taken as /32 or /128), naming the bad one in the
// error; field names the flag or config field the list came from.
func ParsePrefixes(field string, cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR or an address: %w", field, s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
