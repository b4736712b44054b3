package storage

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetClientLogger sends the Redis client library's own log lines (go-redis reports connection-pool failures
// with the standard log package's format) to log at WARN, so that a daemon's log is in one format from its
// first line. The library's logger is process-wide: the last call wins.
func SetClientLogger(log *slog.Logger) { redis.SetLogger(clientLogger{log}) }

type clientLogger struct{ log *slog.Logger }

func (l clientLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "storage: redis client: "+fmt.Sprintf(format, v...))
}
