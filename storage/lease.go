package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// acquireLeaseScript takes a free lease with SET NX PX, numbering it with the next fencing token, or renews it
// when holder holds it already. KEYS[1] lease, KEYS[2] fence counter; ARGV[1] holder, ARGV[2] TTL ms.
// Returns {1, token} when holder holds the lease, {0, token of the current holder} otherwise. The next token is
// the counter + 1, but at least the server's clock in Unix µs (exact in Lua's doubles until the year 2255):
// when Redis loses its data the counter starts again above every token issued before (those are older times,
// or counts past them of one per acquisition), so a fence written after the loss by a holder of an old token
// never outranks the new holder.
// TIME comes first: Redis before 5 refuses writes before a non-deterministic command in a script.
var acquireLeaseScript = redis.NewScript(`
local t = redis.call('TIME')
local cur = redis.call('GET', KEYS[1])
if cur then
  local tok, h = string.match(cur, '^(%d+):(.*)$')
  if h == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(tok)}
  end
  return {0, tonumber(tok) or 0}
end
local tok = redis.call('INCR', KEYS[2])
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
if tok < us then
  tok = us
  redis.call('SET', KEYS[2], string.format('%d', tok))
end
redis.call('SET', KEYS[1], string.format('%d', tok) .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return {1, tok}
`)

// renewLeaseScript extends the lease when holder holds it. KEYS[1] lease; ARGV[1] holder, ARGV[2] TTL ms.
var renewLeaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^%d+:(.*)$') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseLeaseScript deletes the lease when holder holds it. KEYS[1] lease; ARGV[1] holder.
var releaseLeaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^%d+:(.*)$') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Lease is a lease's current state, as LeaseInfo reports it.
type Lease struct {
	Holder string
	Token  int64         // fencing token of the current holder's acquisition
	TTL    time.Duration // time left
}

func checkLease(name, holder string, ttl time.Duration) error {
	if err := validName("lease name", name); err != nil {
		return err
	}
	if holder == "" {
		return fmt.Errorf("storage: lease %s: empty holder", name)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("storage: lease %s: ttl %v: want at least 1ms", name, ttl)
	}
	return nil
}

// AcquireLease takes lease name for holder for ttl when nobody holds it, and returns ok=true with a fencing
// token: INCR of the lease's counter, raised to the Redis server's clock in Unix µs, so every acquisition gets a
// larger token than all before it, even across a loss of Redis's data (see acquireLeaseScript). When holder
// holds the lease already it is renewed and its token returned. When another holder has it, ok is false and token
// is that holder's.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (token int64, ok bool, err error) {
	if err := checkLease(name, holder, ttl); err != nil {
		return 0, false, err
	}
	v, err := acquireLeaseScript.Run(ctx, s.c, []string{KeyLease(name), KeyLeaseFence(name)}, holder, ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, false, fmt.Errorf("storage: acquire lease %s for %s: %w", name, holder, err)
	}
	if len(v) != 2 {
		return 0, false, fmt.Errorf("storage: acquire lease %s for %s: %w: reply %v", name, holder, errCorrupt, v)
	}
	return v[1], v[0] == 1, nil
}

// RenewLease extends lease name to ttl from now when holder holds it, and reports whether it did. A false
// means the lease expired or another holder took it: the caller must stop acting as the holder.
func (s *Store) RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := checkLease(name, holder, ttl); err != nil {
		return false, err
	}
	n, err := renewLeaseScript.Run(ctx, s.c, []string{KeyLease(name)}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("storage: renew lease %s for %s: %w", name, holder, err)
	}
	return n == 1, nil
}

// ReleaseLease gives lease name up when holder holds it (otherwise it does nothing), so another holder can take
// it at once.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := checkLease(name, holder, time.Second); err != nil {
		return err
	}
	if err := releaseLeaseScript.Run(ctx, s.c, []string{KeyLease(name)}, holder).Err(); err != nil {
		return fmt.Errorf("storage: release lease %s for %s: %w", name, holder, err)
	}
	return nil
}

// LeaseInfo returns lease name's holder, token and remaining time, and whether anyone holds it.
func (s *Store) LeaseInfo(ctx context.Context, name string) (Lease, bool, error) {
	if err := validName("lease name", name); err != nil {
		return Lease{}, false, err
	}
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, KeyLease(name))
		ttl = p.PTTL(ctx, KeyLease(name))
		return nil
	})
	if errors.Is(get.Err(), redis.Nil) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("storage: lease %s: %w", name, err)
	}
	tok, holder, ok := strings.Cut(get.Val(), ":")
	t, perr := strconv.ParseInt(tok, 10, 64)
	if !ok || perr != nil {
		return Lease{}, false, fmt.Errorf("storage: lease %s: %w: %q", name, errCorrupt, get.Val())
	}
	return Lease{Holder: holder, Token: t, TTL: max(ttl.Val(), 0)}, true, nil
}
