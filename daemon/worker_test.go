package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// slowConn adds d before each read: a round trip to a far database, on loopback.
type slowConn struct {
	net.Conn
	d time.Duration
}

func (c slowConn) Read(p []byte) (int, error) {
	time.Sleep(c.d)
	return c.Conn.Read(p)
}

// slowDial dials with d of connection set-up and d per round trip.
func slowDial(d time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		time.Sleep(d)
		var nd net.Dialer
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return slowConn{c, d}, nil
	}
}

// batchLog keeps the telemetry batches posted through it, after the exchange (openapitest's validation).
type batchLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	got  []storage.TelemetryBatch
	errs []string
}

func (l *batchLog) RoundTrip(req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	req.Body.Close()
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	var b storage.TelemetryBatch
	l.mu.Lock()
	if err := json.Unmarshal(body, &b); err != nil {
		l.errs = append(l.errs, fmt.Sprintf("%v: %.200s", err, body))
	}
	l.got = append(l.got, b)
	l.mu.Unlock()
	return l.next.RoundTrip(req)
}

// TestWorkerTelemetryThroughAPI runs worker hosts that send their telemetry through a real scheduler's API (the
// daemon assembly, a real redis-server): only aggregated windows and a sample of records cross it, every post
// valid against openapi.json. Users in Sydney wait on a far database, Frankfurt is next to it; the smart
// runner places the application in FRA, and decides the same for a twin application fed the same requests one
// record each (what workers sent before they aggregated).
func TestWorkerTelemetryThroughAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := testLogger(t)
	srv := redistest.Start(t)
	st, err := daemon.OpenStore(ctx, storage.Options{Addrs: []string{srv.Addr()}, Logger: log}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
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
	const token = "worker-test-token"
	sc := daemon.DefaultSchedulerConfig()
	sc.Listen, sc.Logger = "127.0.0.1:0", log
	sc.Scheduler.Name = "telemetry-scheduler"
	sc.Tokens = scheduler.Tokens{token: scheduler.Operator("ops")}
	sc.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	k, err := daemon.NewScheduler(sc, st)
	if err != nil {
		t.Fatal(err)
	}
	api := k.URL()
	run("scheduler", k.Run)

	dbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	run("db", func(ctx context.Context) error { return worker.ServeDB(ctx, dbLn) })
	db := dbLn.Addr().String()

	const app, twin, deploy, queries = "agg-shop", "raw-shop", "v1", 5
	posts := &batchLog{next: openapitest.Transport(t, nil)}
	apiClient := &http.Client{Transport: posts}
	workers := map[string]string{}
	for pop, rtt := range map[string]time.Duration{"SYD": 80 * time.Millisecond, "FRA": time.Millisecond} {
		wc := daemon.DefaultWorkerConfig()
		wc.Listen, wc.Logger = "127.0.0.1:0", log
		wc.Worker = worker.Config{PoP: pop, Apps: []worker.App{{Name: app, Deploy: deploy, DB: db, Queries: queries}},
			Dial: slowDial(rtt), Window: time.Second, SampleRate: 0.2, Report: worker.PostTelemetry(apiClient, api+"/v1/telemetry", token)}
		w, err := daemon.NewWorker(wc, nil)
		if err != nil {
			t.Fatal(err)
		}
		workers[pop] = "http://" + w.Addr() + "/"
		run("worker "+pop, w.Run)
	}

	// Users: 25 in Sydney and 10 in Frankfurt, each request run where it entered (no decision yet). Each answer
	// becomes the twin's record, as a worker reporting every request would have sent it.
	var mu sync.Mutex
	var recs []storage.Telemetry
	var wg sync.WaitGroup
	for i := range 35 {
		pop := "SYD"
		if i >= 25 {
			pop = "FRA"
		}
		wg.Go(func() {
			at := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, workers[pop], nil)
			req.Host = app
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var res worker.Result
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("request at %s: %d, %v", pop, resp.StatusCode, err)
				return
			}
			r := storage.Telemetry{App: twin, Deploy: res.Deploy, Ingress: res.Ingress, Exec: res.Exec, At: at, DurationMs: res.TotalMs,
				Subrequests: []storage.Subrequest{{Host: db, DurationMs: res.ConnectMs}}}
			for _, q := range res.QueryMs {
				r.Subrequests = append(r.Subrequests, storage.Subrequest{Host: db, DurationMs: q})
			}
			mu.Lock()
			recs = append(recs, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The workers' windows arrive at the end of their window.
	testwait.Eventually(t, 30*time.Second, "the 35 requests in the aggregated windows", func() bool {
		ws, _, err := st.TelemetryWindows(ctx, app, time.Now().Add(-time.Hour), time.Now())
		var n int64
		for i := range ws {
			n += ws[i].Requests()
		}
		return err == nil && n == 35
	})
	posts.mu.Lock()
	var windows, samples int
	for _, b := range posts.got {
		if len(b.Records) != 0 {
			t.Errorf("a worker posted %d per-request records, want windows and samples only", len(b.Records))
		}
		windows += len(b.Windows)
		samples += len(b.Samples)
	}
	if len(posts.errs) > 0 || windows == 0 || samples > 35 {
		t.Errorf("posts: %d windows, %d samples, errors %q", windows, samples, posts.errs)
	}
	t.Logf("workers posted %d batches: %d windows, %d sampled records for 35 requests", len(posts.got), windows, samples)
	posts.mu.Unlock()
	// A batch's windows and samples are stored one after the other before its POST is answered: the windows
	// counted above may be in while the same batch's samples are still being written.
	onStream := func() int {
		n := 0
		if _, err := st.TelemetrySince(ctx, app, time.Now().Add(-time.Hour), func(storage.Telemetry) error { n++; return nil }); err != nil {
			t.Fatalf("reading %s's stream: %v", app, err)
		}
		return n
	}
	testwait.Eventually(t, 30*time.Second, fmt.Sprintf("the %d samples on %s's stream", samples, app), func() bool { return onStream() == samples })

	// The twin's records, one per request, through the same API; then both applications are registered (a
	// registration starts an analysis) and decided from what is stored.
	body, _ := json.Marshal(recs)
	if code, msg := call(t, ctx, apiClient, http.MethodPost, api+"/v1/telemetry", token, "application/json", body); code != http.StatusNoContent {
		t.Fatalf("POST /v1/telemetry (records): %d %s", code, msg)
	}
	start := time.Now()
	for _, a := range []string{app, twin} {
		toml := fmt.Sprintf("name = %q\nmain = \"src/index.ts\"\n\n[placement]\nmode = \"smart\"\n", a)
		if code, msg := call(t, ctx, openapitest.Client(t), http.MethodPost, api+"/v1/apps?deploy="+deploy, token, "application/toml", []byte(toml)); code != http.StatusCreated {
			t.Fatalf("POST /v1/apps %s: %d %s", a, code, msg)
		}
	}
	decided := map[string]placement.Decision{}
	for _, a := range []string{app, twin} {
		testwait.Eventually(t, 45*time.Second, a+": a smart decision", func() bool {
			d, ok, err := st.Decision(ctx, a)
			decided[a] = d
			return err == nil && ok && d.ComputedAt.After(start) && d.Status != "" && d.Status != placement.StatusInsufficientInvocations
		})
	}
	got, want := decided[app], decided[twin]
	t.Logf("from windows: %s at %q %v (%s); from records: %s at %q %v (%s)", got.Status, got.BestPoP, got.Candidates, got.Reason,
		want.Status, want.BestPoP, want.Candidates, want.Reason)
	if got.Status != placement.StatusSuccess || got.BestPoP != "FRA" {
		t.Errorf("%s: %s at %q, want SUCCESS at FRA (Sydney's users wait on a far database)", app, got.Status, got.BestPoP)
	}
	pops := func(cs []placement.Candidate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.PoP)
		}
		return out
	}
	if got.Status != want.Status || got.BestPoP != want.BestPoP || !slices.Equal(pops(got.Candidates), pops(want.Candidates)) {
		t.Errorf("decision from the workers' windows %s at %q %v; from one record per request %s at %q %v: want the same",
			got.Status, got.BestPoP, pops(got.Candidates), want.Status, want.BestPoP, pops(want.Candidates))
	}
}

// call sends one API request with the bearer token and returns the status and body.
func call(t *testing.T, ctx context.Context, c *http.Client, method, url, token, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}
