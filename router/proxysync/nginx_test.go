package proxysync

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/router"
)

// TestNginxReloadRefused: Apply returns once nginx runs workers of the new table, and fails when nginx keeps
// the old one (it refused the configuration it re-read: nginx says so only in its error log), so that the
// table is applied again rather than counted as carried. A real nginx, answering each request with the table's
// $vantage_route_pop for its Host.
func TestNginxReloadRefused(t *testing.T) {
	nginxBin := need(t, "nginx")
	dir := t.TempDir()
	deploy, err := filepath.Abs(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	ng := &Nginx{MapFile: filepath.Join(dir, "tables.conf"), PIDFile: filepath.Join(dir, "nginx.pid")}
	if err := ng.EnsureFile(ingress); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	var cfg strings.Builder
	nginxHead(&cfg, dir, deploy, ng)
	fmt.Fprintf(&cfg, "    server {\n        listen 127.0.0.1:%d;\n        location / { return 200 \"$vantage_route_pop\"; }\n    }\n}\n", port)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "nginx", nginxBin, "-p", dir, "-c", conf, "-g", "daemon off;")
	noKeepAlive := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	pop := func(host string) string {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = host
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	testwait.Eventually(t, 15*time.Second, "nginx answers", func() bool { return pop("a.test") == "" && nginxSettled(t, ng) })

	ctx := context.Background()
	table := func(app, at string) *Table {
		return &Table{Ingress: ingress, BaselinePercent: "1.00%", Routes: map[string]Route{app: {PoP: at, Reason: router.ReasonRemote}}}
	}
	if err := ng.Apply(ctx, table("a.test", "LHR")); err != nil {
		t.Fatalf("Apply of a valid table: %v", err)
	}
	testwait.Eventually(t, 10*time.Second, "nginx routes a.test to LHR", func() bool { return pop("a.test") == "LHR" && nginxSettled(t, ng) })

	// nginx refuses what it re-reads: Apply fails, nginx keeps the table before.
	good, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, append([]byte("no_such_directive on;\n"), good...), 0o600); err != nil {
		t.Fatal(err)
	}
	ng.ReloadTimeout = 2 * time.Second
	err = ng.Apply(ctx, table("b.test", "FRA"))
	if err == nil || !strings.Contains(err.Error(), "no new worker") {
		t.Fatalf("Apply with a configuration nginx refuses: %v, want an error saying no new worker started", err)
	}
	t.Logf("refused: %v", err)
	if got := pop("a.test"); got != "LHR" {
		t.Errorf("after the refused reload nginx routes a.test to %q, want LHR (the table it carried)", got)
	}

	// Fixed: the same table applies (Apply did not count it as carried).
	if err := os.WriteFile(conf, good, 0o600); err != nil {
		t.Fatal(err)
	}
	ng.ReloadTimeout = 0
	if err := ng.Apply(ctx, table("b.test", "FRA")); err != nil {
		t.Fatalf("Apply once the configuration is fixed: %v", err)
	}
	testwait.Eventually(t, 10*time.Second, "nginx routes b.test to FRA", func() bool { return pop("b.test") == "FRA" && pop("a.test") == "" })
}

// TestNginxReloadCommandCanceled: a reload command whose child keeps its output open (a daemonising script)
// does not hold Apply once its context ends: Apply fails while the child still runs.
func TestNginxReloadCommandCanceled(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	ng := &Nginx{MapFile: filepath.Join(dir, "tables.conf"),
		ReloadCommand: []string{"sh", "-c", "sleep 120 & echo $! > " + pidFile + "; wait"}}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- ng.Apply(ctx, &Table{Ingress: ingress, BaselinePercent: "1.00%", Routes: map[string]Route{}})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Apply with a reload command that never ends succeeded")
		}
		t.Logf("Apply: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("Apply still waiting 60 s after its context ended, for the reload command's child")
	}
}
