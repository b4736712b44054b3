package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startDB runs ServeDB on a loopback port and returns its address.
func startDB(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeDB(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeDB: %v", err)
		}
	})
	return ln.Addr().String()
}

// serve runs w's HTTP server and telemetry sender on loopback and returns the base URL.
func serve(t *testing.T, w *Worker) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Serve(ctx, ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	wg.Go(func() { w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, ctx context.Context, url, host string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestDBProtocol(t *testing.T) {
	addr := startDB(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for range 3 {
		if err := Query(c, r); err != nil {
			t.Fatalf("Query: %v", err)
		}
	}
	io.WriteString(c, "DROP TABLE\n")
	if line, err := r.ReadString('\n'); err != nil || line != "ERR unknown command\n" {
		t.Errorf("unknown command answered %q, %v", line, err)
	}
	io.WriteString(c, strings.Repeat("x", 100)+"\n")
	if _, err := r.ReadString('\n'); err == nil {
		t.Errorf("a line longer than %d bytes did not close the connection", maxLine)
	}
}

// TestWorker runs a worker on loopback against a real database server and a real redis-server.
func TestWorker(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, TelemetrySampleRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db := startDB(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0") // a port nobody listens on once closed
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	w, err := New(Config{
		PoP: "FRA", Report: st.AddTelemetry, FlushInterval: 20 * time.Millisecond, QueryTimeout: 2 * time.Second,
		Apps: []App{{Name: "shop.test", Deploy: "v7", DB: db, Queries: 5}, {Name: "down.test", DB: deadAddr}},
		Now:  func() time.Time { return at },
	})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, w)
	tests := []struct {
		name     string
		host     string
		query    string
		hdr      map[string]string
		wantCode int
		wantN    int    // queries in the result
		wantBody string // for errors
		wantTel  *storage.Telemetry
	}{
		{name: "direct", host: "shop.test", wantCode: 200, wantN: 5,
			wantTel: &storage.Telemetry{App: "shop.test", Deploy: "v7", Ingress: "FRA", Exec: "FRA"}},
		{name: "routed_from_sydney", host: "shop.test:8080", hdr: map[string]string{router.HeaderIngress: "SYD", router.HeaderReason: "remote"},
			wantCode: 200, wantN: 5, wantTel: &storage.Telemetry{App: "shop.test", Deploy: "v7", Ingress: "SYD", Exec: "FRA", Routed: true, Reason: "remote"}},
		{name: "n_override", host: "SHOP.test", query: "?n=2", wantCode: 200, wantN: 2,
			wantTel: &storage.Telemetry{App: "shop.test", Deploy: "v7", Ingress: "FRA", Exec: "FRA"}},
		{name: "bad_n", host: "shop.test", query: "?n=0", wantCode: 400, wantBody: `worker: n="0": want 1 to 100`},
		{name: "unknown_app", host: "blog.test", wantCode: 404, wantBody: `worker: no application "blog.test" at FRA`},
		{name: "database_down", host: "down.test", wantCode: 502, wantBody: "worker: app down.test at FRA: connect to db " + deadAddr},
	}
	var want []storage.Telemetry
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, ctx, url+"/"+tt.query, tt.host, tt.hdr)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantCode)
			}
			if tt.wantCode != 200 {
				if !strings.Contains(body, tt.wantBody) {
					t.Errorf("body %q, want %q in it", body, tt.wantBody)
				}
				return
			}
			var res Result
			if err := json.Unmarshal([]byte(body), &res); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			sum := res.ConnectMs
			for _, q := range res.QueryMs {
				sum += q
			}
			if len(res.QueryMs) != tt.wantN || res.Exec != "FRA" || res.TotalMs < sum || resp.Header.Get(HeaderExec) != "FRA" {
				t.Errorf("result %+v (exec header %q): want %d queries at FRA, total >= %.3f ms", res, resp.Header.Get(HeaderExec), tt.wantN, sum)
			}
			tel := *tt.wantTel
			tel.At, tel.DurationMs = at, res.TotalMs
			tel.Subrequests = append(tel.Subrequests, storage.Subrequest{Host: db, DurationMs: res.ConnectMs})
			for _, q := range res.QueryMs {
				tel.Subrequests = append(tel.Subrequests, storage.Subrequest{Host: db, DurationMs: q})
			}
			want = append(want, tel)
		})
	}
	// The telemetry arrives within a few flush intervals, in request order.
	deadline := time.Now().Add(10 * time.Second)
	var got []storage.Telemetry
	for len(got) < len(want) && time.Now().Before(deadline) {
		got = got[:0]
		if _, err := st.TelemetrySince(ctx, "shop.test", at.Add(-time.Minute), func(r storage.Telemetry) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != len(want) {
		t.Fatalf("%d telemetry records stored, want %d", len(got), len(want))
	}
	for i := range want {
		got[i].At = got[i].At.UTC()
		g, _ := json.Marshal(got[i])
		wj, _ := json.Marshal(want[i])
		if string(g) != string(wj) {
			t.Errorf("telemetry %d:\n got %s\nwant %s", i, g, wj)
		}
	}
}

// TestTelemetryQueue checks that a full queue drops records without blocking requests, that a failing sink
// counts its losses, and that Run sends what is queued when it stops.
func TestTelemetryQueue(t *testing.T) {
	ctx := testCtx(t)
	db := startDB(t)
	var mu sync.Mutex
	var sent []storage.Telemetry
	fail := true
	report := func(_ context.Context, recs []storage.Telemetry) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("redis down")
		}
		sent = append(sent, recs...)
		return nil
	}
	w, err := New(Config{PoP: "LHR", Apps: []App{{Name: "a", DB: db, Queries: 1}}, Report: report, QueueLen: 2, BatchSize: 10, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- w.Serve(sctx, ln) }()
	t.Cleanup(func() { stop(); <-served })
	url := "http://" + ln.Addr().String()
	for range 3 { // no sender yet: the third is dropped
		if resp, body := get(t, ctx, url, "a", nil); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if got := counter(t, w.dropped); got != 1 {
		t.Errorf("dropped %v, want 1", got)
	}
	// The sender stops at once (ctx already done) and sends the two queued records: they fail.
	done, cancel := context.WithCancel(ctx)
	cancel()
	w.Run(done)
	if got := counter(t, w.failed); got != 2 {
		t.Errorf("failed %v, want 2", got)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	get(t, ctx, url, "a", nil)
	w.Run(done)
	if len(sent) != 1 || sent[0].App != "a" || sent[0].Exec != "LHR" {
		t.Errorf("sent %+v, want the one record queued before Run stopped", sent)
	}
}

func counter(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no_pop", Config{Apps: []App{{Name: "a", DB: "db:1"}}}, "worker: PoP is empty"},
		{"no_apps", Config{PoP: "FRA"}, "worker: no applications"},
		{"bad_db", Config{PoP: "FRA", Apps: []App{{Name: "a", DB: "db"}}}, `worker: app a: db "db": want host:port: address db: missing port in address`},
		{"too_many_queries", Config{PoP: "FRA", Apps: []App{{Name: "a", DB: "db:1", Queries: 101}}}, "worker: app a: queries 101: want 1 to 100"},
		{"duplicate", Config{PoP: "FRA", Apps: []App{{Name: "a", DB: "db:1"}, {Name: "A", DB: "db:2"}}}, "worker: app A given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || err.Error() != tt.want {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
		})
	}
}
