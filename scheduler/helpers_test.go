package scheduler

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/storage"
)

// openStore opens the redis-server at addr; the test's cleanup closes it.
func openStore(t testing.TB, addr string, log *slog.Logger) *storage.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{addr}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// waitUntil polls cond until it holds, or fails the test after timeout.
func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}
