package placement

import (
	"errors"
	"fmt"
	"net/netip"
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
// included).
var DefaultDenyRules = []DenyRule{
	{"unspecified", netip.MustParsePrefix("0.0.0.0/8")},
	{"loopback", netip.MustParsePrefix("127.0.0.0/8")},
	{"rfc1918", netip.MustParsePrefix("10.0.0.0/8")},
	{"rfc1918", netip.MustParsePrefix("172.16.0.0/12")},
	{"rfc1918", netip.MustParsePrefix("192.168.0.0/16")},
	{"cgnat", netip.MustParsePrefix("100.64.0.0/10")},
	{"link-local", netip.MustParsePrefix("169.254.0.0/16")},
	{"multicast", netip.MustParsePrefix("224.0.0.0/4")},
	{"broadcast", netip.MustParsePrefix("255.255.255.255/32")},
	{"unspecified", netip.MustParsePrefix("::/128")},
	{"loopback", netip.MustParsePrefix("::1/128")},
	{"ipv4-mapped", netip.MustParsePrefix("::ffff:0:0/96")},
	{"ula", netip.MustParsePrefix("fc00::/7")},
	{"link-local", netip.MustParsePrefix("fe80::/10")},
	{"multicast", netip.MustParsePrefix("ff00::/8")},
}

// Policy decides whether an address may be probed: an address in a deny rule is refused unless it is inside
// one of the Allow prefixes. The zero Policy denies nothing; use DefaultPolicy.
type Policy struct {
	Deny  []DenyRule
	Allow []netip.Prefix // explicit exceptions, e.g. 198.18.0.0/15 for the emulated WAN, 127.0.0.0/8 in tests
}

// DefaultPolicy returns the deny policy on by default, with the given allow-list.
func DefaultPolicy(allow ...netip.Prefix) Policy {
	return Policy{Deny: DefaultDenyRules, Allow: allow}
}

// Check returns nil when addr may be probed, else an error wrapping ErrDenied that names the address and rule.
func (p Policy) Check(addr netip.Addr) error {
	addr = addr.Unmap() // ::ffff:10.0.0.1 is judged as 10.0.0.1
	for _, a := range p.Allow {
		if a.Contains(addr) {
			return nil
		}
	}
	if !addr.IsValid() {
		return fmt.Errorf("address %v: %w (invalid address)", addr, ErrDenied)
	}
	for _, r := range p.Deny {
		if r.Prefix.Contains(addr) {
			return fmt.Errorf("address %v: %w (rule %s, %v)", addr, ErrDenied, r.Name, r.Prefix)
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
