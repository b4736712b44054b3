package storage

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// SchemaVersion is the version of the key layout described in the package documentation. Open writes it to
// KeySchema when absent and refuses a Redis holding a different version.
const SchemaVersion = 1

// Connection defaults: short enough that callers see errors, not hangs, while Redis is down.
const (
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = 2 * time.Second
	DefaultWriteTimeout = 2 * time.Second
)

// Schema defaults; see the Options fields of the same names.
const (
	DefaultHistoryLen      = 256
	DefaultRecentLen       = 8
	DefaultJobStreamMaxLen = 100_000
	DefaultResultDedupTTL  = 24 * time.Hour
	DefaultAdHocTTL        = 24 * time.Hour
	DefaultMaxJobAttempts  = 5
	// DefaultDecisionHistoryLen caps each application's decision history (see Options.DecisionHistoryLen).
	DefaultDecisionHistoryLen = 100
	// DefaultDecisionHistoryEvery is how often an unchanged decision is recorded in the history anyway: a
	// few per hour show the RTT trend of a stable placement without recording every recheck (at the default
	// 5-minute recheck interval, 1 write in 12).
	DefaultDecisionHistoryEvery = time.Hour
)

// Options say how to reach Redis. One address: a single node; several addresses with MasterName: Sentinel (the
// addresses are the sentinels); several addresses without MasterName: a Cluster (the addresses are seed nodes).
// An address "unix:/path/to.sock" dials a unix socket. No address: Open starts an embedded server (see
// StartEmbedded) owned by the Store. Zero durations and sizes mean the defaults above.
type Options struct {
	Addrs      []string
	MasterName string
	// Cluster forces Cluster mode with a single seed address (e.g. a managed cluster's configuration endpoint).
	Cluster bool
	// Username and Password authenticate (AUTH, or AUTH user pass with an ACL user).
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the sentinels when they differ from the master's.
	SentinelUsername, SentinelPassword string
	// TLS, when set, is used for every connection (TCP and unix).
	TLS *tls.Config
	// DB selects a database (single node and Sentinel only; Cluster has only DB 0).
	DB int
	// Logger receives the Store's warnings (watch reconnects, dropped jobs); nil: discarded.
	Logger *slog.Logger

	// DialTimeout, ReadTimeout and WriteTimeout bound each network operation (default 2 s each).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the number of connections per node (default: go-redis's, 10 per CPU).
	PoolSize int

	// HistoryLen caps the result history kept per target (default 256 entries).
	HistoryLen int
	// RecentLen caps the recent results kept per target and PoP (KeyRecent; default 8 entries): more than the
	// scheduler's history window reads (3 rounds by default), so a window of a few more rounds needs no
	// migration.
	RecentLen int
	// JobStreamMaxLen caps each PoP's job stream, approximately (default 100 000 entries).
	JobStreamMaxLen int64
	// ResultDedupTTL is how long a job's result is remembered at most to drop duplicates (default 24 h): the
	// result of a job with a deadline (Result.JobDeadline), every job Vantage enqueues, is remembered until
	// DedupAfterDeadline past it.
	ResultDedupTTL time.Duration
	// MaxJobAttempts is how many deliveries a job gets before ReclaimJobs moves it to the dead-letter list
	// (default 5).
	MaxJobAttempts int
	// DecisionHistoryLen caps the decisions kept per application in its history (DecisionHistory), newest
	// first (default 100; negative: no history is kept). An entry of a decision with five candidates takes
	// about 320 bytes of Redis memory (BenchmarkPutDecisionsHistory): 1,000,000 applications with full
	// histories of 100 would take about 32 GB, so a fleet that large lowers it. Only changes and an hourly
	// sample are recorded, so a stable application's history fills slowly.
	DecisionHistoryLen int
	// DecisionHistoryEvery is how long an unchanged decision waits before it is recorded in the history again
	// (default 1 h); a changed decision is always recorded.
	DecisionHistoryEvery time.Duration
	// TelemetrySampleRate is the fraction of request records AddTelemetry keeps on their applications'
	// streams, for debugging, besides folding every one into the aggregated windows the analysis reads
	// (default DefaultTelemetrySampleRate, 1 %; 1: every record; negative: none).
	TelemetrySampleRate float64
	// EmbeddedDir is where an embedded server (no Addrs) puts its unix socket; empty: a new temporary directory.
	EmbeddedDir string
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
}

// DefaultOptions returns Options with every default filled in and no address (an embedded server).
func DefaultOptions() Options {
	var o Options
	o.setDefaults()
	return o
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.HistoryLen <= 0 {
		o.HistoryLen = DefaultHistoryLen
	}
	if o.RecentLen <= 0 {
		o.RecentLen = DefaultRecentLen
	}
	if o.JobStreamMaxLen <= 0 {
		o.JobStreamMaxLen = DefaultJobStreamMaxLen
	}
	if o.ResultDedupTTL <= 0 {
		o.ResultDedupTTL = DefaultResultDedupTTL
	}
	if o.MaxJobAttempts <= 0 {
		o.MaxJobAttempts = DefaultMaxJobAttempts
	}
	if o.DecisionHistoryLen == 0 {
		o.DecisionHistoryLen = DefaultDecisionHistoryLen
	}
	if o.DecisionHistoryEvery <= 0 {
		o.DecisionHistoryEvery = DefaultDecisionHistoryEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TelemetrySampleRate == 0 {
		o.TelemetrySampleRate = DefaultTelemetrySampleRate
	}
}

// Store reads and writes Vantage's data in Redis. It is safe for concurrent use.
type Store struct {
	c        redis.UniversalClient
	o        Options
	log      *slog.Logger
	embedded *Embedded // started by Open when Options.Addrs is empty
	metrics  *Metrics

	pingInterval time.Duration // idle time after which a watch pings; tests lower it
	corrupt      corruptSeen   // undecodable values already reported
}

// ErrSchema is wrapped by Open's error when Redis holds a schema version this binary cannot use.
var ErrSchema = errors.New("storage: incompatible schema version")

// Open connects to Redis as o says, pings it, and checks the schema version (setting it when absent).
func Open(ctx context.Context, o Options) (*Store, error) {
	o.setDefaults()
	s := &Store{o: o, log: o.Logger, pingInterval: watchPingInterval}
	if len(o.Addrs) == 0 {
		e, err := StartEmbedded(ctx, o.EmbeddedDir)
		if err != nil {
			return nil, err
		}
		s.embedded = e
		s.o.Addrs = []string{e.Addr()}
	}
	if err := s.connect(); err != nil {
		s.closeEmbedded()
		return nil, err
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("storage: ping redis at %s: %w", strings.Join(s.o.Addrs, ","), err)
	}
	if err := s.checkSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenEmbedded starts an embedded server with its unix socket in dir and opens a Store on it; Close stops both.
func OpenEmbedded(ctx context.Context, dir string, o Options) (*Store, error) {
	o.Addrs = nil
	o.EmbeddedDir = dir
	return Open(ctx, o)
}

func (s *Store) connect() error {
	o := s.o
	u := &redis.UniversalOptions{
		Addrs:            o.Addrs,
		MasterName:       o.MasterName,
		IsClusterMode:    o.Cluster,
		Username:         o.Username,
		Password:         o.Password,
		SentinelUsername: o.SentinelUsername,
		SentinelPassword: o.SentinelPassword,
		DB:               o.DB,
		TLSConfig:        o.TLS,
		DialTimeout:      o.DialTimeout,
		ReadTimeout:      o.ReadTimeout,
		WriteTimeout:     o.WriteTimeout,
		PoolSize:         o.PoolSize,
		// Give up quickly on a dead server: callers retry on their own schedule.
		MaxRetries:            2,
		DialerRetries:         2,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if o.SentinelUsername == "" && o.SentinelPassword == "" && o.MasterName != "" {
		u.SentinelUsername, u.SentinelPassword = o.Username, o.Password
	}
	unix := false
	for _, a := range o.Addrs {
		if path, ok := strings.CutPrefix(a, "unix:"); ok {
			if path == "" {
				return fmt.Errorf("storage: address %q: empty unix socket path", a)
			}
			unix = true
		} else if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("storage: address %q: want host:port or unix:/path: %w", a, err)
		}
	}
	if unix {
		if len(o.Addrs) != 1 || o.MasterName != "" || o.Cluster {
			return fmt.Errorf("storage: addresses %q: a unix socket address must be the only one", o.Addrs)
		}
		u.Dialer = s.dialer()
	}
	s.c = redis.NewUniversalClient(u)
	s.metrics = newMetrics(s.c.PoolStats)
	s.c.AddHook(s.metrics)
	return nil
}

// dialer dials "unix:/path" addresses (and host:port ones, for completeness), with TLS when configured.
func (s *Store) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: s.o.DialTimeout, KeepAlive: 5 * time.Minute}
		if path, ok := strings.CutPrefix(addr, "unix:"); ok {
			network, addr = "unix", path
		}
		if s.o.TLS == nil {
			return d.DialContext(ctx, network, addr)
		}
		cfg := s.o.TLS.Clone()
		if cfg.ServerName == "" && network != "unix" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		return (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, network, addr)
	}
}

// Close closes the connections (and stops the embedded server when Open started one).
func (s *Store) Close() error {
	err := s.c.Close()
	if e := s.closeEmbedded(); err == nil {
		err = e
	}
	return err
}

func (s *Store) closeEmbedded() error {
	if s.embedded == nil {
		return nil
	}
	return s.embedded.Close()
}

// Client returns the underlying go-redis client, for callers that need a command the Store does not wrap.
func (s *Store) Client() redis.UniversalClient { return s.c }

// Embedded returns the embedded server Open started when Options.Addrs was empty, or nil.
func (s *Store) Embedded() *Embedded { return s.embedded }

func (s *Store) checkSchema(ctx context.Context) error {
	ok, err := s.c.SetNX(ctx, KeySchema, SchemaVersion, 0).Result()
	if err != nil {
		return fmt.Errorf("storage: set schema version at %s: %w", KeySchema, err)
	}
	if ok {
		s.log.Info("storage: schema version set", "key", KeySchema, "version", SchemaVersion)
		return nil
	}
	raw, err := s.c.Get(ctx, KeySchema).Result()
	if err != nil {
		return fmt.Errorf("storage: read schema version at %s: %w", KeySchema, err)
	}
	return checkVersion(raw)
}

// epochScript sets the schema version and the epoch when they are absent (an empty Redis) and returns both.
// KEYS[1] schema, KEYS[2] epoch; ARGV[1] SchemaVersion, ARGV[2] a new random epoch. Returns {version, epoch,
// 1 when the epoch was set by this call else 0}.
var epochScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1])
  v = ARGV[1]
end
local e = redis.call('GET', KEYS[2])
local created = 0
if not e then
  redis.call('SET', KEYS[2], ARGV[2])
  e, created = ARGV[2], 1
end
return {v, e, created}
`)

// Epoch returns the token naming Redis's current data set, stored at KeyEpoch: set to a new random value by
// the first call that finds it absent, so it changes when Redis loses its data (FLUSHALL, a restart without
// persistence, a failover to an empty replica) and every caller that compares it with the value it saw before
// notices, whoever set the new one. It also writes the schema version back when it is absent, and fails with
// ErrSchema when Redis holds another version. One small script: cheap enough to call every second.
func (s *Store) Epoch(ctx context.Context) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	v, err := epochScript.Run(ctx, s.c, []string{KeySchema, KeyEpoch}, SchemaVersion, hex.EncodeToString(b[:])).Slice()
	if err != nil {
		return "", fmt.Errorf("storage: read the epoch at %s: %w", KeyEpoch, err)
	}
	if len(v) != 3 {
		return "", fmt.Errorf("storage: read the epoch at %s: %w: reply %v", KeyEpoch, errCorrupt, v)
	}
	version, _ := v[0].(string)
	epoch, _ := v[1].(string)
	if err := checkVersion(version); err != nil {
		return "", err
	}
	if created, _ := v[2].(int64); created == 1 {
		s.log.Info("storage: new epoch: Redis holds no earlier Vantage data", "key", KeyEpoch, "epoch", epoch)
	}
	return epoch, nil
}

// checkVersion checks raw, the value of KeySchema, against SchemaVersion.
func checkVersion(raw string) error {
	v, err := strconv.Atoi(raw)
	if err != nil {
		return fmt.Errorf("%w: key %s holds %q, not a number", ErrSchema, KeySchema, raw)
	}
	switch {
	case v > SchemaVersion:
		return fmt.Errorf("%w: redis holds schema version %d at %s but this binary knows only up to %d; upgrade vantage",
			ErrSchema, v, KeySchema, SchemaVersion)
	case v < SchemaVersion:
		return fmt.Errorf("%w: redis holds schema version %d at %s, older than this binary's %d, and there is no migration",
			ErrSchema, v, KeySchema, SchemaVersion)
	}
	return nil
}

// validName checks a name used inside a key (a PoP, a target, an application, a probe id): not empty, at most
// 1024 bytes, and without braces (hash tags), control characters or spaces.
func validName(kind, v string) error {
	if v == "" {
		return fmt.Errorf("storage: %s is empty", kind)
	}
	if len(v) > 1024 {
		return fmt.Errorf("storage: %s %.32q...: longer than 1024 bytes", kind, v)
	}
	for _, r := range v {
		if r == '{' || r == '}' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("storage: %s %q: contains %q", kind, v, r)
		}
	}
	return nil
}
