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

// daemonCommon are the flags every daemon shares: logging, the profiler and Redis.
type daemonCommon struct {
	pprof               *string
	redis               *fleetRedisFlags
	logFormat, logLevel *string
	log                 *slog.Logger
	stopPprof           func()
}

// addDaemonCommon registers the shared daemon flags on fs; withRedis adds the Redis flags.
func addDaemonCommon(fs *flag.FlagSet, withRedis bool) *daemonCommon {
	d := &daemonCommon{pprof: addPprofFlag(fs)}
	if withRedis {
		d.redis = addFleetRedisFlags(fs)
	}
	d.logFormat = fs.String("log-format", "text", "log format: json or text")
	d.logLevel = fs.String("log-level", "info", "log level: debug, info, warn or error")
	return d
}

// parse parses args (the daemon takes no positional arguments), builds the logger and starts the profiler;
// call stop when the daemon returns.
func (d *daemonCommon) parse(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s takes no arguments, got %q", errUsage, fs.Name(), fs.Args())
	}
	if err := checkLogFlags(*d.logFormat, *d.logLevel); err != nil {
		return err
	}
	d.log = fleetLogger(stderr, *d.logFormat, *d.logLevel)
	if d.redis != nil {
		if _, err := d.redis.options(d.log); err != nil {
			return err
		}
	}
	stop, err := servePprof(ctx, *d.pprof, d.log)
	if err != nil {
		return err
	}
	d.stopPprof = stop
	return nil
}

// stop stops the profiler.
func (d *daemonCommon) stop() {
	if d.stopPprof != nil {
		d.stopPprof()
	}
}

// open opens Redis, retrying while it is unreachable.
func (d *daemonCommon) open(ctx context.Context) (*storage.Store, error) {
	o, err := d.redis.options(d.log)
	if err != nil {
		return nil, err
	}
	return daemon.OpenStore(ctx, o, d.log)
}
