package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/storage"
)

// parseDaemon parses the arguments of a daemon (which takes no positional arguments), then builds its logger
// and starts its profiler; call stop when the daemon returns.
func parseDaemon(ctx context.Context, fs *flag.FlagSet, df *daemonFlags, args []string, stderr io.Writer) (log *slog.Logger, stop func(), err error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%w: %s takes no arguments, got %q", errUsage, fs.Name(), fs.Args())
	}
	log, stop, err = df.start(ctx, stderr)
	if err == nil {
		storage.SetClientLogger(log) // the Redis client's own lines in the daemon's format too
	}
	return log, stop, err
}

// openStore opens the Redis the daemon flags name, retrying while it is unreachable (a daemon may start
// before its Redis) until ctx is done.
func openStore(ctx context.Context, df *daemonFlags, log *slog.Logger) (*storage.Store, error) {
	o, err := df.redisOptions(log)
	if err != nil {
		return nil, err
	}
	return daemon.OpenStore(ctx, o, log)
}

// runner is a component built by package daemon.
type runner interface {
	Run(ctx context.Context) error
}

// runOnStore opens the Redis the daemon flags name (retrying while it is unreachable), builds the component
// on it and runs it until ctx is done. A failure is logged (in the daemon's log format, like every other
// line) and exits 1.
func runOnStore(ctx context.Context, df *daemonFlags, log *slog.Logger, build func(*storage.Store) (runner, error)) error {
	err := func() error {
		st, err := openStore(ctx, df, log)
		if err != nil {
			return err
		}
		defer st.Close()
		k, err := build(st)
		if err != nil {
			return err
		}
		return k.Run(ctx)
	}()
	if err != nil {
		log.Error("exiting", "err", err)
		return exitError{code: 1}
	}
	return nil
}
