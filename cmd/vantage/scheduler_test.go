package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/internal/shareddata"
	"github.com/vantage-edge/vantage/internal/syncbuf"
	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCmd runs a subcommand until the test ends (SIGTERM: its context is cancelled) and checks it exits 0.
func startCmd(t *testing.T, args ...string) *syncbuf.Buffer {
	t.Helper()
	var out, errb syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &out, &errb) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("vantage %s exited %d after SIGTERM; stderr:\n%s", args[0], code, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("vantage %s did not stop within 15 s of SIGTERM", args[0])
		}
	})
	return &errb
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return httpGetAuth(t, url, "")
}

// httpGetAuth is httpGet with a bearer token ("": none).
func httpGetAuth(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// validatingProxy returns the URL of a proxy to the scheduler API at addr that validates each exchange against
// the API's OpenAPI document (openapitest.Handler), a mismatch failing t: the commands' clients go through it.
func validatingProxy(t *testing.T, addr string) string {
	t.Helper()
	hs := httptest.NewServer(openapitest.Handler(t, httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})))
	t.Cleanup(hs.Close)
	return hs.URL
}

func waitHTTP(t *testing.T, url string, want int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q, want %d within %v", url, code, body, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSchedulerAndProbedCommands runs three probe daemons and a scheduler through the CLI against a real
// redis-server; the scheduler places a wrangler.toml from --config-dir and serves the status API.
func TestSchedulerAndProbedCommands(t *testing.T) {
	srv := redistest.Start(t)
	target := testnet.Listen(t)
	dir := t.TempDir()
	toml := fmt.Sprintf("name = \"billing\"\nmain = \"src/index.ts\"\n\n[placement]\nregion = \"aws:eu-central-1\"\n")
	if err := os.WriteFile(filepath.Join(dir, "wrangler.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	probedAddrs := map[string]string{}
	for _, pop := range []string{"FRA", "IAD", "SIN"} {
		probedAddrs[pop] = freeAddr(t)
		startCmd(t, "probed", "--pop", pop, "--redis", srv.Addr(), "--allow", "127.0.0.0/8",
			"--listen", probedAddrs[pop], "--heartbeat", "200ms", "--reclaim-idle", "1s", "--log-format", "json",
			"--tcp-idle-sockets", "16")
	}
	api, metricsAddr := freeAddr(t), freeAddr(t)
	token := "test-token-0123456789"
	// The tokens file: an old-form line (an operator, with a deprecation warning) and a token of one account.
	tokens := filepath.Join(t.TempDir(), "tokens")
	tenant := "tenant-token-0123456789"
	if err := os.WriteFile(tokens, []byte("# old form\nlegacy-token-0123456789 legacy\n"+tenant+" ci acc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	schedLog := startCmd(t, "scheduler", "--redis", srv.Addr(), "--telemetry-sample-rate", "1", "--listen", api, "--config-dir", dir, "--config-reload", "200ms",
		"--allow", "127.0.0.0/8", "--recheck", "2s", "--lease-ttl", "1s", "--result-timeout", "1s",
		"--region-endpoint", "aws:eu-central-1="+target, "--token", token, "--tokens", tokens, "--metrics-listen", metricsAddr,
		"--log-format", "text")

	for pop, a := range probedAddrs {
		waitHTTP(t, "http://"+a+"/readyz", 200, 10*time.Second)
		_, m := httpGet(t, "http://"+a+"/metrics")
		for _, name := range []string{"vantage_probes_total", "vantage_probed_jobs_total", "vantage_probed_results_dropped_total", "vantage_probe_duration_seconds", "vantage_probe_tcp_connects_total"} {
			if !strings.Contains(m, name) {
				t.Errorf("probed %s /metrics lacks %s", pop, name)
			}
		}
	}
	waitHTTP(t, "http://"+api+"/readyz", 200, 10*time.Second)
	apiURL := validatingProxy(t, api) // every API call below is validated against openapi.json

	// The region app from --config-dir: its endpoint answers in microseconds from three continents, which
	// the engine calls anycast, so the decision falls back to the latency model: FRA, estimated.
	var st struct {
		Success bool `json:"success"`
		Result  struct {
			PlacementMode   string `json:"placement_mode"`
			PlacementStatus string `json:"placement_status"`
			Vantage         struct {
				BestPoP   string `json:"best_pop"`
				Estimated bool   `json:"estimated"`
				Endpoint  string `json:"endpoint"`
			} `json:"vantage"`
		} `json:"result"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := httpGetAuth(t, apiURL+"/client/v4/accounts/acc/workers/services/billing", token)
		json.Unmarshal([]byte(body), &st)
		if st.Result.PlacementStatus == "SUCCESS" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SUCCESS status for billing within 20 s: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !st.Success || st.Result.PlacementMode != "region" || st.Result.Vantage.BestPoP != "FRA" ||
		!st.Result.Vantage.Estimated || st.Result.Vantage.Endpoint != target {
		t.Errorf("status %+v: want region mode, FRA, estimated, endpoint %s", st, target)
	}
	// billing's file names no account: an operator's (the legacy line's token is one), not account acc's.
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {tenant, 404}, {"legacy-token-0123456789", 200}} {
		if code, body := httpGetAuth(t, apiURL+"/client/v4/accounts/acc/workers/services/billing", tc.token); code != tc.want {
			t.Errorf("status API with token %q: %d %.200s, want %d", tc.token, code, body, tc.want)
		}
	}
	if !strings.Contains(schedLog.String(), "old") || !strings.Contains(schedLog.String(), "lines=[2]") {
		t.Errorf("no deprecation warning naming the tokens file's old-form line 2 in the log:\n%s", schedLog.String())
	}
	ctx := context.Background()
	obs, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	if d, ok, err := obs.Decision(ctx, "billing"); err != nil || !ok || d.BestPoP != "FRA" {
		t.Errorf("decision in Redis: %+v %v %v, want best PoP FRA", d, ok, err)
	}
	// vantage probe --fleet through the scheduler's API.
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"probe", "--fleet", "tcp", target, "--scheduler", apiURL, "--token", token, "--count", "2"}, &out, &errb); code != 0 {
		t.Fatalf("vantage probe --fleet: exit %d; stderr %q", code, errb.String())
	}
	if !strings.Contains(errb.String(), "3/3 PoPs") {
		t.Errorf("progress %q does not reach 3/3 PoPs", errb.String())
	}
	for _, want := range []string{"RANK", "FRA", "IAD", "SIN", "verdict: anycast"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("probe --fleet output lacks %q:\n%s", want, out.String())
		}
	}
	if err := runFleetProbe(ctx, []string{"--fleet", "tcp", target, "--scheduler", apiURL, "--token", "wrong-token-0123456789"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("probe --fleet with a bad token: %v, want a 401", err)
	}
	// The status page, and Smart Placement's telemetry endpoint (writes need the token).
	if code, page := httpGet(t, apiURL+"/"); code != 200 || !strings.Contains(page, "<html") {
		t.Errorf("status page: %d %.200q", code, page)
	}
	tel := `[{"app":"shop","deploy":"v1","ingress":"SYD","exec":"SYD","at":"` + time.Now().UTC().Format(time.RFC3339Nano) +
		`","duration_ms":812,"sub":[{"host":"db.example.com","duration_ms":270}]}]`
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {token, http.StatusNoContent}} {
		req, _ := http.NewRequest(http.MethodPost, apiURL+"/v1/telemetry", strings.NewReader(tel))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST /v1/telemetry (token %q): %d %s, want %d", tc.token, resp.StatusCode, body, tc.want)
		}
	}
	var stored int
	if _, err := obs.TelemetrySince(ctx, "shop", time.Now().Add(-time.Hour), func(storage.Telemetry) error { stored++; return nil }); err != nil || stored != 1 {
		t.Errorf("telemetry in Redis: %d records (%v), want the 1 posted with the token", stored, err)
	}
	if code, _ := httpGet(t, apiURL+"/metrics"); code != http.StatusUnauthorized {
		t.Errorf("/metrics on --listen without a token: %d, want 401", code)
	}
	if code, _ := httpGetAuth(t, apiURL+"/metrics", tenant); code != http.StatusForbidden {
		t.Errorf("/metrics on --listen with an account's token: %d, want 403", code)
	}
	if code, _ := httpGetAuth(t, apiURL+"/metrics", token); code != http.StatusOK {
		t.Errorf("/metrics on --listen with the operator's token: %d, want 200", code)
	}
	_, m := httpGet(t, "http://"+metricsAddr+"/metrics") // --metrics-listen: no token
	for _, name := range []string{"vantage_smart_analyses_total", "vantage_scheduler_rechecks_total", "vantage_scheduler_leader 1", "vantage_scheduler_decisions_written_total", "vantage_scheduler_jobs_enqueued_total", `vantage_scheduler_results_total{kind="tcp",outcome="success"}`} {
		if !strings.Contains(m, name) {
			t.Errorf("scheduler /metrics lacks %q", name)
		}
	}
}

func TestSchedulerUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no_redis", []string{"scheduler"}, "--redis is required"},
		{"bad_log_format", []string{"scheduler", "--redis", "127.0.0.1:1", "--log-format", "xml"}, `--log-format "xml"`},
		{"bad_region_endpoint", []string{"scheduler", "--redis", "127.0.0.1:1", "--region-endpoint", "useast=1.2.3.4:443"}, "want provider:region"},
		{"bad_allow", []string{"scheduler", "--redis", "127.0.0.1:1", "--allow", "10.0.0.0/33"}, "10.0.0.0/33"},
		{"bad_app_cap", []string{"scheduler", "--redis", "127.0.0.1:1", "--max-apps-per-account", "-1"}, "--max-apps-per-account"},
		{"bad_telemetry_rate", []string{"scheduler", "--redis", "127.0.0.1:1", "--telemetry-per-second", "-5"}, "--telemetry-per-second"},
		{"bad_hostname_scheme", []string{"scheduler", "--redis", "127.0.0.1:1", "--hostname-scheme", "ftp"}, `--hostname-scheme "ftp"`},
		{"probed_no_pop", []string{"probed", "--redis", "127.0.0.1:1"}, "--pop is required"},
		{"probed_bad_source", []string{"probed", "--pop", "FRA", "--redis", "127.0.0.1:1", "--source", "nope"}, `--source "nope"`},
		{"probed_bad_idle_sockets", []string{"probed", "--pop", "FRA", "--redis", "127.0.0.1:1", "--tcp-idle-sockets", "-1"}, "--tcp-idle-sockets -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2 (usage); stderr %q", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.want)
			}
		})
	}
}

// TestSchedulerRecheckFlagDerivesTTL: a --recheck far from the default starts (the decisions' lifetime is
// derived from the interval the flags end with, not the default's).
func TestSchedulerRecheckFlagDerivesTTL(t *testing.T) {
	cfg := daemon.DefaultSchedulerConfig()
	fs := newFlagSet("scheduler", "", io.Discard)
	sf := addSchedulerFlags(fs, &cfg)
	if err := parseFlags(fs, []string{"--recheck", "1h"}); err != nil {
		t.Fatal(err)
	}
	if err := sf.complete(&cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := scheduler.New(cfg.Scheduler, scheduler.StoreBackend{}, nil); err != nil {
		t.Fatalf("scheduler.New with --recheck 1h: %v", err)
	}
}

// TestSchedulerGeoIPFlag: --geoip opens a City database and gives the scheduler a prior per IP target; a file
// that is not one is a usage error naming it.
func TestSchedulerGeoIPFlag(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		ok         bool
	}{
		{"city_database", shareddata.Path(t, "maxmind-test-mmdb", "GeoIP2-City-Test.mmdb"), true},
		{"not_a_database", "scheduler_test.go", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := daemon.DefaultSchedulerConfig()
			fs := newFlagSet("scheduler", "", io.Discard)
			sf := addSchedulerFlags(fs, &cfg)
			if err := parseFlags(fs, []string{"--geoip", tc.file, "--token", "t0123456789abcdef"}); err != nil {
				t.Fatal(err)
			}
			err := sf.complete(&cfg)
			t.Cleanup(sf.close)
			if !tc.ok {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.file) {
					t.Errorf("complete = %v; want a usage error naming %s", err, tc.file)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p, ok := cfg.Scheduler.Prior("81.2.69.142:443"); !ok || p.Source != "GeoIP" {
				t.Errorf("prior of 81.2.69.142 = %+v, %v; want London from GeoIP", p, ok)
			}
		})
	}
}
