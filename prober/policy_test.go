package prober

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/internal/testwait"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/placement/policytest"
)

// targetFor writes host (an IP or a name) as a target of kind.
func targetFor(kind placement.ProbeKind, host string) Target {
	hp := net.JoinHostPort(host, "9")
	switch kind {
	case placement.ProbeTCP:
		return Target{Kind: kind, Addr: hp, Count: 1}
	case placement.ProbeHTTP: // a zone is escaped in a URL (RFC 6874)
		return Target{Kind: kind, Addr: "http://" + strings.Replace(hp, "%", "%25", 1) + "/", Count: 1}
	case placement.ProbeDNS:
		return Target{Kind: kind, Addr: "example.com", Count: 1, DNS: DNSOptions{Server: hp}}
	}
	return Target{Kind: kind, Addr: host, Count: 1}
}

// TestPolicyRefusesEveryFormInANamespace probes every address the default policy refuses (placement's
// policytest table: each IPv6 form that embeds a denied IPv4 address, each special-purpose range), and an own
// prefix, with every registered probe kind, as a literal and through a name. It runs in a new network
// namespace whose only interface is loopback, with every refused address assigned to it that the kernel takes:
// nothing could leave the host even if the check were wrong, and a probe that slipped past it would reach
// loopback (a refusal or an answer, and packets counted on lo) instead of failing by policy. Each probe must
// be a policy result, sent nothing, and, through a name, show none of the addresses the name resolved to.
func TestPolicyRefusesEveryFormInANamespace(t *testing.T) {
	needRoot(t, "the namespace with only loopback that keeps refused probes on the host")
	own := netip.MustParsePrefix("1.2.3.0/24") // global: only an own prefix refuses it (never probed: refused)
	cases := append(policytest.Refused(),
		policytest.Case{Name: "own_prefix", Addr: "1.2.3.4", Rule: "own-prefix"})
	var targets []netip.Addr
	for _, c := range cases {
		targets = append(targets, netip.MustParseAddr(c.Addr))
	}
	ns := testnet.NewLoopbackNS(t, targets...)
	before := ns.Packets(t)
	for _, kind := range slices.Sorted(maps.Keys(Registry)) {
		for _, tc := range cases {
			a := netip.MustParseAddr(tc.Addr)
			for _, viaName := range []bool{false, true} {
				name := string(kind) + "/" + tc.Name
				if viaName {
					name += "/via_name"
				}
				t.Run(name, func(t *testing.T) {
					e := newEngine(t, func(c *Config) {
						c.Allow = nil
						c.OwnPrefixes = []netip.Prefix{own}
						c.Resolver = newFakeResolver(map[string][][]netip.Addr{"denied.test": {{a}}})
						c.Enter = ns.Enter
						c.Timeout = 300 * time.Millisecond // a probe that slipped through fails fast on loopback
					})
					host := tc.Addr
					if viaName {
						host = "denied.test"
					}
					r := e.Probe(context.Background(), targetFor(kind, host))
					if r.Class != ClassPolicy || !errors.Is(r.Err, placement.ErrDenied) {
						t.Fatalf("class %q err %v, want a policy refusal", r.Class, r.Err)
					}
					if r.Sent != 0 || len(r.Samples) != 0 {
						t.Errorf("sent %d, %d samples to a denied address", r.Sent, len(r.Samples))
					}
					if !viaName {
						if !strings.Contains(r.Error, "rule "+tc.Rule+", ") {
							t.Errorf("error %q does not name rule %q", r.Error, tc.Rule)
						}
						if tc.Embeds != "" && !strings.Contains(r.Error, "embeds "+tc.Embeds) {
							t.Errorf("error %q does not say it embeds %s", r.Error, tc.Embeds)
						}
						return
					}
					want := `target "denied.test" resolves only to addresses denied by policy (` + tc.Rule
					if !strings.Contains(r.Error, want) {
						t.Errorf("error %q lacks %q", r.Error, want)
					}
					for _, leak := range embeddedAndSelf(a) {
						if strings.Contains(r.Error, leak) {
							t.Errorf("error %q echoes the resolved address %s", r.Error, leak)
						}
					}
					if r.IP.IsValid() || r.Resolved != nil {
						t.Errorf("result echoes the resolved addresses: ip %v resolved %v", r.IP, r.Resolved)
					}
				})
			}
		}
	}
	if after := ns.Packets(t); after != before {
		t.Errorf("%d packets went over loopback in the namespace during refused probes", after-before)
	}
}

// embeddedAndSelf returns the strings a refusal through a name must not contain: the address (unless it is
// too short to be told from other text, "::") and every IPv4 address it embeds.
func embeddedAndSelf(a netip.Addr) []string {
	var out []string
	if s := a.Unmap().String(); len(s) > 3 {
		out = append(out, s)
	}
	for _, em := range placement.Embedded(a) {
		out = append(out, em.Addr.String())
	}
	return out
}

// TestRebinding: a name is resolved once per probe, every sample dials the checked address, and a later
// resolution to a denied address is refused.
func TestRebinding(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0", nil)
	_, port, _ := net.SplitHostPort(a.addr())
	other := listenTCP(t, "127.0.0.2:"+port, nil) // where a rebinding resolver would send a second dial
	res := newFakeResolver(map[string][][]netip.Addr{
		"rebind.test": {addrs("127.0.0.1"), addrs("127.0.0.2"), addrs("10.0.0.1")},
		"mixed.test":  {addrs("127.0.0.1", "10.0.0.1")},
		"two.test":    {addrs("127.0.0.1", "127.0.0.2")},
	})
	e := newEngine(t, func(c *Config) { c.Resolver = res })
	ctx := context.Background()

	r := e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: "rebind.test:" + port, Count: 3})
	if !r.Success || r.IP != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("first probe: success %v ip %v err %v", r.Success, r.IP, r.Err)
	}
	if n := res.lookups("rebind.test"); n != 1 {
		t.Errorf("resolved %d times for one probe, want 1", n)
	}
	if !slices.Equal(r.Resolved, addrs("127.0.0.1")) {
		t.Errorf("Resolved %v, want the name's answer set [127.0.0.1]", r.Resolved)
	}
	testwait.Eventually(t, 5*time.Second, "3 connections to the checked address", func() bool { return a.count() == 3 })
	if n := other.count(); n != 0 {
		t.Errorf("%d connections reached the rebound address", n)
	}

	r = e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: "rebind.test:" + port, Count: 1})
	if !r.Success || r.IP != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("second probe: success %v ip %v err %v", r.Success, r.IP, r.Err)
	}
	r = e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: "rebind.test:" + port, Count: 1})
	if r.Class != ClassPolicy || !strings.Contains(r.Error, "resolves only to addresses denied by policy (rfc1918)") ||
		r.Sent != 0 || strings.Contains(r.Error, "10.0.0.1") {
		t.Errorf("rebound to 10.0.0.1: class %q err %q sent %d, want policy naming rfc1918, not the address",
			r.Class, r.Error, r.Sent)
	}

	// A name with one denied address among public ones is refused whole, without echoing the addresses.
	want := `target "mixed.test" resolves to 2 addresses, 1 of them denied by policy (rfc1918)`
	r = e.Probe(ctx, Target{Kind: placement.ProbeTCP, Addr: "mixed.test:" + port, Count: 1})
	if r.Class != ClassPolicy || !strings.Contains(r.Error, want) || strings.Contains(r.Error, "10.0.0.1") {
		t.Errorf("name with one denied address: class %q err %q, want policy with %q and no address", r.Class, r.Error, want)
	}
	if r.Resolved != nil || r.IP.IsValid() {
		t.Errorf("refused name: Resolved %v IP %v, want neither echoed", r.Resolved, r.IP)
	}

	// An HTTP probe records the answer set too; a literal IP has none.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer hs.Close()
	_, hport, _ := net.SplitHostPort(hs.Listener.Addr().String())
	r = e.Probe(ctx, Target{Kind: placement.ProbeHTTP, Addr: "http://two.test:" + hport + "/"})
	if !r.Success || !slices.Equal(r.Resolved, addrs("127.0.0.1", "127.0.0.2")) {
		t.Errorf("http: success %v err %v Resolved %v, want [127.0.0.1 127.0.0.2]", r.Success, r.Err, r.Resolved)
	}
	if r = e.Probe(ctx, Target{Kind: placement.ProbeHTTP, Addr: hs.URL + "/"}); !r.Success || r.Resolved != nil {
		t.Errorf("http to a literal IP: success %v err %v Resolved %v, want success and none", r.Success, r.Err, r.Resolved)
	}
}

func TestIPProtocolPreference(t *testing.T) {
	res := newFakeResolver(map[string][][]netip.Addr{
		"dual.test":   {addrs("::1", "127.0.0.1")},
		"v6only.test": {addrs("::1")},
		"v4only.test": {addrs("127.0.0.1")},
	})
	tests := []struct {
		name     string
		host     string
		proto    IPProtocol
		noFall   bool
		wantIP   string // empty: no address, class dns
		wantFail bool
	}{
		{name: "dual_prefers_ip4", host: "dual.test", proto: IP4, wantIP: "127.0.0.1"},
		{name: "dual_prefers_ip6", host: "dual.test", proto: IP6, wantIP: "::1"},
		{name: "v6only_falls_back", host: "v6only.test", proto: IP4, wantIP: "::1"},
		{name: "v6only_no_fallback", host: "v6only.test", proto: IP4, noFall: true},
		{name: "v4only_falls_back", host: "v4only.test", proto: IP6, wantIP: "127.0.0.1"},
		{name: "v4only_no_fallback", host: "v4only.test", proto: IP6, noFall: true},
		{name: "literal_ignores_preference", host: "127.0.0.1", proto: IP6, noFall: true, wantIP: "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, func(c *Config) { c.Resolver = res; c.IPProtocol = tc.proto; c.NoIPFallback = tc.noFall })
			ip, err := e.resolve(context.Background(), tc.host)
			if tc.wantIP == "" {
				if !errors.Is(err, ErrNoAddress) || Classify(err) != ClassDNS {
					t.Fatalf("ip %v err %v, want ErrNoAddress (class dns)", ip, err)
				}
				return
			}
			if err != nil || ip != netip.MustParseAddr(tc.wantIP) {
				t.Fatalf("ip %v err %v, want %s", ip, err, tc.wantIP)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	ifaddrs := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.ParseIP("203.0.113.7"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("2001:db8::7"), Mask: net.CIDRMask(64, 128)},
		}, nil
	}
	tests := []struct {
		name   string
		mod    func(*Config)
		errHas []string // empty: no error
	}{
		{name: "local_sources_ok", mod: func(c *Config) { c.Sources = addrs("127.0.0.1", "2001:db8::7") }},
		{name: "source_not_local", mod: func(c *Config) { c.Sources = addrs("198.18.0.1") },
			errHas: []string{"source address 198.18.0.1", "not assigned to any local interface"}},
		// lo answers its whole 127.0.0.1/8; a non-loopback prefix counts only for its own address.
		{name: "loopback_prefix_source_ok", mod: func(c *Config) { c.Sources = addrs("127.0.0.2") }},
		{name: "other_address_of_a_prefix", mod: func(c *Config) { c.Sources = addrs("203.0.113.8") },
			errHas: []string{"source address 203.0.113.8", "not assigned to any local interface"}},
		{name: "source_in_own_prefix", mod: func(c *Config) {
			c.Sources = addrs("203.0.113.7")
			c.OwnPrefixes = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")}
		}, errHas: []string{"source address 203.0.113.7", "own prefix 203.0.113.0/24"}},
		{name: "interface_list_fails", mod: func(c *Config) {
			c.Sources = addrs("127.0.0.1")
			c.InterfaceAddrs = func() ([]net.Addr, error) { return nil, errors.New("netlink down") }
		}, errHas: []string{"listing interface addresses", "netlink down"}},
		{name: "count_too_big", mod: func(c *Config) { c.Count = MaxCount + 1 }, errHas: []string{"Count 101"}},
		{name: "bad_ip_protocol", mod: func(c *Config) { c.IPProtocol = "ip5" }, errHas: []string{`IPProtocol "ip5"`}},
		{name: "bad_close", mod: func(c *Config) { c.Close = "slam" }, errHas: []string{`Close "slam"`}},
		{name: "negative_rate", mod: func(c *Config) { c.TargetRate = -1 }, errHas: []string{"TargetRate -1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.InterfaceAddrs = ifaddrs
			tc.mod(&cfg)
			_, err := New(cfg)
			if len(tc.errHas) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New accepted the config, want an error with %q", tc.errHas)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestRealInterfaceAddrs checks the default interface listing: loopback is local, 198.18.0.1 is not (the
// emulated WAN lives in namespaces, never on the host).
func TestRealInterfaceAddrs(t *testing.T) {
	if _, err := New(Config{Sources: addrs("127.0.0.1")}); err != nil {
		t.Errorf("127.0.0.1 as source: %v", err)
	}
	e, err := New(Config{Sources: addrs("127.0.0.2"), Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatalf("127.0.0.2 as source: %v", err)
	}
	a := listenTCP(t, "127.0.0.1:0", nil)
	if r := e.Probe(context.Background(), Target{Kind: placement.ProbeTCP, Addr: a.addr(), Count: 1}); !r.Success || r.Source != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("probe from 127.0.0.2: success %v source %v err %v", r.Success, r.Source, r.Err)
	}
	if _, err := New(Config{Sources: addrs("198.18.0.1")}); err == nil || !strings.Contains(err.Error(), "198.18.0.1") {
		t.Errorf("198.18.0.1 as source: %v, want an error naming it", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassNone},
		{"denied", placement.DefaultPolicy().Check(netip.MustParseAddr("10.0.0.1")), ClassPolicy},
		{"dns_error", &net.DNSError{Err: "no such host", Name: "x"}, ClassDNS},
		{"rcode", ErrRcode, ClassDNS},
		{"http_status", ErrHTTPStatus, ClassHTTPStatus},
		{"timeout_sentinel", ErrTimeout, ClassTimeout},
		{"deadline", context.DeadlineExceeded, ClassTimeout},
		{"cancelled", context.Canceled, ClassOther},
		{"other", errors.New("boom"), ClassOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
