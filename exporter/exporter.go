// Package exporter answers blackbox_exporter's /probe with Vantage's prober.
//
// It reads blackbox_exporter's own configuration file (File) and serves /probe?module=M&target=T[&debug=true]
// as blackbox_exporter 0.23 does, with the metric names its tcp, http, icmp and dns probers emit, so that a
// Prometheus job written for blackbox_exporter scrapes it unchanged. Probes run on prober.Engines built from
// one base configuration: the deny policy (and its allow-list), the source addresses and the namespace seam of
// the process that serves /probe apply to every module.
package exporter

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
)

// Timeout rules, as blackbox_exporter's: a probe may take the scrape's timeout (Prometheus sends it in
// ScrapeTimeoutHeader) less TimeoutOffset, so that the answer reaches Prometheus in time, or the module's
// timeout when that is shorter. Without the header the scrape's timeout is DefaultScrapeTimeout.
const (
	ScrapeTimeoutHeader  = "X-Prometheus-Scrape-Timeout-Seconds"
	DefaultScrapeTimeout = 120 * time.Second
	TimeoutOffset        = 500 * time.Millisecond
)

// DefaultModule is the module of a /probe without one, as in blackbox_exporter.
const DefaultModule = "http_2xx"

// Config configures an Exporter.
type Config struct {
	// File holds the modules; required.
	File *File
	// Prober is the base of every module's prober.Engine: Allow (the deny policy's lifts), OwnPrefixes,
	// Sources, Enter, Resolver, Logger. A module's preferred_ip_protocol, ip_protocol_fallback and
	// source_ip_address override IPProtocol, NoIPFallback and Sources; Count is 1 and there is no Interval.
	Prober prober.Config
	Logger *slog.Logger // default discards
}

// Exporter serves /probe for the modules of a blackbox_exporter configuration. It is an http.Handler.
type Exporter struct {
	modules map[string]*module
	engines map[engineKey]*prober.Engine
	log     *slog.Logger
	probes  *prometheus.CounterVec
}

// module is one configured module, runnable (eng set) or not (why set).
type module struct {
	name string
	cfg  Module
	eng  *prober.Engine
	why  string
	http prober.HTTPOptions
}

// engineKey is what distinguishes the Engines of modules: modules that agree share one.
type engineKey struct {
	proto    prober.IPProtocol
	fallback bool
	source   string
}

// New builds the Exporter of cfg.File. A module the exporter cannot run (an unsupported prober or option, or
// a source address the prober refuses) is logged and answered with a 400 naming why; the others work.
func New(cfg Config) (*Exporter, error) {
	if cfg.File == nil {
		return nil, errors.New("exporter: no configuration file")
	}
	log := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	x := &Exporter{
		modules: make(map[string]*module, len(cfg.File.Modules)),
		engines: map[engineKey]*prober.Engine{},
		log:     log,
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "vantage", Subsystem: "exporter",
			Name: "probes_total", Help: "Probes answered on /probe, by module and result (success or failure)."},
			[]string{"module", "result"}),
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.File.Modules)) {
		m := &module{name: name, cfg: cfg.File.Modules[name]}
		x.modules[name] = m
		if why := m.cfg.Unsupported(); len(why) > 0 {
			m.why = strings.Join(why, "; ")
			log.Warn("exporter: module not supported; /probe answers 400 for it", "module", name, "why", m.why)
			continue
		}
		eng, err := x.engine(cfg.Prober, m.cfg)
		if err != nil {
			m.why = err.Error()
			log.Error("exporter: module not usable; /probe answers 400 for it", "module", name, "err", err)
			continue
		}
		m.eng, m.http = eng, httpOptions(m.cfg.HTTP)
		for _, r := range []string{"success", "failure"} {
			x.probes.WithLabelValues(name, r)
		}
	}
	log.Info("exporter: modules loaded", "modules", len(x.modules),
		"unsupported", slices.Sorted(maps.Keys(x.Unsupported())))
	return x, nil
}

// engine returns the Engine of m's IP options, creating it from base the first time.
func (x *Exporter) engine(base prober.Config, m Module) (*prober.Engine, error) {
	ip := m.ipOptions()
	k := engineKey{proto: prober.IP6, fallback: ip.IPProtocolFallback == nil || *ip.IPProtocolFallback,
		source: ip.SourceIPAddress}
	if ip.IPProtocol == "ip4" {
		k.proto = prober.IP4
	}
	if e, ok := x.engines[k]; ok {
		return e, nil
	}
	c := base
	c.IPProtocol, c.NoIPFallback = k.proto, !k.fallback
	c.Count, c.Interval = 1, -1
	if k.source != "" {
		c.Sources = []netip.Addr{netip.MustParseAddr(k.source)} // checked by Parse
	}
	e, err := prober.New(c)
	if err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	x.engines[k] = e
	return e, nil
}

// ipOptions returns the options m's prober shares with the others.
func (m Module) ipOptions() IPOptions {
	switch m.Prober {
	case "http":
		return IPOptions{IPProtocol: m.HTTP.IPProtocol, IPProtocolFallback: m.HTTP.IPProtocolFallback}
	case "icmp":
		return m.ICMP.IPOptions
	case "dns":
		return m.DNS.IPOptions
	}
	return m.TCP.IPOptions
}

// okStatus is blackbox_exporter's default of valid_status_codes: 2xx.
var okStatus = func() []int {
	s := make([]int, 0, 100)
	for c := 200; c < 300; c++ {
		s = append(s, c)
	}
	return s
}()

// httpOptions translates an http module into the prober's options: one request, GET by default, redirects
// followed unless no_follow_redirects or follow_redirects false.
func httpOptions(h HTTPProbe) prober.HTTPOptions {
	follow := h.FollowRedirects == nil || *h.FollowRedirects
	if h.NoFollowRedirects != nil {
		follow = !*h.NoFollowRedirects
	}
	valid := h.ValidStatusCodes
	if len(valid) == 0 {
		valid = okStatus
	}
	return prober.HTTPOptions{
		Method:             cmp.Or(h.Method, http.MethodGet),
		Headers:            h.Headers,
		ValidStatus:        valid,
		FollowRedirects:    follow,
		Single:             true,
		CAFile:             h.TLSConfig.CAFile,
		ServerName:         h.TLSConfig.ServerName,
		InsecureSkipVerify: h.TLSConfig.InsecureSkipVerify,
	}
}

// target is the probe of addr (the /probe target) for m.
func (m *module) target(addr string, timeout time.Duration) prober.Target {
	t := prober.Target{Kind: placement.ProbeKind(m.cfg.Prober), Addr: addr, Count: 1, Timeout: timeout}
	switch m.cfg.Prober {
	case "http":
		t.HTTP = m.http
	case "dns":
		d := m.cfg.DNS
		t.Addr = d.QueryName
		t.DNS = prober.DNSOptions{Server: addr, Types: []string{cmp.Or(d.QueryType, "ANY")}, Transport: d.TransportProtocol}
	}
	return t
}

// Close closes the Engines' kept sockets.
func (x *Exporter) Close() error {
	for _, e := range x.engines {
		e.Close()
	}
	return nil
}

// Collector returns the exporter's own metrics (vantage_exporter_probes_total), for the caller to register.
func (x *Exporter) Collector() prometheus.Collector { return x.probes }

// Unsupported returns the modules that /probe refuses, with why.
func (x *Exporter) Unsupported() map[string]string {
	out := map[string]string{}
	for n, m := range x.modules {
		if m.why != "" {
			out[n] = m.why
		}
	}
	return out
}

// ServeHTTP answers /probe?module=M&target=T[&debug=true] as blackbox_exporter does: the probe's metrics in
// the Prometheus text format; with debug=true, the probe's log, those metrics and the module's configuration
// as plain text. An unknown or unsupported module and a missing target are 400s.
func (x *Exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := cmp.Or(q.Get("module"), DefaultModule)
	m, ok := x.modules[name]
	if !ok {
		http.Error(w, fmt.Sprintf("Unknown module %q", name), http.StatusBadRequest)
		return
	}
	if m.why != "" {
		http.Error(w, fmt.Sprintf("Module %q is not supported by vantage exporter: %s", name, m.why), http.StatusBadRequest)
		return
	}
	target := q.Get("target")
	if target == "" {
		http.Error(w, "Target parameter is missing", http.StatusBadRequest)
		return
	}
	timeout, err := probeTimeout(r, m.cfg.Timeout)
	if err != nil {
		http.Error(w, "Failed to parse timeout from Prometheus header: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res := m.eng.Probe(ctx, m.target(target, timeout))
	x.probes.WithLabelValues(name, map[bool]string{true: "success", false: "failure"}[res.Success]).Inc()
	x.log.Debug("exporter: probe", "module", name, "target", target, "success", res.Success, "err", res.Error)
	reg := prometheus.NewRegistry()
	collect(reg, m.cfg, res)
	if q.Get("debug") == "true" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(debugOutput(m, target, timeout, res, reg))
		return
	}
	serveMetrics(w, r, reg)
}

// probeTimeout is blackbox_exporter's rule (see ScrapeTimeoutHeader).
func probeTimeout(r *http.Request, module time.Duration) (time.Duration, error) {
	scrape := DefaultScrapeTimeout
	if v := r.Header.Get(ScrapeTimeoutHeader); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, err
		}
		if s > 0 {
			scrape = time.Duration(s * float64(time.Second))
		}
	}
	limit := scrape - TimeoutOffset
	if module > 0 && module < limit || limit < 0 {
		return cmp.Or(module, scrape), nil
	}
	return limit, nil
}

// debugOutput is blackbox_exporter's debug page: the probe's log, the metrics and the module.
func debugOutput(m *module, target string, timeout time.Duration, res prober.Result, reg *prometheus.Registry) []byte {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil)).With("module", m.name, "target", target)
	log.Info("Beginning probe", "probe", m.cfg.Prober, "timeout_seconds", timeout.Seconds())
	if res.IP.IsValid() {
		log.Info("Resolved target address", "ip", res.IP, "resolve_seconds", time.Duration(res.Resolve).Seconds())
	}
	if res.HTTP != nil && res.HTTP.Status != 0 {
		log.Info("Received HTTP response", "status_code", res.HTTP.Status, "proto", res.HTTP.Proto,
			"redirects", res.HTTP.Redirects)
	}
	if res.DNS != nil && res.DNS.Rcode != "" {
		log.Info("Got DNS response", "server", res.DNS.Server, "rcode", res.DNS.Rcode, "answers", res.DNS.AnswerRRs)
	}
	if res.Success {
		log.Info("Probe succeeded", "duration_seconds", time.Duration(res.Duration).Seconds())
	} else {
		log.Error("Probe failed", "duration_seconds", time.Duration(res.Duration).Seconds(), "class", res.Class, "err", res.Error)
	}
	var b bytes.Buffer
	b.WriteString("Logs for the probe:\n")
	b.Write(logs.Bytes())
	b.WriteString("\n\n\nMetrics that would have been returned:\n")
	if err := writeMetrics(&b, reg); err != nil {
		fmt.Fprintf(&b, "(encoding the metrics: %v)\n", err)
	}
	b.WriteString("\n\n\nModule configuration:\n")
	y, err := yaml.Marshal(m.cfg)
	if err != nil {
		y = []byte(fmt.Sprintf("(encoding the module: %v)\n", err))
	}
	b.Write(y)
	return b.Bytes()
}
