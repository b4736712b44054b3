package prober

import (
	"encoding/json"
	"testing"
	"time"
)

// TestDurationJSONRoundTrip: every duration of a loopback probe's range, and longer ones, comes back from JSON
// exactly (a truncating read lost a nanosecond of 0.016234 ms, and TestTCPProbeSuccess failed now and then).
func TestDurationJSONRoundTrip(t *testing.T) {
	var ds []Duration
	for ns := range 200_000 { // 0 to 0.2 ms, every nanosecond
		ds = append(ds, Duration(ns))
	}
	for _, d := range []time.Duration{16234, 999_999_999, 1234567891, 30 * time.Second, 987654321987} {
		ds = append(ds, Duration(d))
	}
	bad := 0
	for _, d := range ds {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if back != d {
			if bad++; bad <= 5 {
				t.Errorf("%d ns written as %s read back as %d ns", time.Duration(d), b, time.Duration(back))
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d durations in all did not come back", bad)
	}
}
