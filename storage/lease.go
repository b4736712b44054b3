package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// KeyLeaseMembers returns the sorted set of the members of a lease group (schedulers sharing a fleet's shard
// leases): member -> expiry in Unix ms on the Redis server's clock. Same slot as the group's own lease.
func KeyLeaseMembers(group string) string { return "vantage:{lease:" + group + "}:members" }

// KeyShardCount returns the number of shards a lease group's targets are split into, written by the first
// member to start (AgreeShards). Same slot as the group's own lease.
func KeyShardCount(group string) string { return "vantage:{lease:" + group + "}:shards" }

// heartbeatMemberScript drops the expired members of a group, (re)announces ARGV[1] until now + ARGV[2] ms
// (none when ARGV[1] is empty) and returns the members left. KEYS[1] members. The expiry is the server's clock,
// so members on hosts whose clocks differ agree on who is alive.
var heartbeatMemberScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) * 2 then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  end
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// HeartbeatMember announces member in lease group for ttl and returns the group's live members (member
// included), sorted. A member that stops calling drops out ttl after its last call; LeaveMember drops it at once.
func (s *Store) HeartbeatMember(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	if err := checkLease(group, member, ttl); err != nil {
		return nil, err
	}
	v, err := heartbeatMemberScript.Run(ctx, s.c, []string{KeyLeaseMembers(group)}, member, ttl.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("storage: heartbeat of %s in lease group %s: %w", member, group, err)
	}
	slices.Sort(v)
	return v, nil
}

// LeaveMember removes member from lease group at once (a clean shutdown; a crashed member expires instead).
func (s *Store) LeaveMember(ctx context.Context, group, member string) error {
	if err := checkLease(group, member, time.Second); err != nil {
		return err
	}
	if err := s.c.ZRem(ctx, KeyLeaseMembers(group), member).Err(); err != nil {
		return fmt.Errorf("storage: %s leaving lease group %s: %w", member, group, err)
	}
	return nil
}

// agreeShardsScript stores ARGV[1] as the group's shard count unless one is stored, and returns the stored one.
// KEYS[1] shard count.
var agreeShardsScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// AgreeShards stores n as lease group's shard count when none is stored yet, and returns the stored count:
// every member of a group must split targets the same way, so a member started with another count adopts the
// stored one (or refuses to run). The count has no TTL; it goes with Redis's data.
func (s *Store) AgreeShards(ctx context.Context, group string, n int) (int, error) {
	if err := validName("lease group", group); err != nil {
		return 0, err
	}
	if n < 1 {
		return 0, fmt.Errorf("storage: lease group %s: shard count %d: want at least 1", group, n)
	}
	v, err := agreeShardsScript.Run(ctx, s.c, []string{KeyShardCount(group)}, n).Int()
	if err != nil {
		return 0, fmt.Errorf("storage: shard count of lease group %s: %w", group, err)
	}
	return v, nil
}
