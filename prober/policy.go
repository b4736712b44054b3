package prober

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
	"github.com/vantage-edge/vantage/placement"
)

// policyFor is the default deny policy plus the platform's own prefixes, with the allow-list. The own prefixes
// come first, so that an own prefix inside a registry range (a test's 203.0.113.0/24) is named "own-prefix".
func policyFor(allow, own []netip.Prefix) placement.Policy {
	p := placement.DefaultPolicy(allow...)
	if len(own) > 0 {
		deny := make([]placement.DenyRule, 0, len(own)+len(p.Deny))
		for _, o := range own {
			deny = append(deny, placement.DenyRule{Name: "own-prefix", Prefix: o})
		}
		p.Deny = append(deny, p.Deny...)
	}
	return p
}

// checkSources refuses source addresses that are not assigned to a local interface (any address of a loopback
// prefix counts, as the kernel answers them all) or that lie inside one of the platform's own prefixes.
func checkSources(sources []netip.Addr, own []netip.Prefix, ifaddrs func() ([]net.Addr, error)) error {
	if len(sources) == 0 {
		return nil
	}
	addrs, err := ifaddrs()
	if err != nil {
		return fmt.Errorf("prober: listing interface addresses: %w", err)
	}
	local := make(map[netip.Addr]bool, len(addrs))
	var loopback []netip.Prefix // the kernel answers every address of a loopback prefix (127.0.0.1/8 on lo)
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
			if p, ok := ipNetPrefix(a); ok && p.Addr().IsLoopback() {
				loopback = append(loopback, p)
			}
		case *net.IPAddr:
			ip = a.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			local[na.Unmap()] = true
		}
	}
	for _, s := range sources {
		if !s.IsValid() {
			return fmt.Errorf("prober: source address %v: invalid", s)
		}
		if !local[s.Unmap()] && !slices.ContainsFunc(loopback, func(p netip.Prefix) bool { return p.Contains(s.Unmap()) }) {
			return fmt.Errorf("prober: source address %v: not assigned to any local interface", s)
		}
		for _, p := range own {
			if p.Contains(s.Unmap()) {
				return fmt.Errorf("prober: source address %v is inside the platform's own prefix %v: "+
					"replies to it would be routed to another PoP", s, p)
			}
		}
	}
	return nil
}

// ipNetPrefix converts an interface address to its prefix (masked).
func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	ones, bits := n.Mask.Size()
	if !ok || bits == 0 {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if a.Is4() && bits == 8*net.IPv6len {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

// source returns the configured source address of dst's family, the zero Addr if none is configured, or an
// error if sources are configured but none matches.
func (e *Engine) source(dst netip.Addr) (netip.Addr, error) {
	if len(e.cfg.Sources) == 0 {
		return netip.Addr{}, nil
	}
	for _, s := range e.cfg.Sources {
		if s.Unmap().Is4() == dst.Unmap().Is4() {
			return s.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("prober: no source address of %v's IP family among %v", dst, e.cfg.Sources)
}

// prepare resolves host into r.IP and r.Resolved (see resolveAll), timed into r.Resolve, and readies the
// probe (see ready).
func (e *Engine) prepare(ctx context.Context, r *Result, host string) error {
	start := e.clock.Now()
	ip, all, err := e.resolveAll(ctx, host)
	r.IP, r.Resolved, r.Resolve = ip, all, Duration(e.clock.Now().Sub(start))
	if err != nil {
		return err
	}
	return e.ready(ctx, r)
}

// ready picks the source address for r.IP (setting r.Source) and waits for the rate limiters: the steps
// between resolution and the first packet that every probe kind takes.
func (e *Engine) ready(ctx context.Context, r *Result) error {
	src, err := e.source(r.IP)
	if err != nil {
		return err
	}
	r.Source = src
	if err := e.limits.wait(ctx, r.IP); err != nil {
		return fmt.Errorf("prober: %s %s: waiting for the rate limit: %w", r.Kind, r.Target, err)
	}
	return nil
}

// resolve is resolveAll without the answer set: for a redirect's host, which is not the target.
func (e *Engine) resolve(ctx context.Context, host string) (netip.Addr, error) {
	ip, _, err := e.resolveAll(ctx, host)
	return ip, err
}

// resolveAll turns host (a name or a literal IP) into the one address the probe will dial: a name is resolved
// once, every address it resolved to is checked against the deny policy (one denied address refuses the
// target: a name that mixes public and internal addresses is a rebinding attempt), and the address of the
// preferred protocol is returned. Callers dial exactly that address, never the name. all is every address
// the name resolved to (nil for a literal IP): DNS evidence, since a geo-DNS name resolves differently per PoP.
//
// A refused literal is named in the error with the rule (it is the caller's own input). A refused name is
// not: its error names the rules only (see deniedName), and ip and all are empty, so that a probe cannot be
// used to read which internal addresses a name resolves to.
func (e *Engine) resolveAll(ctx context.Context, host string) (ip netip.Addr, all []netip.Addr, err error) {
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.WithZone("")
		if err := e.policy.Check(a); err != nil {
			return a, nil, fmt.Errorf("prober: target %q: %w", host, err)
		}
		return a.Unmap(), nil, nil
	}
	if !isHostname(host) {
		return netip.Addr{}, nil, fmt.Errorf("prober: target %q: not an IP address or a host name", host)
	}
	addrs, err := e.cfg.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var de *net.DNSError
		if !errors.As(err, &de) {
			err = &net.DNSError{Err: err.Error(), Name: host, UnwrapErr: err}
		}
		return netip.Addr{}, nil, fmt.Errorf("prober: resolving %q: %w", host, err)
	}
	if err := e.deniedName(host, addrs); err != nil {
		return netip.Addr{}, nil, err
	}
	all = make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		all[i] = a.Unmap()
	}
	want4 := e.cfg.IPProtocol != IP6
	var fallback netip.Addr
	for _, a := range all {
		if a.Is4() == want4 {
			return a, all, nil
		}
		if !fallback.IsValid() {
			fallback = a
		}
	}
	if fallback.IsValid() && !e.cfg.NoIPFallback {
		return fallback, all, nil
	}
	return netip.Addr{}, all, fmt.Errorf("prober: resolving %q: %w (%s, fallback %v, got %v)", host, ErrNoAddress,
		e.cfg.IPProtocol, !e.cfg.NoIPFallback, addrs)
}

// deniedName checks every address host resolved to and returns nil if all may be probed, else an error
// wrapping placement.ErrDenied that names the host and the rules that refused its addresses, never the
// addresses: `prober: target "example.test" resolves only to addresses denied by policy (link-local)`, or
// `... resolves to 2 addresses, 1 of them denied by policy (rfc1918)`.
func (e *Engine) deniedName(host string, addrs []netip.Addr) error {
	var reasons []string
	denied := 0
	for _, a := range addrs {
		err := e.policy.Check(a)
		if err == nil {
			continue
		}
		denied++
		reason := "invalid address"
		if de, ok := errors.AsType[*placement.DeniedError](err); ok {
			reason = de.Reason()
		}
		if !slices.Contains(reasons, reason) {
			reasons = append(reasons, reason)
		}
	}
	if denied == 0 {
		return nil
	}
	slices.Sort(reasons)
	why := strings.Join(reasons, ", ")
	if denied == len(addrs) {
		return fmt.Errorf("prober: target %q resolves only to addresses %w (%s)", host, placement.ErrDenied, why)
	}
	return fmt.Errorf("prober: target %q resolves to %d addresses, %d of them %w (%s)", host, len(addrs), denied,
		placement.ErrDenied, why)
}

// resolvConfServers returns the nameservers of /etc/resolv.conf.
func resolvConfServers() ([]string, error) {
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, err
	}
	return cc.Servers, nil
}

// isHostname reports whether host is a syntactically valid DNS host name (letters, digits, '-', '_' and
// dots; labels of 1-63 bytes; at most 253 bytes without the final dot).
func isHostname(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
