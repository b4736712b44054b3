package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/storage"
)

// needRoot skips t unless it runs as root, which the emulated WAN needs.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("%s: the emulated WAN needs root for network namespaces and /dev/net/tun (CI runs as root)", what)
	}
}

// apiClient is the client of every call the tests make to a scheduler's API: it validates each request and
// response against the API's OpenAPI document, a mismatch failing t.
func apiClient(t testing.TB) *http.Client { return openapitest.Client(t) }

// skipShort skips t under -short.
func skipShort(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s: skipped with -short", what)
	}
}

// tLog writes to t until the test ends (components may log after).
type tLog struct {
	t  testing.TB
	mu *sync.Mutex
	on *bool
}

func (w tLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.on {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

// testLogger logs at info level to t until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	mu, on := &sync.Mutex{}, true
	t.Cleanup(func() { mu.Lock(); on = false; mu.Unlock() })
	return slog.New(slog.NewTextHandler(tLog{t, mu, &on}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// openStore opens Redis at addrs as a daemon does (its own connections); the test's cleanup closes it. Every
// telemetry record is also kept on its stream (TelemetrySampleRate 1), where the tests count requests one by one.
func openStore(t testing.TB, addrs []string, log *slog.Logger) *storage.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := daemon.OpenStore(ctx, storage.Options{Addrs: addrs, Logger: log, TelemetrySampleRate: 1}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// running is one component's Run in a goroutine.
type running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// start runs run until stop (or the test's end) and reports its error then.
func start(t testing.TB, name string, run func(context.Context) error) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{name: name, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); r.err = run(ctx) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return r
}

// stop cancels the component's context, as SIGTERM does, and waits for Run to return.
func (r *running) stop() error {
	r.once.Do(func() { r.cancel(); <-r.done })
	return r.err
}

// decision returns app's decision in st; false when there is none or Redis does not answer.
func decision(st *storage.Store, app string) (placement.Decision, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, ok, err := st.Decision(ctx, app)
	return d, ok && err == nil
}

// wrangler returns the wrangler.toml of app placed in mode (host, hostname, region) at target.
func wrangler(app string, mode placement.Mode, target string) string {
	return fmt.Sprintf("name = %q\nmain = \"src/index.ts\"\n\n[placement]\n%s = %q\n", app, mode, target)
}

// writeConfigs writes each app's wrangler.toml into a new directory (a --config-dir) and returns it.
func writeConfigs(t testing.TB, configs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for app, toml := range configs {
		if err := os.WriteFile(filepath.Join(dir, app+".toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// gateResolver is a probe daemon's name service (a static table, as /etc/hosts is) that holds lookups until
// opened: a probe of a name stays in flight, for real, as long as the test wants.
type gateResolver struct {
	hosts   map[string]netip.Addr
	mu      sync.Mutex
	held    int // lookups that were held
	inGate  int // lookups held now
	open    bool
	release chan struct{}
}

func newGate(hosts map[string]netip.Addr, open bool) *gateResolver {
	g := &gateResolver{hosts: hosts, release: make(chan struct{})}
	if open {
		g.openGate()
	}
	return g
}

func (g *gateResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	g.mu.Lock()
	open, ch := g.open, g.release
	if !open {
		g.held++
		g.inGate++
	}
	g.mu.Unlock()
	if !open {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		g.mu.Lock()
		g.inGate--
		g.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if a, ok := g.hosts[strings.TrimSuffix(host, ".")]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, fmt.Errorf("%s: no such host", host)
}

func (g *gateResolver) holding() int   { g.mu.Lock(); defer g.mu.Unlock(); return g.inGate }
func (g *gateResolver) heldCount() int { g.mu.Lock(); defer g.mu.Unlock(); return g.held }

func (g *gateResolver) openGate() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		g.open = true
		close(g.release)
	}
}
