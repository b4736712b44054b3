package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
)

// scaleArg is the subcommand of the scale run: `go run ./bench scale -h`.
const scaleArg = "scale"

// scaleToken is the operator token the harness registers targets with.
const scaleToken = "bench-scale-token"

// scaleOptions are the flags of a scale run.
type scaleOptions struct {
	targets     int
	pops        int
	recheck     time.Duration
	window      time.Duration
	warmup      time.Duration
	rate        int
	concurrency int  // registration requests in flight
	single      bool // one POST /v1/apps per target instead of POST /v1/apps/bulk
	out         string
	vantage     string // a built vantage binary; empty: go build ./cmd/vantage
	schedArgs   string // more flags for vantage scheduler, space-separated
	root        string
	stderr      io.Writer
	cmdline     string
}

// runScale is `go run ./bench scale`: a real redis-server, `vantage probed --simulate` standing in for the
// PoPs, one `vantage scheduler` process, targets registered through the API, and the figures of a
// steady-state window written as markdown (stdout, or appended to -out).
func runScale(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &scaleOptions{stderr: stderr}
	fs.IntVar(&o.targets, "targets", 100_000, "host targets registered (POST /v1/apps, one per application)")
	fs.IntVar(&o.pops, "pops", 300, "simulated PoPs, the first N of the catalogue (vantage probed --simulate-pops)")
	fs.DurationVar(&o.recheck, "recheck", 5*time.Minute, "the scheduler's --recheck interval")
	fs.DurationVar(&o.window, "window", time.Minute, "measurement window")
	fs.DurationVar(&o.warmup, "warmup", 30*time.Second, "wait after the last registration before the window (the first rechecks of new targets are spread over 30 s)")
	fs.IntVar(&o.rate, "simulate-rate", 200, "probes per second per simulated PoP (vantage probed --simulate-rate)")
	fs.IntVar(&o.concurrency, "register-concurrency", 2, "registration requests in flight")
	fs.BoolVar(&o.single, "register-single", false, "register with one POST /v1/apps per target (default: POST /v1/apps/bulk, 10,000 per request)")
	fs.StringVar(&o.out, "out", "", "append the markdown report to this file (default: stdout)")
	fs.StringVar(&o.schedArgs, "scheduler-args", "", "more flags for `vantage scheduler`, space-separated (e.g. \"--concurrency 4096 --pprof 127.0.0.1:6060\")")
	fs.StringVar(&o.vantage, "vantage", "", "vantage binary to run (default: go build ./cmd/vantage into a temporary directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.targets <= 0 || o.pops <= 0 || o.window <= 0 || o.concurrency <= 0 {
		return fmt.Errorf("bench scale: -targets, -pops, -window and -register-concurrency must be > 0")
	}
	o.cmdline = "go run ./bench scale " + shellJoin(args)
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	o.root = root
	rep, err := scaleRun(ctx, o)
	if err != nil {
		return err
	}
	w := stdout
	if o.out != "" {
		f, err := os.OpenFile(o.out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("bench scale: -out %s: %w", o.out, err)
		}
		defer f.Close()
		w = f
	}
	_, err = io.WriteString(w, rep.markdown())
	return err
}

// scaleReport is what a scale run measured.
type scaleReport struct {
	o                    *scaleOptions
	started              time.Time
	load0, load1, commit string
	registerTime         time.Duration
	targetsHeld          float64
	redisMemBase         int64 // used_memory before registering
	redisMemReg          int64 // ... after registering
	redisMemEnd          int64 // ... at the end of the window
	rssBase, rssReg      int64 // scheduler VmRSS before and after registering
	rssEnd               int64
	rechecksTotal        float64 // the scheduler's rechecks since it started, at the end of the window
	win                  scaleWindow
	cmdCalls             map[string]int64 // INFO commandstats calls over the window
}

// scaleWindow are the deltas over the measurement window.
type scaleWindow struct {
	seconds                 float64
	rechecks, decisions     float64
	jobs                    float64
	schedCPU                float64 // seconds
	commands, netIn, netOut int64
	redisCPU, probedCPUSecs float64
	rechecksOK              float64
}

// scaleProcs are the processes of a run.
type scaleProcs struct {
	red         *redisProc
	rc          *redis.Client
	probed      *exec.Cmd
	sched       *exec.Cmd
	api, mets   string // the scheduler's API and tokenless /metrics URLs
	stop        []func()
	schedLogBuf *syncWriter
}

// syncWriter is a bytes.Buffer safe for a process's stderr and the harness reading it.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

func scaleRun(ctx context.Context, o *scaleOptions) (*scaleReport, error) {
	r := &scaleReport{o: o, started: time.Now(), load0: loadAvg(), commit: gitCommit(ctx, o.root)}
	log := func(msg string, args ...any) {
		fmt.Fprintf(o.stderr, "%s bench scale: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(msg, args...))
	}
	dir, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := o.vantage
	if bin == "" {
		bin = filepath.Join(dir, "vantage")
		log("building %s", bin)
		if _, _, err := goTest(ctx, o.root, 10*time.Minute, "build", "-o", bin, "./cmd/vantage"); err != nil {
			return nil, err
		}
	}
	p := &scaleProcs{}
	defer p.close()
	if p.red, err = startRedis(ctx); err != nil {
		return nil, err
	}
	p.stop = append(p.stop, p.red.stop)
	p.rc = redis.NewClient(&redis.Options{Addr: p.red.addr})
	r.redisMemBase = infoInt(ctx, p.rc, "memory", "used_memory")

	probedLog := &syncWriter{}
	p.probed, err = startScaleProc(ctx, bin, probedLog, "probed", "--simulate", "--simulate-pops", strconv.Itoa(o.pops),
		"--simulate-rate", strconv.Itoa(o.rate), "--redis", p.red.addr, "--listen", "127.0.0.1:0", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	p.stop = append(p.stop, stopProc(p.probed))
	api, mets := freeLoopback(), freeLoopback()
	p.schedLogBuf = &syncWriter{}
	p.sched, err = startScaleProc(ctx, bin, p.schedLogBuf, append([]string{"scheduler", "--redis", p.red.addr, "--listen", api, "--metrics-listen", mets,
		"--token", scaleToken, "--recheck", o.recheck.String(), "--log-level", "warn", "--name", "bench-scale"}, strings.Fields(o.schedArgs)...)...)
	if err != nil {
		return nil, err
	}
	p.stop = append(p.stop, stopProc(p.sched))
	p.api, p.mets = "http://"+api, "http://"+mets+"/metrics"
	fail := func(err error) (*scaleReport, error) {
		return nil, fmt.Errorf("%w\nscheduler log:\n%s\nprobed log:\n%s", err, tail(p.schedLogBuf.String(), 15), tail(probedLog.String(), 15))
	}
	// Leading, with every simulated PoP up (heartbeats).
	if err := waitFor(ctx, 60*time.Second, func() bool {
		m, err := scrape(ctx, p.mets)
		return err == nil && m["vantage_scheduler_leader"] == 1 && upPoPs(ctx, p.red.addr) >= o.pops
	}); err != nil {
		return fail(fmt.Errorf("bench scale: the scheduler did not lead with %d PoPs up within 60 s", o.pops))
	}
	time.Sleep(2 * time.Second) // the scheduler settles (first mesh round, app sync)
	r.rssBase = procRSS(p.sched.Process.Pid)
	log("redis %s, %d simulated PoPs up, scheduler leading (RSS %s MiB); registering %d targets", p.red.addr, o.pops, num(float64(r.rssBase)/(1<<20), 0), o.targets)
	t0 := time.Now()
	if err := registerTargets(ctx, p.api, o.targets, o.concurrency, !o.single, func(done int) {
		log("registered %d/%d (%.0f/s)", done, o.targets, float64(done)/time.Since(t0).Seconds())
	}); err != nil {
		return fail(err)
	}
	r.registerTime = time.Since(t0)
	if err := waitFor(ctx, 5*time.Minute, func() bool {
		m, err := scrape(ctx, p.mets)
		r.targetsHeld = m["vantage_scheduler_targets"]
		return err == nil && int(r.targetsHeld) >= o.targets
	}); err != nil {
		return fail(fmt.Errorf("bench scale: the scheduler holds %.0f of %d targets 5 min after the registrations", r.targetsHeld, o.targets))
	}
	r.redisMemReg = infoInt(ctx, p.rc, "memory", "used_memory")
	r.rssReg = procRSS(p.sched.Process.Pid)
	log("registered in %v; warming up %v", r.registerTime.Round(time.Second), o.warmup)
	pause(ctx, o.warmup)
	s0, err := sampleScale(ctx, p)
	if err != nil {
		return fail(err)
	}
	log("window of %v started", o.window)
	pause(ctx, o.window)
	s1, err := sampleScale(ctx, p)
	if err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	r.win = s1.sub(s0)
	r.cmdCalls = map[string]int64{}
	for c, n := range s1.calls {
		if d := n - s0.calls[c]; d > 0 {
			r.cmdCalls[c] = d
		}
	}
	r.redisMemEnd = infoInt(ctx, p.rc, "memory", "used_memory")
	r.rssEnd = procRSS(p.sched.Process.Pid)
	r.rechecksTotal = s1.rechecks
	r.load1 = loadAvg()
	if bad := logProblems(p.schedLogBuf.String()); bad != "" {
		log("scheduler log:\n%s", bad)
	}
	log("done: %.1f rechecks/s, scheduler %.2f cores", r.win.rechecks/r.win.seconds, r.win.schedCPU/r.win.seconds)
	return r, nil
}

func (p *scaleProcs) close() {
	for _, f := range slices.Backward(p.stop) {
		f()
	}
	if p.rc != nil {
		p.rc.Close()
	}
}

// scaleSample is one reading of every counter a window is the difference of.
type scaleSample struct {
	at                      time.Time
	rechecks, decisions     float64
	rechecksOK              float64
	jobs                    float64
	schedCPU, probedCPU     float64
	commands, netIn, netOut int64
	redisCPU                float64
	calls                   map[string]int64
}

func (b scaleSample) sub(a scaleSample) scaleWindow {
	return scaleWindow{seconds: b.at.Sub(a.at).Seconds(), rechecks: b.rechecks - a.rechecks, decisions: b.decisions - a.decisions,
		jobs: b.jobs - a.jobs, schedCPU: b.schedCPU - a.schedCPU, commands: b.commands - a.commands, netIn: b.netIn - a.netIn,
		netOut: b.netOut - a.netOut, redisCPU: b.redisCPU - a.redisCPU, probedCPUSecs: b.probedCPU - a.probedCPU,
		rechecksOK: b.rechecksOK - a.rechecksOK}
}

func sampleScale(ctx context.Context, p *scaleProcs) (scaleSample, error) {
	s := scaleSample{at: time.Now(), calls: map[string]int64{}}
	m, err := scrape(ctx, p.mets)
	if err != nil {
		return s, err
	}
	s.rechecks, s.rechecksOK = m["vantage_scheduler_rechecks_total"], m[`vantage_scheduler_rechecks_total{outcome="success"}`]
	s.decisions, s.jobs = m["vantage_scheduler_decisions_written_total"], m["vantage_scheduler_jobs_enqueued_total"]
	s.schedCPU, s.probedCPU = cpuSeconds(p.sched.Process.Pid), cpuSeconds(p.probed.Process.Pid)
	info, err := p.rc.Info(ctx, "stats", "cpu", "commandstats").Result()
	if err != nil {
		return s, fmt.Errorf("bench scale: INFO: %w", err)
	}
	for _, l := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		switch {
		case k == "total_commands_processed":
			s.commands, _ = strconv.ParseInt(v, 10, 64)
		case k == "total_net_input_bytes":
			s.netIn, _ = strconv.ParseInt(v, 10, 64)
		case k == "total_net_output_bytes":
			s.netOut, _ = strconv.ParseInt(v, 10, 64)
		case k == "used_cpu_sys" || k == "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			s.redisCPU += f
		case strings.HasPrefix(k, "cmdstat_"):
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			s.calls[strings.TrimPrefix(k, "cmdstat_")], _ = strconv.ParseInt(calls, 10, 64)
		}
	}
	return s, nil
}

// scrape reads a Prometheus text page into name -> value, summing each name's series (under the bare name)
// and keeping each series under its full text as well.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			out[name] += v
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if len(labels) > 0 {
				out[name+"{"+strings.Join(labels, ",")+"}"] = v
			}
		}
	}
	return out, nil
}

// upPoPs counts the PoPs up in the fleet, as the scheduler sees them (scheduler.StoreBackend.UpPoPs).
func upPoPs(ctx context.Context, addr string) int {
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{addr}, PoolSize: 2})
	if err != nil {
		return 0
	}
	defer st.Close()
	up, _ := scheduler.StoreBackend{Store: st}.UpPoPs(ctx)
	return len(up)
}

// registerTargets registers n host targets through the API as an operator would, with an operator's bearer
// token: bulk, POST /v1/apps/bulk with up to scheduler.MaxBulkApps wrangler configs per request; else one
// POST /v1/apps per application. conc requests are in flight; progress is called every 10 %.
func registerTargets(ctx context.Context, api string, n, conc int, bulk bool, progress func(done int)) error {
	per := 1
	path, ctype := "/v1/apps", "application/json"
	if bulk {
		per, path, ctype = scheduler.MaxBulkApps, "/v1/apps/bulk", "application/x-ndjson"
	}
	var next, done atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}, Timeout: 5 * time.Minute}
	errc := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				first := next.Add(int64(per)) - int64(per)
				if first >= int64(n) {
					return
				}
				last := min(first+int64(per), int64(n))
				var body strings.Builder
				for i := first; i < last; i++ {
					fmt.Fprintf(&body, `{"name": "app-%07d", "placement": {"host": "h%07d.bench.example:5432"}}`+"\n", i, i)
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api+path, strings.NewReader(body.String()))
				req.Header.Set("Authorization", "Bearer "+scaleToken)
				req.Header.Set("Content-Type", ctype)
				resp, err := client.Do(req)
				if err != nil {
					errc <- fmt.Errorf("bench scale: POST %s app-%07d...: %w", path, first, err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 || (bulk && !strings.Contains(string(b), `"success":true`)) {
					errc <- fmt.Errorf("bench scale: POST %s app-%07d...: %s: %s", path, first, resp.Status, tail(string(b), 3))
					return
				}
				step := max(int64(n)/10, 1)
				if d := done.Add(last - first); d/step != (d-(last-first))/step {
					progress(int(d))
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

// startScaleProc starts bin with args, its stdout and stderr to w, in its own process group.
func startScaleProc(ctx context.Context, bin string, w io.Writer, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench scale: %s %s: %w", bin, args[0], err)
	}
	return cmd, nil
}

// stopProc returns a function that stops cmd with SIGTERM (SIGKILL after 10 s) and waits for it.
func stopProc(cmd *exec.Cmd) func() {
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

// cpuSeconds is procCPU in seconds (0 when unreadable).
func cpuSeconds(pid int) float64 {
	d, _ := procCPU(pid)
	return d.Seconds()
}

// procRSS returns VmRSS of pid in bytes (0 when unreadable).
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// infoInt reads one integer field of a section of INFO (0 when unreadable).
func infoInt(ctx context.Context, rc *redis.Client, section, field string) int64 {
	info, err := rc.Info(ctx, section).Result()
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// freeLoopback returns a free loopback address.
func freeLoopback() string {
	p, err := freePort()
	if err != nil {
		return "127.0.0.1:0"
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// logProblems returns the scheduler's WARN and ERROR lines, at most 10.
func logProblems(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			out = append(out, l)
		}
	}
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... and %d more", len(out)-10))
	}
	return strings.Join(out, "\n")
}

// gitCommit returns the checkout's commit (with "+dirty" when it has changes), or "unknown".
func gitCommit(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}

// perRecheck divides by the window's rechecks (NaN without any).
func (r *scaleReport) perRecheck(v float64) float64 {
	if r.win.rechecks <= 0 {
		return math.NaN()
	}
	return v / r.win.rechecks
}

// markdown renders the report: the command, the machine's load, the figures and the capacity they imply.
func (r *scaleReport) markdown() string {
	var b strings.Builder
	o, w := r.o, r.win
	rps := w.rechecks / w.seconds
	schedCores := w.schedCPU / w.seconds
	need := float64(o.targets) / o.recheck.Seconds()
	fmt.Fprintf(&b, "\n### Scale run: %s targets, %d simulated PoPs, recheck %v (%s)\n\n", num(float64(o.targets), 0), o.pops, o.recheck, r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "    %s\n\n", o.cmdline)
	fmt.Fprintf(&b, "Commit measured: `%s`. Machine: %d CPUs, load average %s before, %s after. Window %.0f s after a %v warm-up; "+
		"registration of the targets took %v (%s/s through `%s`, %d requests in flight).\n\n",
		r.commit, runtime.NumCPU(), r.load0, r.load1, w.seconds, o.warmup, r.registerTime.Round(time.Second),
		num(float64(o.targets)/r.registerTime.Seconds(), 0), map[bool]string{true: "POST /v1/apps", false: "POST /v1/apps/bulk"}[o.single], o.concurrency)
	t := &Table{Header: []string{"figure", "value"}}
	t.Add("rechecks completed (vantage_scheduler_rechecks_total)", fmt.Sprintf("**%s /s** (%s successful, %s decisions written /s); a %v recheck of every target needs %s /s",
		num(rps, 1), num(w.rechecksOK/w.seconds, 1), num(w.decisions/w.seconds, 1), o.recheck, num(need, 1)))
	t.Add("scheduler CPU (/proc/<pid>/stat utime+stime)", fmt.Sprintf("%s cores: **%s ms per recheck**", num(schedCores, 2), num(r.perRecheck(w.schedCPU*1000), 2)))
	t.Add("rechecks per second per scheduler core", "**"+num(rps/schedCores, 0)+"**")
	t.Add("Redis commands per recheck (total_commands_processed)", fmt.Sprintf("**%s** (%s commands/s)", num(r.perRecheck(float64(w.commands)), 0), num(float64(w.commands)/w.seconds, 0)))
	t.Add("Redis bytes per recheck, in / out (total_net_input_bytes, total_net_output_bytes)", fmt.Sprintf("%s / %s", num(r.perRecheck(float64(w.netIn)), 0), num(r.perRecheck(float64(w.netOut)), 0)))
	t.Add("redis-server CPU (used_cpu_sys+used_cpu_user)", fmt.Sprintf("%s cores: %s ms per recheck", num(w.redisCPU/w.seconds, 2), num(r.perRecheck(w.redisCPU*1000), 2)))
	t.Add("probe jobs per recheck (vantage_scheduler_jobs_enqueued_total)", num(r.perRecheck(w.jobs), 1))
	t.Add("simulated fleet CPU (vantage probed --simulate, one process)", fmt.Sprintf("%s cores", num(w.probedCPUSecs/w.seconds, 2)))
	t.Add("Redis memory per target once registered (used_memory delta / targets; rechecks already running)", fmt.Sprintf("**%s bytes** (%s MiB for %s)", num(float64(r.redisMemReg-r.redisMemBase)/float64(o.targets), 0),
		num(float64(r.redisMemReg-r.redisMemBase)/(1<<20), 1), num(float64(o.targets), 0)))
	t.Add("Redis memory per target at the end of the window ((used_memory - before) / targets: registry, results, decisions, history)",
		fmt.Sprintf("**%s bytes** (%s MiB; %s rechecks done since the start, %s targets)", num(float64(r.redisMemEnd-r.redisMemBase)/float64(o.targets), 0),
			num(float64(r.redisMemEnd-r.redisMemBase)/(1<<20), 1), num(r.rechecksTotal, 0), num(float64(o.targets), 0)))
	if checked := math.Min(r.rechecksTotal, float64(o.targets)); checked >= 1000 {
		// While the first rechecks are still running (recheck interval longer than the run), each recheck is a
		// target's first: the growth since registering, divided by them, is what a target rechecked once adds.
		t.Add("Redis memory a target adds once rechecked ((used_memory end - once registered) / rechecks done, at most targets)",
			fmt.Sprintf("**%s bytes** (%s rechecks)", num(float64(r.redisMemEnd-r.redisMemReg)/checked, 0), num(checked, 0)))
	}
	t.Add("scheduler RSS per target", fmt.Sprintf("**%s KiB** (%s MiB before registering, %s MiB after, %s MiB at the end)",
		num(float64(r.rssEnd-r.rssBase)/1024/float64(o.targets), 2), num(float64(r.rssBase)/(1<<20), 0), num(float64(r.rssReg)/(1<<20), 0), num(float64(r.rssEnd)/(1<<20), 0)))
	var sb strings.Builder
	renderTable(&sb, t)
	b.WriteString(sb.String())
	// The main commands, per recheck.
	type cc struct {
		name string
		n    int64
	}
	var cmds []cc
	for c, n := range r.cmdCalls {
		cmds = append(cmds, cc{c, n})
	}
	slices.SortFunc(cmds, func(a, b cc) int { return int(b.n - a.n) })
	var parts []string
	for i, c := range cmds {
		if i == 10 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s", c.name, num(r.perRecheck(float64(c.n)), 1)))
	}
	fmt.Fprintf(&b, "\nRedis commands per recheck by command (INFO commandstats, top 10): %s.\n", strings.Join(parts, ", "))
	if rps < 0.95*need {
		fmt.Fprintf(&b, "\nThe scheduler did **not** keep up with the demanded %s rechecks/s: the window measured its saturated throughput "+
			"(backlog of due rechecks), not a steady state below capacity.\n", num(need, 1))
	}
	return b.String()
}
