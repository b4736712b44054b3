package placement

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"code.dny.dev/ssrf"
	"github.com/vantage-edge/vantage/placement/policytest"
)

func TestPolicyCases(t *testing.T) {
	p := DefaultPolicy()
	for _, tc := range policytest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			err := p.Check(netip.MustParseAddr(tc.Addr))
			if tc.Rule == "" {
				if err != nil {
					t.Fatalf("%s: unexpected refusal %v", tc.Addr, err)
				}
				return
			}
			var de *DeniedError
			if !errors.Is(err, ErrDenied) || !errors.As(err, &de) {
				t.Fatalf("%s: err = %v, want a *DeniedError wrapping ErrDenied", tc.Addr, err)
			}
			if de.Rule.Name != tc.Rule || !strings.Contains(err.Error(), "rule "+tc.Rule+", "+de.Rule.Prefix.String()) {
				t.Errorf("%s: error %q names rule %q, want %q", tc.Addr, err, de.Rule.Name, tc.Rule)
			}
			if got := embedsOf(de); got != tc.Embeds {
				t.Errorf("%s: refused for embedding %q, want %q", tc.Addr, got, tc.Embeds)
			}
			if tc.Embeds != "" && !strings.Contains(err.Error(), "embeds "+tc.Embeds+": rule "+tc.Rule) {
				t.Errorf("%s: error %q does not say it embeds %s", tc.Addr, err, tc.Embeds)
			}
			want := tc.Rule
			if tc.Embeds != "" {
				want += " via " + de.Embedded.Form
			}
			if de.Reason() != want || strings.Contains(de.Reason(), de.Embedded.Addr.String()) {
				t.Errorf("%s: Reason %q, want %q (no address)", tc.Addr, de.Reason(), want)
			}
		})
	}
}

func embedsOf(de *DeniedError) string {
	if !de.Embedded.Addr.IsValid() {
		return ""
	}
	return de.Embedded.String()
}

// TestPolicyErrorText pins the text of a refusal: the address, what it embeds and the rule.
func TestPolicyErrorText(t *testing.T) {
	for addr, want := range map[string]string{
		"64:ff9b::a9fe:a9fe": "address 64:ff9b::a9fe:a9fe: denied by policy (embeds 169.254.169.254, NAT64 64:ff9b::/96: rule link-local, 169.254.0.0/16)",
		"10.0.0.5":           "address 10.0.0.5: denied by policy (rule rfc1918, 10.0.0.0/8)",
		"64:ff9b::808:808":   "address 64:ff9b::808:808: denied by policy (rule nat64, 64:ff9b::/96)",
	} {
		if err := DefaultPolicy().Check(netip.MustParseAddr(addr)); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", addr, err, want)
		}
	}
	if err := DefaultPolicy().Check(netip.Addr{}); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "invalid address") {
		t.Errorf("zero Addr: %v, want a refusal of an invalid address", err)
	}
}

func TestEmbedded(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want []string // "a.b.c.d FORM"
	}{
		{"64:ff9b::a9fe:a9fe", []string{"169.254.169.254 NAT64"}},
		{"64:ff9b:1::a00:1", []string{"10.0.0.1 NAT64 local-use"}},
		{"::ffff:0:a9fe:a9fe", []string{"169.254.169.254 SIIT"}},
		{"::ffff:a9fe:a9fe", []string{"169.254.169.254 IPv4-mapped"}},
		{"::7f00:1", []string{"127.0.0.1 IPv4-compatible"}},
		{"::", nil},
		{"::1", nil},
		{"2002:c000:204::1", []string{"192.0.2.4 6to4"}},
		// RFC 4380 section 4's example: server 65.54.227.120, client 192.0.2.45 behind port 40000.
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", []string{"65.54.227.120 Teredo server", "192.0.2.45 Teredo client"}},
		{"2606:4700::1111", nil},
		{"10.0.0.1", nil},
		{"fe80::1%eth0", nil},
	} {
		var got []string
		for _, e := range Embedded(netip.MustParseAddr(tc.addr)) {
			got = append(got, e.Addr.String()+" "+e.Form)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Embedded(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestDefaultRulesCoverTheRegistries: every prefix of the library generated from the IANA special-purpose
// registries is a default rule, and all of IPv6 outside 2000::/3 is denied while inside it only registry
// prefixes are.
func TestDefaultRulesCoverTheRegistries(t *testing.T) {
	var have []netip.Prefix
	for _, r := range DefaultDenyRules {
		have = append(have, r.Prefix)
	}
	for _, p := range slices.Concat(ssrf.IPv4DeniedPrefixes, ssrf.IPv6DeniedPrefixes, registryLag) {
		if !slices.Contains(have, p) {
			t.Errorf("registry prefix %v is not a default deny rule", p)
		}
		if _, ok := ruleNames[p]; !ok {
			t.Errorf("registry prefix %v has no short name (it is denied as %q)", p, "special-purpose")
		}
	}
	p := DefaultPolicy()
	for i := range 256 {
		// One address per /8 of IPv6, away from the registries' small prefixes.
		a := netip.AddrFrom16([16]byte{byte(i), 0x42, 0x42, 0x42, 15: 1})
		err := p.Check(a)
		global := IPv6GlobalUnicast.Contains(a)
		if registry := slices.ContainsFunc(ssrf.IPv6DeniedPrefixes, func(q netip.Prefix) bool { return q.Contains(a) }); registry {
			continue
		}
		if global != (err == nil) {
			t.Errorf("%v: global unicast %v, refusal %v", a, global, err)
		}
	}
}

func TestPolicyAllowListLiftsTheDeny(t *testing.T) {
	allow, err := ParsePrefixes("--allow", []string{"127.0.0.0/8", "10.1.2.3", "198.18.0.0/15"})
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy(allow...)
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "198.18.0.1", "198.19.255.254"} {
		if err := p.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s allowed explicitly but refused: %v", a, err)
		}
	}
	if err := p.Check(netip.MustParseAddr("10.1.2.4")); err == nil {
		t.Error("10.1.2.4 is outside the allow-list but was accepted")
	}
	if err := DefaultPolicy().Check(netip.MustParseAddr("198.18.0.1")); !errors.Is(err, ErrDenied) {
		t.Errorf("198.18.0.1 without --allow: %v, want a refusal", err)
	}
}

// TestPolicyAllowOfAnEmbeddingForm: allowing an embedding prefix (a PoP with NAT64) still checks the IPv4
// address inside, and allowing the IPv4 address does not open the IPv6 form around it.
func TestPolicyAllowOfAnEmbeddingForm(t *testing.T) {
	pfx := func(s ...string) []netip.Prefix {
		out, err := ParsePrefixes("allow", s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		allow []netip.Prefix
		addr  string
		rule  string // "" allowed
	}{
		{"nat64_allowed_public", pfx("64:ff9b::/96"), "64:ff9b::808:808", ""},
		{"nat64_allowed_metadata", pfx("64:ff9b::/96"), "64:ff9b::a9fe:a9fe", "link-local"},
		{"nat64_allowed_testbed_not", pfx("64:ff9b::/96"), "64:ff9b::c612:1", "benchmarking"},
		{"nat64_and_testbed", pfx("64:ff9b::/96", "198.18.0.0/15"), "64:ff9b::c612:1", ""},
		{"testbed_only", pfx("198.18.0.0/15"), "64:ff9b::c612:1", "nat64"},
		{"nat64_address_allowed_metadata", pfx("64:ff9b::a9fe:a9fe"), "64:ff9b::a9fe:a9fe", "link-local"},
		{"6to4_allowed_rfc1918", pfx("2002::/16"), "2002:a00:1::1", "rfc1918"},
		{"6to4_allowed_public", pfx("2002::/16"), "2002:808:808::1", ""},
		{"teredo_allowed_client_loopback", pfx("2001::/32"), "2001:0:808:808:8000:ffff:80ff:fffe", "loopback"},
		{"ipv6_loopback", pfx("::1/128"), "::1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := DefaultPolicy(tc.allow...).Check(netip.MustParseAddr(tc.addr))
			var de *DeniedError
			switch {
			case tc.rule == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.rule != "" && !errors.As(err, &de):
				t.Errorf("err %v, want a refusal by %s", err, tc.rule)
			case tc.rule != "" && de.Rule.Name != tc.rule:
				t.Errorf("refused by %q (%v), want %q", de.Rule.Name, err, tc.rule)
			}
		})
	}
}

func TestParsePrefixesNamesTheBadValue(t *testing.T) {
	_, err := ParsePrefixes("--allow", []string{"198.18.0.0/15", "nonsense"})
	if err == nil || !strings.Contains(err.Error(), `--allow: "nonsense"`) {
		t.Fatalf("err = %v", err)
	}
}
