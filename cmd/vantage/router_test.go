package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/syncbuf"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/internal/tlstest"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// routerWorker is a loopback worker for PoP pop: it answers "POP host".
func routerWorker(t *testing.T, pop string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", pop, r.Host)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestRouterCommand runs `vantage router` against a real redis-server and loopback workers: a decision stored
// through storage routes the client's request to the LHR worker with cf-placement: remote-LHR, a changed
// decision moves it, and /metrics, /healthz, /readyz answer.
func TestRouterCommand(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	decision := func(best string) placement.Decision {
		return placement.Decision{App: "api.example.com", Mode: placement.ModeHost, Target: "db.example.com:5432",
			BestPoP: best, Status: placement.StatusSuccess, Verdict: placement.VerdictUnicast,
			Candidates: []placement.Candidate{{PoP: best, RTTMs: 5}}}
	}
	if _, err := st.PutDecision(ctx, decision("LHR")); err != nil {
		t.Fatal(err)
	}
	workersFile := filepath.Join(t.TempDir(), "workers")
	if err := os.WriteFile(workersFile, []byte("# PoP workers\nFRA="+routerWorker(t, "FRA")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	front, adminAddr := freeAddr(t), freeAddr(t)
	startCmd(t, "router", "--redis", srv.Addr(), "--listen", front, "--admin", adminAddr, "--ingress", "EWR",
		"--workers", "EWR="+routerWorker(t, "EWR")+",LHR="+routerWorker(t, "LHR"), "--workers-file", workersFile,
		"--baseline", "0", "--debounce", "20ms", "--log-level", "debug")
	waitHTTP(t, "http://"+adminAddr+"/readyz", 200, 15*time.Second)
	if code, body := httpGet(t, "http://"+adminAddr+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d %q", code, body)
	}

	get := func(host, kind string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+front+"/x", nil)
		req.Host = host
		req.Header.Set("cf-ray", "8c3a1f2e4b5d6a7f-EWR")
		if kind != "" {
			req.Header.Set("vantage-kind", kind)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("cf-placement"), string(b)
	}
	if h, body := get("api.example.com", ""); h != "remote-LHR" || body != "LHR api.example.com" {
		t.Errorf("routed request: cf-placement %q, body %q; want remote-LHR from the LHR worker", h, body)
	}
	if h, body := get("api.example.com", "cron"); h != "local-EWR" || body != "EWR api.example.com" {
		t.Errorf("cron request: cf-placement %q, body %q; want local-EWR", h, body)
	}
	if h, body := get("other.example.com", ""); h != "local-EWR" || body != "EWR other.example.com" {
		t.Errorf("unknown app: cf-placement %q, body %q; want local-EWR", h, body)
	}
	// A changed decision (published by storage) moves the traffic to the worker from --workers-file.
	if _, err := st.PutDecision(ctx, decision("FRA")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, body := get("api.example.com", "")
		if h == "remote-FRA" && body == "FRA api.example.com" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the change: cf-placement %q, body %q; want remote-FRA", h, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, metrics := httpGet(t, "http://"+adminAddr+"/metrics")
	for _, re := range []string{
		`vantage_router_routes_total\{reason="remote"\} [1-9]`,
		`vantage_router_routes_total\{reason="not_fetch"\} 1`,
		`vantage_router_routes_total\{reason="no_decision"\} 1`,
		`vantage_router_request_duration_seconds_count\{placement="routed"\} [1-9]`,
		`vantage_router_snapshot_applications 1`,
		`vantage_router_stale 0`,
		`go_goroutines`,
	} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" { // else the environment's values are in effect
		for _, re := range []string{
			`go_gc_gogc_percent 400\n`,                   // --gc-percent's default, in effect
			`go_gc_gomemlimit_bytes 1\.073741824e\+09\n`, // --memory-limit's default, 1GiB
		} {
			if !regexp.MustCompile(re).MatchString(metrics) {
				t.Errorf("/metrics lacks %s", re)
			}
		}
	}
}

func TestRouterUsageErrors(t *testing.T) {
	cert, key := tlstest.NewCA(t, "CA").Issue(t, "s", "127.0.0.1").WriteFiles(t, t.TempDir(), "s")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no_redis", []string{"--ingress", "EWR", "--workers", "EWR=http://127.0.0.1:1"}, "--redis is required"},
		{"no_ingress", []string{"--redis", "127.0.0.1:1"}, "--ingress is required"},
		{"bad_workers", []string{"--redis", "127.0.0.1:1", "--ingress", "EWR", "--workers", "EWR"}, `worker "EWR": want POP=URL`},
		{"no_ingress_worker", []string{"--redis", "127.0.0.1:1", "--ingress", "EWR", "--workers", "LHR=http://127.0.0.1:1"}, "no worker endpoint for the ingress PoP EWR"},
		{"bad_capacity", []string{"--redis", "127.0.0.1:1", "--ingress", "EWR", "--workers", "EWR=http://127.0.0.1:1", "--capacity", "LHR=lots"}, `--capacity "LHR=lots"`},
		{"bad_baseline", []string{"--redis", "127.0.0.1:1", "--ingress", "EWR", "--workers", "EWR=http://127.0.0.1:1", "--baseline", "2"}, "BaselineFraction = 2"},
		{"bad_front_server", []string{"--redis", "127.0.0.1:1", "--ingress", "EWR", "--workers", "EWR=http://127.0.0.1:1", "--front-server", "h2o"}, `--front-server "h2o": want auto, fasthttp or net/http`},
		{"fasthttp_with_tls", []string{"--redis", "127.0.0.1:1", "--ingress", "EWR", "--workers", "EWR=http://127.0.0.1:1", "--front-server", "fasthttp",
			"--tls-cert", cert, "--tls-key", key}, "--front-server fasthttp serves cleartext HTTP/1.1 only"},
		{"arguments", []string{"extra"}, "router takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code := run(ctx, append([]string{"router"}, tc.args...), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errb.String(), tc.want)
			}
		})
	}
}

// TestRouterLogIsJSONFromTheFirstLine: with --log-format json, every line the router writes is JSON, the
// Redis client library's own lines included (here: Redis unreachable while it starts).
func TestRouterLogIsJSONFromTheFirstLine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var out, errb syncbuf.Buffer
	code := run(ctx, []string{"router", "--log-format", "json", "--redis", "127.0.0.1:1", "--ingress", "SYD",
		"--workers", "SYD=http://127.0.0.1:9", "--listen", "127.0.0.1:0", "--admin", ""}, &out, &errb)
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("exit %d and no log lines: want the router to log while Redis is unreachable", code)
	}
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("line %d is not JSON: %q", i+1, l)
		}
	}
}

// TestRouterProxyTables runs `vantage router` without a front, keeping a HAProxy map file (no runtime API) and
// an nginx include (reloaded by a command) in sync with a decision stored in a real redis-server.
func TestRouterProxyTables(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := placement.Decision{App: "api.example.com", Mode: placement.ModeHost, Target: "db.example.com:5432",
		BestPoP: "LHR", Status: placement.StatusSuccess, Verdict: placement.VerdictUnicast,
		Candidates: []placement.Candidate{{PoP: "LHR", RTTMs: 5}}}
	if _, err := st.PutDecision(ctx, d); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hmap, nmap, reloaded := filepath.Join(dir, "vantage.map"), filepath.Join(dir, "tables.conf"), filepath.Join(dir, "reloaded")
	adminAddr := freeAddr(t)
	startCmd(t, "router", "--redis", srv.Addr(), "--listen", "", "--admin", adminAddr, "--ingress", "EWR",
		"--proxy-pops", "EWR,LHR", "--haproxy-map-file", hmap, "--nginx-map-file", nmap,
		"--nginx-reload-cmd", "touch "+reloaded, "--debounce", "20ms")
	waitHTTP(t, "http://"+adminAddr+"/readyz", 200, 15*time.Second)
	testwait.Eventually(t, 10*time.Second, "both tables route api.example.com to LHR, nginx reloaded", func() bool {
		h, _ := os.ReadFile(hmap)
		n, _ := os.ReadFile(nmap)
		_, err := os.Stat(reloaded)
		return strings.Contains(string(h), "\napi.example.com LHR/remote\n") &&
			strings.Contains(string(n), "    api.example.com LHR;\n") && err == nil
	})
	// The metrics are set once a sync is over, after it wrote the files: wait for them too.
	var body string
	testwait.Eventually(t, 10*time.Second, "the sync's metrics", func() bool {
		_, body = httpGet(t, "http://"+adminAddr+"/metrics")
		return strings.Contains(body, `vantage_proxysync_syncs_total{proxy="haproxy",result="success"}`) &&
			strings.Contains(body, `vantage_proxysync_entries{proxy="nginx"} 1`)
	})
}
