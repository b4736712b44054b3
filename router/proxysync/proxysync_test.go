package proxysync

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// deployDir is the repository's deploy directory: the test runs its HAProxy and nginx snippets as they are.
const deployDir = "../../deploy"

const ingress = "EWR"

// need returns the path of a proxy binary, or skips the test naming the Debian package that provides it.
func need(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s; .ci/deps.sh installs it): skipping the proxies' test", bin, bin)
	}
	return p
}

// testLogger logs through t.Logf.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// freePort returns a loopback port free at the time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// worker starts a loopback worker for pop: it answers its PoP code, so a response says where the request ran.
func worker(t *testing.T, pop string) *url.URL {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("cf-placement", "from-the-worker") // every front must replace it
		io.WriteString(w, pop)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

// start runs a proxy in the foreground until the test ends; its output goes to the test log.
func start(t *testing.T, name string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	w := tWriter{t}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 5 * time.Second // nginx's workers hold the output pipe until they have exited
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // both stop at once, nginx's master taking its workers along
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// haproxyBlock returns the lines between "# BEGIN vantage" and "# END vantage" of deploy/haproxy/haproxy.cfg,
// with the map file's path replaced by mapFile.
func haproxyBlock(t *testing.T, mapFile string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok1 := strings.Cut(string(b), "# BEGIN vantage\n")
	block, _, ok2 := strings.Cut(rest, "# END vantage")
	if !ok1 || !ok2 {
		t.Fatal("deploy/haproxy/haproxy.cfg: no # BEGIN vantage ... # END vantage block")
	}
	return strings.ReplaceAll(block, "/etc/haproxy/vantage.map", mapFile)
}

// fronts are the fronts under test (the Go front served by net/http and by fasthttp, HAProxy, nginx), by name,
// with their base URLs.
type fronts struct {
	names []string
	urls  map[string]string
	// nginx is the sync's nginx target (its pid file names nginx's master).
	nginx *Nginx
}

// nginxSettled reports whether nginx runs one worker: a reload's old worker has exited (it may otherwise
// still answer a request with the previous table for a moment: TestSameAnswers did, once in ~15 runs).
func nginxSettled(t *testing.T, ng *Nginx) bool {
	t.Helper()
	pid, err := ng.masterPID()
	if err != nil {
		return false
	}
	c, err := childPIDs(pid)
	return err == nil && len(c) == 1
}

// setup starts Redis, calls prepare to store the decisions and the fleet, then starts the workers, the router
// with its Go front, and HAProxy and nginx fed by a Sync; it returns the store and the fronts.
func setup(t *testing.T, prepare func(context.Context, *storage.Store)) (*storage.Store, fronts) {
	haproxyBin, nginxBin := need(t, "haproxy"), need(t, "nginx")
	st, rt, names, cfg := openRouter(t, prepare)
	workers := map[string]*url.URL{}
	for _, pop := range []string{"EWR", "LHR", "FRA", "AMS", "CDG", "IAD"} { // SYD has none
		workers[pop] = worker(t, pop)
	}
	front, err := router.NewFront(rt, router.FrontConfig{Ingress: ingress, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	goFront := httptest.NewServer(front) // net/http (ServeHTTP)
	t.Cleanup(goFront.Close)
	fastLn, err := net.Listen("tcp", "127.0.0.1:0") // fasthttp (ServeFastHTTP), `vantage router`'s default
	if err != nil {
		t.Fatal(err)
	}
	fastSrv, fastDone := front.FastServer(router.ServerLimits{}), make(chan error, 1)
	go func() { fastDone <- fastSrv.Serve(fastLn) }()
	t.Cleanup(func() { fastSrv.Shutdown(); <-fastDone })

	dir := t.TempDir()
	deploy, err := filepath.Abs(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	hp := &HAProxy{MapFile: filepath.Join(dir, "vantage.map"), Socket: filepath.Join(dir, "haproxy.sock")}
	ng := &Nginx{MapFile: filepath.Join(dir, "tables.conf"), PIDFile: filepath.Join(dir, "nginx.pid")}
	for _, err := range []error{hp.EnsureFile(ingress), ng.EnsureFile(ingress)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	hport, nport := freePort(t), freePort(t)
	var hcfg, ncfg strings.Builder
	fmt.Fprintf(&hcfg, "global\n    stats socket %s mode 600 level admin\n    lua-load-per-thread %s/haproxy/vantage.lua\n", hp.Socket, deploy)
	fmt.Fprintf(&hcfg, "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n")
	fmt.Fprintf(&hcfg, "frontend edge\n    bind 127.0.0.1:%d\n%s\n", hport, haproxyBlock(t, hp.MapFile))
	nginxHead(&ncfg, dir, deploy, ng)
	for pop, u := range workers {
		fmt.Fprintf(&hcfg, "backend pop_%s\n    server w %s\n", pop, u.Host)
		fmt.Fprintf(&ncfg, "    upstream vantage_pop_%s { server %s; keepalive 8; }\n", pop, u.Host)
	}
	fmt.Fprintf(&ncfg, "    server {\n        listen 127.0.0.1:%d;\n        location / { include %s/nginx/vantage-proxy.conf; }\n    }\n}\n", nport, deploy)
	hfile, nfile := filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(hfile, []byte(hcfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nfile, []byte(ncfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "haproxy", haproxyBin, "-db", "-f", hfile)
	start(t, "nginx", nginxBin, "-p", dir, "-c", nfile, "-g", "daemon off;")

	var pops []string
	for p := range workers {
		pops = append(pops, p)
	}
	runSync(t, rt, names, Config{Ingress: ingress, PoPs: pops, BaselineFraction: cfg.BaselineFraction,
		Targets: []Target{hp, ng}, Logger: testLogger(t)})
	return st, fronts{names: []string{"go", "go-fasthttp", "haproxy", "nginx"}, urls: map[string]string{
		"go": goFront.URL, "go-fasthttp": "http://" + fastLn.Addr().String(), "haproxy": fmt.Sprintf("http://127.0.0.1:%d", hport), "nginx": fmt.Sprintf("http://127.0.0.1:%d", nport)},
		nginx: ng}
}

// openRouter starts a redis-server and a router reading it (not yet running), with what prepare stored first;
// it returns the store, the router, the recorded source and the router's configuration.
func openRouter(t *testing.T, prepare func(context.Context, *storage.Store)) (*storage.Store, *router.Router, *Names, router.Config) {
	t.Helper()
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prepare(ctx, st)
	cfg := router.DefaultConfig()
	cfg.SpreadAboveRPS = 0 // the proxies' tables do not spread (Place)
	cfg.Debounce, cfg.FleetInterval = 20*time.Millisecond, 100*time.Millisecond
	cfg.Logger = testLogger(t)
	names := Record(st)
	rt, err := router.New(names, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st, rt, names, cfg
}

// runSync runs rt and a Sync of it with cfg until the test ends.
func runSync(t *testing.T, rt *router.Router, names *Names, cfg Config) {
	t.Helper()
	s, err := New(rt, names, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { rt.Run(runCtx) })
	wg.Go(func() { s.Run(runCtx) })
	t.Cleanup(func() { stop(); wg.Wait() })
}

// nginxHead writes the start of a test nginx's configuration to w: one worker, its files in dir, and the http
// block opened with ng's table and deploy's vantage.conf included (the caller adds servers and closes it).
func nginxHead(w io.Writer, dir, deploy string, ng *Nginx) {
	fmt.Fprintf(w, "pid %s;\nworker_processes 1;\nevents { worker_connections 256; }\nhttp {\n    access_log off;\n", ng.PIDFile)
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(w, "    %s_temp_path %s;\n", p, filepath.Join(dir, p))
	}
	fmt.Fprintf(w, "    include %s;\n    include %s/nginx/vantage.conf;\n", ng.MapFile, deploy)
}

// answer is what a front answered: the status, the PoP that ran the request (the worker's body) and the
// cf-placement header.
type answer struct {
	status    int
	pop, cfpl string
}

func (a answer) String() string {
	return fmt.Sprintf("%d ran at %q cf-placement %q", a.status, a.pop, a.cfpl)
}

// request is one request of the differential set.
type request struct {
	host, kind, id string
}

func (r request) String() string { return fmt.Sprintf("host=%s kind=%q id=%q", r.host, r.kind, r.id) }

var client = &http.Client{Timeout: 10 * time.Second}

// send sends rq to the front at base.
func send(t *testing.T, base string, rq request) answer {
	t.Helper()
	a, err := try(base, rq)
	if err != nil {
		t.Fatalf("%s: %v", rq, err)
	}
	return a
}

// try sends rq to the front at base, returning an error when it does not answer.
func try(base string, rq request) (answer, error) {
	req, err := http.NewRequest("GET", base+"/x", nil)
	if err != nil {
		return answer{}, err
	}
	req.Host = rq.host
	if rq.kind != "" {
		req.Header.Set("vantage-kind", rq.kind)
	}
	if rq.id != "" {
		req.Header.Set("cf-ray", rq.id)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, cfpl: resp.Header.Get("cf-placement")}
	if a.status == http.StatusOK {
		a.pop = string(b)
	}
	return a, err
}

// ids returns n request ids whose MurmurHash2 h satisfies ok(h, thr), thr the default baseline bound.
func ids(n int, ok func(h, thr uint64) bool) []string {
	thr := router.BaselineThreshold(router.DefaultConfig().BaselineFraction)
	var out []string
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("%016x-EWR", uint64(i)*0x9E3779B97F4A7C15)
		if ok(uint64(router.MurmurHash2(id)), thr) {
			out = append(out, id)
		}
	}
	return out
}

func dec(app, best string, f func(*placement.Decision), cands ...placement.Candidate) placement.Decision {
	d := placement.Decision{App: app, Mode: placement.ModeHost, Target: "db.example.com:5432", BestPoP: best,
		Status: placement.StatusSuccess, Verdict: placement.VerdictUnicast, Candidates: cands}
	if f != nil {
		f(&d)
	}
	return d
}

func cand(pop string, ms float64) placement.Candidate {
	return placement.Candidate{PoP: pop, RTTMs: ms}
}

// TestSameAnswers sends the same requests (applications in every status and mode, every invocation kind,
// request ids in and out of the baseline, a drained and a down PoP) through the Go front (served by net/http
// and by fasthttp), HAProxy and nginx fed by the sync, and checks that they run each at the same PoP with the
// same cf-placement; then that a decision change written to Redis reaches both proxies.
func TestSameAnswers(t *testing.T) {
	now := time.Now()
	decisions := []placement.Decision{
		dec("routed.test", "LHR", nil, cand("LHR", 10), cand("FRA", 15)),
		dec("drained.test", "FRA", nil, cand("FRA", 10), cand("AMS", 14)),     // FRA drained: failover to AMS
		dec("down.test", "CDG", nil, cand("CDG", 10), cand("AMS", 13)),        // CDG down: failover to AMS
		dec("unavailable.test", "CDG", nil, cand("CDG", 10), cand("AMS", 90)), // CDG down, AMS beyond budget
		dec("ingress.test", "EWR", nil, cand("EWR", 3), cand("LHR", 70)),      // best is the ingress
		dec("failover-home.test", "CDG", nil, cand("CDG", 5), cand("EWR", 8)), // CDG down: failover to the ingress
		dec("noworker.test", "SYD", nil, cand("SYD", 10)),                     // a PoP without a worker or backend
		dec("region.test", "IAD", func(d *placement.Decision) { d.Mode, d.Verdict = placement.ModeRegion, "" }, cand("IAD", 20)),
		dec("anycast.test", "LHR", func(d *placement.Decision) { d.Verdict = placement.VerdictAnycast }, cand("LHR", 1)),
		dec("replicated.test", "LHR", func(d *placement.Decision) { d.Verdict = placement.VerdictReplicated }, cand("LHR", 1)),
		dec("pending.test", "LHR", func(d *placement.Decision) { d.Status = placement.StatusInsufficientInvocations }, cand("LHR", 1)),
		dec("nohosts.test", "", func(d *placement.Decision) { d.Status = placement.StatusNoValidHosts }),
		dec("nobest.test", "", nil),
		dec("expired.test", "LHR", func(d *placement.Decision) { d.ExpiresAt = now.Add(-time.Minute) }, cand("LHR", 10)),
		dec("Upper.Test", "LHR", nil, cand("LHR", 10)), // no Host header can name it, in any front
	}
	// Stored before the router starts: its first snapshot holds them all.
	st, fr := setup(t, func(ctx context.Context, st *storage.Store) {
		for _, h := range []storage.Heartbeat{
			{PoP: "EWR", DaemonID: "e", At: now}, {PoP: "LHR", DaemonID: "l", At: now}, {PoP: "FRA", DaemonID: "f", At: now},
			{PoP: "AMS", DaemonID: "a", At: now}, {PoP: "IAD", DaemonID: "i", At: now}, {PoP: "SYD", DaemonID: "s", At: now},
			{PoP: "CDG", DaemonID: "c", At: now.Add(-time.Hour)}, // down: silent for an hour
		} {
			interval := time.Hour
			if h.PoP == "CDG" {
				interval = time.Minute
			}
			if err := st.PutHeartbeat(ctx, h, interval); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.SetDrained(ctx, "FRA", true); err != nil {
			t.Fatal(err)
		}
		if _, err := st.PutDecisions(ctx, decisions); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Ready: every front routes routed.test to LHR and the drained FRA is failed over.
	// Request ids in the baseline, out of it, and out of it but within twice its bound: a proxy whose bound or
	// hash differs from the Go front's answers some of them differently.
	in := ids(3, func(h, thr uint64) bool { return h < thr })
	out := ids(3, func(h, thr uint64) bool { return h >= 2*thr })
	near := ids(3, func(h, thr uint64) bool { return h >= thr && h < 2*thr })
	for _, f := range fr.names {
		took := testwait.Eventually(t, 15*time.Second, f+" routes the decisions", func() bool {
			a, err1 := try(fr.urls[f], request{"routed.test", "", out[0]})
			b, err2 := try(fr.urls[f], request{"drained.test", "", out[0]})
			return err1 == nil && err2 == nil && a.pop == "LHR" && b.pop == "AMS" && (f != "nginx" || nginxSettled(t, fr.nginx))
		})
		t.Logf("%s: routing after %v", f, took)
	}

	var reqs []request
	hosts := []string{"unknown.test", "upper.test", "routed.test:8443", "ROUTED.test"}
	for _, d := range decisions {
		hosts = append(hosts, d.App)
	}
	for _, h := range hosts {
		for _, kind := range []string{"", "fetch", "rpc", "entrypoint", "cron", "asset", "bogus"} {
			for _, id := range slices.Concat(in, out, near) {
				reqs = append(reqs, request{h, kind, id})
			}
		}
	}
	for _, h := range []string{"unknown.test", "pending.test", "ingress.test"} { // no id: a random one, but local anyway
		reqs = append(reqs, request{h, "", ""})
	}
	seen := map[string]int{}
	for _, rq := range reqs {
		want := send(t, fr.urls["go"], rq)
		seen[want.cfpl]++
		for _, f := range fr.names[1:] {
			got := send(t, fr.urls[f], rq)
			if rq.kind == "bogus" { // refused: no PoP, no header to compare
				if got.status != want.status || want.status != http.StatusBadRequest {
					t.Errorf("%s: %s answered %v, the Go front %v", rq, f, got, want)
				}
				continue
			}
			if got != want {
				t.Errorf("%s: %s answered %v, the Go front %v", rq, f, got, want)
			}
		}
	}
	t.Logf("%d requests through %d fronts; cf-placement values: %v", len(reqs), len(fr.names), seen)
	// The set exercises what it claims: routed, failed over, and held back (checked on the Go front; the
	// proxies agree with it above).
	for _, c := range []struct {
		rq   request
		want answer
	}{
		{request{"routed.test", "", out[0]}, answer{200, "LHR", "remote-LHR"}},
		{request{"routed.test", "", in[0]}, answer{200, "EWR", "local-EWR"}},
		{request{"routed.test", "rpc", out[0]}, answer{200, "EWR", "local-EWR"}},
		{request{"drained.test", "", out[0]}, answer{200, "AMS", "remote-AMS"}},
		{request{"down.test", "fetch", out[1]}, answer{200, "AMS", "remote-AMS"}},
		{request{"unavailable.test", "", out[0]}, answer{200, "EWR", "local-EWR"}},
		{request{"region.test", "", out[0]}, answer{200, "IAD", "remote-IAD"}},
		{request{"noworker.test", "", out[0]}, answer{200, "EWR", "local-EWR"}},
		{request{"expired.test", "", out[0]}, answer{200, "EWR", "local-EWR"}},
	} {
		if got := send(t, fr.urls["go"], c.rq); got != c.want {
			t.Errorf("%s: the Go front answered %v, want %v", c.rq, got, c.want)
		}
	}

	// A decision change reaches the proxies.
	changed := time.Now()
	if _, err := st.PutDecision(ctx, dec("routed.test", "AMS", nil, cand("AMS", 5), cand("LHR", 10))); err != nil {
		t.Fatal(err)
	}
	for _, f := range fr.names {
		testwait.Eventually(t, 10*time.Second, f+" answers the changed decision", func() bool {
			return send(t, fr.urls[f], request{"routed.test", "", out[0]}).pop == "AMS"
		})
		t.Logf("%s: the changed decision answered %v after it was written", f, time.Since(changed).Round(time.Millisecond))
	}
}

// TestSlowTargetDelaysOnlyItself: a proxy whose apply hangs (an nginx whose reload never returns, listed
// first) does not hold back the other proxies' tables: the HAProxy map file follows every change meanwhile.
func TestSlowTargetDelaysOnlyItself(t *testing.T) {
	st, rt, names, cfg := openRouter(t, func(ctx context.Context, st *storage.Store) {
		for _, pop := range []string{"EWR", "LHR", "FRA"} {
			if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: pop, DaemonID: pop, At: time.Now()}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.PutDecisions(ctx, []placement.Decision{dec("moved.test", "LHR", nil, cand("LHR", 10), cand("FRA", 15))}); err != nil {
			t.Fatal(err)
		}
	})
	dir := t.TempDir()
	hung := &Nginx{MapFile: filepath.Join(dir, "tables.conf"), ReloadCommand: []string{"sleep", "3600"}}
	hp := &HAProxy{MapFile: filepath.Join(dir, "vantage.map")}
	runSync(t, rt, names, Config{Ingress: ingress, BaselineFraction: cfg.BaselineFraction, Targets: []Target{hung, hp}, Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	mapHas := func(line string) func() bool {
		return func() bool {
			b, err := os.ReadFile(hp.MapFile)
			return err == nil && strings.Contains(string(b), line+"\n")
		}
	}
	// Well below applyTimeout (30 s), the time a sequential sync would spend on the hung nginx first.
	testwait.Eventually(t, 10*time.Second, "HAProxy's map routes moved.test to LHR", mapHas("moved.test LHR/remote"))
	if _, err := st.PutDecisions(ctx, []placement.Decision{dec("moved.test", "FRA", nil, cand("FRA", 9), cand("LHR", 10))}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, "HAProxy's map follows the change to FRA", mapHas("moved.test FRA/remote"))
}
