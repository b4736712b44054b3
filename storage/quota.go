package storage

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

// takeQuotaScript is a token bucket kept in one hash, so that every scheduler on the Redis shares it.
// KEYS[1] the bucket; ARGV[1] refill rate (tokens per ms), ARGV[2] burst, ARGV[3] the caller's clock (Unix ms),
// ARGV[4] TTL ms. The bucket's clock never moves backwards: a caller whose clock lags gets no refill, one whose
// clock leads refills early by its lead only once. Returns {1, 0} when a token was taken, {0, ms until the next
// token} otherwise.
var takeQuotaScript = redis.NewScript(`
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens, last = tonumber(v[1]) or burst, tonumber(v[2]) or now
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate)
  last = now
end
local ok, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'last', string.format('%d', last))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {ok, wait}
`)

// KeyQuota returns the token bucket of quota kind ("adhoc") for name (a token's name). A name that cannot be
// part of a key (braces, spaces, control characters, over 1024 bytes) is written in hexadecimal after "x:".
func KeyQuota(kind, name string) string {
	if validName("quota name", name) != nil || len(name) > 2 && name[:2] == "x:" {
		name = "x:" + hex.EncodeToString([]byte(name))
	}
	return "vantage:{quota:" + kind + ":" + name + "}"
}

// TakeQuota takes one token from the bucket of quota kind for name: burst tokens at most, refilled at perMinute,
// kept in Redis so that every process on this Store shares it. It returns ok=false and how long until the next
// token when the bucket is empty. The bucket expires once it would be full again.
func (s *Store) TakeQuota(ctx context.Context, kind, name string, perMinute, burst float64) (ok bool, wait time.Duration, err error) {
	if err := validName("quota kind", kind); err != nil {
		return false, 0, err
	}
	if !(perMinute > 0) || !(burst >= 1) || math.IsInf(perMinute, 0) || math.IsInf(burst, 0) {
		return false, 0, fmt.Errorf("storage: quota %s for %q: rate %v/min, burst %v: want a positive rate and a burst of at least 1",
			kind, name, perMinute, burst)
	}
	perMs := perMinute / float64(time.Minute/time.Millisecond)
	ttl := int64(math.Ceil(burst/perMs)) + 1000 // full again by then: an absent bucket is a full one
	v, err := takeQuotaScript.Run(ctx, s.c, []string{KeyQuota(kind, name)},
		perMs, burst, s.o.Now().UnixMilli(), ttl).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("storage: quota %s for %q: %w", kind, name, err)
	}
	if len(v) != 2 {
		return false, 0, fmt.Errorf("storage: quota %s for %q: %w: reply %v", kind, name, errCorrupt, v)
	}
	return v[0] == 1, time.Duration(v[1]) * time.Millisecond, nil
}
