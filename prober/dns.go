package prober

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/vantage-edge/vantage/placement"
)

// DNS probe tunables.
const (
	// DNSPort is the resolver port when DNSOptions.Server has none.
	DNSPort = 53
	// dnsUDPSize is the EDNS0 buffer size advertised: 1232 bytes avoids IP fragmentation on any path (DNS flag
	// day 2020).
	dnsUDPSize = 1232
)

// dnsProber queries a resolver with github.com/miekg/dns over UDP (TCP when the answer is truncated). Each
// sample is the RTT miekg/dns measures for one query of the first type (write to answer read); one more
// query per further type records its answers. With DNSOptions.Chaos it also asks CHAOS-class TXT id.server
// and hostname.bind, which name the anycast site (or server) that answered.
//
// The resolver's address, not the name being resolved, is what the deny policy checks: it is where the
// packets go.
type dnsProber struct{ e *Engine }

func (p *dnsProber) Probe(ctx context.Context, t Target) Result {
	e := p.e
	r := Result{Kind: placement.ProbeDNS, Target: t.Addr, DNS: &DNSResult{}}
	if !isHostname(t.Addr) {
		r.finish(fmt.Errorf("prober: dns name %q: not a host name", t.Addr))
		return r
	}
	qname := dns.Fqdn(t.Addr)
	types, err := p.types(t.DNS.Types)
	if err != nil {
		r.finish(err)
		return r
	}
	server := t.DNS.Server
	if server == "" {
		servers, err := e.cfg.DNSConfig()
		if err != nil {
			r.finish(fmt.Errorf("prober: dns %s: no server given, reading the configured ones: %w", t.Addr, err))
			return r
		}
		if len(servers) == 0 {
			r.finish(fmt.Errorf("prober: dns %s: no server given and none configured", t.Addr))
			return r
		}
		server = servers[0]
	}
	host, port, err := splitServer(server)
	if err != nil {
		r.finish(err)
		return r
	}
	if t.DNS.Transport != "" && t.DNS.Transport != "udp" && t.DNS.Transport != "tcp" {
		r.finish(fmt.Errorf("prober: dns transport %q: want udp or tcp", t.DNS.Transport))
		return r
	}
	resolveStart := e.clock.Now()
	ip, err := e.resolve(ctx, host)
	r.IP, r.Resolve = ip, Duration(e.clock.Now().Sub(resolveStart))
	if err != nil {
		r.finish(err)
		return r
	}
	dst := netip.AddrPortFrom(ip, port)
	r.DNS.Server = dst.String()
	if err := e.ready(ctx, &r); err != nil {
		r.finish(err)
		return r
	}
	src := r.Source
	timeout := e.timeout(t)

	var firstErr error
	answered := map[uint16]bool{}
	for i := range e.count(t) {
		if i > 0 {
			if err := e.pause(ctx); err != nil {
				firstErr = cmpErr(firstErr, err)
				break
			}
		}
		r.Sent++
		resp, x, err := p.exchange(ctx, t.DNS.Transport, dst, src, qname, types[0], dns.ClassINET, timeout)
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("prober: dns %s %s @%v: %w", qname, dns.TypeToString[types[0]], dst, err))
			continue
		}
		r.Samples = append(r.Samples, Duration(x.rtt))
		r.Source = x.local
		r.DNS.Rcode = dns.RcodeToString[resp.Rcode]
		r.DNS.AnswerRRs, r.DNS.AuthorityRRs, r.DNS.AdditionalRRs = len(resp.Answer), len(resp.Ns), len(resp.Extra)
		r.DNS.Connect = Duration(x.connect)
		if !answered[types[0]] {
			answered[types[0]] = true
			r.DNS.Answers = append(r.DNS.Answers, answers(resp)...)
		}
	}
	if len(r.Samples) > 0 {
		firstErr = nil
		for _, qt := range types[1:] {
			resp, _, err := p.exchange(ctx, t.DNS.Transport, dst, src, qname, qt, dns.ClassINET, timeout)
			if err != nil {
				continue // the timed type answered: the other types are extra information
			}
			r.DNS.Answers = append(r.DNS.Answers, answers(resp)...)
		}
		if r.DNS.Rcode != "NOERROR" {
			firstErr = fmt.Errorf("prober: dns %s @%v: rcode %s: %w", qname, dst, r.DNS.Rcode, ErrRcode)
		}
	}
	if t.DNS.Chaos && len(r.Samples) > 0 {
		c := p.chaosOf(ctx, t.DNS.Transport, dst, src, timeout)
		r.DNS.ServerID, r.DNS.Hostname, r.DNS.ChaosErr = c.ServerID, c.Hostname, c.ChaosErr
	}
	r.finish(firstErr)
	return r
}

// types parses the query types, defaulting to A and AAAA with the preferred protocol's first.
func (p *dnsProber) types(names []string) ([]uint16, error) {
	if len(names) == 0 {
		if p.e.cfg.IPProtocol == IP6 {
			return []uint16{dns.TypeAAAA, dns.TypeA}, nil
		}
		return []uint16{dns.TypeA, dns.TypeAAAA}, nil
	}
	out := make([]uint16, 0, len(names))
	for _, n := range names {
		qt, ok := dns.StringToType[strings.ToUpper(n)]
		if !ok {
			return nil, fmt.Errorf("prober: dns query type %q: unknown", n)
		}
		out = append(out, qt)
	}
	return out, nil
}

// exchanged is how one query went: the RTT miekg/dns measured, the time the connection took to open before
// it, and the local address.
type exchanged struct {
	rtt, connect time.Duration
	local        netip.Addr
}

// exchange sends one query to dst from src over transport ("tcp", else UDP) and returns the answer. A
// truncated UDP answer is asked again over TCP (and that exchange is returned).
func (p *dnsProber) exchange(ctx context.Context, transport string, dst netip.AddrPort, src netip.Addr, qname string, qtype, qclass uint16, timeout time.Duration) (*dns.Msg, exchanged, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.Question[0].Qclass = qclass
	m.RecursionDesired = qclass == dns.ClassINET
	m.SetEdns0(dnsUDPSize, false)
	if transport == "tcp" {
		return p.exchangeOver(ctx, "tcp", dst, src, m, timeout)
	}
	resp, x, err := p.exchangeOver(ctx, "udp", dst, src, m, timeout)
	if err == nil && resp.Truncated {
		resp, x, err = p.exchangeOver(ctx, "tcp", dst, src, m, timeout)
	}
	return resp, x, err
}

func (p *dnsProber) exchangeOver(ctx context.Context, network string, dst netip.AddrPort, src netip.Addr, m *dns.Msg, timeout time.Duration) (*dns.Msg, exchanged, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := p.e.clock.Now()
	c, err := p.e.dial(ctx, network, dst, src, timeout)
	if err != nil {
		return nil, exchanged{}, err
	}
	defer c.Close()
	x := exchanged{connect: p.e.clock.Now().Sub(t0)}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		x.local = ap.Addr().Unmap()
	}
	// miekg/dns obeys the context's deadline only: a cancellation unblocks the read through the socket.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	client := &dns.Client{Net: network, Timeout: timeout, UDPSize: dnsUDPSize}
	resp, rtt, err := client.ExchangeWithConnContext(ctx, m, &dns.Conn{Conn: c})
	x.rtt = rtt
	return resp, x, err
}

// chaosOf asks dst CHAOS TXT id.server and hostname.bind over transport (DNSOptions.Transport) from src and
// returns the answers, with the errors of the questions that failed in ChaosErr.
func (p *dnsProber) chaosOf(ctx context.Context, transport string, dst netip.AddrPort, src netip.Addr, timeout time.Duration) *DNSResult {
	r := &DNSResult{Server: dst.String()}
	var errs []string
	var err error
	if r.ServerID, err = p.chaos(ctx, transport, dst, src, "id.server.", timeout); err != nil {
		errs = append(errs, err.Error())
	}
	if r.Hostname, err = p.chaos(ctx, transport, dst, src, "hostname.bind.", timeout); err != nil {
		errs = append(errs, err.Error())
	}
	r.ChaosErr = strings.Join(errs, "; ")
	return r
}

// chaos asks a CHAOS-class TXT question and returns the TXT strings joined by spaces.
func (p *dnsProber) chaos(ctx context.Context, transport string, dst netip.AddrPort, src netip.Addr, qname string, timeout time.Duration) (string, error) {
	resp, _, err := p.exchange(ctx, transport, dst, src, qname, dns.TypeTXT, dns.ClassCHAOS, timeout)
	if err != nil {
		return "", fmt.Errorf("CH TXT %s: %w", qname, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return "", fmt.Errorf("CH TXT %s: rcode %s", qname, dns.RcodeToString[resp.Rcode])
	}
	var parts []string
	for _, rr := range resp.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			parts = append(parts, txt.Txt...)
		}
	}
	return strings.Join(parts, " "), nil
}

// answers converts a message's answer section.
func answers(m *dns.Msg) []DNSAnswer {
	out := make([]DNSAnswer, 0, len(m.Answer))
	for _, rr := range m.Answer {
		h := rr.Header()
		a := DNSAnswer{Name: h.Name, Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl}
		switch v := rr.(type) {
		case *dns.A:
			a.Value = v.A.String()
		case *dns.AAAA:
			a.Value = v.AAAA.String()
		case *dns.CNAME:
			a.Value = v.Target
		default:
			a.Value = strings.TrimPrefix(rr.String(), h.String())
		}
		out = append(out, a)
	}
	return out
}

// splitServer splits "ip", "ip:port", "[v6]:port" or "name:port" into host and port (DNSPort by default).
func splitServer(s string) (string, uint16, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), DNSPort, nil
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		if isHostname(s) {
			return s, DNSPort, nil
		}
		return "", 0, fmt.Errorf("prober: dns server %q: want ip, ip:port or name:port: %w", s, err)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("prober: dns server %q: port %q is not in 1-65535", s, ps)
	}
	return host, uint16(port), nil
}
