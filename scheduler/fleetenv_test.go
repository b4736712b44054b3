package scheduler

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
)

// Intervals of the API tests' fleet: seconds, not minutes.
const (
	testRecheck   = 2 * time.Second
	testLease     = time.Second
	testHeartbeat = 200 * time.Millisecond
	testReclaim   = 500 * time.Millisecond
)

type tLog struct {
	t  *testing.T
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

// testLogger logs to t until the test ends (goroutines may log after).
func testLogger(t *testing.T) *slog.Logger {
	mu, on := &sync.Mutex{}, true
	t.Cleanup(func() { mu.Lock(); on = false; mu.Unlock() })
	return slog.New(slog.NewTextHandler(tLog{t, mu, &on}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// fleetEnv is a Redis with probe daemons on loopback, for the API's tests. (The whole-system tests, which
// assemble the components as the daemons do, live in package e2e.)
type fleetEnv struct {
	t     *testing.T
	addrs []string
	log   *slog.Logger
}

func (f *fleetEnv) open() *storage.Store {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: f.addrs, Logger: f.log})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { st.Close() })
	return st
}

// loopbackSource returns 127.0.0.n as a probe source address. Linux routes all of 127.0.0.0/8 to lo, so any
// of its addresses can be bound, though lo lists only 127.0.0.1: the prober is told so through its
// InterfaceAddrs seam.
func loopbackSource(n int) (netip.Addr, func() ([]net.Addr, error)) {
	a := netip.AddrFrom4([4]byte{127, 0, 0, byte(n)})
	return a, func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}, nil
	}
}

func loopbackProber(t *testing.T, source int) *prober.Engine {
	t.Helper()
	cfg := prober.DefaultConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Interval = 20 * time.Millisecond
	cfg.Timeout = time.Second
	if source > 0 {
		a, ifaddrs := loopbackSource(source)
		cfg.Sources, cfg.InterfaceAddrs = []netip.Addr{a}, ifaddrs
	}
	e, err := prober.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// daemon is one running probe daemon.
type daemon struct {
	id     string
	d      *probed.Daemon
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// stop drains the daemon like SIGTERM would.
func (d *daemon) stop() { d.once.Do(func() { d.cancel(); <-d.done }) }

func (f *fleetEnv) startDaemon(pop, id string, p probed.Prober, drain time.Duration) *daemon {
	f.t.Helper()
	st := f.open()
	cfg := probed.Config{PoP: pop, DaemonID: id, Heartbeat: testHeartbeat, ReadBlock: 200 * time.Millisecond,
		ReclaimIdle: testReclaim, ReclaimEvery: 100 * time.Millisecond, BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond, DrainTimeout: drain, Logger: f.log}
	d, err := probed.New(cfg, &probed.StoreQueue{DB: st, PoP: pop, DaemonID: id}, p, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	dm := &daemon{id: id, d: d, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(dm.done); d.Run(ctx) }()
	f.t.Cleanup(dm.stop)
	return dm
}

// waitUntil polls cond until it holds, or fails the test after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
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

// decision returns app's stored decision and whether there is one (none on a read error).
func decision(t *testing.T, st *storage.Store, app string) (placement.Decision, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, ok, err := st.Decision(ctx, app)
	if err != nil {
		return placement.Decision{}, false
	}
	return d, ok
}
