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
	"strconv"
	"strings"
	"sync"
	"time"
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

// Auth checks bearer tokens and keeps one ad-hoc probe quota per token. The zero Auth (no tokens) refuses
// every authenticated request.
type Auth struct {
	tokens map[string]string // token -> name (for logs and metrics-free audit)
	quota  Quota
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewAuth returns an Auth accepting tokens (token -> name) with quota per token; now is the clock (nil:
// time.Now).
func NewAuth(tokens map[string]string, quota Quota, now func() time.Time) *Auth {
	quota.PerMinute = cmp.Or(quota.PerMinute, DefaultQuotaPerMinute)
	quota.Burst = cmp.Or(quota.Burst, DefaultQuotaBurst)
	if now == nil {
		now = time.Now
	}
	return &Auth{tokens: tokens, quota: quota, now: now, buckets: map[string]*bucket{}}
}

// ParseTokens reads bearer tokens, one a line as "token" or "token name"; blank lines and # comments are
// skipped. name defaults to "token-<line>".
func ParseTokens(r io.Reader, file string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) > 2 {
			return nil, fmt.Errorf("scheduler: tokens %s:%d: want \"token [name]\", got %d fields", file, n, len(f))
		}
		if len(f[0]) < 16 {
			return nil, fmt.Errorf("scheduler: tokens %s:%d: token shorter than 16 characters", file, n)
		}
		name := "token-" + strconv.Itoa(n)
		if len(f) == 2 {
			name = f[1]
		}
		out[f[0]] = name
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scheduler: reading tokens %s: %w", file, err)
	}
	return out, nil
}

// LoadTokensFile reads ParseTokens' format from path.
func LoadTokensFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scheduler: tokens: %w", err)
	}
	defer f.Close()
	return ParseTokens(f, path)
}

// Authenticate returns the token's name when r carries "Authorization: Bearer <token>" for a known token.
func (a *Auth) Authenticate(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return "", false
	}
	for known, name := range a.tokens { // constant time per comparison; the set is small
		if subtle.ConstantTimeCompare([]byte(known), []byte(tok)) == 1 {
			return name, true
		}
	}
	return "", false
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
