package placement

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckProbeTarget(t *testing.T) {
	p := Parser{Policy: DefaultPolicy(netip.MustParsePrefix("198.18.0.0/15"))}
	long := strings.Repeat("a", 5000)
	name253 := strings.Repeat(strings.Repeat("a", 62)+".", 4)[:252] + "b" // 253 bytes, labels of 62
	for _, tc := range []struct {
		name   string
		kind   ProbeKind
		target string
		want   string // normalised; "" when refused
		err    error
		text   string // in the error
	}{
		{"tcp", ProbeTCP, "DB.Example.com:5432", "db.example.com:5432", nil, ""},
		{"tcp_v6", ProbeTCP, "[2606:4700::1]:443", "[2606:4700::1]:443", nil, ""},
		{"tcp_allowed", ProbeTCP, "198.18.0.1:80", "198.18.0.1:80", nil, ""},
		{"tcp_253_name", ProbeTCP, name253 + ":1", name253 + ":1", nil, ""},
		{"tcp_254_name", ProbeTCP, name253 + "c:1", "", ErrBadHost, "254 bytes, more than 253"},
		{"tcp_no_port", ProbeTCP, "db.example.com", "", ErrBadHost, "missing port"},
		{"tcp_denied", ProbeTCP, "10.0.0.1:80", "", ErrDenied, "rfc1918"},
		{"tcp_nat64_metadata", ProbeTCP, "[64:ff9b::a9fe:a9fe]:80", "", ErrDenied, "169.254.169.254"},
		{"tcp_5000_bytes", ProbeTCP, long + ":80", "", ErrBadHost, "5003 bytes, more than 259"},
		{"tcp_long_port", ProbeTCP, "a:" + strings.Repeat("x", 250), "", ErrBadHost, "is not a number"},
		{"icmp_ip", ProbeICMP, "1.1.1.1", "1.1.1.1", nil, ""},
		{"icmp_name", ProbeICMP, "One.One.One.One.", "one.one.one.one", nil, ""},
		{"icmp_port", ProbeICMP, "1.1.1.1:80", "", ErrBadHostname, "has a port"},
		{"icmp_loopback", ProbeICMP, "127.0.0.1", "", ErrDenied, "loopback"},
		{"icmp_5000_bytes", ProbeICMP, long, "", ErrBadHostname, "5000 bytes, more than 253"},
		{"dns_name", ProbeDNS, "example.com", "example.com", nil, ""},
		{"dns_numeric", ProbeDNS, "10.1", "", ErrBadHostname, "numeric last label"},
		{"dns_space", ProbeDNS, "a b.com", "", ErrBadHostname, "character ' '"},
		{"http_url", ProbeHTTP, "https://API.example.com/health?x=1", "https://api.example.com/health?x=1", nil, ""},
		{"http_url_port", ProbeHTTP, "http://example.com:8080/", "http://example.com:8080/", nil, ""},
		{"http_url_v6", ProbeHTTP, "http://[2606:4700::1]/", "http://[2606:4700::1]/", nil, ""},
		{"http_bare", ProbeHTTP, "example.com", "example.com", nil, ""},
		{"http_bare_port", ProbeHTTP, "example.com:8443", "example.com:8443", nil, ""},
		{"http_scheme", ProbeHTTP, "ftp://example.com/", "", ErrBadHostname, "want http or https"},
		{"http_user", ProbeHTTP, "http://u:p@example.com/", "", ErrBadHostname, "user information"},
		{"http_fragment", ProbeHTTP, "http://example.com/#x", "", ErrBadHostname, "fragment"},
		{"http_metadata", ProbeHTTP, "http://169.254.169.254/latest/meta-data/", "", ErrDenied, "link-local"},
		{"http_empty_port", ProbeHTTP, "http://example.com:/", "", ErrBadHost, "empty port"},
		{"http_port_0", ProbeHTTP, "http://example.com:0/", "", ErrBadHost, "out of range"},
		{"http_long_host", ProbeHTTP, "http://" + long[:300] + "/", "", ErrBadHostname, "300 bytes, more than 253"},
		{"http_long", ProbeHTTP, "http://example.com/" + long, "", ErrBadHostname, "5019 bytes, more than 2048"},
		{"http_empty", ProbeHTTP, "", "", ErrBadHostname, "empty"},
		{"unknown_kind", ProbeKind("udp"), "x:1", "", nil, "want one of tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.CheckProbeTarget(tc.kind, tc.target)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("CheckProbeTarget(%s, %q) = %q, %v; want %q", tc.kind, tc.target, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.text) || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("CheckProbeTarget(%s, %.40q) = %q, %v; want an error wrapping %v containing %q", tc.kind, tc.target, got, err, tc.err, tc.text)
			}
			if n := len(err.Error()); n > 300 {
				t.Errorf("error of %d bytes: a refusal must not echo the value", n)
			}
		})
	}
}
