package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vantage-edge/vantage/router"
)

// The router front's load: wrk's threads and connections, as in issue 18's measurement.
const (
	frontWrkThreads = 2
	frontWrkConns   = 64
)

// frontContender is one HTTP front under test: a process (or processes) forwarding to the shared worker.
type frontContender struct {
	name string
	url  string // what wrk loads
	pids func() []int
	// workerPort is the worker port this contender forwards to (each has its own port on the same worker
	// process), so sockets in TIME_WAIT toward the worker can be told apart.
	workerPort int
	note       string // a line for the notes (configuration)
}

// frontEnv is what the contenders share: the worker and a scratch directory. Hooks (frontHooks) receive it.
type frontEnv struct {
	dir         string
	workerPorts []int // one per contender, on the one worker process
	next        int
	redisAddr   string
}

// workerPort hands out the next worker port.
func (e *frontEnv) workerPort() (int, error) {
	if e.next >= len(e.workerPorts) {
		return 0, fmt.Errorf("bench: front: no worker port left (raise frontWorkerPorts)")
	}
	e.next++
	return e.workerPorts[e.next-1], nil
}

// frontWorkerPorts is how many ports the worker listens on (one per contender, hooks included).
const frontWorkerPorts = 12

// frontHook starts one more contender. The rows "HAProxy + Vantage maps" and "nginx + Vantage map" are
// filled by the proxy table sync (issue 18 items 2-3): it appends a hook here that starts the proxy fed by
// `vantage router`'s sync and returns its contender; stop is called after the last round.
type frontHook struct {
	name  string // the row's name, e.g. "HAProxy + Vantage maps"
	start func(ctx context.Context, o *options, e *frontEnv) (c frontContender, stop func(), err error)
}

// frontHooks are the contenders added by other packages' sync (see frontHook); placeholders name the rows
// that are still missing.
var frontHooks []frontHook

// frontPlaceholders are the rows the report keeps until a hook of that name exists.
var frontPlaceholders = []string{"HAProxy + Vantage maps", "nginx + Vantage map"}

// frontRound is one wrk run against one contender.
type frontRound struct {
	rps, p50, p99 float64 // requests/s; latencies in ms
	requests      int
	errors        int // socket errors and non-2xx/3xx responses
	cpu           time.Duration
	timeWait      int // sockets in TIME_WAIT toward this contender's worker port after the round
}

// frontSection measures requests/s and latency through Vantage's router front beside nginx and HAProxy as
// plain reverse proxies, all forwarding to one nginx worker, in alternating rounds of wrk.
func frontSection(ctx context.Context, o *options) *Section {
	s := &Section{Title: "Router front: Vantage's HTTP front beside nginx and HAProxy",
		Intro: fmt.Sprintf("Requests/s and latency through each front with `wrk -t%d -c%d` on loopback, all forwarding to "+
			"the same worker: one nginx process answering `200 ok` (3 bytes) on one port per front. Contenders: nginx as a "+
			"plain reverse proxy (keepalive upstream), HAProxy as a plain reverse proxy (`http-reuse always`), and "+
			"`vantage router` (the binary, as assembled by daemon.NewRouter, reading decisions from a real redis-server), "+
			"and HAProxy and nginx running the shipped deploy/haproxy and deploy/nginx rules with the tables `vantage router "+
			"--listen \"\"` keeps in sync. Redis holds "+strconv.Itoa(frontDecisions)+" decisions (half routed to LHR, half "+
			"best at the ingress EWR), the benchmarked application among the routed ones: every request of wrk (no "+
			"cf-ray, so each front makes a request id; 1%% baseline held back at EWR) runs at LHR, whose worker is a "+
			"second port of the same worker process, and gets `cf-placement: remote-LHR`; the plain proxies forward "+
			"everything to the worker without a lookup. Each "+
			"round runs every front once, in a rotated order (alternating rounds); requests/s is total requests over "+
			"total time, p50/p99 the median of the rounds' wrk percentiles. CPU is the front's processes' "+
			"user+system time over its windows (/proc/<pid>/stat) per request. TIME_WAIT counts the loopback sockets "+
			"toward the front's worker port after its last round (from /proc/net/tcp).", frontWrkThreads, frontWrkConns)}
	rounds, dur := 5, 4*time.Second
	if o.quick {
		rounds, dur = 2, 2*time.Second
	}
	for _, bin := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			s.Skipped = bin + " is not installed (apt-get install wrk nginx haproxy; `make bench` does)"
			return s
		}
	}
	dir, err := os.MkdirTemp("", "bench-front-")
	if err != nil {
		s.Skipped = err.Error()
		return s
	}
	defer os.RemoveAll(dir)
	e := &frontEnv{dir: dir}
	for range frontWorkerPorts {
		p, err := freePort()
		if err != nil {
			s.Skipped = err.Error()
			return s
		}
		e.workerPorts = append(e.workerPorts, p)
	}
	var stops []func()
	defer func() {
		for _, stop := range slices.Backward(stops) {
			stop()
		}
	}()
	worker, err := startNginx(ctx, dir, "worker", frontWorkerConf(dir, e.workerPorts))
	if err != nil {
		s.Skipped = "worker: " + err.Error()
		return s
	}
	stops = append(stops, worker.stop)
	for _, p := range e.workerPorts {
		if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", p)); err != nil {
			s.Skipped = "worker: " + err.Error()
			return s
		}
	}
	red, err := startRedis(ctx)
	if err != nil {
		s.Skipped = err.Error()
		return s
	}
	stops = append(stops, red.stop)
	e.redisAddr = red.addr
	if err := seedFrontDecisions(ctx, red.addr); err != nil {
		s.Skipped = "decisions: " + err.Error()
		return s
	}

	var cs []frontContender
	add := func(c frontContender, stop func(), err error, name string) {
		if stop != nil {
			stops = append(stops, stop)
		}
		if err != nil {
			s.Notes = append(s.Notes, fmt.Sprintf("%s: not measured: %v", name, err))
			return
		}
		if err := waitHTTP(ctx, c.url); err != nil {
			s.Notes = append(s.Notes, fmt.Sprintf("%s: not measured: %v", name, err))
			return
		}
		cs = append(cs, c)
	}
	c, stop, err := startNginxFront(ctx, e)
	add(c, stop, err, "nginx")
	c, stop, err = startHAProxyFront(ctx, e)
	add(c, stop, err, "HAProxy")
	c, stop, err = startVantageFront(ctx, o, e, 0)
	add(c, stop, err, "vantage router")
	c, stop, err = startVantageFront(ctx, o, e, 1)
	add(c, stop, err, "vantage router, GOMAXPROCS=1")
	c, stop, err = startVantageFront(ctx, o, e, 0, "--front-server", "net/http")
	add(c, stop, err, "vantage router, --front-server net/http")
	s.Commands = append(s.Commands, "go build -o vantage ./cmd/vantage",
		"vantage router --redis REDIS --ingress EWR --workers EWR=http://127.0.0.1:WORKER_PORT,LHR=http://127.0.0.1:WORKER_PORT2 --listen 127.0.0.1:PORT --admin 127.0.0.1:PORT --log-level warn")
	for _, h := range frontHooks {
		c, stop, err := h.start(ctx, o, e)
		add(c, stop, err, h.name)
	}
	if len(cs) == 0 {
		s.Skipped = "no front could be started"
		return s
	}

	results := make([][]frontRound, len(cs))
	for round := range rounds {
		for k := range cs {
			i := (k + round) % len(cs) // rotated order: no front always runs first or after the same one
			r, err := runWrk(ctx, cs[i], dur)
			if err != nil {
				s.Notes = append(s.Notes, fmt.Sprintf("%s, round %d: %v", cs[i].name, round+1, err))
				continue
			}
			results[i] = append(results[i], r)
		}
		if ctx.Err() != nil {
			return s
		}
	}
	s.Commands = append(s.Commands, fmt.Sprintf("wrk -t%d -c%d -d%s --latency http://127.0.0.1:PORT/   (%d rounds, each front once per round, rotated)",
		frontWrkThreads, frontWrkConns, dur, rounds))

	t := &Table{Header: []string{"front", "requests/s (this machine)", "p50 ms", "p99 ms", "CPU µs per request",
		"errors", "TIME_WAIT toward the worker", "requests/s per round"}}
	type agg struct{ rps, p50, p99, cpu float64 }
	aggs := map[string]agg{}
	for i, c := range cs {
		rs := results[i]
		if len(rs) == 0 {
			t.Add(c.name, "—", "—", "—", "—", "—", "—", "failed")
			continue
		}
		var reqs, errs int
		var cpu time.Duration
		var p50s, p99s, per []float64
		var wall float64
		for _, r := range rs {
			reqs, errs, cpu = reqs+r.requests, errs+r.errors, cpu+r.cpu
			wall += float64(r.requests) / r.rps
			p50s, p99s = append(p50s, r.p50), append(p99s, r.p99)
			per = append(per, r.rps)
		}
		a := agg{float64(reqs) / wall, Percentile(p50s, 0.5), Percentile(p99s, 0.5), float64(cpu.Microseconds()) / float64(reqs)}
		aggs[c.name] = a
		var perS []string
		for _, x := range per {
			perS = append(perS, num(x, 0))
		}
		t.Add(c.name, num(a.rps, 0), num(a.p50, 2), num(a.p99, 2), num(float64(cpu.Microseconds())/float64(reqs), 1),
			errs, rs[len(rs)-1].timeWait, strings.Join(perS, ", "))
		if c.note != "" {
			s.Notes = append(s.Notes, c.name+": "+c.note)
		}
	}
	for _, name := range frontPlaceholders {
		if !slices.ContainsFunc(frontHooks, func(h frontHook) bool { return h.name == name }) {
			t.Add(name, "—", "—", "—", "—", "—", "—", "not built yet (issue 18: the proxy table sync adds it as a frontHook)")
		}
	}
	s.Tables = append(s.Tables, t)
	ng, okN := aggs["nginx"]
	v, okV := aggs["vantage router"]
	if okN && okV {
		ratio, lat := v.rps/ng.rps, v.p99/ng.p99
		verdict := func(ok bool) string {
			if ok {
				return "**met**"
			}
			return "**not met**"
		}
		s.Headline = append(s.Headline, fmt.Sprintf("Router front: `vantage router` %s requests/s vs nginx %s requests/s as a plain proxy = %.2fx "+
			"(goal >= 0.5x: %s); p99 %s ms vs %s ms = %.2fx (goal <= 2x: %s).", num(v.rps, 0), num(ng.rps, 0), ratio, verdict(ratio >= 0.5),
			num(v.p99, 2), num(ng.p99, 2), lat, verdict(lat <= 2)))
	}
	if v1, ok := aggs["vantage router, GOMAXPROCS=1"]; ok && okN {
		s.Headline = append(s.Headline, fmt.Sprintf("Router front with GOMAXPROCS=1: %s requests/s = %.2fx nginx; p99 %s ms = %.2fx nginx's.",
			num(v1.rps, 0), v1.rps/ng.rps, num(v1.p99, 2), v1.p99/ng.p99))
	}
	if h, ok := aggs["HAProxy"]; ok && okV {
		s.Notes = append(s.Notes, fmt.Sprintf("`vantage router` / HAProxy: %.2fx requests/s.", v.rps/h.rps))
	}
	for _, pair := range [][2]string{{"HAProxy + Vantage maps", "HAProxy"}, {"nginx + Vantage map", "nginx"}} {
		with, ok1 := aggs[pair[0]]
		plain, ok2 := aggs[pair[1]]
		if !ok1 || !ok2 {
			continue
		}
		ratio := with.rps / plain.rps
		verdict := "**not met**"
		if ratio >= 0.9 {
			verdict = "**met**"
		}
		s.Headline = append(s.Headline, fmt.Sprintf("%s: %s requests/s vs %s requests/s for %s plain = %.2fx (goal >= 0.9x: %s); "+
			"p99 %s ms vs %s ms; CPU per request %s µs vs %s µs = %.2fx.", pair[0], num(with.rps, 0), num(plain.rps, 0), pair[1], ratio,
			verdict, num(with.p99, 2), num(plain.p99, 2), num(with.cpu, 1), num(plain.cpu, 1), with.cpu/plain.cpu))
	}
	return s
}

// frontWorkerConf is the worker: one nginx process answering 200 on every port.
func frontWorkerConf(dir string, ports []int) string {
	var listen strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&listen, "    listen 127.0.0.1:%d;\n", p)
	}
	return fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/worker.pid;
error_log %[1]s/worker.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
%[2]s    location / { return 200 "ok\n"; }
  }
}
`, dir, listen.String())
}

// proc is a process started by the harness.
type proc struct {
	cmd *exec.Cmd
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// pids returns the process and its children (nginx's workers).
func (p *proc) pids() []int {
	out := []int{p.cmd.Process.Pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		st := string(b)
		if i := strings.LastIndexByte(st, ')'); i >= 0 {
			if f := strings.Fields(st[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(p.cmd.Process.Pid) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// startProc starts bin with args, its output in dir/name.log.
func startProc(dir, name, bin string, args ...string) (*proc, error) {
	return startProcEnv(dir, name, nil, bin, args...)
}

// startProcEnv is startProc with env added to the harness's environment.
func startProcEnv(dir, name string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	return &proc{cmd: cmd}, nil
}

// startNginx writes conf to dir/name.conf and runs nginx on it in the foreground.
func startNginx(ctx context.Context, dir, name, conf string) (*proc, error) {
	path := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return startProc(dir, name, "nginx", "-c", path, "-e", filepath.Join(dir, name+".err"))
}

// startNginxFront runs nginx as a plain reverse proxy with a keepalive upstream.
func startNginxFront(ctx context.Context, e *frontEnv) (frontContender, func(), error) {
	wp, err := e.workerPort()
	if err != nil {
		return frontContender{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return frontContender{}, nil, err
	}
	conf := fmt.Sprintf(`worker_processes auto;
daemon off;
pid %[1]s/nginx-front.pid;
error_log %[1]s/nginx-front.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream worker { server 127.0.0.1:%[2]d; keepalive 256; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:%[3]d;
    location / { proxy_pass http://worker; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`, e.dir, wp, port)
	p, err := startNginx(ctx, e.dir, "nginx-front", conf)
	if err != nil {
		return frontContender{}, nil, err
	}
	return frontContender{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/", port), pids: p.pids, workerPort: wp,
		note: "nginx " + version("nginx", "-v") + ", `worker_processes auto`, upstream `keepalive 256`, `proxy_http_version 1.1`."}, p.stop, nil
}

// startHAProxyFront runs HAProxy as a plain reverse proxy.
func startHAProxyFront(ctx context.Context, e *frontEnv) (frontContender, func(), error) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		return frontContender{}, nil, fmt.Errorf("haproxy is not installed (apt-get install haproxy)")
	}
	wp, err := e.workerPort()
	if err != nil {
		return frontContender{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return frontContender{}, nil, err
	}
	cfg := fmt.Sprintf(`global
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:%d
  default_backend b
backend b
  server w 127.0.0.1:%d
`, port, wp)
	path := filepath.Join(e.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return frontContender{}, nil, err
	}
	p, err := startProc(e.dir, "haproxy", "haproxy", "-db", "-f", path)
	if err != nil {
		return frontContender{}, nil, err
	}
	return frontContender{name: "HAProxy", url: fmt.Sprintf("http://127.0.0.1:%d/", port), pids: p.pids, workerPort: wp,
		note: "HAProxy " + version("haproxy", "-v") + ", `nbthread 2`, `http-reuse always`."}, p.stop, nil
}

// startVantageFront builds the vantage binary (once) and runs `vantage router` on the harness's Redis;
// procs > 0 sets GOMAXPROCS (a second row: on a loaded 2-core machine the Go scheduler's idle threads spinning
// for work cost a share of the CPU the front competes for).
func startVantageFront(ctx context.Context, o *options, e *frontEnv, procs int, extra ...string) (frontContender, func(), error) {
	wp, err := e.workerPort()
	if err != nil {
		return frontContender{}, nil, err
	}
	lhr, err := e.workerPort()
	if err != nil {
		return frontContender{}, nil, err
	}
	bin, err := vantageBin(ctx, o, e)
	if err != nil {
		return frontContender{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return frontContender{}, nil, err
	}
	admin, err := freePort()
	if err != nil {
		return frontContender{}, nil, err
	}
	name, env := "vantage router", []string(nil)
	if procs > 0 {
		name, env = fmt.Sprintf("vantage router, GOMAXPROCS=%d", procs), []string{fmt.Sprintf("GOMAXPROCS=%d", procs)}
	}
	if len(extra) > 0 {
		name += ", " + strings.Join(extra, " ")
	}
	args := append([]string{"router", "--redis", e.redisAddr, "--ingress", "EWR",
		"--workers", fmt.Sprintf("EWR=http://127.0.0.1:%d,LHR=http://127.0.0.1:%d", wp, lhr), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--admin", fmt.Sprintf("127.0.0.1:%d", admin), "--log-level", "warn"}, extra...)
	p, err := startProcEnv(e.dir, strings.NewReplacer(" ", "", ",", "-", "=", "", "/", "").Replace(name), env, bin, args...)
	if err != nil {
		return frontContender{}, nil, err
	}
	note := fmt.Sprintf("the shipped defaults (`--front-server` auto: fasthttp for a cleartext listener, `--upstream-max-idle-per-host` %d, "+
		"`--gc-percent` 400, `--memory-limit` 1GiB, GOMAXPROCS = %d CPUs).", router.DefaultMaxIdlePerWorker, runtime.NumCPU())
	if procs > 0 {
		note = fmt.Sprintf("the same binary and flags with the environment GOMAXPROCS=%d.", procs)
	}
	if len(extra) > 0 {
		note = fmt.Sprintf("the same binary with `%s`: the net/http server (the front before fasthttp, and the one "+
			"serving TLS and HTTP/2), with the same pool of worker connections.", strings.Join(extra, " "))
	}
	return frontContender{name: name, url: fmt.Sprintf("http://127.0.0.1:%d/", port), pids: p.pids, workerPort: lhr, note: note}, p.stop, nil
}

// vantageBin builds the vantage binary into the scratch directory (once) and returns its path.
func vantageBin(ctx context.Context, o *options, e *frontEnv) (string, error) {
	bin := filepath.Join(e.dir, "vantage")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/vantage")
	build.Dir = o.root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/vantage: %w: %s", err, tail(string(out), 5))
	}
	return bin, nil
}

// version returns the first line of `bin flag` (nginx prints it to stderr).
func version(bin, flag string) string {
	out, err := exec.Command(bin, flag).CombinedOutput()
	if err != nil {
		return "(version unknown)"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if m := regexp.MustCompile(`\d+\.\d+(\.\d+)?`).FindString(l); m != "" {
		return m
	}
	return l
}

// waitHTTP waits until url answers 200 (15 s at most).
func waitHTTP(ctx context.Context, url string) error {
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	return waitFor(ctx, 15*time.Second, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// runWrk runs one wrk window against c and reads its figures, the CPU its processes used and the sockets in
// TIME_WAIT toward its worker port.
func runWrk(ctx context.Context, c frontContender, dur time.Duration) (frontRound, error) {
	pids := c.pids()
	cpu0 := pidsCPU(pids)
	out, err := exec.CommandContext(ctx, "wrk", fmt.Sprintf("-t%d", frontWrkThreads), fmt.Sprintf("-c%d", frontWrkConns),
		fmt.Sprintf("-d%s", dur), "--latency", c.url).CombinedOutput()
	cpu := pidsCPU(pids) - cpu0
	if err != nil {
		return frontRound{}, fmt.Errorf("wrk: %w: %s", err, tail(string(out), 5))
	}
	r, err := ParseWrk(string(out))
	if err != nil {
		return frontRound{}, err
	}
	r.cpu = cpu
	r.timeWait = timeWaitTo(c.workerPort)
	return r, nil
}

// pidsCPU sums the user+system CPU of pids (those that are gone count 0).
func pidsCPU(pids []int) time.Duration {
	var t time.Duration
	for _, p := range pids {
		if d, err := procCPU(p); err == nil {
			t += d
		}
	}
	return t
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// ParseWrk reads requests/s, the request count, p50 and p99 (ms) and the errors from `wrk --latency`'s output.
func ParseWrk(out string) (frontRound, error) {
	var r frontRound
	m := wrkRPS.FindStringSubmatch(out)
	n := wrkRequests.FindStringSubmatch(out)
	if m == nil || n == nil {
		return r, fmt.Errorf("wrk: no Requests/sec in its output: %s", tail(out, 5))
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.requests, _ = strconv.Atoi(n[1])
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		switch p[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if p[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("wrk: no latency distribution (--latency) in its output: %s", tail(out, 5))
	}
	if s := wrkSocket.FindStringSubmatch(out); s != nil {
		for _, x := range s[1:] {
			k, _ := strconv.Atoi(x)
			r.errors += k
		}
	}
	if s := wrkNon2xx.FindStringSubmatch(out); s != nil {
		k, _ := strconv.Atoi(s[1])
		r.errors += k
	}
	return r, nil
}

// timeWaitTo counts the IPv4 loopback sockets in TIME_WAIT with port as one end (/proc/net/tcp: state 06).
func timeWaitTo(port int) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1
	}
	return CountTimeWait(string(b), port)
}

// CountTimeWait counts the /proc/net/tcp lines in TIME_WAIT whose local or remote port is port.
func CountTimeWait(procNetTCP string, port int) int {
	hexPort := fmt.Sprintf(":%04X", port)
	n := 0
	for _, l := range strings.Split(procNetTCP, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[3] != "06" {
			continue
		}
		if strings.HasSuffix(f[1], hexPort) || strings.HasSuffix(f[2], hexPort) {
			n++
		}
	}
	return n
}
