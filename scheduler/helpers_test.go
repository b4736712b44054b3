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
