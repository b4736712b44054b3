package daemon_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/internal/tlstest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestTLSListeners builds every component with a certificate made by the test, on a Redis reached over TLS
// (a real redis-server with its TLS port only): every HTTP listener answers a client trusting the test CA,
// and no listener answers plain HTTP or a client trusting only the system's CAs.
func TestTLSListeners(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := testLogger(t)
	srv := redistest.StartWith(t, redistest.Config{TLS: true})
	st, err := daemon.OpenStore(ctx, storage.Options{Addrs: []string{srv.Addr()}, TLS: srv.TLSConfig(), Logger: log}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	dir := t.TempDir()
	ca := tlstest.NewCA(t, "daemon test CA")
	cert, key := ca.Issue(t, "daemon", "127.0.0.1").WriteFiles(t, dir, "daemon")
	files := daemon.TLSFiles{Cert: cert, Key: key}
	run := func(name string, fn func(context.Context) error) {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := fn(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
	}

	pc := daemon.DefaultProbedConfig()
	pc.Listen, pc.Logger, pc.TLS = "127.0.0.1:0", log, files
	pc.Daemon.PoP, pc.Daemon.DaemonID = "FRA", "tls-FRA"
	pc.Prober.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	p, err := daemon.NewProbed(pc, st)
	if err != nil {
		t.Fatal(err)
	}
	run("probed", p.Run)

	sc := daemon.DefaultSchedulerConfig()
	sc.Listen, sc.Logger, sc.TLS = "127.0.0.1:0", log, files
	sc.Scheduler.Name = "tls-scheduler"
	k, err := daemon.NewScheduler(sc, st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.URL(), "https://") {
		t.Errorf("scheduler URL %s; want https://", k.URL())
	}
	run("scheduler", k.Run)

	wc := daemon.DefaultWorkerConfig()
	wc.Listen, wc.MetricsListen, wc.ServeDB, wc.Logger, wc.TLS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", log, files
	wc.Worker = worker.Config{PoP: "FRA", Apps: []worker.App{{Name: "api", Queries: 1}}}
	w, err := daemon.NewWorker(wc, st)
	if err != nil {
		t.Fatal(err)
	}
	run("worker", w.Run)

	rc := daemon.DefaultRouterConfig()
	rc.Listen, rc.Admin, rc.Logger, rc.TLS = "127.0.0.1:0", "127.0.0.1:0", log, files
	rc.Front.Ingress, rc.Front.Workers = "FRA", map[string]*url.URL{"FRA": {Scheme: "https", Host: w.Addr()}}
	up := daemon.NewUpstreamTransport(nil)
	up.TLSClientConfig = ca.ClientConfig() // the router reaches its worker over TLS too
	rc.Front.Transport = up
	r, err := daemon.NewRouter(rc, st)
	if err != nil {
		t.Fatal(err)
	}
	run("router", r.Run)

	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}, Timeout: 10 * time.Second}
	systemRoots := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}, Timeout: 10 * time.Second}
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, c := range []*http.Client{trusting, systemRoots, plain} {
		t.Cleanup(c.CloseIdleConnections)
	}
	for _, tt := range []struct{ name, addr, path string }{
		{"probed", p.Addr(), "/healthz"},
		{"scheduler", strings.TrimPrefix(k.URL(), "https://"), "/healthz"},
		{"router_admin", r.AdminAddr(), "/healthz"},
		{"router_front", r.Addr(), "/"}, // forwarded to the worker, over TLS
		{"worker", w.Addr(), "/"},
		{"worker_metrics", w.MetricsAddr(), "/healthz"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := trusting.Get("https://" + tt.addr + tt.path)
			if err != nil {
				t.Fatalf("GET over TLS: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.TLS == nil {
				t.Fatalf("GET over TLS: %s %q (TLS %v); want 200 over TLS", resp.Status, body, resp.TLS != nil)
			}
			if _, err := systemRoots.Get("https://" + tt.addr + tt.path); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
				t.Errorf("GET trusting the system's CAs: err %v; want an unknown authority", err)
			}
			// Go's TLS server answers a plain HTTP request with a 400 and closes: never the handler's answer.
			if resp, err := plain.Get("http://" + tt.addr + tt.path); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS server") {
					t.Errorf("GET over plain HTTP: %s %q; want a refusal", resp.Status, b)
				}
			}
		})
	}
}

// TestTLSConfigErrors: a half-configured or unreadable certificate stops the component at construction, with
// an error naming the flag or the file.
func TestTLSConfigErrors(t *testing.T) {
	st, err := storage.Open(context.Background(), storage.Options{Addrs: []string{redistest.Start(t).Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir := t.TempDir()
	cert, key := tlstest.NewCA(t, "CA").Issue(t, "s", "127.0.0.1").WriteFiles(t, dir, "s")
	for _, tt := range []struct {
		name  string
		files daemon.TLSFiles
		want  string
	}{
		{"cert_only", daemon.TLSFiles{Cert: cert}, "scheduler: TLS needs both a certificate (--tls-cert) and its key (--tls-key)"},
		{"key_only", daemon.TLSFiles{Key: key}, "scheduler: TLS needs both"},
		{"missing_key", daemon.TLSFiles{Cert: cert, Key: dir + "/none.key"}, "scheduler: tls: key file: open " + dir + "/none.key"},
		{"swapped", daemon.TLSFiles{Cert: key, Key: cert}, "PEM inputs may have been switched"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := daemon.DefaultSchedulerConfig()
			sc.Listen, sc.TLS = "127.0.0.1:0", tt.files
			if _, err := daemon.NewScheduler(sc, st); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewScheduler: %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
