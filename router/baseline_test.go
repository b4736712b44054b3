package router

import (
	"fmt"
	"testing"
)

// TestMurmurHash2 checks the hash against nginx's ngx_murmur_hash2 (split_clients' hash) compiled from its C
// source, which gave the values below; router/proxysync's differential test checks it against nginx itself.
func TestMurmurHash2(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"", 0},
		{"a", 0x92685f5e},
		{"ab", 0x1aa14063},
		{"abc", 0x13577c9b},
		{"abcd", 0x26873021},
		{"hello", 0xe56129cb},
		{"8c3a1f2e4b5d6a7f-EWR", 0x4251ad99},
	} {
		if got := MurmurHash2(tc.in); got != tc.want {
			t.Errorf("MurmurHash2(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func TestBaselineThreshold(t *testing.T) {
	for _, tc := range []struct {
		fraction float64
		want     uint64
		percent  string
	}{
		{0, 0, "0.00%"},
		{0.01, 100 * 0xffffffff / 10000, "1.00%"},
		{0.0001, 0xffffffff / 10000, "0.01%"},
		{0.12345, 1235 * 0xffffffff / 10000, "12.35%"},
		{1, 1 << 32, "100.00%"},
	} {
		t.Run(fmt.Sprint(tc.fraction), func(t *testing.T) {
			if got := BaselineThreshold(tc.fraction); got != tc.want {
				t.Errorf("BaselineThreshold(%v) = %d, want %d", tc.fraction, got, tc.want)
			}
			if got := BaselinePercent(tc.fraction); got != tc.percent {
				t.Errorf("BaselinePercent(%v) = %q, want %q", tc.fraction, got, tc.percent)
			}
		})
	}
}
