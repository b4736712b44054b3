package scheduler

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/vantage-edge/vantage/placement"
)

// Target is one application's probe target, derived from its placement config.
type Target struct {
	App     string         `json:"app"`
	Account string         `json:"account,omitempty"` // the owning account; empty: an operator's (any account in the status API)
	Mode    placement.Mode `json:"mode"`              // host, hostname or region
	Target  string         `json:"target"`            // host:port, hostname, or provider:region
	// Endpoint is, for region targets, the host:port probed for the region (a per-provider template or an
	// override); empty when the region has no endpoint, and the decision then comes from the latency model.
	Endpoint string `json:"endpoint,omitempty"`
	// Source names where the target came from: "api" or "dir:<path>"; a reload replaces one source's targets.
	Source string `json:"source,omitempty"`
}

// Kind returns the probe kind used for the target: TCP CONNECT for host and region, HTTP HEAD for hostname.
func (t Target) Kind() placement.ProbeKind {
	if t.Mode == placement.ModeHostname {
		return placement.ProbeHTTP
	}
	return placement.ProbeTCP
}

// ProbeAddr returns the address the daemons probe: the host:port or hostname, or a region's endpoint.
func (t Target) ProbeAddr() string {
	if t.Mode == placement.ModeRegion {
		return t.Endpoint
	}
	return t.Target
}

// Validate checks that the target names an application and has a probe-able mode and target.
func (t Target) Validate() error {
	if t.App == "" {
		return fmt.Errorf("scheduler: target %q: empty app name", t.Target)
	}
	switch t.Mode {
	case placement.ModeHost:
		if _, _, err := net.SplitHostPort(t.Target); err != nil {
			return fmt.Errorf("scheduler: app %q: host %q: want host:port: %w", t.App, t.Target, err)
		}
	case placement.ModeHostname:
		if t.Target == "" || strings.ContainsAny(t.Target, "/ ") {
			return fmt.Errorf("scheduler: app %q: hostname %q: want a bare host name", t.App, t.Target)
		}
	case placement.ModeRegion:
		if _, _, err := splitRegion(t.Target); err != nil {
			return fmt.Errorf("scheduler: app %q: %w", t.App, err)
		}
	default:
		return fmt.Errorf("scheduler: app %q: mode %q has no probe target (want host, hostname or region)", t.App, t.Mode)
	}
	return nil
}

// DefaultRegionTemplates maps a cloud provider to the host:port probed for one of its regions; {region} is
// replaced by the region code. They name regional API front ends; where a provider serves them from an
// anycast front end the engine says so and the decision falls back to the latency model. Override per
// region with RegionEndpoints.
var DefaultRegionTemplates = map[string]string{
	"aws":   "ec2.{region}.amazonaws.com:443",
	"gcp":   "{region}-run.googleapis.com:443",
	"azure": "{region}.api.cognitive.microsoft.com:443",
}

// RegionEndpoints resolves a region id ("aws:us-east-1") to the host:port probed for it.
type RegionEndpoints struct {
	Templates map[string]string // provider -> template; nil: DefaultRegionTemplates
	Overrides map[string]string // region id -> host:port, taking precedence over templates
}

// Endpoint returns the host:port for region, or "" when neither an override nor a template exists.
func (r RegionEndpoints) Endpoint(region string) (string, error) {
	provider, code, err := splitRegion(region)
	if err != nil {
		return "", err
	}
	if ep, ok := r.Overrides[region]; ok {
		return ep, nil
	}
	tmpl := r.Templates
	if tmpl == nil {
		tmpl = DefaultRegionTemplates
	}
	t, ok := tmpl[provider]
	if !ok {
		return "", nil
	}
	return strings.ReplaceAll(t, "{region}", code), nil
}

func splitRegion(id string) (provider, code string, err error) {
	provider, code, ok := strings.Cut(id, ":")
	if !ok || provider == "" || code == "" {
		return "", "", fmt.Errorf("scheduler: region %q: want provider:region, e.g. aws:us-east-1", id)
	}
	return provider, code, nil
}

// ParseRegionEndpoints reads region overrides, one "region-id host:port" (or "region-id=host:port") a line;
// blank lines and lines starting with # are skipped.
func ParseRegionEndpoints(r io.Reader, name string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, ep, err := ParseRegionEndpoint(line)
		if err != nil {
			return nil, fmt.Errorf("scheduler: %s:%d: %w", name, n, err)
		}
		out[id] = ep
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scheduler: reading %s: %w", name, err)
	}
	return out, nil
}

// ParseRegionEndpoint parses one "region-id=host:port" (or whitespace-separated) override.
func ParseRegionEndpoint(s string) (region, endpoint string, err error) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '=' || r == ' ' || r == '\t' })
	if len(f) != 2 {
		return "", "", fmt.Errorf("region endpoint %q: want region-id=host:port", s)
	}
	if _, _, err := splitRegion(f[0]); err != nil {
		return "", "", err
	}
	if _, _, err := net.SplitHostPort(f[1]); err != nil {
		return "", "", fmt.Errorf("region endpoint %q: endpoint %q: %w", s, f[1], err)
	}
	return f[0], f[1], nil
}

// LoadRegionEndpointsFile reads ParseRegionEndpoints' format from path.
func LoadRegionEndpointsFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scheduler: region endpoints: %w", err)
	}
	defer f.Close()
	return ParseRegionEndpoints(f, path)
}
