package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/internal/tlsfiles"
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
	TLS      bool   // --tls-cert and --tls-key: the daemon's HTTP listeners serve TLS
}

// daemonFlags are the flags the daemons (probed, scheduler, router, worker, demo) share: --log-format,
// --log-level, --pprof and, when asked for, the certificate of its HTTP listeners (--tls-cert, --tls-key) and
// the Redis connection (--redis, --redis-master, --redis-user, the --redis-tls options; the password from
// $VANTAGE_REDIS_PASSWORD). Register them with addDaemonFlags before parsing; after parsing,
// start checks them and returns the logger, so that every line, the first included, is in the chosen format.
type daemonFlags struct {
	logFormat, logLevel string
	pprof               string
	tls                 *tlsFlags   // nil without the TLS option
	redis               *redisFlags // nil with noRedis
}

// tlsFlags name the certificate and key every HTTP listener of a daemon serves.
type tlsFlags struct{ cert, key string }

// addDaemonFlags registers the daemon flags o asks for on fs.
func addDaemonFlags(fs *flag.FlagSet, o daemonFlagOptions) *daemonFlags {
	d := &daemonFlags{}
	fs.StringVar(&d.logFormat, "log-format", defaultLogFormat, "log format: json or text")
	fs.StringVar(&d.logLevel, "log-level", cmp.Or(o.LogLevel, defaultLogLevel), "log level: debug, info, warn or error")
	fs.StringVar(&d.pprof, "pprof", "", pprofUsage)
	if o.TLS {
		d.tls = &tlsFlags{}
		fs.StringVar(&d.tls.cert, "tls-cert", "", "PEM certificate chain: every HTTP listener serves TLS (with --tls-key; re-read when the file changes; empty: plain HTTP)")
		fs.StringVar(&d.tls.key, "tls-key", "", "PEM private key of --tls-cert")
	}
	if o.Redis != noRedis {
		d.redis = addRedisFlags(fs, o.Redis == redisRequired)
	}
	return d
}

// check reports a bad --log-format, --log-level, an unusable --tls-cert or --tls-key, a missing required --redis
// or an unusable Redis TLS file as a usage error naming the flag and its value.
func (d *daemonFlags) check() error {
	if _, err := newLogger(io.Discard, d.logFormat, d.logLevel); err != nil {
		return err
	}
	if d.tls != nil {
		if err := pairFlags("--tls-cert", d.tls.cert, "--tls-key", d.tls.key); err != nil {
			return err
		}
		if d.tls.cert != "" {
			if _, err := tlsfiles.Server(d.tls.cert, d.tls.key, nil); err != nil {
				return fmt.Errorf("%w: --tls-cert %s, --tls-key %s: %w", errUsage, d.tls.cert, d.tls.key, err)
			}
		}
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

// tlsFiles returns the certificate the HTTP listeners serve (none: plain HTTP).
func (d *daemonFlags) tlsFiles() daemon.TLSFiles {
	if d.tls == nil {
		return daemon.TLSFiles{}
	}
	return daemon.TLSFiles{Cert: d.tls.cert, Key: d.tls.key}
}

// pairFlags checks a certificate flag and its key flag: both or neither, each a readable file; the usage error
// names the flag at fault.
func pairFlags(certFlag, cert, keyFlag, key string) error {
	switch {
	case cert == "" && key != "":
		return fmt.Errorf("%w: %s %s needs %s", errUsage, keyFlag, key, certFlag)
	case cert != "" && key == "":
		return fmt.Errorf("%w: %s %s needs %s", errUsage, certFlag, cert, keyFlag)
	}
	if err := readable(certFlag, cert); err != nil {
		return err
	}
	return readable(keyFlag, key)
}

// readable returns a usage error naming flag when file is set but cannot be opened.
func readable(flag, file string) error {
	if file == "" {
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errUsage, flag, err)
	}
	f.Close()
	return nil
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

// redisFlags are the Redis connection flags: --redis, --redis-master, --redis-user and the TLS options
// (--redis-tls, --redis-ca, --redis-cert, --redis-key, --redis-server-name); the password comes from
// $VANTAGE_REDIS_PASSWORD, never from a flag.
type redisFlags struct {
	addrs    string
	master   string
	username string
	tls      bool
	tlsFiles tlsfiles.Client
	required bool
	// history and historyEvery are the decision history's cap and interval (--decision-history,
	// --decision-history-every), registered by the commands that write decisions only (addHistoryFlags).
	history      *int
	historyEvery *time.Duration
	// sample is --telemetry-sample-rate: the fraction of request records kept on the streams for debugging.
	sample float64
	// poolSize is the connections per Redis node (0: go-redis's default), set by a command that holds many
	// blocking reads at once (probed --simulate: one per simulated PoP).
	poolSize int
}

// addHistoryFlags registers the decision history's flags on fs, for a command that writes decisions.
func (f *redisFlags) addHistoryFlags(fs *flag.FlagSet) {
	f.history = fs.Int("decision-history", storage.DefaultDecisionHistoryLen, "decisions kept per application in its history in Redis, newest first (0: none)")
	f.historyEvery = fs.Duration("decision-history-every", storage.DefaultDecisionHistoryEvery, "how often an unchanged decision is recorded in the history anyway (a change always is)")
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
	fs.Float64Var(&f.sample, "telemetry-sample-rate", storage.DefaultTelemetrySampleRate, "fraction of telemetry request records this process writes that are also kept one by one on the app's stream, for debugging (0 to 1; the analysis reads the aggregated windows)")
	fs.StringVar(&f.username, "redis-user", "", "Redis ACL user (password from $"+envRedisPassword+")")
	fs.BoolVar(&f.tls, "redis-tls", false, "speak TLS to Redis (every node and Sentinel); implied by the other --redis-* TLS flags")
	fs.StringVar(&f.tlsFiles.CA, "redis-ca", "", "PEM file of the CAs Redis's certificates are checked against (default: the system's, or $SSL_CERT_FILE)")
	fs.StringVar(&f.tlsFiles.Cert, "redis-cert", "", "PEM client certificate for Redis's tls-auth-clients (with --redis-key; re-read when it changes)")
	fs.StringVar(&f.tlsFiles.Key, "redis-key", "", "PEM private key of --redis-cert")
	fs.StringVar(&f.tlsFiles.ServerName, "redis-server-name", "", "name Redis's certificates must carry (default: the host of each address)")
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
	o := storage.Options{Addrs: addrs, MasterName: f.master, Username: f.username,
		Password: os.Getenv(envRedisPassword), Logger: log, TelemetrySampleRate: f.sample, PoolSize: f.poolSize}
	if !(f.sample >= 0 && f.sample <= 1) {
		return storage.Options{}, fmt.Errorf("%w: --telemetry-sample-rate %v: want 0 to 1", errUsage, f.sample)
	}
	if f.sample == 0 {
		o.TelemetrySampleRate = -1 // the store's "none"
	}
	if f.history != nil {
		if o.DecisionHistoryLen = *f.history; o.DecisionHistoryLen <= 0 {
			o.DecisionHistoryLen = -1 // the store's "none"
		}
		if *f.historyEvery <= 0 {
			return storage.Options{}, fmt.Errorf("%w: --decision-history-every %v: want > 0", errUsage, *f.historyEvery)
		}
		o.DecisionHistoryEvery = *f.historyEvery
	}
	var err error
	o.TLS, err = f.tlsConfig(log)
	return o, err
}

// tlsConfig returns the client TLS configuration of the Redis TLS flags, nil when they are all off; a usage
// error names the flag at fault.
func (f *redisFlags) tlsConfig(log *slog.Logger) (*tls.Config, error) {
	if !f.tls && f.tlsFiles == (tlsfiles.Client{}) {
		return nil, nil
	}
	if err := readable("--redis-ca", f.tlsFiles.CA); err != nil {
		return nil, err
	}
	if err := pairFlags("--redis-cert", f.tlsFiles.Cert, "--redis-key", f.tlsFiles.Key); err != nil {
		return nil, err
	}
	cfg, err := f.tlsFiles.Config(log)
	if err != nil {
		return nil, fmt.Errorf("%w: Redis TLS: %w", errUsage, err)
	}
	return cfg, nil
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
