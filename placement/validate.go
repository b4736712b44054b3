package placement

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vantage-edge/vantage/geo"
)

// Limits of names, from the DNS (RFC 1035 section 2.3.4) and the platform's Worker names.
const (
	maxHostnameLen = 253 // bytes, without a trailing dot
	maxLabelLen    = 63  // bytes per label
	maxAppNameLen  = 63  // a Worker name is also a DNS label (<name>.<subdomain>.workers.dev)
	// maxRegionLen bounds a region ID before geo looks it up (the longest in the catalogue is about 30 bytes):
	// geo's suggestions cost time in proportion to the value's length, seconds for a megabyte.
	maxRegionLen = 64
)

// Validate checks a Config built by hand (or received from elsewhere) by the same rules the parsers apply:
// a valid App, a known Mode, exactly the target field that Mode needs, that target valid (in its normalised
// form or not), and a hint only with ModeSmart. AccountID, Env and Warnings are not checked. Errors are *ConfigErrors naming c.Source and the config key.
func (p Parser) Validate(c Config) error {
	var errs []error
	fail := func(field string, value any, err error) {
		errs = append(errs, &ConfigError{File: c.Source, Field: field, Value: value, Err: err})
	}
	if err := checkAppName(c.App); err != nil {
		fail("name", c.App, err)
	}
	if c.AccountID != "" {
		if err := CheckAccountID(c.AccountID); err != nil {
			fail("account_id", c.AccountID, err)
		}
	}
	if !c.Mode.Valid() {
		fail("placement.mode", string(c.Mode), because(ErrUnknownMode, "%s (want %q, %q, %q, %q or none)",
			ErrUnknownMode, ModeSmart, ModeRegion, ModeHost, ModeHostname))
	}
	for _, f := range []struct {
		mode  Mode
		value string
		check func(string) (string, error)
	}{
		{ModeRegion, c.Region, checkRegion},
		{ModeHost, c.Host, p.checkHost},
		{ModeHostname, c.Hostname, p.checkHostname},
	} {
		field := "placement." + string(f.mode)
		switch {
		case c.Mode == f.mode:
			if _, err := f.check(f.value); err != nil {
				fail(field, f.value, err)
			}
		case f.value != "":
			fail(field, f.value, because(ErrConflict, "set, but the mode is %q", c.Mode))
		}
	}
	if c.Hint != "" {
		if c.Mode != ModeSmart {
			fail("placement.hint", c.Hint, because(ErrConflict, "a hint goes with mode \"smart\" only"))
		} else if err := checkHint(c.Hint); err != nil {
			fail("placement.hint", c.Hint, err)
		}
	}
	return errors.Join(errs...)
}

// checkAppName accepts a Worker name: 1 to 63 lower-case letters, digits, '-' and '_', not starting or ending
// with '-'.
func checkAppName(s string) error {
	switch {
	case s == "":
		return because(ErrBadName, "empty: every application needs a name")
	case len(s) > maxAppNameLen:
		return because(ErrBadName, "%d bytes, more than %d", len(s), maxAppNameLen)
	case s[0] == '-' || s[len(s)-1] == '-':
		return because(ErrBadName, "starts or ends with '-'")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_':
		case c >= 0x80:
			return because(ErrBadName, "non-ASCII character at offset %d: want lower-case letters, digits, '-' and '_'", i)
		default:
			return because(ErrBadName, "character %q at offset %d: want lower-case letters, digits, '-' and '_'",
				rune(c), i)
		}
	}
	return nil
}

// MaxAccountIDLen bounds an account id: wrangler's are 32 hexadecimal digits; 64 leaves room for other schemes
// and keeps ids short enough for Redis keys and log lines.
const MaxAccountIDLen = 64

// CheckAccountID checks an account id (a config's account_id, an API path's or ?account=, a token's account):
// 1 to MaxAccountIDLen ASCII letters, digits, '-' and '_'. Errors wrap ErrBadAccount.
func CheckAccountID(s string) error {
	switch {
	case s == "":
		return because(ErrBadAccount, "%s: empty", ErrBadAccount)
	case len(s) > MaxAccountIDLen:
		return because(ErrBadAccount, "%s: %d bytes, more than %d", ErrBadAccount, len(s), MaxAccountIDLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return because(ErrBadAccount, "%s: character %q at offset %d: want letters, digits, '-' and '_'", ErrBadAccount, rune(c), i)
		}
	}
	return nil
}

// checkRegion looks a region up in geo's catalogue and returns its canonical ID; for an unknown one the error
// suggests the closest IDs, as geo finds them.
func checkRegion(s string) (string, error) {
	if len(s) > maxRegionLen {
		return "", because(ErrBadRegion, "%d bytes, too long for a region ID (at most %d)", len(s), maxRegionLen)
	}
	r, err := geo.LookupRegion(s)
	if err == nil {
		return r.ID, nil
	}
	var re *geo.RegionError
	switch {
	case errors.Is(err, geo.ErrRegionSyntax):
		return "", &reason{sentinel: ErrBadRegion, cause: err,
			msg: "want provider:region, e.g. \"aws:us-east-1\", \"gcp:europe-west1\", \"azure:westeurope\""}
	case errors.As(err, &re):
		var b strings.Builder
		if re.UnknownProvider != "" {
			fmt.Fprintf(&b, "unknown provider %q (want one of %s)", re.UnknownProvider, strings.Join(geo.Providers(), ", "))
		} else {
			b.WriteString("not in the region catalogue")
		}
		for i, sug := range re.Suggestions {
			switch {
			case i == 0:
				b.WriteString("; did you mean ")
			case i == len(re.Suggestions)-1:
				b.WriteString(" or ")
			default:
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", sug)
		}
		if len(re.Suggestions) > 0 {
			b.WriteString("?")
		}
		return "", &reason{sentinel: ErrBadRegion, cause: err, msg: b.String()}
	}
	return "", decidedBy(ErrBadRegion, err)
}

// checkHost accepts host:port (IPv6 in brackets), port 1-65535, and returns it normalised: the name
// lower-cased, the address and port in canonical form.
func (p Parser) checkHost(s string) (string, error) {
	if s == "" {
		return "", because(ErrBadHost, "empty: want host:port, e.g. \"db.example.com:5432\"")
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return "", because(ErrBadHost, "a URL: want host:port without the scheme %q", s[:i+3])
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", because(ErrBadHost, "empty host before the port")
	}
	portNum, err := checkPort(port)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(host, "[") {
		a, err := p.checkAddr(ErrBadHost, host[1:len(host)-1])
		if err != nil {
			return "", err
		}
		return netip.AddrPortFrom(a, uint16(portNum)).String(), nil // [v6]:port, or v4:port
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		if err := p.Policy.Check(a); err != nil {
			return "", decidedBy(ErrBadHost, err)
		}
		return netip.AddrPortFrom(a, uint16(portNum)).String(), nil
	}
	name, err := checkName(ErrBadHost, "host", host)
	if err != nil {
		return "", err
	}
	return name + ":" + strconv.Itoa(portNum), nil
}

// splitHostPort splits host:port, keeping the brackets of an IPv6 host so the caller knows it was one.
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		switch {
		case end < 0:
			return "", "", because(ErrBadHost, "missing ']' after the IPv6 address")
		case end == len(s)-1:
			return "", "", because(ErrBadHost, "missing port: want [address]:port")
		case s[end+1] != ':':
			return "", "", because(ErrBadHost, "want ':' and a port after ']'")
		}
		return s[:end+1], s[end+2:], nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", because(ErrBadHost, "missing port: want host:port, e.g. %q", s+":5432")
	}
	if strings.IndexByte(s[:i], ':') >= 0 {
		if _, err := netip.ParseAddr(s); err == nil {
			return "", "", because(ErrBadHost, "missing port, or an IPv6 address without brackets: want [address]:port")
		}
		return "", "", because(ErrBadHost, "too many colons: want host:port, an IPv6 address in brackets")
	}
	return s[:i], s[i+1:], nil
}

// checkPort accepts a decimal port 1-65535.
func checkPort(s string) (int, error) {
	if s == "" {
		return 0, because(ErrBadHost, "empty port: want 1-65535")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, because(ErrBadHost, "port %q is not a number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, because(ErrBadHost, "port %s out of range 1-65535", s)
	}
	return n, nil
}

// checkHostname accepts a bare hostname or IP address and returns it normalised (lower-cased, no trailing
// dot, canonical address form).
func (p Parser) checkHostname(s string) (string, error) {
	if s == "" {
		return "", because(ErrBadHostname, "empty: want a hostname, e.g. \"api.example.com\"")
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return "", because(ErrBadHostname, "a URL: want the bare hostname without the scheme %q", s[:i+3])
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		return "", because(ErrBadHostname, "has a path or query %q: want the bare hostname", s[i:])
	}
	if strings.Contains(s, "@") {
		return "", because(ErrBadHostname, "has user information before '@': want the bare hostname")
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := p.checkAddr(ErrBadHostname, s[1:len(s)-1])
		if err != nil {
			return "", err
		}
		return a.String(), nil
	}
	if strings.IndexByte(s, ':') >= 0 {
		if _, err := netip.ParseAddr(s); err == nil || strings.Contains(s, "%") {
			a, err := p.checkAddr(ErrBadHostname, s)
			if err != nil {
				return "", err
			}
			return a.String(), nil
		}
		return "", because(ErrBadHostname, "has a port: want the bare hostname (host = %q is the TCP form)", s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if err := p.Policy.Check(a); err != nil {
			return "", decidedBy(ErrBadHostname, err)
		}
		return a.String(), nil
	}
	return checkName(ErrBadHostname, "hostname", s)
}

// checkAddr parses an IP literal (no zone) and applies the policy.
func (p Parser) checkAddr(sentinel error, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, because(sentinel, "%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, because(sentinel, "address %s has a zone: want a global address", a)
	}
	if err := p.Policy.Check(a); err != nil {
		return netip.Addr{}, decidedBy(sentinel, err)
	}
	return a, nil
}

// checkName accepts a DNS name: ASCII letters, digits, '-' and '_' (seen in real hostnames, and in the
// platform's own examples), labels of 1-63 bytes not starting or ending with '-', 253 bytes at most, one
// trailing dot allowed, and a last label that is not numeric (which resolvers would read as an IPv4 address,
// slipping past the deny policy: "10.1" is 10.0.0.1 to inet_aton). It returns the name lower-cased without the
// trailing dot. what is "host" or "hostname", for messages.
func checkName(sentinel error, what, s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	switch {
	case name == "":
		return "", because(sentinel, "no name: want a %s like \"api.example.com\"", what)
	case len(name) > maxHostnameLen:
		return "", because(sentinel, "%d bytes, more than %d", len(name), maxHostnameLen)
	}
	var last string
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return "", because(sentinel, "empty label (two dots, or a leading dot)")
		case len(label) > maxLabelLen:
			return "", because(sentinel, "label %q is %d bytes, more than %d", label, len(label), maxLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", because(sentinel, "label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
				continue
			}
			if c >= 0x80 {
				return "", because(sentinel, "non-ASCII name: write it in its xn-- (punycode) form")
			}
			return "", because(sentinel, "character %q: want letters, digits, '-', '_' and dots", rune(c))
		}
		last = label
	}
	if numericLabel(last) {
		return "", because(sentinel, "numeric last label %q: looks like an IP address, write the address in "+
			"dotted-quad form", last)
	}
	return strings.ToLower(name), nil
}

// numericLabel reports whether inet_aton would read label as a number: decimal, octal or 0x hexadecimal.
func numericLabel(label string) bool {
	l := strings.ToLower(label)
	if strings.HasPrefix(l, "0x") {
		l = l[2:]
		for i := 0; i < len(l); i++ {
			if !(l[i] >= '0' && l[i] <= '9' || l[i] >= 'a' && l[i] <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}
