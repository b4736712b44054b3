package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestAppCommand runs `vantage app` against a real scheduler (with two probe daemons and a real
// redis-server), with an account's token from $VANTAGE_TOKEN: apply a host app (through a wrangler
// environment) and a smart app, list, get, delete, and the errors.
func TestAppCommand(t *testing.T) {
	srv := redistest.Start(t)
	for _, pop := range []string{"FRA", "IAD"} {
		startCmd(t, "probed", "--pop", pop, "--redis", srv.Addr(), "--allow", "127.0.0.0/8",
			"--listen", freeAddr(t), "--heartbeat", "200ms", "--reclaim-idle", "1s", "--log-level", "warn")
	}
	const token = "app-token-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(token+" ops acc1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := freeAddr(t)
	startCmd(t, "scheduler", "--redis", srv.Addr(), "--listen", api, "--tokens", tokens, "--allow", "127.0.0.0/8",
		"--recheck", "1s", "--lease-ttl", "1s", "--result-timeout", "1s", "--log-level", "warn")
	waitHTTP(t, "http://"+api+"/readyz", 200, 15*time.Second)
	t.Setenv(envScheduler, validatingProxy(t, api)) // every call of the CLI is validated against openapi.json
	t.Setenv(envToken, token)
	t.Setenv(envSchedulerCA, "")

	backend := probeListener(t)
	dir := t.TempDir()
	hostCfg := filepath.Join(dir, "wrangler.toml")
	writeFile(t, hostCfg, "name = \"shop\"\nmain = \"src/index.ts\"\n\n[placement]\nmode = \"smart\"\n\n"+
		"[env.staging.placement]\nhost = \""+backend+"\"\n")
	smartCfg := filepath.Join(dir, "wrangler.jsonc")
	writeFile(t, smartCfg, `{"name": "cart", // the cart
  "placement": {"mode": "smart"}}`)
	badCfg := filepath.Join(dir, "bad.toml")
	writeFile(t, badCfg, "name = \"bad\"\n[placement]\nmode = \"targeted\"\n")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	vantage := func(t *testing.T, want int, args ...string) (stdout, stderr string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(ctx, append([]string{"app"}, args...), &out, &errb); code != want {
			t.Fatalf("vantage app %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}

	out, _ := vantage(t, 0, "apply", "-f", hostCfg, "--env", "staging", "--deploy", "v1")
	for _, want := range []string{"registered shop-staging", "mode host", "target " + backend, "account acc1", "deploy v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --env staging: stdout lacks %q:\n%s", want, out)
		}
	}
	vantage(t, 2, "apply", smartCfg) // the file is -f's
	out, _ = vantage(t, 0, "apply", "-f", smartCfg)
	if !strings.Contains(out, "registered cart: mode smart") || !strings.Contains(out, "(generated)") {
		t.Errorf("apply smart: stdout:\n%s", out)
	}

	out, _ = vantage(t, 0, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "APP") || !strings.HasPrefix(lines[1], "cart ") || !strings.HasPrefix(lines[2], "shop-staging ") {
		t.Fatalf("list: want a header, cart and shop-staging:\n%s", out)
	}
	if f := strings.Fields(lines[2]); len(f) != 5 || f[1] != "host" || f[2] != backend {
		t.Errorf("list: shop-staging's row %q: want app, host, %s, status, best PoP", lines[2], backend)
	}
	out, _ = vantage(t, 0, "--json", "list") // flags before the subcommand too
	var views []struct {
		App    string                  `json:"app"`
		Mode   string                  `json:"mode"`
		Status scheduler.ServiceStatus `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 2 || views[0].App != "cart" || views[0].Mode != "smart" {
		t.Errorf("list --json: %v:\n%s", err, out)
	}

	// The host app is decided once the daemons have probed it. On loopback both PoPs answer in microseconds, so
	// the verdict may be anycast (UNSUPPORTED_APPLICATION) or unknown (no status yet, "pending"): the assertion is
	// that get shows the decision's detail once there is one.
	deadline := time.Now().Add(45 * time.Second)
	for {
		out, _ = vantage(t, 0, "get", "shop-staging")
		if strings.Contains(out, "verdict:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get shop-staging: no decision after 45 s:\n%s", out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, want := range []string{"app:", "shop-staging", "mode:", "host", "target:", backend, "status:", "verdict:", "confidence:", "last checked:", "candidates:", "FRA", "IAD"} {
		if !strings.Contains(out, want) {
			t.Errorf("get shop-staging: stdout lacks %q:\n%s", want, out)
		}
	}
	out, _ = vantage(t, 0, "get", "cart", "--json")
	var v struct {
		App    string                  `json:"app"`
		Status scheduler.ServiceStatus `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.App != "cart" || v.Status.PlacementMode != "smart" {
		t.Errorf("get cart --json: %v:\n%s", err, out)
	}

	out, _ = vantage(t, 0, "delete", "cart")
	if !strings.Contains(out, "deleted cart") {
		t.Errorf("delete: stdout:\n%s", out)
	}
	out, _ = vantage(t, 0, "list")
	if strings.Contains(out, "cart") || !strings.Contains(out, "shop-staging") {
		t.Errorf("list after delete:\n%s", out)
	}

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			args   []string
			token  string
			code   int
			errHas string
		}{
			{name: "get_unknown_app", args: []string{"get", "nope"}, code: 1, errHas: `"nope"`},
			{name: "delete_unknown_app", args: []string{"delete", "cart"}, code: 1, errHas: "404"},
			{name: "apply_without_f", args: []string{"apply"}, code: 2, errHas: "-f"},
			{name: "apply_unknown_env", args: []string{"apply", "-f", hostCfg, "--env", "prod"}, code: 1, errHas: "prod"},
			{name: "apply_rejected_config", args: []string{"apply", "-f", badCfg}, code: 1, errHas: "bad.toml"},
			{name: "flag_of_another_subcommand", args: []string{"list", "-f", hostCfg}, code: 2, errHas: "-f"},
			{name: "no_subcommand", args: []string{"--json"}, code: 2, errHas: "subcommand"},
			{name: "get_without_name", args: []string{"get"}, code: 2, errHas: "NAME"},
			{name: "unknown_subcommand", args: []string{"frob"}, code: 2, errHas: "frob"},
			{name: "no_token", args: []string{"list"}, token: "-", code: 1, errHas: "no token"},
			{name: "wrong_token", args: []string{"list"}, token: "wrong-token-0123456789", code: 1, errHas: "401"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				switch tc.token {
				case "-":
					t.Setenv(envToken, "")
				case "":
				default:
					t.Setenv(envToken, tc.token)
				}
				_, errb := vantage(t, tc.code, tc.args...)
				if !strings.Contains(errb, tc.errHas) {
					t.Errorf("stderr lacks %q:\n%s", tc.errHas, errb)
				}
				if strings.Contains(errb, "probe --fleet") {
					t.Errorf("stderr names probe --fleet:\n%s", errb)
				}
			})
		}
	})

	// --help never prints the token.
	_, errb := vantage(t, 0, "list", "-h")
	if strings.Contains(errb, token) || !strings.Contains(errb, "$VANTAGE_TOKEN") {
		t.Errorf("list -h:\n%s", errb)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
