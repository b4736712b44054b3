package prober

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/placement"
)

// dnsHandler answers the test zone: a.test (A and AAAA), missing.test (NXDOMAIN), big.test (100 A records,
// truncated over UDP), tcp.test (an A record over TCP, REFUSED over UDP), slow.test (never answered), and CHAOS TXT id.server / hostname.bind. The answers'
// addresses are documentation ranges: data only, nothing is sent to them.
func dnsHandler(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	rr := func(s string) {
		r, err := dns.NewRR(s)
		if err == nil {
			m.Answer = append(m.Answer, r)
		}
	}
	switch {
	case q.Qclass == dns.ClassCHAOS && q.Name == "id.server.":
		rr(`id.server. 0 CH TXT "lhr1"`)
	case q.Qclass == dns.ClassCHAOS && q.Name == "hostname.bind.":
		rr(`hostname.bind. 0 CH TXT "ns1.lhr"`)
	case q.Name == "a.test." && q.Qtype == dns.TypeA:
		rr("a.test. 300 IN A 192.0.2.1")
	case q.Name == "a.test." && q.Qtype == dns.TypeAAAA:
		rr("a.test. 600 IN AAAA 2001:db8::1")
	case q.Name == "big.test.":
		for i := range 100 {
			rr("big.test. 60 IN A 192.0.2." + strconv.Itoa(i))
		}
		if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
			m.Truncate(dns.MinMsgSize)
		}
	case q.Name == "tcp.test.": // answered over TCP only
		if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
			m.Rcode = dns.RcodeRefused
		} else {
			rr("tcp.test. 60 IN A 192.0.2.7")
		}
	case q.Name == "slow.test.":
		return
	case q.Name == "a.test.":
	default:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

// dnsServer starts dnsHandler on 127.0.0.1, UDP and TCP on the same port, shut down in t.Cleanup.
func dnsServer(t *testing.T) string {
	t.Helper()
	return testnet.DNSServer(t, dns.HandlerFunc(dnsHandler))
}

func TestDNSProbe(t *testing.T) {
	srv := dnsServer(t)
	tests := []struct {
		name    string
		target  string
		opts    DNSOptions
		proto   IPProtocol
		timeout time.Duration
		class   Class
		rcode   string
		samples int
		check   func(t *testing.T, r Result)
	}{
		{name: "a_and_aaaa", target: "a.test", rcode: "NOERROR", samples: 3, check: func(t *testing.T, r Result) {
			want := []DNSAnswer{{"a.test.", "A", 300, "192.0.2.1"}, {"a.test.", "AAAA", 600, "2001:db8::1"}}
			if len(r.DNS.Answers) != 2 || r.DNS.Answers[0] != want[0] || r.DNS.Answers[1] != want[1] {
				t.Errorf("answers %+v, want %+v", r.DNS.Answers, want)
			}
			if r.DNS.Server != srv || r.DNS.ServerID != "" {
				t.Errorf("server %q id %q", r.DNS.Server, r.DNS.ServerID)
			}
		}},
		{name: "ip6_preferred_times_aaaa", target: "a.test", proto: IP6, rcode: "NOERROR", samples: 3,
			check: func(t *testing.T, r Result) {
				if len(r.DNS.Answers) != 2 || r.DNS.Answers[0].Type != "AAAA" {
					t.Errorf("answers %+v, want AAAA first", r.DNS.Answers)
				}
			}},
		{name: "chaos_names_the_site", target: "a.test", opts: DNSOptions{Chaos: true}, rcode: "NOERROR", samples: 3,
			check: func(t *testing.T, r Result) {
				if r.DNS.ServerID != "lhr1" || r.DNS.Hostname != "ns1.lhr" || r.DNS.ChaosErr != "" {
					t.Errorf("id.server %q hostname.bind %q err %q", r.DNS.ServerID, r.DNS.Hostname, r.DNS.ChaosErr)
				}
			}},
		{name: "nxdomain_keeps_samples", target: "missing.test", class: ClassDNS, rcode: "NXDOMAIN", samples: 3},
		{name: "truncated_retried_over_tcp", target: "big.test", opts: DNSOptions{Types: []string{"a"}},
			rcode: "NOERROR", samples: 3, check: func(t *testing.T, r Result) {
				if len(r.DNS.Answers) != 100 {
					t.Errorf("%d answers, want all 100 over TCP", len(r.DNS.Answers))
				}
			}},
		{name: "transport_tcp", target: "tcp.test", opts: DNSOptions{Types: []string{"A"}, Transport: "tcp"},
			rcode: "NOERROR", samples: 3, check: func(t *testing.T, r Result) {
				if d := r.DNS; d.AnswerRRs != 1 || d.AuthorityRRs != 0 || d.AdditionalRRs != 0 || d.Connect <= 0 {
					t.Errorf("sections %d/%d/%d connect %v, want 1/0/0 and a timed connect",
						d.AnswerRRs, d.AuthorityRRs, d.AdditionalRRs, d.Connect)
				}
			}},
		{name: "udp_refused_where_tcp_answers", target: "tcp.test", opts: DNSOptions{Types: []string{"A"}},
			class: ClassDNS, rcode: "REFUSED", samples: 3},
		{name: "bad_transport", target: "a.test", opts: DNSOptions{Transport: "quic"}, class: ClassOther},
		{name: "server_silent", target: "slow.test", timeout: 200 * time.Millisecond, class: ClassTimeout},
		{name: "unknown_type", target: "a.test", opts: DNSOptions{Types: []string{"BOGUS"}}, class: ClassOther},
		{name: "bad_name", target: "a..test", class: ClassOther},
		{name: "refused_closed_port", target: "a.test", opts: DNSOptions{Server: closedUDPPort(t)}, class: ClassRefused},
		{name: "policy_on_server", target: "a.test", opts: DNSOptions{Server: "10.0.0.53"}, class: ClassPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, func(c *Config) {
				if tc.proto != "" {
					c.IPProtocol = tc.proto
				}
			})
			if tc.opts.Server == "" {
				tc.opts.Server = srv
			}
			r := e.Probe(context.Background(), Target{Kind: placement.ProbeDNS, Addr: tc.target, Count: 3,
				Timeout: tc.timeout, DNS: tc.opts})
			if r.Class != tc.class {
				t.Fatalf("class %q err %v, want %q", r.Class, r.Err, tc.class)
			}
			if r.DNS.Rcode != tc.rcode || len(r.Samples) != tc.samples {
				t.Errorf("rcode %q samples %d, want %q %d", r.DNS.Rcode, len(r.Samples), tc.rcode, tc.samples)
			}
			for _, s := range r.Samples {
				if s <= 0 || time.Duration(s) > time.Second {
					t.Errorf("sample %v out of (0, 1s]", s)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestDNSProbeDefaultServer(t *testing.T) {
	srv := dnsServer(t)
	e := newEngine(t, func(c *Config) { c.DNSConfig = func() ([]string, error) { return []string{srv}, nil } })
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeDNS, Addr: "a.test", Count: 1})
	if !r.Success || r.DNS.Server != srv {
		t.Fatalf("success %v server %q err %v", r.Success, r.DNS.Server, r.Err)
	}
	e = newEngine(t, nil) // DNSConfig fails in tests
	r = e.Probe(context.Background(), Target{Kind: placement.ProbeDNS, Addr: "a.test", Count: 1})
	if r.Success || !strings.Contains(r.Error, "no server given") {
		t.Errorf("without a server: success %v err %q", r.Success, r.Error)
	}
}

func TestSplitServer(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port uint16
		bad  bool
	}{
		{"127.0.0.1", "127.0.0.1", 53, false},
		{"::1", "::1", 53, false},
		{"[::1]:5353", "::1", 5353, false},
		{"ns.example:54", "ns.example", 54, false},
		{"ns.example", "ns.example", 53, false},
		{"127.0.0.1:0", "", 0, true},
		{"a b", "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			h, p, err := splitServer(tc.in)
			if (err != nil) != tc.bad || h != tc.host || p != tc.port {
				t.Errorf("splitServer(%q) = %q %d %v", tc.in, h, p, err)
			}
		})
	}
}

// closedUDPPort returns a loopback UDP address nothing listens on (the kernel answers port unreachable).
func closedUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return netip.MustParseAddrPort(addr).String()
}

func TestDNSProbeCancel(t *testing.T) {
	srv := dnsServer(t)
	e := newEngine(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	r := e.Probe(ctx, Target{Kind: placement.ProbeDNS, Addr: "slow.test", Count: 1, Timeout: 10 * time.Second,
		DNS: DNSOptions{Server: srv}})
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("cancelled query took %v", el)
	}
	if r.Success || len(r.Samples) != 0 {
		t.Errorf("cancelled query: success %v samples %v", r.Success, r.Samples)
	}
}

// TestTCPProbeAsksChaos: a tcp probe of a DNS server's address with DNSOptions.Chaos times the TCP handshake
// and asks the same address CHAOS TXT id.server and hostname.bind; without Chaos it asks nothing, and a server
// that does not answer CHAOS leaves the probe a success with the error noted.
func TestTCPProbeAsksChaos(t *testing.T) {
	srv := dnsServer(t)
	e := newEngine(t, nil)
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: srv, Count: 2, DNS: DNSOptions{Chaos: true}})
	if !r.Success || len(r.Samples) != 2 {
		t.Fatalf("probe: success %v class %q err %v samples %d", r.Success, r.Class, r.Err, len(r.Samples))
	}
	if r.DNS == nil || r.DNS.ServerID != "lhr1" || r.DNS.Hostname != "ns1.lhr" || r.DNS.ChaosErr != "" || r.DNS.Server != srv {
		t.Errorf("DNS %+v; want id.server lhr1, hostname.bind ns1.lhr from %s", r.DNS, srv)
	}
	if r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: srv, Count: 1}); r.DNS != nil {
		t.Errorf("without Chaos: DNS %+v; want none", r.DNS)
	}
	// A TCP listener with no DNS server behind its port: the CHAOS questions fail, the probe does not.
	a := listenTCP(t, "127.0.0.1:0", nil)
	r = e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 1, Timeout: 300 * time.Millisecond,
		DNS: DNSOptions{Chaos: true}})
	if !r.Success || r.DNS == nil || r.DNS.ServerID != "" || r.DNS.ChaosErr == "" {
		t.Errorf("no DNS server: success %v DNS %+v; want success with the CHAOS error noted", r.Success, r.DNS)
	}
}
