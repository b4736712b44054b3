package exporter

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/vantage-edge/vantage/prober"
)

// metrics registers gauges on one probe's registry, with blackbox_exporter's names and help texts.
type metrics struct{ reg *prometheus.Registry }

func (m metrics) gauge(name, help string, v float64) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	g.Set(v)
	m.reg.MustRegister(g)
}

// phases registers a gauge vector labelled phase, one series per phase given.
func (m metrics) phases(name, help string, phases map[string]prober.Duration) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"phase"})
	for p, d := range phases {
		g.WithLabelValues(p).Set(seconds(d))
	}
	m.reg.MustRegister(g)
}

func (m metrics) info(name, help string, labels map[string]string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	g.Set(1)
	m.reg.MustRegister(g)
}

func seconds(d prober.Duration) float64 { return time.Duration(d).Seconds() }

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collect registers on reg the metrics blackbox_exporter 0.23's prober of mod emits for res, and probe_success
// and probe_duration_seconds. Every series of the prober is emitted, failed or not (zero where the probe did
// not get that far).
func collect(reg *prometheus.Registry, mod Module, res prober.Result) {
	m := metrics{reg}
	m.gauge("probe_success", "Displays whether or not the probe was a success", bit(res.Success))
	m.gauge("probe_duration_seconds", "Returns how long the probe took to complete in seconds", seconds(res.Duration))
	m.gauge("probe_dns_lookup_time_seconds", "Returns the time taken for probe dns lookup in seconds", seconds(res.Resolve))
	proto, hash := 0.0, 0.0
	if ip := res.IP; ip.IsValid() {
		proto = 6
		if ip.Is4() {
			proto = 4
		}
		h := fnv.New32a() // blackbox_exporter's ipHash: FNV-1a of the 4- or 16-byte address
		h.Write(ip.AsSlice())
		hash = float64(h.Sum32())
	}
	m.gauge("probe_ip_protocol", "Specifies whether probe ip protocol is IP4 or IP6", proto)
	m.gauge("probe_ip_addr_hash", "Specifies the hash of IP address. It's useful to detect if the IP address changes.", hash)
	switch mod.Prober {
	case "tcp":
		m.gauge("probe_failed_due_to_regex", "Indicates if probe failed due to regex", 0) // no query_response
	case "http":
		collectHTTP(m, res)
	case "icmp":
		collectICMP(m, res)
	case "dns":
		collectDNS(m, mod.DNS, res)
	}
}

func collectHTTP(m metrics, res prober.Result) {
	h := res.HTTP
	if h == nil {
		h = &prober.HTTPResult{}
	}
	ph := h.Phases
	m.phases("probe_http_duration_seconds", "Duration of http request by phase, summed over all redirects",
		map[string]prober.Duration{"resolve": ph.Resolve, "connect": ph.Connect, "tls": ph.TLS,
			"processing": ph.Processing, "transfer": ph.Transfer})
	m.gauge("probe_http_status_code", "Response HTTP status code", float64(h.Status))
	m.gauge("probe_http_content_length", "Length of http content response", float64(h.ContentLength))
	m.gauge("probe_http_uncompressed_body_length", "Length of uncompressed response body", float64(h.BodyBytes))
	version := 0.0
	if major, minor, ok := http.ParseHTTPVersion(h.Proto); ok {
		version, _ = strconv.ParseFloat(strconv.Itoa(major)+"."+strconv.Itoa(minor), 64)
	}
	m.gauge("probe_http_version", "Returns the version of HTTP of the probe response", version)
	m.gauge("probe_http_ssl", "Indicates if SSL was used for the final redirect", bit(h.TLS != nil))
	m.gauge("probe_http_redirects", "The number of redirects", float64(h.Redirects))
	m.gauge("probe_failed_due_to_regex", "Indicates if probe failed due to regex", 0) // no regexes
	if h.TLS != nil {
		collectTLS(m, h.TLS)
	}
}

// collectTLS registers blackbox_exporter's certificate metrics of a TLS connection.
func collectTLS(m metrics, cs *tls.ConnectionState) {
	var earliest, lastChain time.Time
	for _, c := range cs.PeerCertificates {
		if earliest.IsZero() || c.NotAfter.Before(earliest) {
			earliest = c.NotAfter
		}
	}
	for _, chain := range cs.VerifiedChains { // the chain that expires last; within it, its earliest expiry
		var end time.Time
		for _, c := range chain {
			if end.IsZero() || c.NotAfter.Before(end) {
				end = c.NotAfter
			}
		}
		if end.After(lastChain) {
			lastChain = end
		}
	}
	m.gauge("probe_ssl_earliest_cert_expiry", "Returns last SSL chain expiry in unixtime", float64(earliest.Unix()))
	m.gauge("probe_ssl_last_chain_expiry_timestamp_seconds", "Returns last SSL chain expiry in timestamp",
		float64(lastChain.Unix()))
	m.info("probe_tls_version_info", "Returns the TLS version used or NaN when unknown",
		map[string]string{"version": tls.VersionName(cs.Version)})
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		sum := sha256.Sum256(leaf.Raw)
		m.info("probe_ssl_last_chain_info", "Contains SSL leaf certificate information", map[string]string{
			"fingerprint_sha256": hex.EncodeToString(sum[:]), "subject": leaf.Subject.String(),
			"issuer": leaf.Issuer.String(), "subjectalternative": strings.Join(leaf.DNSNames, ",")})
	}
}

// collectICMP registers the icmp prober's metrics. The setup phase is what the probe spent neither resolving
// nor waiting for the reply: opening the socket and sending.
func collectICMP(m metrics, res prober.Result) {
	var rtt prober.Duration
	if len(res.Samples) > 0 {
		rtt = res.Samples[0]
	}
	setup := max(res.Duration-res.Resolve-rtt, 0)
	m.phases("probe_icmp_duration_seconds", "Duration of icmp request by phase",
		map[string]prober.Duration{"resolve": res.Resolve, "setup": setup, "rtt": rtt})
	if res.ReplyTTL > 0 {
		m.gauge("probe_icmp_reply_hop_limit", "Replied packet hop limit (TTL for ipv4)", float64(res.ReplyTTL))
	}
}

func collectDNS(m metrics, d DNSProbe, res prober.Result) {
	r := res.DNS
	if r == nil {
		r = &prober.DNSResult{}
	}
	var rtt prober.Duration
	if len(res.Samples) > 0 {
		rtt = res.Samples[0]
	}
	m.phases("probe_dns_duration_seconds", "Duration of DNS request by phase",
		map[string]prober.Duration{"resolve": res.Resolve, "connect": r.Connect, "request": rtt})
	m.gauge("probe_dns_answer_rrs", "Returns number of entries in the answer resource record list", float64(r.AnswerRRs))
	m.gauge("probe_dns_authority_rrs", "Returns number of entries in the authority resource record list", float64(r.AuthorityRRs))
	m.gauge("probe_dns_additional_rrs", "Returns number of entries in the additional resource record list", float64(r.AdditionalRRs))
	m.gauge("probe_dns_query_succeeded", "Displays whether or not the query was executed successfully", bit(len(res.Samples) > 0))
	if strings.EqualFold(d.QueryType, "SOA") {
		serial := 0.0
		for _, a := range r.Answers {
			if f := strings.Fields(a.Value); a.Type == "SOA" && len(f) >= 3 {
				serial, _ = strconv.ParseFloat(f[2], 64) // mname rname serial refresh ...
			}
		}
		m.gauge("probe_dns_serial", "Returns the serial number of the zone", serial)
	}
}

// serveMetrics writes reg's metrics in the format the scraper asked for.
func serveMetrics(w http.ResponseWriter, r *http.Request, reg *prometheus.Registry) {
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// writeMetrics writes reg's metrics in the Prometheus text format.
func writeMetrics(w io.Writer, reg *prometheus.Registry) error {
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}
