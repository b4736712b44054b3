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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// workerFreeAddr returns a loopback address with a port that was free a moment ago.
func workerFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestWorkerCommand runs `vantage worker` with its own database and a real redis-server: a request gets the
// timings of 3 round trips, and its telemetry reaches Redis (the last batch is sent at shutdown).
func TestWorkerCommand(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listen, dbAddr, metricsAt := workerFreeAddr(t), workerFreeAddr(t), workerFreeAddr(t)
	cmdCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var out, errOut bytes.Buffer
	go func() {
		done <- run(cmdCtx, []string{"worker", "--pop", "fra", "--listen", listen, "--serve-db", dbAddr, "--n", "3",
			"--app", "shop", "--deploy", "v3", "--redis", srv.Addr(), "--telemetry-sample-rate", "1", "--window", "1h", "--metrics-listen", metricsAt}, &out, &errOut)
	}()
	var res worker.Result
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + listen + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil {
				t.Fatalf("worker answered %d %s", resp.StatusCode, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.App != "shop" || res.Exec != "FRA" || res.Ingress != "FRA" || len(res.QueryMs) != 3 {
		t.Errorf("result %+v, want app shop run at FRA with 3 queries", res)
	}
	for path, want := range map[string]string{"/metrics": `vantage_worker_requests_total{result="success"} 1`, "/healthz": "ok"} {
		if code, b := httpGet(t, "http://"+metricsAt+path); code != 200 || !strings.Contains(b, want) {
			t.Errorf("GET %s: %d, want %q in:\n%.2000s", path, code, want, b)
		}
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "worker FRA serving shop (db "+dbAddr+", 3 round trips)") {
		t.Errorf("stdout %q", out.String())
	}
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got []storage.Telemetry
	if _, err := st.TelemetrySince(ctx, "shop", time.Now().Add(-time.Minute), func(r storage.Telemetry) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Deploy != "v3" || len(got[0].Subrequests) != 4 || got[0].Subrequests[0].Host != dbAddr {
		t.Errorf("telemetry %+v, want one record of deploy v3 with 4 subrequests (connect + 3) to %s", got, dbAddr)
	}
	// What the analysis reads: the request in an aggregated window, sent at shutdown.
	ws, _, err := st.TelemetryWindows(ctx, "shop", time.Now().Add(-time.Minute), time.Now())
	if err != nil || len(ws) != 1 || ws[0].Requests() != 1 || len(ws[0].Hosts) != 1 || ws[0].Hosts[0].Count != 4 {
		t.Errorf("windows %+v, %v; want one request with 4 subrequests to one back end", ws, err)
	}
}

// TestWorkerCommandScheduler runs `vantage worker --scheduler`: its telemetry goes to the API as a batch of
// aggregated windows, with the token, valid against openapi.json (sent at shutdown here).
func TestWorkerCommandScheduler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []storage.TelemetryBatch
	var auth []string
	api := httptest.NewServer(openapitest.Handler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b storage.TelemetryBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.URL.Path != "/v1/telemetry" {
			http.Error(w, fmt.Sprintf("%s: %v", r.URL.Path, err), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got, auth = append(got, b), append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})))
	defer api.Close()
	listen, dbAddr := workerFreeAddr(t), workerFreeAddr(t)
	cmdCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var out, errOut bytes.Buffer
	go func() {
		done <- run(cmdCtx, []string{"worker", "--pop", "fra", "--listen", listen, "--serve-db", dbAddr, "--app", "shop",
			"--scheduler", api.URL + "/", "--token", "tok", "--window", "1h"}, &out, &errOut)
	}()
	testwait.Eventually(t, 15*time.Second, "the worker answering", func() bool {
		resp, err := http.Get("http://" + listen + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || len(got[0].Records) != 0 || len(got[0].Windows) != 1 || got[0].Windows[0].Requests() != 1 || auth[0] != "Bearer tok" {
		t.Errorf("the API got %+v with %q, want one batch of one window of one request, with the token", got, auth)
	}
}

func TestWorkerCommandUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no_pop", []string{"--db", "db:5432"}, "--pop is required"},
		{"no_db", []string{"--pop", "FRA"}, "--db is required (or --serve-db)"},
		{"bad_n", []string{"--pop", "FRA", "--db", "db:5432", "--n", "0"}, "--n 0: want 1 to 100"},
		{"bad_db", []string{"--pop", "FRA", "--db", "db"}, `worker: app demo: db "db": want host:port`},
		{"argument", []string{"--pop", "FRA", "--db", "db:1", "extra"}, `worker takes no arguments, got ["extra"]`},
		{"bad_window", []string{"--pop", "FRA", "--db", "db:1", "--window", "0s"}, "--window 0s: want > 0"},
		{"bad_max_groups", []string{"--pop", "FRA", "--db", "db:1", "--max-groups", "0"}, "--max-groups 0: want > 0"},
		{"bad_sample_rate", []string{"--pop", "FRA", "--db", "db:1", "--telemetry-sample-rate", "2"}, "--telemetry-sample-rate 2: want 0 to 1"},
		{"scheduler_and_redis", []string{"--pop", "FRA", "--db", "db:1", "--scheduler", "http://127.0.0.1:1", "--redis", "127.0.0.1:1"}, "--scheduler and --redis: telemetry goes to one of them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runWorker(context.Background(), tt.args, &out, &errOut)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("runWorker = %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
}
