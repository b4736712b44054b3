package router

import "fmt"

// Kind is the kind of invocation a request makes. Only the fetch handler is placed; every other kind runs where
// the request entered.
type Kind uint8

// The invocation kinds.
const (
	KindFetch      Kind = iota // the application's fetch handler: placed
	KindRPC                    // an RPC method called on the application: runs locally
	KindEntrypoint             // a named entrypoint (service binding): runs locally
	KindCron                   // a cron trigger: runs locally
	KindAsset                  // a static asset: runs locally
	numKinds
)

var kindNames = [numKinds]string{"fetch", "rpc", "entrypoint", "cron", "asset"}

// String returns the kind's name ("fetch", "rpc", "entrypoint", "cron", "asset").
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind returns the Kind named s (as Kind.String spells it), or an error naming s.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("router: kind %q: want one of fetch, rpc, entrypoint, cron, asset", s)
}

// Reason says why Route chose the execution PoP it chose. Its String is the metric label and the value of the
// reason header the HTTP front adds.
type Reason uint8

// The reasons. The first three route away from the ingress (unless the chosen PoP happens to be the ingress);
// every other one runs locally.
const (
	ReasonRemote        Reason = iota // routed to the decision's best PoP
	ReasonFailover                    // the best PoP is down or drained: routed to the next candidate within budget
	ReasonSpread                      // the application is above the spreading rate: spread over near-best PoPs
	ReasonIngressBest                 // the best PoP is the ingress PoP
	ReasonBaseline                    // held back on purpose (hash of the request id) to measure the gain
	ReasonNotFetch                    // not a fetch handler invocation (RPC, entrypoint, cron, asset)
	ReasonNoDecision                  // no decision for the application, or a decision without a best PoP
	ReasonStatus                      // the decision's status is not SUCCESS
	ReasonVerdict                     // the target is anycast or replicated: never placed
	ReasonUnavailable                 // the best PoP is down or drained and no candidate is within the budget
	ReasonStale                       // Redis unreachable for longer than Config.MaxAge: the snapshot is stale
	ReasonNoSnapshot                  // no snapshot loaded yet
	ReasonNoWorker                    // (HTTP front only) no worker endpoint configured for the chosen PoP
	ReasonStaleDecision               // the application's decision has expired (placement.Decision.ExpiresAt)
	NumReasons                        // the number of reasons, for arrays indexed by Reason
)

var reasonNames = [NumReasons]string{
	"remote", "failover", "spread", "ingress_best", "baseline", "not_fetch", "no_decision", "status", "verdict",
	"unavailable", "stale", "no_snapshot", "no_worker", "stale_decision",
}

// String returns the reason's label, e.g. "remote", "baseline", "stale".
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Result is Route's answer for one request.
type Result struct {
	// ExecPoP is the IATA code of the PoP that should run the request (the ingress PoP when not routed).
	ExecPoP string
	// Header is the cf-placement response header value: "remote-LHR" when routed away, "local-EWR" when run at
	// the ingress.
	Header string
	// Reason says why.
	Reason Reason
	// Routed reports ExecPoP != the ingress PoP.
	Routed bool
}

// HeaderPlacement is the response header carrying Result.Header.
const HeaderPlacement = "cf-placement"

// HeaderReason is the response header the HTTP front adds with Result.Reason.
const HeaderReason = "vantage-placement-reason"
