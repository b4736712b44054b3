package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
)

func init() {
	register(command{name: "probe", summary: "probe a target from this machine (tcp, http, icmp, dns)", run: runProbe})
}

// listFlag (scheduler.go) collects the repeatable, comma-separated flags.

// probeUsage is the argument synopsis of vantage probe.
const probeUsage = `<tcp|http|icmp|dns> TARGET...

  vantage probe tcp HOST:PORT
  vantage probe http URL
  vantage probe icmp HOST
  vantage probe dns NAME [--server ADDR] [--chaos]

Flags may come before or after the arguments. Exit status 1 when a probe failed.`

// fleetProbeAbout explains `vantage probe --fleet`, in its own help and in probe's.
const fleetProbeAbout = `Fleet probing: vantage probe --fleet [flags] <tcp|http|icmp|dns> TARGET

  Probes TARGET from every PoP of a running fleet (or the PoPs of --pops) through its scheduler's API
  (POST /v1/probes), draws the progress across PoPs on stderr, then prints the PoPs ranked by RTT and the
  engine's verdict (best PoP, anycast or not, location).
  The scheduler is --scheduler, else $` + envScheduler + `, else ` + defaultScheduler + `.
  The API wants a bearer token, one of the scheduler's --tokens: --token, else $` + envToken + `
  (prefer the variable: other users of the machine can read a flag in the process list).
`

// fleetProbeUsage prints the help of `vantage probe --fleet` to w: the explanation and the flags.
func fleetProbeUsage(w io.Writer) {
	fmt.Fprintf(w, "\n%s\nflags with --fleet:\n", fleetProbeAbout)
	fs := flag.NewFlagSet("probe --fleet", flag.ContinueOnError)
	fs.SetOutput(w)
	addFleetProbeFlags(fs)
	fs.PrintDefaults()
}

// runProbe is `vantage probe KIND TARGET...`: probes each target from this machine and prints a table, or one
// JSON Result per line with --json. With --fleet it hands its arguments to runFleetProbe instead.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if hasFleetFlag(args) {
		return runFleetProbe(ctx, args, stdout, stderr) // through the fleet's scheduler (fleetprobe.go)
	}
	def := prober.DefaultConfig()
	fs := newFlagSet("probe", probeUsage, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: vantage probe [flags] %s\n\nflags probing from this machine:\n", probeUsage)
		fs.PrintDefaults()
		fleetProbeUsage(stderr)
	}
	var sources, allow, own, types listFlag
	var (
		count      = fs.Int("count", def.Count, fmt.Sprintf("samples per probe (at most %d)", prober.MaxCount))
		timeout    = fs.Duration("timeout", def.Timeout, "timeout of each sample")
		interval   = fs.Duration("interval", def.Interval, "pause between samples")
		asJSON     = fs.Bool("json", false, "print one JSON result per line")
		ipProto    = fs.String("ip-protocol", string(def.IPProtocol), "preferred IP protocol for names: ip4 or ip6")
		noFallback = fs.Bool("no-fallback", false, "do not fall back to the other IP protocol")
		closeMode  = fs.String("close", string(def.Close), "TCP close: rst (no TIME_WAIT) or fin")
		host       = fs.String("host", "", "http: Host header and SNI override")
		insecure   = fs.Bool("insecure", false, "http: do not verify the server certificate")
		caFile     = fs.String("ca-file", "", "http: PEM file of CAs to verify the server with")
		follow     = fs.Bool("follow-redirects", false, "http: follow redirects")
		server     = fs.String("server", "", "dns: resolver ADDR (ip, ip:port or name:port); default: /etc/resolv.conf")
		chaos      = fs.Bool("chaos", false, "dns: also ask CHAOS TXT id.server and hostname.bind")
	)
	fs.Var(&sources, "source", "source address to probe from (repeatable or comma list)")
	fs.Var(&allow, "allow", "CIDR exempt from the deny policy, e.g. 127.0.0.0/8 (repeatable or comma list)")
	fs.Var(&own, "own-prefix", "the platform's own prefix: never a source, denied as a target (repeatable or comma list)")
	fs.Var(&types, "type", "dns: query types, e.g. A,AAAA (default both, preferred protocol first)")

	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) < 2 {
		fs.Usage()
		return fmt.Errorf("%w: probe: want a kind and at least one target", errUsage)
	}
	kind, err := placement.ParseProbeKind(pos[0])
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *count < 1 || *count > prober.MaxCount {
		return fmt.Errorf("%w: probe: --count %d: want 1..%d", errUsage, *count, prober.MaxCount)
	}

	cfg := def
	cfg.Count, cfg.Timeout, cfg.Interval = *count, *timeout, *interval
	if *interval == 0 {
		cfg.Interval = -1 // 0 means "no pause" on the command line, "default" in Config
	}
	cfg.IPProtocol, cfg.NoIPFallback, cfg.Close = prober.IPProtocol(*ipProto), *noFallback, prober.CloseMode(*closeMode)
	for _, s := range sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%w: probe: --source %q: %w", errUsage, s, err)
		}
		cfg.Sources = append(cfg.Sources, a)
	}
	if cfg.Allow, err = placement.ParsePrefixes("--allow", allow); err != nil {
		return fmt.Errorf("%w: probe: %w", errUsage, err)
	}
	if cfg.OwnPrefixes, err = placement.ParsePrefixes("--own-prefix", own); err != nil {
		return fmt.Errorf("%w: probe: %w", errUsage, err)
	}
	eng, err := prober.New(cfg)
	if err != nil {
		return err
	}
	defer eng.Close()

	results := make([]prober.Result, 0, len(pos)-1)
	for _, addr := range pos[1:] {
		t := prober.Target{Kind: kind, Addr: addr,
			HTTP: prober.HTTPOptions{Host: *host, FollowRedirects: *follow, InsecureSkipVerify: *insecure, CAFile: *caFile},
			DNS:  prober.DNSOptions{Server: *server, Types: types, Chaos: *chaos}}
		r := eng.Probe(ctx, t)
		if *asJSON {
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("probe: encoding the result of %s: %w", addr, err)
			}
			fmt.Fprintf(stdout, "%s\n", b)
		}
		results = append(results, r)
	}
	if !*asJSON {
		printProbeTable(stdout, results)
	}
	for _, r := range results {
		if !r.Success {
			return exitError{1}
		}
	}
	return nil
}

// hasFleetFlag reports whether args ask for --fleet (before a "--" terminator).
func hasFleetFlag(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-fleet", "--fleet", "-fleet=true", "--fleet=true":
			return true
		}
	}
	return false
}

// printProbeTable writes results as an aligned table, with a detail line for HTTP and DNS results.
func printProbeTable(w io.Writer, results []prober.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tTARGET\tIP\tSOURCE\tSENT\tRECV\tLOSS\tMIN\tMEDIAN\tSAMPLES (ms)\tRESULT")
	for _, r := range results {
		samples := make([]string, len(r.Samples))
		for i, s := range r.Samples {
			samples[i] = fmt.Sprintf("%.3f", s.Ms())
		}
		result := "ok"
		if !r.Success {
			result = string(r.Class) + ": " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.0f%%\t%s\t%s\t%s\t%s\n", r.Kind, r.Target, addrOrDash(r.IP),
			addrOrDash(r.Source), r.Sent, r.Received, 100*r.Loss, msOrDash(r, r.Min), msOrDash(r, r.Median),
			strings.Join(samples, " "), result)
	}
	tw.Flush()
	for _, r := range results {
		if d := probeDetail(r); d != "" {
			fmt.Fprintf(w, "%s %s: %s\n", r.Kind, r.Target, d)
		}
	}
}

// probeDetail is the HTTP or DNS part of a result on one line, or "".
func probeDetail(r prober.Result) string {
	switch {
	case r.HTTP != nil && r.HTTP.Status != 0:
		h, ph := r.HTTP, r.HTTP.Phases
		s := fmt.Sprintf("status %d; phases resolve %s connect %s tls %s processing %s transfer %s; %d of %d on the kept-alive connection",
			h.Status, ph.Resolve, ph.Connect, ph.TLS, ph.Processing, ph.Transfer, h.Reused, r.Received)
		if h.TLSVersion != "" {
			s += fmt.Sprintf("; %s, SNI %q", h.TLSVersion, h.ServerName)
		}
		if h.Location != "" {
			s += "; location " + h.Location
		}
		return s
	case r.DNS != nil && r.DNS.Rcode != "":
		d := r.DNS
		ans := make([]string, len(d.Answers))
		for i, a := range d.Answers {
			ans[i] = fmt.Sprintf("%s %s ttl %d", a.Type, a.Value, a.TTL)
		}
		s := fmt.Sprintf("server %s rcode %s; answers: %s", d.Server, d.Rcode, strings.Join(ans, ", "))
		if d.ServerID != "" || d.Hostname != "" || d.ChaosErr != "" {
			s += fmt.Sprintf("; id.server %q hostname.bind %q", d.ServerID, d.Hostname)
			if d.ChaosErr != "" {
				s += " (" + d.ChaosErr + ")"
			}
		}
		return s
	}
	return ""
}

func addrOrDash(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func msOrDash(r prober.Result, d prober.Duration) string {
	if r.Received == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3fms", time.Duration(d).Seconds()*1000)
}
