// Package placement holds Vantage's shared vocabulary (modes, statuses, verdicts, decisions) and parses the
// placement configs users write in wrangler.toml and wrangler.jsonc.
package placement

import (
	"fmt"
	"time"
)

// Mode is an application's placement mode. The modes are mutually exclusive.
type Mode string

// The placement modes, as written in a wrangler config.
const (
	ModeNone     Mode = ""         // no placement: run where the request enters
	ModeSmart    Mode = "smart"    // learn the best PoP from the application's own traffic
	ModeRegion   Mode = "region"   // a cloud region hint, e.g. "aws:us-east-1"
	ModeHost     Mode = "host"     // a back end probed with TCP CONNECT, e.g. "db.example.com:5432"
	ModeHostname Mode = "hostname" // a back end probed with HTTP HEAD, e.g. "api.example.com"
)

// Valid reports whether m is one of the known modes.
func (m Mode) Valid() bool {
	switch m {
	case ModeNone, ModeSmart, ModeRegion, ModeHost, ModeHostname:
		return true
	}
	return false
}

// Status is the placement status reported per application, as in the platform's API.
type Status string

// The statuses, spelled exactly as the platform's API spells them. StatusNone means "not analysed yet" and is
// omitted from API answers.
const (
	StatusNone                    Status = ""
	StatusSuccess                 Status = "SUCCESS"
	StatusInsufficientInvocations Status = "INSUFFICIENT_INVOCATIONS"
	StatusNoValidHosts            Status = "NO_VALID_HOSTS"
	StatusInsufficientSubrequests Status = "INSUFFICIENT_SUBREQUESTS"
	StatusUnsupportedApplication  Status = "UNSUPPORTED_APPLICATION"
)

// Verdict is the triangulation engine's judgement of a target.
type Verdict string

// The verdicts. Anycast and replicated targets are never placed.
const (
	VerdictUnknown    Verdict = "unknown"    // too few or too noisy measurements
	VerdictUnicast    Verdict = "unicast"    // one host at one place: placeable
	VerdictAnycast    Verdict = "anycast"    // one address answered from several places
	VerdictReplicated Verdict = "replicated" // a name answered with different addresses per place (geo-DNS)
)

// Placeable reports whether a target with this verdict may be placed.
func (v Verdict) Placeable() bool { return v == VerdictUnicast }

// ProbeKind names a kind of probe.
type ProbeKind string

// The probe kinds the prober implements.
const (
	ProbeTCP  ProbeKind = "tcp"
	ProbeHTTP ProbeKind = "http"
	ProbeICMP ProbeKind = "icmp"
	ProbeDNS  ProbeKind = "dns"
)

// ParseProbeKind returns the ProbeKind named s, or an error naming s.
func ParseProbeKind(s string) (ProbeKind, error) {
	switch k := ProbeKind(s); k {
	case ProbeTCP, ProbeHTTP, ProbeICMP, ProbeDNS:
		return k, nil
	}
	return "", fmt.Errorf("placement: probe kind %q: want one of tcp, http, icmp, dns", s)
}

// Candidate is one PoP considered for a target, with its measured (or modelled) RTT.
type Candidate struct {
	PoP   string  `json:"pop"`
	RTTMs float64 `json:"rtt_ms"`
}

// Decision is where an application's requests should run, as computed by the scheduler and read by the router.
type Decision struct {
	App         string      `json:"app"`
	Mode        Mode        `json:"mode"`
	Target      string      `json:"target,omitempty"`     // host:port, hostname, or provider:region
	BestPoP     string      `json:"best_pop,omitempty"`   // IATA code of the execution PoP; empty: run locally
	Candidates  []Candidate `json:"candidates,omitempty"` // ranked, best first
	Verdict     Verdict     `json:"verdict,omitempty"`
	Status      Status      `json:"status,omitempty"`
	Estimated   bool        `json:"estimated,omitempty"` // chosen from the latency model, not measurements
	Confidence  float64     `json:"confidence,omitempty"`
	Version     int64       `json:"version"` // incremented each time the decision changes
	ComputedAt  time.Time   `json:"computed_at"`
	NextRecheck time.Time   `json:"next_recheck,omitempty"`
	// ExpiresAt is when the decision stops being valid: a router treats an expired decision as none (the
	// request runs locally). Zero: it never expires.
	ExpiresAt time.Time `json:"expires_at,omitempty"`
	// Reason says why the status is what it is when that is not SUCCESS (e.g. why no host was valid), for
	// people; routers ignore it.
	Reason string `json:"reason,omitempty"`
}
