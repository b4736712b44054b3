package router

import (
	"math/bits"
	"sync/atomic"
)

// A rate word counts events in fixed windows without locks: one uint64 updated by compare-and-swap holding the
// window number (24 bits, wrapping), the previous window's count and the current window's count (20 bits
// each, saturating). The estimate is the larger of the two counts: a burst is seen within the window it
// starts in, and an application that stops is forgotten after two windows.
const (
	rateCountBits = 20
	rateCountMax  = 1<<rateCountBits - 1
	rateEpochBits = 24
	rateEpochMask = 1<<rateEpochBits - 1
)

// rateEpoch returns the window number stored in a rate word.
func rateEpoch(st uint64) uint64 { return st >> (2 * rateCountBits) }

// rateHit counts one event in window epoch and returns the estimate (events per window).
func rateHit(p *uint64, epoch uint64) uint64 {
	epoch &= rateEpochMask
	for {
		old := atomic.LoadUint64(p)
		prev, cur := old>>rateCountBits&rateCountMax, old&rateCountMax
		switch (epoch - rateEpoch(old)) & rateEpochMask {
		case 0:
			if cur == rateCountMax {
				return cur
			}
			cur++
		case 1:
			prev, cur = cur, 1
		default:
			prev, cur = 0, 1
		}
		if atomic.CompareAndSwapUint64(p, old, epoch<<(2*rateCountBits)|prev<<rateCountBits|cur) {
			return max(prev, cur)
		}
	}
}

// rateRead returns the estimate of a rate word in window epoch without counting.
func rateRead(st, epoch uint64) uint64 {
	switch (epoch - rateEpoch(st)) & rateEpochMask {
	case 0:
		return max(st>>rateCountBits&rateCountMax, st&rateCountMax)
	case 1:
		return st & rateCountMax
	}
	return 0
}

// Hash constants (xxhash64 primes) for the request-id hash.
const (
	prime1 = 0x9E3779B185EBCA87
	prime2 = 0xC2B2AE3D27D4EB4F
	prime3 = 0x165667B19E3779F9
)

// idHash is a fixed-seed 64-bit hash of a request id. It must be the same in every router process and release,
// so that the baseline and the spreading are deterministic per request id: it is not maphash (random seed).
func idHash(s string) uint64 {
	h := uint64(len(s))*prime1 ^ prime3
	for len(s) >= 8 {
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		h ^= bits.RotateLeft64(w*prime2, 31) * prime1
		h = bits.RotateLeft64(h, 27)*prime1 + prime3
		s = s[8:]
	}
	if len(s) > 0 { // the 1 to 7 remaining bytes, as one word
		var w uint64
		for i := 0; i < len(s); i++ {
			w |= uint64(s[i]) << (8 * i)
		}
		h ^= w * prime3
		h = bits.RotateLeft64(h, 11) * prime1
	}
	return fmix64(h)
}

// fmix64 is MurmurHash3's finaliser: every input bit affects every output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
