// Package prober measures round-trip times to back ends with TCP CONNECT, HTTP HEAD, ICMP echo and DNS probes.
package prober

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/vantage-edge/vantage/internal/clock"
	"github.com/vantage-edge/vantage/placement"
)

// Prober runs one probe. Probe never returns a nil or lost result: failures are a Result with a Class.
type Prober interface {
	Probe(ctx context.Context, t Target) Result
}

// Target is what to probe and how. Zero fields take the Engine's Config.
type Target struct {
	Kind placement.ProbeKind
	// Addr is "host:port" for tcp, a URL or hostname for http ("https://api.example.com/health",
	// "api.example.com" means http://api.example.com/), an IP or name for icmp, and the name to resolve for dns.
	Addr    string
	Count   int           // samples; 0 means Config.Count
	Timeout time.Duration // per sample; 0 means Config.Timeout
	HTTP    HTTPOptions
	DNS     DNSOptions
}

// HTTPOptions tune an http probe.
type HTTPOptions struct {
	Host               string // Host header and SNI override; empty: the URL's host
	FollowRedirects    bool   // follow up to MaxRedirects redirects, each target resolved and policy-checked
	InsecureSkipVerify bool   // do not verify the server certificate
	CAFile             string // PEM file of CAs to verify the server with, instead of the system roots
	ServerName         string // SNI and the name verified, without changing the Host header; empty: Host's, else the URL's

	// Method is the request method; empty: HEAD. A GET reads the whole body (HTTPResult.BodyBytes).
	Method string
	// Headers are set on every request; a "Host" entry sets the Host header (as Host does).
	Headers map[string]string
	// ValidStatus are the accepted status codes; empty: 2xx and 3xx (redirects are answers).
	ValidStatus []int
	// Single sends one request, timed phase by phase and counted as the probe's one sample (its processing
	// time), as blackbox_exporter does; Count is then ignored.
	Single bool
}

// DNSOptions tune a dns probe.
type DNSOptions struct {
	// Server is the resolver to query, "ip", "ip:port" or "name:port" (port 53 by default). Empty: the first
	// nameserver of /etc/resolv.conf. It is policy-checked like any target.
	Server string
	// Types are the query types, e.g. ["A", "AAAA"]; empty: A and AAAA, the preferred protocol's type first.
	// Samples time the first type.
	Types []string
	// Chaos also asks the server CHAOS-class TXT id.server and hostname.bind, which name the anycast site that
	// answered (triangulation uses them). A tcp probe with Chaos asks its own target (a DNS server's address,
	// e.g. "198.18.0.53:53") once it connected, and returns the answers in Result.DNS.
	Chaos bool
	// Transport is "udp" (the default: UDP, and TCP again when the answer is truncated) or "tcp" (TCP only).
	Transport string
}

// Clock is the time source: Now stamps and times probes, NewTimer waits between samples and for the rate
// limiters. RealClock is the default; tests inject a fake. It is internal/clock's Clock; see that package
// for the rule.
type Clock = clock.Clock

// Timer is what Clock.NewTimer returns: internal/clock's Timer.
type Timer = clock.Timer

// RealClock is the Clock of the time package (monotonic readings included).
type RealClock = clock.Real

// Resolver resolves names; *net.Resolver implements it. network is "ip", "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// EnterFunc runs open, which creates a probe's sockets (for TCP, HTTP and DNS it also connects them; for ICMP
// it runs the whole ping). It is the seam for probing from another network namespace: the probe daemon locks
// the OS thread, enters an emulated-WAN namespace, runs open and goes back; a socket keeps the namespace it
// was created in. The default runs open as is.
type EnterFunc func(open func() error) error

// IPProtocol is the preferred IP protocol of a name's addresses, as blackbox_exporter's preferred_ip_protocol.
type IPProtocol string

// The IP protocols.
const (
	IP4 IPProtocol = "ip4"
	IP6 IPProtocol = "ip6"
)

// CloseMode is how a TCP probe closes its connection.
type CloseMode string

// The close modes.
const (
	// CloseRST (the default) ends the connection with a RST: the prober keeps no TIME_WAIT socket, so 50,000
	// probes/s do not exhaust its ~28,000 ephemeral ports (TIME_WAIT lasts 60 s on Linux), and the target frees
	// the connection (and its accept-queue slot) at once instead of going through FIN/ACK. The RST comes from
	// disconnecting the socket (connect() to AF_UNSPEC), which keeps it for the next probe (Config.IdleSockets),
	// or from close() with SO_LINGER 0.
	CloseRST CloseMode = "rst"
	// CloseFIN closes politely with a FIN; the prober's socket then sits in TIME_WAIT for 60 s.
	CloseFIN CloseMode = "fin"
)

// Defaults and bounds. The timeout is per sample: long enough for the farthest PoP pair plus one SYN
// retransmission would need 3 s+, but a back end that does not answer in 2 s is not a placement candidate.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultCount       = 3                      // samples per probe: a median needs three
	DefaultInterval    = 100 * time.Millisecond // between samples of one probe, to the same target
	DefaultMaxTargets  = 65536                  // per-target limiters kept; ~100 B each
	DefaultTargetIdle  = time.Minute            // a per-target limiter idle this long is evicted
	MaxCount           = 100                    // a probe never sends more samples than this
	MaxRedirects       = 10                     // HTTP redirects followed when asked
	DefaultIdleSockets = 256                    // disconnected TCP sockets kept per source address, for reuse
)

// Config configures an Engine. Start from DefaultConfig(); New fills zero durations and counts with defaults.
type Config struct {
	Timeout  time.Duration // per sample (connect, HEAD, echo, query); default DefaultTimeout
	Count    int           // samples per probe; default DefaultCount, at most MaxCount
	Interval time.Duration // pause between samples; default DefaultInterval; negative: none

	// Sources are the local addresses probes leave from (one per IP family is used, the first that matches).
	// Each must be assigned to a local interface. Empty: the kernel chooses.
	Sources []netip.Addr
	// Allow lifts the deny policy for these prefixes (tests: 127.0.0.0/8; the emulated WAN: 198.18.0.0/15).
	Allow []netip.Prefix
	// OwnPrefixes are the platform's own (anycast) prefixes. A source address inside one is a start-up error:
	// replies to an anycast source are routed to the nearest PoP, not to this prober. Targets inside them are
	// denied (rule "own-prefix") unless allowed.
	OwnPrefixes []netip.Prefix

	IPProtocol   IPProtocol // preferred protocol for names; default IP4 (the emulated WAN is IPv4-only)
	NoIPFallback bool       // do not fall back to the other protocol when the preferred one has no address
	Close        CloseMode  // TCP close; default CloseRST
	// IdleSockets is how many disconnected TCP probe sockets the Engine keeps per source address (and family)
	// for the next probes, under CloseRST; default DefaultIdleSockets; negative: none, every probe opens and
	// closes its own socket. Engine.Close closes them.
	IdleSockets int

	GlobalRate int           // probes/s for the whole Engine; 0: unlimited
	TargetRate int           // probes/s per target IP (politeness); 0: unlimited
	MaxTargets int           // per-target limiters kept; default DefaultMaxTargets
	TargetIdle time.Duration // idle per-target limiters are evicted after this; default DefaultTargetIdle

	// ICMPPrivileged forces raw (true) or unprivileged datagram (false) ICMP sockets; nil: raw when the process
	// holds CAP_NET_RAW (root, or a non-root daemon granted it), falling back to datagram when the kernel
	// refuses; datagram otherwise.
	ICMPPrivileged *bool

	Resolver       Resolver                             // default net.DefaultResolver
	Enter          EnterFunc                            // default runs open directly
	Logger         *slog.Logger                         // default discards
	Clock          Clock                                // default RealClock
	InterfaceAddrs func() ([]net.Addr, error)           // default net.InterfaceAddrs inside Enter; a test seam
	DNSConfig      func() (servers []string, err error) // default reads /etc/resolv.conf; a test seam
}

// DefaultConfig returns the defaults: 3 samples, 2 s timeout, IPv4 preferred with fallback, RST close, deny
// policy on, no rate limits.
func DefaultConfig() Config {
	return Config{
		Timeout:     DefaultTimeout,
		Count:       DefaultCount,
		Interval:    DefaultInterval,
		IPProtocol:  IP4,
		Close:       CloseRST,
		IdleSockets: DefaultIdleSockets,
		MaxTargets:  DefaultMaxTargets,
		TargetIdle:  DefaultTargetIdle,
	}
}

// Registry builds a prober per kind for an Engine. The Engine dispatches Target.Kind through it.
var Registry = map[placement.ProbeKind]func(*Engine) Prober{
	placement.ProbeTCP:  func(e *Engine) Prober { return &tcpProber{e: e} },
	placement.ProbeHTTP: func(e *Engine) Prober { return &httpProber{e: e} },
	placement.ProbeDNS:  func(e *Engine) Prober { return &dnsProber{e: e} },
	placement.ProbeICMP: func(e *Engine) Prober { return &icmpProber{e: e} },
}

// Engine runs probes of every kind with one configuration: policy, source addresses, rate limits, metrics.
// It is safe for concurrent use.
type Engine struct {
	cfg     Config
	policy  placement.Policy
	log     *slog.Logger
	clock   Clock
	probers map[placement.ProbeKind]Prober
	limits  *limits
	metrics *Metrics
	sockets *socketPool // idle TCP sockets; nil under CloseFIN or with IdleSockets < 0
}

// New validates cfg and returns an Engine. Source addresses not assigned to a local interface, or inside
// OwnPrefixes, are errors naming the address (and the prefix).
func New(cfg Config) (*Engine, error) {
	def := DefaultConfig()
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.Count <= 0 {
		cfg.Count = def.Count
	}
	if cfg.Count > MaxCount {
		return nil, fmt.Errorf("prober: config: Count %d: at most %d", cfg.Count, MaxCount)
	}
	if cfg.Interval == 0 {
		cfg.Interval = def.Interval
	}
	switch cfg.IPProtocol {
	case "":
		cfg.IPProtocol = def.IPProtocol
	case IP4, IP6:
	default:
		return nil, fmt.Errorf("prober: config: IPProtocol %q: want ip4 or ip6", cfg.IPProtocol)
	}
	switch cfg.Close {
	case "":
		cfg.Close = def.Close
	case CloseRST, CloseFIN:
	default:
		return nil, fmt.Errorf("prober: config: Close %q: want rst or fin", cfg.Close)
	}
	if cfg.GlobalRate < 0 || cfg.TargetRate < 0 {
		return nil, fmt.Errorf("prober: config: rates must be >= 0 (GlobalRate %d, TargetRate %d)",
			cfg.GlobalRate, cfg.TargetRate)
	}
	if cfg.IdleSockets == 0 {
		cfg.IdleSockets = def.IdleSockets
	}
	if cfg.MaxTargets <= 0 {
		cfg.MaxTargets = def.MaxTargets
	}
	if cfg.TargetIdle <= 0 {
		cfg.TargetIdle = def.TargetIdle
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Enter == nil {
		cfg.Enter = func(open func() error) error { return open() }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	if cfg.InterfaceAddrs == nil {
		// The source addresses are checked where the probes' sockets are opened (inside Enter).
		enter := cfg.Enter
		cfg.InterfaceAddrs = func() (addrs []net.Addr, err error) {
			if eerr := enter(func() error { addrs, err = net.InterfaceAddrs(); return err }); eerr != nil {
				return nil, eerr
			}
			return addrs, err
		}
	}
	if cfg.DNSConfig == nil {
		cfg.DNSConfig = resolvConfServers
	}
	if err := checkSources(cfg.Sources, cfg.OwnPrefixes, cfg.InterfaceAddrs); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:     cfg,
		policy:  policyFor(cfg.Allow, cfg.OwnPrefixes),
		log:     cfg.Logger,
		clock:   cfg.Clock,
		limits:  newLimits(cfg.GlobalRate, cfg.TargetRate, cfg.MaxTargets, cfg.TargetIdle, cfg.Clock),
		metrics: newMetrics(),
	}
	if cfg.Close == CloseRST && cfg.IdleSockets > 0 {
		e.sockets = newSocketPool(cfg.IdleSockets)
		// An Engine dropped without Close does not keep its idle sockets open until the process exits.
		runtime.AddCleanup(e, func(p *socketPool) { p.close() }, e.sockets)
	}
	e.probers = make(map[placement.ProbeKind]Prober, len(Registry))
	for k, mk := range Registry {
		e.probers[k] = mk(e)
	}
	return e, nil
}

// Close closes the TCP sockets the Engine keeps for reuse (an Engine that becomes unreachable without Close
// has them closed by the garbage collector). Probes still running, and any started later, work as before;
// their sockets are closed after use.
func (e *Engine) Close() error {
	if e.sockets != nil {
		e.sockets.close()
	}
	return nil
}

// Config returns the Engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Collector returns the Engine's Prometheus metrics, for the caller to register (they are not registered in
// the global registry).
func (e *Engine) Collector() *Metrics { return e.metrics }

// Probe runs t with the prober registered for t.Kind, waits for the rate limiters, and records metrics.
func (e *Engine) Probe(ctx context.Context, t Target) Result {
	start := e.clock.Now()
	p, ok := e.probers[t.Kind]
	var r Result
	if !ok {
		r = Result{Kind: t.Kind, Target: t.Addr}
		r.finish(fmt.Errorf("prober: probe kind %q: %w", t.Kind, errUnknownKind))
	} else {
		r = p.Probe(ctx, t)
	}
	r.Start = start
	r.Duration = Duration(e.clock.Now().Sub(start))
	e.metrics.observe(&r)
	if e.log.Enabled(ctx, slog.LevelDebug) { // the arguments would allocate on every probe
		e.log.Debug("probe", "probe", t.Kind, "target", t.Addr, "ip", r.IP, "success", r.Success,
			"class", r.Class, "median_ms", r.Median.Ms(), "err", r.Error)
	}
	return r
}

var errUnknownKind = errors.New("unknown probe kind (want tcp, http, icmp or dns)")

// count and timeout resolve a Target's per-probe settings.
func (e *Engine) count(t Target) int {
	switch {
	case t.Count <= 0:
		return e.cfg.Count
	case t.Count > MaxCount:
		return MaxCount
	}
	return t.Count
}

func (e *Engine) timeout(t Target) time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	return e.cfg.Timeout
}

// pause waits Interval between samples, honouring ctx.
func (e *Engine) pause(ctx context.Context) error {
	if e.cfg.Interval <= 0 {
		return nil
	}
	t := e.clock.NewTimer(e.cfg.Interval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
