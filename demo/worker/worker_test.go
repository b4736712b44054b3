package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vantage-edge/vantage/internal/testwait"
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
		PoP: "FRA", Report: st.AddTelemetryBatch, Window: 20 * time.Millisecond, SampleRate: 1, QueryTimeout: 2 * time.Second,
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
	// The aggregated windows arrive within a few windows: the requests folded, as the analysis reads them.
	wantWs := storage.FoldTelemetry(want)
	for i := range wantWs {
		for j := range wantWs[i].Cells {
			wantWs[i].Cells[j].Last = wantWs[i].Cells[j].Last.Truncate(time.Millisecond)
			wantWs[i].Cells[j].SumMs = math.Round(wantWs[i].Cells[j].SumMs*1000) / 1000
		}
		for j := range wantWs[i].Hosts {
			wantWs[i].Hosts[j].SumMs = math.Round(wantWs[i].Hosts[j].SumMs*1000) / 1000
			wantWs[i].Hosts[j].MinMs = math.Round(wantWs[i].Hosts[j].MinMs*1000) / 1000
		}
	}
	var gotWs []storage.TelemetryWindow
	testwait.Eventually(t, 10*time.Second, "the requests in aggregated windows", func() bool {
		gotWs, _, err = st.TelemetryWindows(ctx, "shop.test", at.Add(-time.Minute), at.Add(time.Minute))
		var n int64
		for i := range gotWs {
			n += gotWs[i].Requests()
		}
		return err == nil && n == int64(len(want))
	})
	if !reflect.DeepEqual(gotWs, wantWs) {
		t.Errorf("windows:\n got %+v\nwant %+v", gotWs, wantWs)
	}
	// At SampleRate 1 every request is also sent as a record, in request order.
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

// TestTelemetrySender checks the sender's bounds and losses: a request that would open more groups than
// MaxGroups is dropped from the telemetry, a sample that finds the queue full is dropped, a failing sink counts
// what it lost, and Run sends what is left when it stops, without blocking a request at any point.
func TestTelemetrySender(t *testing.T) {
	ctx := testCtx(t)
	db := startDB(t)
	var mu sync.Mutex
	var sent []storage.TelemetryBatch
	fail := true
	report := func(_ context.Context, b storage.TelemetryBatch) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("redis down")
		}
		sent = append(sent, b)
		return nil
	}
	// One request opens two groups: its cell (app x deploy x ingress x exec x reason) and its back end.
	w, err := New(Config{PoP: "LHR", Apps: []App{{Name: "a", DB: db, Queries: 1}}, Report: report, MaxGroups: 2,
		SampleRate: 1, QueueLen: 1, Window: time.Hour})
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
	steps := []struct {
		name    string
		ingress string
		want    map[string]float64 // counters after the step
	}{
		{"first_opens_two_groups", "LHR", map[string]float64{"requests_dropped": 0, "samples_dropped": 0}},
		{"same_groups_queue_full", "LHR", map[string]float64{"requests_dropped": 0, "samples_dropped": 1}},
		{"new_cell_over_the_cap", "SYD", map[string]float64{"requests_dropped": 1, "samples_dropped": 1}},
	}
	for _, st := range steps {
		if resp, body := get(t, ctx, url, "a", map[string]string{router.HeaderIngress: st.ingress}); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", st.name, resp.StatusCode, body)
		}
		got := map[string]float64{"requests_dropped": counter(t, w.telReqs.WithLabelValues("dropped")),
			"samples_dropped": counter(t, w.samples.WithLabelValues("dropped"))}
		if !reflect.DeepEqual(got, st.want) {
			t.Errorf("%s: counters %v, want %v", st.name, got, st.want)
		}
	}
	// The sender stops at once (ctx already done) and sends the window of two requests and one sample: they fail.
	done, cancel := context.WithCancel(ctx)
	cancel()
	w.Run(done)
	if r, s, b := counter(t, w.telReqs.WithLabelValues("failed")), counter(t, w.samples.WithLabelValues("failed")),
		counter(t, w.batches.WithLabelValues("error")); r != 2 || s != 1 || b != 1 {
		t.Errorf("failed: %v requests, %v samples, %v batches; want 2, 1, 1", r, s, b)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	get(t, ctx, url, "a", nil)
	w.Run(done)
	if len(sent) != 1 || len(sent[0].Windows) != 1 || sent[0].Windows[0].Requests() != 1 || len(sent[0].Samples) != 1 ||
		sent[0].Samples[0].Exec != "LHR" || sent[0].Samples[0].Ingress != "LHR" {
		t.Errorf("sent %+v, want one window of the one request made since, and its sample", sent)
	}
	if r := counter(t, w.telReqs.WithLabelValues("sent")); r != 1 {
		t.Errorf("sent requests %v, want 1", r)
	}
}

// TestBatches checks that a flush is cut into batches within the caps, and that the batches add up to what was
// aggregated (the store merges the parts of a window).
func TestBatches(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var recs []storage.Telemetry
	for i := range 7 {
		recs = append(recs, storage.Telemetry{App: "shop", Ingress: []string{"SYD", "FRA", "LHR"}[i%3], Exec: "FRA", At: at,
			DurationMs: 10, Subrequests: []storage.Subrequest{{Host: fmt.Sprintf("db%d:5432", i%2), DurationMs: 3}}})
		recs = append(recs, storage.Telemetry{App: "blog", Ingress: "SYD", Exec: "SYD", At: at.Add(storage.TelemetryAggWindow), DurationMs: 5})
	}
	ws := storage.FoldTelemetry(recs) // blog: 1 cell; shop: 3 cells and 2 hosts
	tests := []struct {
		name                  string
		groups, samples       int
		nSamples, wantBatches int
	}{
		{"all_in_one", 100, 100, 3, 1},
		{"window_split", 2, 100, 3, 3},
		{"samples_spread", 100, 1, 3, 3},
		{"more_sample_batches_than_group_ones", 5, 1, 4, 4},
		{"no_samples", 10, 10, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := batches(ws, recs[:tt.nSamples], tt.groups, tt.samples)
			if len(bs) != tt.wantBatches {
				t.Errorf("%d batches, want %d", len(bs), tt.wantBatches)
			}
			a := map[string]*storage.TelemetryWindow{}
			samples := 0
			for _, b := range bs {
				groups := 0
				for _, w := range b.Windows {
					groups += len(w.Cells) + len(w.Hosts)
					if err := w.Validate(); err != nil {
						t.Errorf("part of a window: %v", err)
					}
					k := w.App + w.Start.String()
					if a[k] == nil {
						a[k] = &storage.TelemetryWindow{App: w.App, Start: w.Start}
					}
					a[k].Cells = append(a[k].Cells, w.Cells...)
					a[k].Hosts = append(a[k].Hosts, w.Hosts...)
				}
				if groups > tt.groups || len(b.Samples) > tt.samples {
					t.Errorf("batch of %d groups and %d samples, want at most %d and %d", groups, len(b.Samples), tt.groups, tt.samples)
				}
				samples += len(b.Samples)
			}
			if samples != tt.nSamples {
				t.Errorf("%d samples sent, want %d", samples, tt.nSamples)
			}
			if len(a) != len(ws) {
				t.Fatalf("%d windows sent, want %d", len(a), len(ws))
			}
			for _, w := range ws {
				if got := a[w.App+w.Start.String()]; !reflect.DeepEqual(*got, w) {
					t.Errorf("window %s at %v: parts add up to %+v, want %+v", w.App, w.Start, *got, w)
				}
			}
		})
	}
}

func counter(t testing.TB, c interface{ Write(*dto.Metric) error }) float64 {
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
		{"negative_window", Config{PoP: "FRA", Apps: []App{{Name: "a", DB: "db:1"}}, Window: -time.Second}, "worker: window -1s: want > 0"},
		{"sample_rate_above_1", Config{PoP: "FRA", Apps: []App{{Name: "a", DB: "db:1"}}, SampleRate: 2}, "worker: sample rate 2: want at most 1 (negative: none)"},
		{"negative_max_groups", Config{PoP: "FRA", Apps: []App{{Name: "a", DB: "db:1"}}, MaxGroups: -1}, "worker: max groups -1, queue 10000: want > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || err.Error() != tt.want {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestPostTelemetry posts a batch to a real HTTP server: the body is the batch, the token goes along, and a
// refusal is an error quoting the status and the body.
func TestPostTelemetry(t *testing.T) {
	ctx := testCtx(t)
	var got storage.TelemetryBatch
	var auth string
	refuse := false
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		auth = req.Header.Get("Authorization")
		if refuse {
			http.Error(rw, "telemetry: account over its rate", http.StatusTooManyRequests)
			return
		}
		if err := json.NewDecoder(req.Body).Decode(&got); err != nil || req.Method != http.MethodPost || req.URL.Path != "/v1/telemetry" {
			http.Error(rw, fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err), http.StatusBadRequest)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	post := PostTelemetry(srv.Client(), srv.URL+"/v1/telemetry", "tok")
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	rec := storage.Telemetry{App: "a", Ingress: "SYD", Exec: "FRA", Routed: true, At: at, DurationMs: 3}
	b := storage.TelemetryBatch{Windows: storage.FoldTelemetry([]storage.Telemetry{rec}), Samples: []storage.Telemetry{rec}}
	if err := post(ctx, b); err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer tok" || len(got.Windows) != 1 || got.Windows[0].Requests() != 1 || len(got.Samples) != 1 || got.Samples[0].Exec != "FRA" {
		t.Errorf("server got %+v with %q, want the batch with bearer tok", got, auth)
	}
	refuse = true
	if err := post(ctx, b); err == nil || !strings.Contains(err.Error(), "429 Too Many Requests: telemetry: account over its rate") {
		t.Errorf("refused post = %v, want the status and the body", err)
	}
}
