package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// prometheusBin is Debian's Prometheus (package prometheus).
const prometheusBin = "/usr/bin/prometheus"

// TestExporterScrapedByPrometheus runs `vantage exporter` on Debian's blackbox.yml and a real Prometheus that
// scrapes it with the multi-target relabelling of blackbox_exporter's README; probe_success of the loopback
// TCP target reads 1 through Prometheus's HTTP API, and grpc's /probe is a 400 saying it is not supported.
func TestExporterScrapedByPrometheus(t *testing.T) {
	if _, err := os.Stat(prometheusBin); err != nil {
		t.Skipf("skipping: Prometheus is not installed (%v): apt-get install prometheus", err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	startCmd(t, "exporter", "--config", "../../exporter/testdata/debian-blackbox.yml", "--listen", addr,
		"--allow", "127.0.0.0/8", "--log-level", "warn")
	waitHTTP(t, "http://"+addr+"/healthz", 200, 30*time.Second)
	if code, body := httpGet(t, "http://"+addr+"/probe?module=grpc&target=127.0.0.1:1"); code != 400 || !strings.Contains(body, `prober "grpc" is not supported`) {
		t.Errorf("grpc: %d %q, want a 400 saying grpc is not supported", code, body)
	}

	target := testnet.Listen(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [tcp_connect]
    static_configs:
      - targets: [%q]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: %q
`, target, addr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	cmd := exec.Command(prometheusBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr, cmd.Dir = logf, logf, dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("Prometheus's log:\n%s", b)
		}
	})
	query := "http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(`probe_success{job="blackbox",instance="`+target+`"}`)
	var last string
	testwait.Eventually(t, 90*time.Second, "probe_success 1 in Prometheus", func() bool {
		resp, err := http.Get(query)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%+v", r)
		return r.Status == "success" && len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == "1"
	})
	t.Logf("Prometheus: %s", last)
}

// TestProbedServesProbe: a probe daemon answers blackbox_exporter's /probe on its metrics listener, with the
// modules of --probe-modules or the built-in ones, under its own --allow.
func TestProbedServesProbe(t *testing.T) {
	srv := redistest.Start(t)
	target := testnet.Listen(t)
	withFile, builtIn := freeAddr(t), freeAddr(t)
	startCmd(t, "probed", "--pop", "FRA", "--redis", srv.Addr(), "--allow", "127.0.0.0/8", "--listen", withFile,
		"--probe-modules", "../../exporter/testdata/debian-blackbox.yml", "--log-level", "warn")
	startCmd(t, "probed", "--pop", "LHR", "--redis", srv.Addr(), "--listen", builtIn, "--log-level", "warn")
	for _, a := range []string{withFile, builtIn} {
		waitHTTP(t, "http://"+a+"/healthz", 200, 30*time.Second)
	}
	tests := []struct {
		name, addr, query string
		code              int
		has               string
	}{
		{"tcp_connect", withFile, "module=tcp_connect&target=" + target, 200, "probe_success 1"},
		{"grpc_not_supported", withFile, "module=grpc&target=" + target, 400, `prober "grpc" is not supported`},
		{"built_in_modules", builtIn, "module=http_post_2xx&target=127.0.0.1:1&debug=true", 200, "class=policy"},
		{"built_in_has_no_grpc", builtIn, "module=grpc&target=" + target, 400, `Unknown module "grpc"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := httpGet(t, "http://"+tc.addr+"/probe?"+tc.query)
			if code != tc.code || !strings.Contains(body, tc.has) {
				t.Errorf("%d %q, want %d with %q", code, body, tc.code, tc.has)
			}
		})
	}
}
