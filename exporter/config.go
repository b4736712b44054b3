package exporter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// File is a blackbox_exporter configuration file (its 0.23 format): named modules. Every key blackbox_exporter
// 0.23 knows is accepted, an unknown key is an error (as in blackbox_exporter, which decodes with
// KnownFields). Keys the exporter does not honour make their module unsupported (see Module.Unsupported),
// not the file invalid.
type File struct {
	Modules map[string]Module `yaml:"modules"`
}

// Module is one blackbox_exporter module. Options the exporter does not implement are typed any: set, they
// make the module unsupported.
type Module struct {
	Prober  string        `yaml:"prober,omitempty"`
	Timeout time.Duration `yaml:"timeout,omitempty"` // 0: the scrape's timeout less 0.5 s
	HTTP    HTTPProbe     `yaml:"http,omitempty"`
	TCP     TCPProbe      `yaml:"tcp,omitempty"`
	ICMP    ICMPProbe     `yaml:"icmp,omitempty"`
	DNS     DNSProbe      `yaml:"dns,omitempty"`
	GRPC    any           `yaml:"grpc,omitempty"` // accepted, never run
}

// IPOptions are the options every prober shares.
type IPOptions struct {
	IPProtocol         string `yaml:"preferred_ip_protocol,omitempty"` // ip4 or ip6 (the default)
	IPProtocolFallback *bool  `yaml:"ip_protocol_fallback,omitempty"`  // default true
	SourceIPAddress    string `yaml:"source_ip_address,omitempty"`
}

// TLSConfig is prometheus/common's TLS configuration; ca_file, server_name and insecure_skip_verify are
// honoured.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file,omitempty"`
	ServerName         string `yaml:"server_name,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
	CA                 any    `yaml:"ca,omitempty"`
	Cert               any    `yaml:"cert,omitempty"`
	Key                any    `yaml:"key,omitempty"`
	CertFile           any    `yaml:"cert_file,omitempty"`
	KeyFile            any    `yaml:"key_file,omitempty"`
	MinVersion         any    `yaml:"min_version,omitempty"`
	MaxVersion         any    `yaml:"max_version,omitempty"`
}

// HTTPProbe is blackbox_exporter's http module with prometheus/common's HTTP client options inline.
type HTTPProbe struct {
	IPProtocol                   string            `yaml:"preferred_ip_protocol,omitempty"`
	IPProtocolFallback           *bool             `yaml:"ip_protocol_fallback,omitempty"`
	ValidStatusCodes             []int             `yaml:"valid_status_codes,omitempty"` // default 2xx
	NoFollowRedirects            *bool             `yaml:"no_follow_redirects,omitempty"`
	Method                       string            `yaml:"method,omitempty"` // default GET
	Headers                      map[string]string `yaml:"headers,omitempty"`
	FollowRedirects              *bool             `yaml:"follow_redirects,omitempty"` // default true
	EnableHTTP2                  *bool             `yaml:"enable_http2,omitempty"`     // HTTP/1.1 is always used
	TLSConfig                    TLSConfig         `yaml:"tls_config,omitempty"`
	ValidHTTPVersions            any               `yaml:"valid_http_versions,omitempty"`
	SkipResolvePhaseWithProxy    any               `yaml:"skip_resolve_phase_with_proxy,omitempty"`
	FailIfSSL                    any               `yaml:"fail_if_ssl,omitempty"`
	FailIfNotSSL                 any               `yaml:"fail_if_not_ssl,omitempty"`
	FailIfBodyMatchesRegexp      any               `yaml:"fail_if_body_matches_regexp,omitempty"`
	FailIfBodyNotMatchesRegexp   any               `yaml:"fail_if_body_not_matches_regexp,omitempty"`
	FailIfHeaderMatchesRegexp    any               `yaml:"fail_if_header_matches,omitempty"`
	FailIfHeaderNotMatchesRegexp any               `yaml:"fail_if_header_not_matches,omitempty"`
	Body                         any               `yaml:"body,omitempty"`
	Compression                  any               `yaml:"compression,omitempty"`
	BodySizeLimit                any               `yaml:"body_size_limit,omitempty"`
	BasicAuth                    any               `yaml:"basic_auth,omitempty"`
	Authorization                any               `yaml:"authorization,omitempty"`
	OAuth2                       any               `yaml:"oauth2,omitempty"`
	BearerToken                  any               `yaml:"bearer_token,omitempty"`
	BearerTokenFile              any               `yaml:"bearer_token_file,omitempty"`
	ProxyURL                     any               `yaml:"proxy_url,omitempty"`
	NoProxy                      any               `yaml:"no_proxy,omitempty"`
	ProxyFromEnvironment         any               `yaml:"proxy_from_environment,omitempty"`
	ProxyConnectHeader           any               `yaml:"proxy_connect_header,omitempty"`
}

// TCPProbe is blackbox_exporter's tcp module: a TCP connect; query_response and TLS are not supported.
type TCPProbe struct {
	IPOptions     `yaml:",inline"`
	QueryResponse any       `yaml:"query_response,omitempty"`
	TLS           bool      `yaml:"tls,omitempty"`
	TLSConfig     TLSConfig `yaml:"tls_config,omitempty"` // only with tls, which is not supported
}

// ICMPProbe is blackbox_exporter's icmp module: one echo request.
type ICMPProbe struct {
	IPOptions    `yaml:",inline"`
	PayloadSize  any `yaml:"payload_size,omitempty"`
	DontFragment any `yaml:"dont_fragment,omitempty"`
	TTL          int `yaml:"ttl,omitempty"` // only the kernel's default, 64, is supported
}

// DNSProbe is blackbox_exporter's dns module: one query of QueryType (default ANY) for QueryName to the
// target resolver.
type DNSProbe struct {
	IPOptions          `yaml:",inline"`
	QueryName          string   `yaml:"query_name,omitempty"`
	QueryType          string   `yaml:"query_type,omitempty"`         // default ANY
	QueryClass         string   `yaml:"query_class,omitempty"`        // IN only
	TransportProtocol  string   `yaml:"transport_protocol,omitempty"` // udp (default) or tcp
	Recursion          *bool    `yaml:"recursion_desired,omitempty"`  // true only
	ValidRcodes        []string `yaml:"valid_rcodes,omitempty"`       // NOERROR only
	DNSOverTLS         any      `yaml:"dns_over_tls,omitempty"`
	TLSConfig          any      `yaml:"tls_config,omitempty"`
	ValidateAnswer     any      `yaml:"validate_answer_rrs,omitempty"`
	ValidateAuthority  any      `yaml:"validate_authority_rrs,omitempty"`
	ValidateAdditional any      `yaml:"validate_additional_rrs,omitempty"`
}

// ErrConfig is wrapped by every error of Load and Parse.
var ErrConfig = errors.New("invalid blackbox_exporter configuration")

// Load reads and parses the blackbox_exporter configuration file at path.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("exporter: config %s: %w", path, err)
	}
	return Parse(path, b)
}

// Parse parses a blackbox_exporter configuration; name (the file's) prefixes errors. Unknown keys, a value of
// the wrong type, an invalid preferred_ip_protocol or source_ip_address and a dns module without query_name
// are errors wrapping ErrConfig.
func Parse(name string, b []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("exporter: config %s: %w: %w", name, ErrConfig, err)
	}
	for _, n := range slices.Sorted(maps.Keys(f.Modules)) {
		if err := f.Modules[n].validate(); err != nil {
			return nil, fmt.Errorf("exporter: config %s: module %q: %w: %w", name, n, ErrConfig, err)
		}
	}
	return &f, nil
}

// validate checks what blackbox_exporter rejects, and what it would silently take for something else.
func (m Module) validate() error {
	for _, o := range []struct {
		what string
		ip   string
		src  string
	}{
		{"http", m.HTTP.IPProtocol, ""},
		{"tcp", m.TCP.IPProtocol, m.TCP.SourceIPAddress},
		{"icmp", m.ICMP.IPProtocol, m.ICMP.SourceIPAddress},
		{"dns", m.DNS.IPProtocol, m.DNS.SourceIPAddress},
	} {
		switch o.ip {
		case "", "ip4", "ip6":
		default:
			return fmt.Errorf("%s.preferred_ip_protocol %q: want ip4 or ip6", o.what, o.ip)
		}
		if o.src != "" {
			if _, err := netip.ParseAddr(o.src); err != nil {
				return fmt.Errorf("%s.source_ip_address %q: %w", o.what, o.src, err)
			}
		}
	}
	if m.ICMP.TTL < 0 || m.ICMP.TTL > 255 {
		return fmt.Errorf("icmp.ttl %d: want 0 to 255", m.ICMP.TTL)
	}
	if m.Prober == "dns" && m.DNS.QueryName == "" {
		return errors.New("query name must be set for DNS module")
	}
	return nil
}

// Probers are the blackbox_exporter probers the exporter runs.
var Probers = []string{"tcp", "http", "icmp", "dns"}

// defaultTTL is the ICMP TTL blackbox_exporter's icmp module defaults to (the kernel's, which the prober keeps).
const defaultTTL = 64

// Unsupported returns why m cannot be run by the exporter (each option it sets but the exporter does not
// honour), or nil.
func (m Module) Unsupported() []string {
	if !slices.Contains(Probers, m.Prober) {
		return []string{fmt.Sprintf("prober %q is not supported (vantage exporter runs %s)", m.Prober,
			strings.Join(Probers, ", "))}
	}
	var why []string
	set := func(prefix string, opts map[string]any) {
		for _, k := range slices.Sorted(maps.Keys(opts)) {
			if opts[k] != nil {
				why = append(why, prefix+k+" is not supported")
			}
		}
	}
	tlsOpts := func(prefix string, t TLSConfig) {
		set(prefix+"tls_config.", map[string]any{"ca": t.CA, "cert": t.Cert, "key": t.Key, "cert_file": t.CertFile,
			"key_file": t.KeyFile, "min_version": t.MinVersion, "max_version": t.MaxVersion})
	}
	switch h := m.HTTP; m.Prober {
	case "http":
		set("http.", map[string]any{"valid_http_versions": h.ValidHTTPVersions,
			"skip_resolve_phase_with_proxy": h.SkipResolvePhaseWithProxy, "fail_if_ssl": h.FailIfSSL,
			"fail_if_not_ssl": h.FailIfNotSSL, "fail_if_body_matches_regexp": h.FailIfBodyMatchesRegexp,
			"fail_if_body_not_matches_regexp": h.FailIfBodyNotMatchesRegexp,
			"fail_if_header_matches":          h.FailIfHeaderMatchesRegexp,
			"fail_if_header_not_matches":      h.FailIfHeaderNotMatchesRegexp, "body": h.Body,
			"compression": h.Compression, "body_size_limit": h.BodySizeLimit, "basic_auth": h.BasicAuth,
			"authorization": h.Authorization, "oauth2": h.OAuth2, "bearer_token": h.BearerToken,
			"bearer_token_file": h.BearerTokenFile, "proxy_url": h.ProxyURL, "no_proxy": h.NoProxy,
			"proxy_from_environment": h.ProxyFromEnvironment, "proxy_connect_header": h.ProxyConnectHeader})
		tlsOpts("http.", h.TLSConfig)
	case "tcp":
		set("tcp.", map[string]any{"query_response": m.TCP.QueryResponse})
		if m.TCP.TLS {
			why = append(why, "tcp.tls is not supported")
		}
	case "icmp":
		set("icmp.", map[string]any{"payload_size": m.ICMP.PayloadSize, "dont_fragment": m.ICMP.DontFragment})
		if m.ICMP.TTL != 0 && m.ICMP.TTL != defaultTTL {
			why = append(why, fmt.Sprintf("icmp.ttl %d is not supported (only the default, %d)", m.ICMP.TTL, defaultTTL))
		}
	case "dns":
		d := m.DNS
		set("dns.", map[string]any{"dns_over_tls": d.DNSOverTLS, "tls_config": d.TLSConfig,
			"validate_answer_rrs": d.ValidateAnswer, "validate_authority_rrs": d.ValidateAuthority,
			"validate_additional_rrs": d.ValidateAdditional})
		if c := strings.ToUpper(d.QueryClass); c != "" && c != "IN" {
			why = append(why, fmt.Sprintf("dns.query_class %q is not supported (only IN)", d.QueryClass))
		}
		if d.Recursion != nil && !*d.Recursion {
			why = append(why, "dns.recursion_desired false is not supported")
		}
		if len(d.ValidRcodes) > 0 && !slices.Equal(d.ValidRcodes, []string{"NOERROR"}) {
			why = append(why, fmt.Sprintf("dns.valid_rcodes %q is not supported (only NOERROR)", d.ValidRcodes))
		}
		switch d.TransportProtocol {
		case "", "udp", "tcp":
		default:
			why = append(why, fmt.Sprintf("dns.transport_protocol %q is not supported (udp or tcp)", d.TransportProtocol))
		}
	}
	return why
}

// defaultModules are the modules of DefaultFile: blackbox_exporter's example modules that the exporter runs.
const defaultModules = `modules:
  http_2xx:
    prober: http
  http_post_2xx:
    prober: http
    http:
      method: POST
  tcp_connect:
    prober: tcp
  icmp:
    prober: icmp
`

// DefaultFile returns the modules served when no configuration file is given (the probe daemon's /probe):
// http_2xx, http_post_2xx, tcp_connect and icmp, as in the blackbox.yml Debian ships.
func DefaultFile() *File {
	f, err := Parse("(built in)", []byte(defaultModules))
	if err != nil {
		panic(err) // a constant that does not parse is a programming error
	}
	return f
}
