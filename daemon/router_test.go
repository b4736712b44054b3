package daemon_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/internal/syncbuf"
	"github.com/vantage-edge/vantage/internal/tlstest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestRouterFrontServer: the front's server by --front-server and the router's other settings, and the
// combinations refused.
func TestRouterFrontServer(t *testing.T) {
	st, err := storage.Open(context.Background(), storage.Options{Addrs: []string{redistest.Start(t).Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cert, key := tlstest.NewCA(t, "CA").Issue(t, "r", "127.0.0.1").WriteFiles(t, t.TempDir(), "r")
	plain := &url.URL{Scheme: "http", Host: "127.0.0.1:9"}
	secure := &url.URL{Scheme: "https", Host: "127.0.0.1:9"}
	tests := []struct {
		name    string
		server  string
		tls     bool
		workers map[string]*url.URL
		want    string // the front_server of the running line, or the error
	}{
		{"auto_cleartext", "", false, map[string]*url.URL{"EWR": plain}, "front_server=fasthttp"},
		{"auto_explicit", "auto", false, map[string]*url.URL{"EWR": plain, "LHR": plain}, "front_server=fasthttp"},
		{"auto_tls", "", true, map[string]*url.URL{"EWR": plain}, "front_server=net/http"},
		{"auto_https_worker", "", false, map[string]*url.URL{"EWR": plain, "LHR": secure}, "front_server=net/http"},
		{"net_http", "net/http", false, map[string]*url.URL{"EWR": plain}, "front_server=net/http"},
		{"fasthttp_tls", "fasthttp", true, map[string]*url.URL{"EWR": plain}, "--front-server fasthttp serves cleartext HTTP/1.1 only"},
		{"fasthttp_https_worker", "fasthttp", false, map[string]*url.URL{"EWR": plain, "LHR": secure}, "the worker of LHR is https"},
		{"unknown", "h2o", false, map[string]*url.URL{"EWR": plain}, `--front-server "h2o"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			rc := daemon.DefaultRouterConfig()
			rc.Listen, rc.Admin, rc.FrontServer = "127.0.0.1:0", "", tc.server
			rc.Front.Ingress, rc.Front.Workers = "EWR", tc.workers
			rc.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			if tc.tls {
				rc.TLS = daemon.TLSFiles{Cert: cert, Key: key}
			}
			r, err := daemon.NewRouter(rc, st)
			if !strings.HasPrefix(tc.want, "front_server=") {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("NewRouter: %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Run with a context done before it starts: the servers must still stop (a fasthttp server shut
			// down before its Serve began would otherwise serve on).
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second): // a bound for a stuck test, not a speed assertion
				t.Fatal("Run did not return after its context was done")
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("logs lack %q:\n%s", tc.want, logs.String())
			}
		})
	}
}
