package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/vantage-edge/vantage/storage"
)

// The defaults of the log flags every daemon shares.
const (
	defaultLogFormat = "text"
	defaultLogLevel  = "info"
)

// pprofUsage documents --pprof, the address of the Go profiler's endpoints, off unless given: profiles
// expose internals, so they are served on their own address.
const pprofUsage = "address of /debug/pprof/ (empty: off), e.g. 127.0.0.1:6060; keep it on loopback or an admin network"

// envRedisPassword holds the Redis password: a flag would show it in the process list.
const envRedisPassword = "VANTAGE_REDIS_PASSWORD"

// redisNeed says whether a command registers the Redis flags, and whether --redis is required.
type redisNeed int

const (
	noRedis       redisNeed = iota // no Redis flags
	redisOptional                  // --redis may be empty: the command runs without Redis
	redisRequired                  // --redis is required
)

// daemonFlagOptions chooses the daemon flags a command registers; the zero value is the log and pprof flags
// with their defaults.
type daemonFlagOptions struct {
	Redis    redisNeed
	LogLevel string // default of --log-level; "" is info
}

// daemonFlags are the flags the daemons (probed, scheduler, router, worker, demo) share: --log-format,
// --log-level, --pprof and, when asked for, the Redis connection (--redis, --redis-master, --redis-user; the
// password from $VANTAGE_REDIS_PASSWORD). Register them with addDaemonFlags before parsing; after parsing,
// start checks them and returns the logger, so that every line, the first included, is in the chosen format.
type daemonFlags struct {
	logFormat, logLevel string
	pprof               string
	redis               *redisFlags // nil with noRedis
}

// addDaemonFlags registers the daemon flags o asks for on fs.
func addDaemonFlags(fs *flag.FlagSet, o daemonFlagOptions) *daemonFlags {
	d := &daemonFlags{}
	fs.StringVar(&d.logFormat, "log-format", defaultLogFormat, "log format: json or text")
	fs.StringVar(&d.logLevel, "log-level", cmp.Or(o.LogLevel, defaultLogLevel), "log level: debug, info, warn or error")
	fs.StringVar(&d.pprof, "pprof", "", pprofUsage)
	if o.Redis != noRedis {
		d.redis = addRedisFlags(fs, o.Redis == redisRequired)
	}
	return d
}

// check reports a bad --log-format, --log-level or a missing required --redis as a usage error naming the
// flag and its value.
func (d *daemonFlags) check() error {
	if _, err := newLogger(io.Discard, d.logFormat, d.logLevel); err != nil {
		return err
	}
	if d.redis != nil {
		if _, err := d.redis.options(nil); err != nil {
			return err
		}
	}
	return nil
}

// logger returns the logger the log flags describe, writing to w. Call check first: a bad value falls back
// to text at info.
func (d *daemonFlags) logger(w io.Writer) *slog.Logger {
	log, err := newLogger(w, d.logFormat, d.logLevel)
	if err != nil {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return log
}

// start checks the flags, builds the logger writing to w and serves /debug/pprof/ when --pprof is set, until
// ctx is done or stop is called (stop also waits for the profiler's server to end).
func (d *daemonFlags) start(ctx context.Context, w io.Writer) (log *slog.Logger, stop func(), err error) {
	if err := d.check(); err != nil {
		return nil, nil, err
	}
	log = d.logger(w)
	stop, err = servePprof(ctx, d.pprof, log)
	if err != nil {
		return nil, nil, err
	}
	return log, stop, nil
}

// hasRedis reports whether --redis was given.
func (d *daemonFlags) hasRedis() bool { return d.redis != nil && d.redis.addrs != "" }

// redisOptions are the storage options of the Redis flags, logging to log: zero Options when an optional
// --redis is empty (see hasRedis), a usage error when a required one is.
func (d *daemonFlags) redisOptions(log *slog.Logger) (storage.Options, error) {
	if d.redis == nil {
		return storage.Options{}, fmt.Errorf("%w: this command has no --redis", errUsage)
	}
	return d.redis.options(log)
}

// openRedis opens the store the Redis flags name (one attempt); it is an error when --redis is empty.
func (d *daemonFlags) openRedis(ctx context.Context, log *slog.Logger) (*storage.Store, error) {
	if d.redis == nil {
		return nil, fmt.Errorf("%w: this command has no --redis", errUsage)
	}
	return d.redis.open(ctx, log)
}

// redisFlags are the Redis connection flags: --redis, --redis-master and --redis-user; the password comes
// from $VANTAGE_REDIS_PASSWORD, never from a flag.
type redisFlags struct {
	addrs    string
	master   string
	username string
	required bool
}

// addRedisFlags registers the Redis connection flags on fs; required says whether --redis must be given.
func addRedisFlags(fs *flag.FlagSet, required bool) *redisFlags {
	f := &redisFlags{required: required}
	need := " (empty: none)"
	if required {
		need = " (required)"
	}
	fs.StringVar(&f.addrs, "redis", "", "Redis address host:port or unix:/path; several, comma-separated: a Cluster (or Sentinels with --redis-master)"+need)
	fs.StringVar(&f.master, "redis-master", "", "Sentinel master name")
	fs.StringVar(&f.username, "redis-user", "", "Redis ACL user (password from $"+envRedisPassword+")")
	return f
}

// options are the storage options of the flags, logging to log; a usage error when --redis is empty.
func (f *redisFlags) options(log *slog.Logger) (storage.Options, error) {
	var addrs []string
	for _, a := range strings.Split(f.addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		if !f.required && f.addrs == "" {
			return storage.Options{}, nil
		}
		return storage.Options{}, fmt.Errorf("%w: --redis is required", errUsage)
	}
	return storage.Options{Addrs: addrs, MasterName: f.master, Username: f.username,
		Password: os.Getenv(envRedisPassword), Logger: log}, nil
}

// open opens the store the flags name (one attempt).
func (f *redisFlags) open(ctx context.Context, log *slog.Logger) (*storage.Store, error) {
	if f.addrs == "" {
		return nil, fmt.Errorf("%w: --redis is required", errUsage)
	}
	o, err := f.options(log)
	if err != nil {
		return nil, err
	}
	st, err := storage.Open(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("opening Redis %s: %w", f.addrs, err)
	}
	return st, nil
}

// newLogger returns a slog logger writing format ("json" or "text") at level (debug, info, warn or error) to
// w, or a usage error naming the flag and its value.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, format)
}
