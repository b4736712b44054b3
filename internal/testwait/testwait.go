// Package testwait is the tests' one way to wait for a condition: poll it until it holds or a deadline passes.
package testwait

import (
	"testing"
	"time"
)

// Poll is how often Eventually checks its condition.
const Poll = 5 * time.Millisecond

// Eventually polls cond every Poll until it holds and returns how long that took, or fails tb (naming what it
// waited for) once timeout has passed. Deadlines in tests are generous: a busy 2-core machine is slow, not
// wrong; how fast a thing happens belongs in a benchmark or in a bound checked on the returned duration.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			tb.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(Poll)
	}
	return time.Since(start)
}
