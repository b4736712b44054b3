package clock

import (
	"testing"
	"time"
)

var _ Clock = Real{}

func TestRealTimerFires(t *testing.T) {
	var c Clock = Real{}
	before := c.Now()
	tm := c.NewTimer(time.Millisecond)
	select {
	case at := <-tm.C():
		if at.Before(before) {
			t.Errorf("timer fired at %v, before it was made at %v", at, before)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timer of 1ms did not fire within 10s")
	}
	if tm.Stop() {
		t.Error("Stop of a fired timer reported it pending")
	}
}

func TestRealTimerStop(t *testing.T) {
	tm := Real{}.NewTimer(time.Hour)
	if !tm.Stop() {
		t.Fatal("Stop of an hour's timer reported it not pending")
	}
	select {
	case <-tm.C():
		t.Fatal("stopped timer fired")
	case <-time.After(10 * time.Millisecond):
	}
}

func TestRealTimerNonPositive(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		select {
		case <-Real{}.NewTimer(d).C():
		case <-time.After(10 * time.Second):
			t.Fatalf("NewTimer(%v) did not fire within 10s", d)
		}
	}
}
