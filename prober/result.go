package prober

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// Duration is a time.Duration that marshals to JSON as a float number of milliseconds (e.g. 0.173), the unit
// triangulation and the CLI work in.
type Duration time.Duration

// Ms returns d in milliseconds.
func (d Duration) Ms() float64 { return float64(d) / float64(time.Millisecond) }

// String formats d as milliseconds with three decimals, e.g. "0.173ms".
func (d Duration) String() string { return strconv.FormatFloat(d.Ms(), 'f', 3, 64) + "ms" }

// MarshalJSON writes d as a float number of milliseconds, rounded to the nanosecond.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, d.Ms(), 'f', -1, 64), nil
}

// UnmarshalJSON reads a float number of milliseconds, rounded to the nanosecond: what MarshalJSON wrote comes
// back exactly (a truncating conversion read 0.016234 ms as 16,233 ns, 16233.999... x 1e6 in floating point).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Duration(math.Round(ms * float64(time.Millisecond)))
	return nil
}

// Class classifies why a probe (or one of its samples) failed. The empty Class means success.
type Class string

// The error classes. They are bounded, so they double as a Prometheus label.
const (
	ClassNone        Class = ""            // success
	ClassTimeout     Class = "timeout"     // no answer within the timeout (SYN or echo lost, server silent)
	ClassRefused     Class = "refused"     // the target answered with a refusal (TCP RST, ICMP port unreachable)
	ClassUnreachable Class = "unreachable" // no route to the target (ENETUNREACH, EHOSTUNREACH)
	ClassDNS         Class = "dns"         // name resolution failed, or a DNS probe got a non-NOERROR rcode
	ClassTLS         Class = "tls"         // TLS handshake or certificate verification failed
	ClassHTTPStatus  Class = "http_status" // the HTTP status code was not accepted (samples are still valid)
	ClassPolicy      Class = "policy"      // refused by the deny policy before anything was sent
	ClassOther       Class = "other"       // anything else (bad target, local errors, cancellation)
)

// Classes lists every failure class, for initialising metric series.
var Classes = []Class{ClassTimeout, ClassRefused, ClassUnreachable, ClassDNS, ClassTLS, ClassHTTPStatus,
	ClassPolicy, ClassOther}

// Sentinel errors wrapped by probe errors, for errors.Is.
var (
	// ErrTimeout is wrapped when no sample of a probe got an answer in time (ICMP: no echo reply).
	ErrTimeout = errors.New("timeout")
	// ErrHTTPStatus is wrapped when an HTTP probe got a status code outside the accepted range.
	ErrHTTPStatus = errors.New("unexpected HTTP status")
	// ErrRcode is wrapped when a DNS probe got an rcode other than NOERROR.
	ErrRcode = errors.New("unexpected DNS rcode")
	// ErrNoAddress is wrapped when a name has no address of an acceptable IP protocol.
	ErrNoAddress = errors.New("no address of the preferred IP protocol")
)

// Classify maps an error to its Class: nil is ClassNone. It looks through wrapping (errors.Is/As).
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		ciErr   x509.CertificateInvalidError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, placement.ErrDenied):
		return ClassPolicy
	case errors.Is(err, ErrHTTPStatus):
		return ClassHTTPStatus
	case errors.Is(err, ErrRcode), errors.Is(err, ErrNoAddress), errors.As(err, &dnsErr):
		return ClassDNS // a resolver timeout too: the target was never reached
	case errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &alert), errors.As(err, &uaErr),
		errors.As(err, &hostErr), errors.As(err, &ciErr):
		return ClassTLS
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return ClassRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return ClassUnreachable
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout
	}
	return ClassOther
}

// Result is the outcome of one probe: every sample, their summary, and why it failed if it did. A failed probe
// is a Result with a Class, never a lost one. Results are JSON-serialisable (stored in Redis, printed by
// "vantage probe --json"); Err is kept for errors.Is in the same process and is not serialised.
type Result struct {
	Kind     placement.ProbeKind `json:"kind"`
	Target   string              `json:"target"`              // as given
	IP       netip.Addr          `json:"ip,omitzero"`         // the resolved, policy-checked address that was dialed
	Resolved []netip.Addr        `json:"resolved,omitempty"`  // every address a target name resolved to (none for an IP)
	Source   netip.Addr          `json:"source,omitzero"`     // the local address the probe left from
	Start    time.Time           `json:"start"`               // from the injected clock
	Duration Duration            `json:"duration_ms"`         // whole probe, resolution and waits included
	Resolve  Duration            `json:"resolve_ms,omitzero"` // resolving the target's name (dns: the server's)
	Samples  []Duration          `json:"samples_ms"`          // one RTT per answered sample, in order
	Min      Duration            `json:"min_ms,omitzero"`     // smallest sample
	Median   Duration            `json:"median_ms,omitzero"`
	Sent     int                 `json:"sent"`
	Received int                 `json:"received"`
	Loss     float64             `json:"loss"`                // (Sent-Received)/Sent, 0..1
	ReplyTTL int                 `json:"reply_ttl,omitempty"` // icmp: the last echo reply's TTL (hop limit)
	Success  bool                `json:"success"`
	Class    Class               `json:"class,omitempty"` // empty on success
	Error    string              `json:"error,omitempty"`
	HTTP     *HTTPResult         `json:"http,omitempty"`
	DNS      *DNSResult          `json:"dns,omitempty"`
	ICMP     *ICMPResult         `json:"icmp,omitempty"`
	// Simulated marks a result answered from the latency model (package prober/simulate), not measured.
	Simulated bool  `json:"simulated,omitempty"`
	Err       error `json:"-"`
}

// HTTPPhases are the timings of the HEAD request that opened the connection, from httptrace hooks, as in
// blackbox_exporter's HTTP prober. Resolve is the prober's own (policy-checked) resolution.
type HTTPPhases struct {
	Resolve    Duration `json:"resolve_ms"`
	Connect    Duration `json:"connect_ms"`    // TCP handshake, timed around the prober's dial of the checked IP
	TLS        Duration `json:"tls_ms"`        // TLSHandshakeStart to TLSHandshakeDone; 0 for plain HTTP
	Processing Duration `json:"processing_ms"` // WroteRequest to GotFirstResponseByte
	Transfer   Duration `json:"transfer_ms"`   // first response byte to end of headers read
	FirstByte  Duration `json:"first_byte_ms"` // request start (after resolution) to first response byte
}

// HTTPResult is the HTTP-specific part of a Result.
type HTTPResult struct {
	Status     int        `json:"status"`                // status code of the last HEAD answered
	Phases     HTTPPhases `json:"phases"`                // of the first, connection-opening HEAD
	Reused     int        `json:"reused"`                // timed HEADs that went over the kept-alive connection
	TLSVersion string     `json:"tls_version,omitempty"` // e.g. "TLS 1.3"
	ServerName string     `json:"server_name,omitempty"` // SNI sent
	Location   string     `json:"location,omitempty"`    // redirect target when not followed
	Proto      string     `json:"proto,omitempty"`       // of the last response, e.g. "HTTP/1.1"
	// ContentLength is the last response's Content-Length (-1: not given); BodyBytes the bytes of its body read.
	ContentLength int64 `json:"content_length"`
	BodyBytes     int64 `json:"body_bytes"`
	Redirects     int   `json:"redirects"` // redirects followed
	// TLS is the last response's TLS connection state (nil for plain HTTP): certificates for expiry metrics.
	TLS *tls.ConnectionState `json:"-"`
}

// DNSAnswer is one resource record of a DNS answer section.
type DNSAnswer struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // "A", "AAAA", "CNAME", ...
	TTL   uint32 `json:"ttl"`  // seconds
	Value string `json:"value"`
}

// DNSResult is the DNS-specific part of a Result.
type DNSResult struct {
	Server   string      `json:"server"`        // resolver address queried, ip:port
	Rcode    string      `json:"rcode"`         // of the last answered query, e.g. "NOERROR", "NXDOMAIN"
	Answers  []DNSAnswer `json:"answers"`       // A and AAAA (and CNAME) records from the first answered queries
	ServerID string      `json:"id_server"`     // CHAOS TXT id.server: names the anycast site that answered
	Hostname string      `json:"hostname_bind"` // CHAOS TXT hostname.bind
	ChaosErr string      `json:"chaos_error,omitempty"`
	// The section sizes of the last timed answer, and the time its connection took to open (a UDP "connect"
	// only binds the socket) before the query was sent.
	AnswerRRs     int      `json:"answer_rrs"`
	AuthorityRRs  int      `json:"authority_rrs"`
	AdditionalRRs int      `json:"additional_rrs"`
	Connect       Duration `json:"connect_ms"`
}

// finish fills the summary fields from Samples, Sent and err.
func (r *Result) finish(err error) {
	r.Received = len(r.Samples)
	if r.Sent > 0 {
		r.Loss = float64(r.Sent-r.Received) / float64(r.Sent)
	}
	if n := len(r.Samples); n > 0 {
		s := slices.Clone(r.Samples)
		slices.Sort(s)
		r.Min = s[0]
		if n%2 == 1 {
			r.Median = s[n/2]
		} else {
			r.Median = (s[n/2-1] + s[n/2]) / 2
		}
	}
	if err == nil && r.Received == 0 {
		err = ErrTimeout
	}
	r.Err = err
	r.Class = Classify(err)
	r.Success = r.Class == ClassNone
	if err != nil {
		r.Error = err.Error()
	}
}
