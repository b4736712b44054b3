// Package clock is Vantage's one clock seam for components that wait.
//
// The rule: a component that only reads the time takes a `Now func() time.Time` field (nil: time.Now), as
// storage.Options, router.Config and worker.Config do. A component that also waits (timers between
// samples, rate limiters, lease renewals) takes a Clock, so a test advances a fake clock instead of
// sleeping; nil means Real. Waits use NewTimer and Stop the timer when the wait ends early, so an abandoned
// wait leaves no timer behind.
package clock

import "time"

// Clock is a source of time that can also wait.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d; d <= 0 fires at once.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer that waiting components use.
type Timer interface {
	C() <-chan time.Time
	// Stop stops the timer; it reports whether the timer was still pending.
	Stop() bool
}

// Real is the wall clock of the time package (monotonic readings included).
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// NewTimer returns a *time.Timer of d.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }
