package placement

import (
	"net/url"
	"strings"
)

// Limits of a probe target given outside a config (an ad-hoc probe).
const (
	// MaxHostPortLen bounds host:port: a 253-byte name, ':' and a 5-digit port (an IPv6 literal in brackets is
	// shorter).
	MaxHostPortLen = maxHostnameLen + 1 + 5
	// MaxURLLen bounds an http probe's URL: room for a 253-byte host and a path, far below the 8 KB request
	// lines servers accept, so that a target stays a small part of every job, result and record that copies it.
	MaxURLLen = 2048
)

// CheckProbeTarget validates a probe target of kind by the rules configs follow and returns it normalised: for
// tcp host:port (as placement.host); for icmp and dns a hostname or IP address (as placement.hostname); for
// http an http or https URL without user information or fragment, or host[:port], whose host is checked as a
// hostname and whose port as a host's. IP literals are judged by p.Policy. Errors wrap ErrBadHost (tcp, and an
// http target's port) or ErrBadHostname, and never quote more than a label or a port of the value: a value
// over its length limit is refused by its length alone.
func (p Parser) CheckProbeTarget(kind ProbeKind, s string) (string, error) {
	switch kind {
	case ProbeTCP:
		if len(s) > MaxHostPortLen {
			return "", because(ErrBadHost, "%d bytes, more than %d", len(s), MaxHostPortLen)
		}
		return p.checkHost(s)
	case ProbeICMP, ProbeDNS:
		if len(s) > maxHostnameLen+1 { // a trailing dot is allowed
			return "", because(ErrBadHostname, "%d bytes, more than %d", len(s), maxHostnameLen)
		}
		return p.checkHostname(s)
	case ProbeHTTP:
		return p.checkURL(s)
	}
	_, err := ParseProbeKind(string(kind))
	return "", err
}

// checkURL checks an http probe's target (see CheckProbeTarget).
func (p Parser) checkURL(s string) (string, error) {
	if len(s) > MaxURLLen {
		return "", because(ErrBadHostname, "%d bytes, more than %d", len(s), MaxURLLen)
	}
	if !strings.Contains(s, "://") { // host or host:port, probed as http://host[:port]/
		if _, _, err := splitHostPort(s); err == nil {
			return p.checkHost(s)
		}
		return p.checkHostname(s)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", because(ErrBadHostname, "not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", because(ErrBadHostname, "scheme %.16q: want http or https", u.Scheme)
	case u.User != nil:
		return "", because(ErrBadHostname, "has user information before '@'")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "", because(ErrBadHostname, "has a fragment ('#')")
	case u.Opaque != "":
		return "", because(ErrBadHostname, "want scheme://host/path")
	}
	host, err := p.checkHostname(u.Hostname())
	if err != nil {
		return "", err
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if _, err := checkPort(port); err != nil {
			return "", err
		}
		host += ":" + port
	}
	u.Host = host
	return u.String(), nil
}
