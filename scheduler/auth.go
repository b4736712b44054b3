package scheduler

import (
	"bufio"
	"cmp"
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// Defaults of Quota.
const (
	// DefaultQuotaPerMinute is the ad-hoc probes a token may start per minute: an ad-hoc probe costs one job
	// per PoP (300+ for "all"), so the fleet is shielded from a script in a loop.
	DefaultQuotaPerMinute = 30
	// DefaultQuotaBurst is how many ad-hoc probes a token may start at once after being idle.
	DefaultQuotaBurst = 5
)

// Quota is a token bucket: Burst requests at once, refilled at PerMinute.
type Quota struct {
	PerMinute float64 // default DefaultQuotaPerMinute
	Burst     float64 // default DefaultQuotaBurst
}

// AllAccounts is the account of an operator's token: it sees and changes every account's applications,
// decisions and ad-hoc probes, the fleet's config files, and /metrics.
const AllAccounts = "*"

// Principal is whom a request acts for: a token's name (for logs and the ad-hoc quota) and its account.
type Principal struct {
	Name    string `json:"name"`
	Account string `json:"account"` // an account id, or AllAccounts for an operator
	// LegacyLine is, for a token read from an old "token [name]" line of a tokens file, that line's number
	// (such tokens are operators); 0 otherwise.
	LegacyLine int `json:"-"`
}

// Operator returns the Principal of an operator token called name.
func Operator(name string) Principal { return Principal{Name: name, Account: AllAccounts} }

// IsOperator reports whether p sees every account.
func (p Principal) IsOperator() bool { return p.Account == AllAccounts }

// Sees reports whether p may read and change the things of account: its own account's, or every account's
// for an operator. Things without an account ("", registered before accounts existed or by an operator without
// one) are an operator's only.
func (p Principal) Sees(account string) bool {
	return p.IsOperator() || account != "" && p.Account == account
}

// Tokens maps bearer tokens to whom they act for.
type Tokens map[string]Principal

// OperatorTokens returns tokens (token -> name) as operators' Tokens.
func OperatorTokens(tokens map[string]string) Tokens {
	out := make(Tokens, len(tokens))
	for tok, name := range tokens {
		out[tok] = Operator(name)
	}
	return out
}

// Auth checks bearer tokens and keeps one ad-hoc probe quota per token. The zero Auth (no tokens) refuses
// every authenticated request.
type Auth struct {
	tokens Tokens
	quota  Quota
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewAuth returns an Auth accepting tokens (token -> name), every one an operator's (see NewScopedAuth), with
// quota per token; now is the clock (nil: time.Now).
func NewAuth(tokens map[string]string, quota Quota, now func() time.Time) *Auth {
	return NewScopedAuth(OperatorTokens(tokens), quota, now)
}

// NewScopedAuth returns an Auth accepting tokens, each acting for its Principal's account, with quota per
// token; now is the clock (nil: time.Now).
func NewScopedAuth(tokens Tokens, quota Quota, now func() time.Time) *Auth {
	quota.PerMinute = cmp.Or(quota.PerMinute, DefaultQuotaPerMinute)
	quota.Burst = cmp.Or(quota.Burst, DefaultQuotaBurst)
	if now == nil {
		now = time.Now
	}
	return &Auth{tokens: tokens, quota: quota, now: now, buckets: map[string]*bucket{}}
}

// minTokenLen is the shortest bearer token a tokens file may hold: 16 random characters are beyond guessing
// through an HTTP API.
const minTokenLen = 16

// ReadTokens reads a tokens file, one token a line as
//
//	TOKEN NAME ACCOUNT
//
// where ACCOUNT is an account id (placement.CheckAccountID) or AllAccounts ("*") for an operator. The old form
// "TOKEN [NAME]" is still read, as an operator's token (Principal.LegacyLine says so, for a deprecation
// warning). Blank lines and # comments are skipped; NAME defaults to "token-<line>". A token twice is an error.
func ReadTokens(r io.Reader, file string) (Tokens, error) {
	out := Tokens{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) > 3 {
			return nil, fmt.Errorf("scheduler: tokens %s:%d: want \"TOKEN NAME ACCOUNT\", got %d fields", file, n, len(f))
		}
		if len(f[0]) < minTokenLen {
			return nil, fmt.Errorf("scheduler: tokens %s:%d: token shorter than %d characters", file, n, minTokenLen)
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("scheduler: tokens %s:%d: the token of an earlier line again", file, n)
		}
		p := Principal{Name: "token-" + strconv.Itoa(n), Account: AllAccounts, LegacyLine: n}
		if len(f) >= 2 {
			p.Name = f[1]
		}
		if len(f) == 3 {
			p.Account, p.LegacyLine = f[2], 0
			if p.Account != AllAccounts {
				if err := placement.CheckAccountID(p.Account); err != nil {
					return nil, fmt.Errorf("scheduler: tokens %s:%d: account %.70q: %w", file, n, p.Account, err)
				}
			}
		}
		out[f[0]] = p
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scheduler: reading tokens %s: %w", file, err)
	}
	return out, nil
}

// LoadTokensFile reads ReadTokens' format from path.
func LoadTokensFile(path string) (Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scheduler: tokens: %w", err)
	}
	defer f.Close()
	return ReadTokens(f, path)
}

// LegacyLines returns the line numbers of the tokens read from old "token [name]" lines, in order.
func (t Tokens) LegacyLines() []int {
	var out []int
	for _, p := range t {
		if p.LegacyLine > 0 {
			out = append(out, p.LegacyLine)
		}
	}
	slices.Sort(out)
	return out
}

// Authenticate returns whom r acts for when it carries "Authorization: Bearer <token>" (the scheme in any
// case) for a known token.
func (a *Auth) Authenticate(r *http.Request) (Principal, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return Principal{}, false
	}
	var (
		found Principal
		match int
	)
	for known, p := range a.tokens { // constant time per comparison; the set is small
		if subtle.ConstantTimeCompare([]byte(known), []byte(tok)) == 1 {
			found, match = p, 1
		}
	}
	return found, match == 1
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p (as the API's authentication leaves it for its handlers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns whom the request of ctx acts for, as WithPrincipal left it.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Allow takes one request from the named token's bucket in this process (see Take for the shared one). When the bucket is empty it returns false and how
// long until the next request would be allowed.
func (a *Auth) Allow(name string) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	b, ok := a.buckets[name]
	if !ok {
		b = &bucket{tokens: a.quota.Burst, last: now}
		a.buckets[name] = b
	}
	rate := a.quota.PerMinute / 60 // per second
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(a.quota.Burst, b.tokens+el*rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / rate * float64(time.Second))
	return false, wait
}

// QuotaStore keeps quotas where every scheduler shares them (storage.Store.TakeQuota, in Redis).
type QuotaStore interface {
	TakeQuota(ctx context.Context, kind, name string, perMinute, burst float64) (ok bool, wait time.Duration, err error)
}

// QuotaKindAdHoc is the QuotaStore kind of the ad-hoc probe quota.
const QuotaKindAdHoc = "adhoc"

// Take takes one ad-hoc probe from the named token's quota: from shared when it is not nil, so that N
// schedulers allow the quota once and not N times, else from this process's bucket (Allow). An error means the
// shared store could not answer; the request should be refused.
func (a *Auth) Take(ctx context.Context, shared QuotaStore, name string) (bool, time.Duration, error) {
	if shared == nil {
		ok, wait := a.Allow(name)
		return ok, wait, nil
	}
	ok, wait, err := shared.TakeQuota(ctx, QuotaKindAdHoc, name, a.quota.PerMinute, a.quota.Burst)
	if err != nil {
		return false, 0, fmt.Errorf("scheduler: ad-hoc quota of token %q: %w", name, err)
	}
	return ok, wait, nil
}

// retryAfter formats d as whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
