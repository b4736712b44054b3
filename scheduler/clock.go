package scheduler

import "github.com/vantage-edge/vantage/internal/clock"

// Clock is the scheduler's source of time, injected so tests advance a fake clock instead of sleeping
// (tailscale prober's now/newTicker seams). It is internal/clock's Clock; see that package for the rule.
type Clock = clock.Clock

// Timer is the part of *time.Timer the scheduler uses.
type Timer = clock.Timer

// RealClock is the wall clock.
type RealClock = clock.Real
