package router

import (
	"fmt"
	"math"
)

// The baseline rule, shared with the proxies that carry Vantage's tables (router/proxysync, deploy/haproxy,
// deploy/nginx), so that a request id is in the baseline in every one of them or in none:
//
//	baseline  <=>  MurmurHash2(request id) < BaselineThreshold(fraction)
//
// MurmurHash2 is the 32-bit hash with seed 0 that nginx's split_clients computes (ngx_murmur_hash2), and
// BaselineThreshold is split_clients' boundary for a percentage with two decimals ("1.00%"):
// round(fraction × 10000) × 0xffffffff / 10000, in integers. HAProxy computes the same hash with the Lua
// converter deploy/haproxy/vantage.lua; nginx has it built in. The fraction is thus rounded to 0.01 %.

// baselineSteps is split_clients' resolution: percentages with two decimals.
const baselineSteps = 10000

// BaselineThreshold returns the bound below which a request id's MurmurHash2 puts it in the baseline, for a
// baseline fraction in [0, 1] (rounded to 0.01 %). The whole fraction (1) returns 1<<32: every id.
func BaselineThreshold(fraction float64) uint64 {
	steps := uint64(math.Round(min(max(fraction, 0), 1) * baselineSteps))
	if steps >= baselineSteps {
		return 1 << 32
	}
	return steps * 0xffffffff / baselineSteps
}

// BaselinePercent returns the fraction as split_clients spells it, rounded to 0.01 %: "1.00%".
func BaselinePercent(fraction float64) string {
	steps := uint64(math.Round(min(max(fraction, 0), 1) * baselineSteps))
	return fmt.Sprintf("%d.%02d%%", steps/100, steps%100)
}

// MurmurHash2 returns the 32-bit MurmurHash2 of s with seed 0, exactly as nginx's ngx_murmur_hash2.
func MurmurHash2(s string) uint32 {
	const m = 0x5bd1e995
	h := uint32(len(s)) // seed 0 ^ len
	for len(s) >= 4 {
		k := uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
		s = s[4:]
	}
	switch len(s) {
	case 3:
		h ^= uint32(s[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(s[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(s[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// inBaseline reports whether the request id is held back as the baseline.
func (r *Router) inBaseline(requestID string) bool {
	return uint64(MurmurHash2(requestID)) < r.baselineThr
}
