package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/internal/tlstest"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// backend is one kind of Redis the whole Store API is tested against.
type backend struct {
	name       string
	addrs      []string
	masterName string // Sentinel
}

// area is one part of the Store API, tested against every backend. open returns a Store on an empty database.
type area struct {
	name string
	test func(t *testing.T, open func(t *testing.T, o Options) *Store)
}

// areas lists every area; each file's tests add theirs in init.
var areas []area

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a bound on hangs, not a timing check
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// flush empties every node behind s.
func flush(t *testing.T, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	var err error
	if cc, ok := s.Client().(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.FlushAll(ctx).Err() })
	} else {
		err = s.Client().FlushAll(ctx).Err()
	}
	if err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
}

// TestStore runs every area against miniredis (over TCP and over its unix socket), a real redis-server, the
// same behind a Sentinel, and a 3-master Redis Cluster.
func TestStore(t *testing.T) {
	e, err := StartEmbedded(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	backends := []backend{
		{"miniredis", []string{e.Addr()}, ""},
		{"miniredis_unix", []string{e.UnixAddr()}, ""},
		{"redis", []string{redistest.Start(t).Addr()}, ""},
	}
	if !testing.Short() {
		sentinel := redistest.StartSentinel(t, redistest.Start(t), "vantage-master")
		backends = append(backends,
			backend{"sentinel", []string{sentinel.Addr()}, sentinel.MasterName},
			backend{"cluster", redistest.StartCluster(t, 3).Addrs(), ""})
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, a := range areas {
				t.Run(a.name, func(t *testing.T) {
					first := true
					a.test(t, func(t *testing.T, o Options) *Store {
						t.Helper()
						o.Addrs, o.MasterName = b.addrs, b.masterName
						if o.Logger == nil {
							o.Logger = testLogger(t)
						}
						// Generous: thousands of decisions a pipeline on miniredis's Lua under -race beside a heavy
						// build took over the default 2 s. No test of this table is about timeouts.
						o.ReadTimeout = cmp.Or(o.ReadTimeout, 30*time.Second)
						o.WriteTimeout = cmp.Or(o.WriteTimeout, 30*time.Second)
						s, err := Open(testCtx(t), o)
						if err != nil {
							t.Fatalf("Open(%v): %v", b.addrs, err)
						}
						t.Cleanup(func() { s.Close() })
						if first {
							flush(t, s)
							first = false
							// Flushing removed the schema version: put it back as Open would.
							if err := s.checkSchema(testCtx(t)); err != nil {
								t.Fatal(err)
							}
						}
						return s
					})
				})
			}
		})
	}
}

func TestOpenSchema(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		name    string
		stored  string // "" : absent
		wantErr string // "" : Open succeeds
		want    string // the version stored afterwards
	}{
		{"absent_is_set", "", "", "1"},
		{"same", "1", "", "1"},
		{"newer_refused", "2", "storage: incompatible schema version: redis holds schema version 2 at vantage:{meta}:schema but this binary knows only up to 1; upgrade vantage", "2"},
		{"older_refused", "0", "storage: incompatible schema version: redis holds schema version 0 at vantage:{meta}:schema, older than this binary's 1, and there is no migration", "0"},
		{"garbage_refused", "x", `storage: incompatible schema version: key vantage:{meta}:schema holds "x", not a number`, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			if _, err := srv.Do(ctx, "FLUSHALL"); err != nil {
				t.Fatal(err)
			}
			if tt.stored != "" {
				if _, err := srv.Do(ctx, "SET", KeySchema, tt.stored); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(ctx, Options{Addrs: []string{srv.Addr()}})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				s.Close()
			} else {
				if err == nil {
					s.Close()
					t.Fatalf("Open succeeded; want %q", tt.wantErr)
				}
				if err.Error() != tt.wantErr || !errors.Is(err, ErrSchema) {
					t.Fatalf("Open error = %q; want %q wrapping ErrSchema", err, tt.wantErr)
				}
			}
			if got, _ := srv.Do(ctx, "GET", KeySchema); got != tt.want {
				t.Errorf("schema key = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestOpenOptions connects with each kind of option to a server configured to need it.
func TestOpenOptions(t *testing.T) {
	tests := []struct {
		name string
		cfg  redistest.Config
		opts func(srv *redistest.Server) Options
		// wantErr is a substring of Open's error; "" : Open and a PutDecision succeed.
		wantErr string
	}{
		{"password", redistest.Config{Password: "pw1"}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{srv.Addr()}, Password: "pw1"}
		}, ""},
		{"password_wrong", redistest.Config{Password: "pw1"}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{srv.Addr()}, Password: "nope"}
		}, "WRONGPASS"},
		{"acl_user", redistest.Config{Password: "adm", Users: []string{"sched on >pw2 ~vantage:* &vantage:* +@all"}},
			func(srv *redistest.Server) Options {
				return Options{Addrs: []string{srv.Addr()}, Username: "sched", Password: "pw2"}
			}, ""},
		{"acl_user_no_key_access", redistest.Config{Password: "adm", Users: []string{"other on >pw3 ~other:* +@all"}},
			func(srv *redistest.Server) Options {
				return Options{Addrs: []string{srv.Addr()}, Username: "other", Password: "pw3"}
			}, "NOPERM"},
		{"unix_socket", redistest.Config{Unix: true, Password: "pw4"}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{"unix:" + srv.UnixSocket()}, Password: "pw4"}
		}, ""},
		{"unix_socket_missing", redistest.Config{}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{"unix:" + srv.Dir() + "/none.sock"}}
		}, "connect: no such file or directory"},
		{"tls", redistest.Config{TLS: true}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{srv.Addr()}, TLS: srv.TLSConfig()}
		}, ""},
		{"tls_server_plain_client", redistest.Config{TLS: true}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{srv.Addr()}, DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond}
		}, "storage: ping redis at 127.0.0.1:"},
		{"tls_client_certificate", redistest.Config{TLSAuthClients: true}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{srv.Addr()}, TLS: srv.TLSConfig()}
		}, ""},
		{"tls_client_certificate_missing", redistest.Config{TLSAuthClients: true}, func(srv *redistest.Server) Options {
			cfg := srv.TLSConfig()
			cfg.Certificates = nil
			return Options{Addrs: []string{srv.Addr()}, TLS: cfg}
		}, "tls: certificate required"},
		{"tls_wrong_ca", redistest.Config{TLS: true}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{srv.Addr()}, TLS: tlstest.NewCA(t, "another CA").ClientConfig()}
		}, "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{"tls_wrong_server_name", redistest.Config{TLS: true}, func(srv *redistest.Server) Options {
			cfg := srv.TLSConfig()
			cfg.ServerName = "redis.example"
			return Options{Addrs: []string{srv.Addr()}, TLS: cfg}
		}, "x509: certificate is valid for localhost, not redis.example"},
		{"bad_address", redistest.Config{}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{"no-port"}}
		}, `storage: address "no-port": want host:port or unix:/path`},
		{"unix_not_alone", redistest.Config{}, func(srv *redistest.Server) Options {
			return Options{Addrs: []string{"unix:/tmp/x.sock", srv.Addr()}}
		}, "a unix socket address must be the only one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.StartWith(t, tt.cfg)
			o := tt.opts(srv)
			o.Logger = testLogger(t)
			ctx := testCtx(t)
			s, err := Open(ctx, o)
			if tt.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("Open succeeded; want an error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open error = %q; want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if _, err := s.PutDecision(ctx, decision("app1", "LHR", "LHR", "FRA")); err != nil {
				t.Fatalf("PutDecision: %v", err)
			}
		})
	}
}

// TestOpenEmbedded opens a Store with no address (an embedded server it owns) and reaches that server through
// its unix socket from a second Store.
func TestOpenEmbedded(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	s, err := OpenEmbedded(ctx, dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	defer s.Close()
	if s.Embedded() == nil || s.Embedded().UnixAddr() != "unix:"+dir+"/redis.sock" {
		t.Fatalf("Embedded() = %v; want a server with its socket in %s", s.Embedded(), dir)
	}
	other, err := Open(ctx, Options{Addrs: []string{s.Embedded().UnixAddr()}})
	if err != nil {
		t.Fatalf("Open(unix): %v", err)
	}
	defer other.Close()
	if _, err := s.PutDecision(ctx, decision("a", "NRT", "NRT")); err != nil {
		t.Fatal(err)
	}
	if d, ok, err := other.Decision(ctx, "a"); err != nil || !ok || d.BestPoP != "NRT" {
		t.Fatalf("Decision over the unix socket = %+v, %v, %v", d, ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, _, err := other.Decision(ctx, "a"); err == nil {
		t.Error("Decision after the embedded server closed succeeded; want an error")
	}
}

// TestEmbeddedCloseStopsForwarders checks that Close returns while unix-socket clients are connected and
// idle, and that their connections are closed.
func TestEmbeddedCloseStopsForwarders(t *testing.T) {
	e, err := StartEmbedded(testCtx(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	s, err := Open(testCtx(t), Options{Addrs: []string{e.UnixAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); done <- e.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s with an idle client connected")
	}
	wg.Wait()
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

// TestClusterSingleSeed reaches a whole cluster from one seed address with Options.Cluster.
func TestClusterSingleSeed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-master cluster; skipped with -short")
	}
	c := redistest.StartCluster(t, 3)
	ctx := testCtx(t)
	s, err := Open(ctx, Options{Addrs: c.Addrs()[:1], Cluster: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Client().(*redis.ClusterClient); !ok {
		t.Fatalf("Client() is a %T; want a *redis.ClusterClient", s.Client())
	}
	// Decisions spread over all 64 buckets, hence over every master.
	var batch []placement.Decision
	for i := range 200 {
		batch = append(batch, decision(fmt.Sprintf("seed-%03d", i), "LHR", "LHR"))
	}
	if _, err := s.PutDecisions(ctx, batch); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.ScanDecisions(ctx, func(placement.Decision) error { n++; return nil }); err != nil || n != 200 {
		t.Errorf("ScanDecisions = %d decisions, %v; want 200", n, err)
	}
	for _, node := range c.Nodes {
		if got, err := node.Do(ctx, "DBSIZE"); err != nil || got == "0" {
			t.Errorf("master %s holds %s keys (%v); want some", node.Addr(), got, err)
		}
	}
}

func TestDefaultOptions(t *testing.T) {
	o := DefaultOptions()
	tests := []struct {
		name      string
		got, want any
	}{
		{"dial_timeout", o.DialTimeout, 2 * time.Second},
		{"read_timeout", o.ReadTimeout, 2 * time.Second},
		{"write_timeout", o.WriteTimeout, 2 * time.Second},
		{"history_len", o.HistoryLen, 256},
		{"job_stream_max_len", o.JobStreamMaxLen, int64(100_000)},
		{"result_dedup_ttl", o.ResultDedupTTL, 24 * time.Hour},
		{"max_job_attempts", o.MaxJobAttempts, 5},
		{"no_address", len(o.Addrs), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v; want %v", tt.name, tt.got, tt.want)
		}
	}
	if o.Logger == nil || o.Now == nil {
		t.Error("DefaultOptions left Logger or Now nil")
	}
}
