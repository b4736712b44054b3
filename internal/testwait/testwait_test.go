package testwait

import (
	"fmt"
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	start := time.Now()
	if took := Eventually(t, time.Second, "a condition that holds after 50 ms", func() bool { return time.Since(start) > 50*time.Millisecond }); took < 50*time.Millisecond {
		t.Errorf("returned %v, before the condition could hold", took)
	}
	ft := &fakeTB{TB: t}
	func() {
		defer func() { recover() }() // fakeTB.Fatalf panics to stop Eventually, as FailNow stops a test
		Eventually(ft, 20*time.Millisecond, "never", func() bool { return false })
	}()
	if ft.msg != "never: not within 20ms" {
		t.Errorf("failure message %q", ft.msg)
	}
}

type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
