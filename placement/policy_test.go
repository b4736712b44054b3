package placement

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestPolicyDeniesEveryDefaultRange(t *testing.T) {
	p := DefaultPolicy()
	for _, tc := range []struct{ addr, rule string }{
		{"0.1.2.3", "unspecified"},
		{"127.0.0.1", "loopback"},
		{"10.1.2.3", "rfc1918"},
		{"172.31.255.1", "rfc1918"},
		{"192.168.1.1", "rfc1918"},
		{"100.64.0.1", "cgnat"},
		{"169.254.169.254", "link-local"},
		{"224.0.0.251", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::ffff:10.0.0.1", "rfc1918"},
		{"fd00::1", "ula"},
		{"fe80::1", "link-local"},
		{"ff02::1", "multicast"},
	} {
		err := p.Check(netip.MustParseAddr(tc.addr))
		if !errors.Is(err, ErrDenied) {
			t.Errorf("%s: err = %v, want ErrDenied", tc.addr, err)
			continue
		}
		if !strings.Contains(err.Error(), "rule "+tc.rule) || !strings.Contains(err.Error(), "address ") {
			t.Errorf("%s: error %q does not name rule %q", tc.addr, err, tc.rule)
		}
	}
	for _, ok := range []string{"8.8.8.8", "198.18.0.1", "2001:db8::1", "172.32.0.1", "100.128.0.1"} {
		if err := p.Check(netip.MustParseAddr(ok)); err != nil {
			t.Errorf("%s: unexpected refusal %v", ok, err)
		}
	}
}

func TestPolicyAllowListLiftsTheDeny(t *testing.T) {
	allow, err := ParsePrefixes("--allow", []string{"127.0.0.0/8", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy(allow...)
	for _, a := range []string{"127.0.0.1", "10.1.2.3"} {
		if err := p.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s allowed explicitly but refused: %v", a, err)
		}
	}
	if err := p.Check(netip.MustParseAddr("10.1.2.4")); err == nil {
		t.Error("10.1.2.4 is outside the allow-list but was accepted")
	}
}

func TestParsePrefixesNamesTheBadValue(t *testing.T) {
	_, err := ParsePrefixes("--allow", []string{"198.18.0.0/15", "nonsense"})
	if err == nil || !strings.Contains(err.Error(), `--allow: "nonsense"`) {
		t.Fatalf("err = %v", err)
	}
}
