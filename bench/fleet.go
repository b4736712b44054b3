package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/testbed"
)

// fleetDecisionPoll is how often the harness looks for a decision in Redis (the components themselves run
// with the shipped defaults).
const fleetDecisionPoll = 5 * time.Millisecond

func quiet(o *options) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func fleetSection(ctx context.Context, o *options) *Section {
	s := &Section{Title: "Fleet: new target to decision, and recheck load on Redis"}
	if os.Geteuid() != 0 {
		msg := "**Time to decision on the emulated WAN was skipped: it needs root (network namespaces, /dev/net/tun).**"
		s.Notes, s.Headline = append(s.Notes, msg), append(s.Headline, msg)
	} else {
		timeToDecision(ctx, o, s)
	}
	scaleLoad(ctx, o, s)
	return s
}

// fleet is the running system of timeToDecision: the emulated WAN, a probe daemon per PoP and a scheduler
// with its API, all on one Redis, built by the one assembly (package daemon) with the shipped defaults.
type fleet struct {
	spec  *testbed.Spec
	tb    *testbed.Testbed
	st    *storage.Store
	sched *daemon.Scheduler
	token string
}

// startFleet brings the fleet up on the Redis at redisAddr and waits until the scheduler leads with every PoP
// up. Components run under ctx in wg. Whether it fails or not, the caller cancels ctx, waits for wg, then calls
// the returned close, which closes the store and the testbed.
func startFleet(ctx context.Context, o *options, redisAddr string, wg *sync.WaitGroup) (*fleet, func(), error) {
	var closers []func() error
	closeAll := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	f := &fleet{spec: testbed.DefaultSpec(), token: "bench-token"}
	var err error
	if f.tb, err = testbed.Start(ctx, f.spec, testbed.Options{Logger: quiet(o), Nice: -10}); err != nil {
		return nil, closeAll, fmt.Errorf("testbed: %w", err)
	}
	closers = append(closers, f.tb.Close)
	// One store for every component, as the demo does; each blocked job read holds a connection.
	if f.st, err = daemon.OpenStore(ctx, storage.Options{Addrs: []string{redisAddr}, PoolSize: 4*len(f.spec.PoPs) + 64}, quiet(o)); err != nil {
		return nil, closeAll, err
	}
	closers = append(closers, f.st.Close)
	run := func(what string, run func(context.Context) error) {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				o.log.Error("bench: fleet component stopped", "component", what, "err", err)
			}
		})
	}
	for _, pop := range f.spec.PoPs {
		cfg := demo.ProbedConfig(f.tb, pop)
		cfg.Listen, cfg.Logger, cfg.Version = "127.0.0.1:0", quiet(o), "bench"
		cfg.Daemon.DaemonID = "bench-" + strings.ToLower(pop)
		d, err := daemon.NewProbed(cfg, f.st)
		if err != nil {
			return nil, closeAll, err
		}
		run("probed "+pop, d.Run)
	}
	cfg := daemon.DefaultSchedulerConfig()
	cfg.Listen, cfg.Logger = "127.0.0.1:0", quiet(o)
	cfg.Scheduler.Name = "bench"
	cfg.Tokens = map[string]string{f.token: "bench"}
	cfg.Allow = []netip.Prefix{f.tb.Prefix()}
	if f.sched, err = daemon.NewScheduler(cfg, f.st); err != nil {
		return nil, closeAll, err
	}
	run("scheduler", f.sched.Run)
	backend := scheduler.StoreBackend{Store: f.st}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		lead, _ := f.sched.Scheduler().Leading()
		up, _ := backend.UpPoPs(ctx)
		return lead && len(up) == len(f.spec.PoPs)
	}); err != nil {
		return nil, closeAll, fmt.Errorf("the scheduler did not lead with every PoP up within 30 s")
	}
	return f, closeAll, nil
}

// nearest returns the PoP with the lowest emulated RTT to host, and that RTT in ms.
func (f *fleet) nearest(host string) (string, float64) {
	best, bestMs := "", math.Inf(1)
	for _, pop := range f.spec.PoPs {
		if rtt, err := f.tb.RTT(pop, host); err == nil && float64(rtt)/1e6 < bestMs {
			best, bestMs = pop, float64(rtt)/1e6
		}
	}
	return best, bestMs
}

// rttTo formats the emulated RTT from pop to host.
func (f *fleet) rttTo(pop, host string) string {
	rtt, err := f.tb.RTT(pop, host)
	if err != nil {
		return "?"
	}
	return num(float64(rtt)/1e6, 1) + " ms"
}

// timeToDecision runs the demo topology on the one assembly (the default emulated WAN, one probe daemon per
// PoP probing from its namespace, a scheduler with its API, a real redis-server) and times each new
// application from its POST /v1/apps to its decision in Redis.
func timeToDecision(ctx context.Context, o *options, s *Section) {
	decideTimeout := 2 * scheduler.DefaultResultTimeout // a recheck decides with what came by then
	s.Intro += "**Time to decision**: the default emulated WAN (testbed/testdata/default.yaml, 26 PoPs), one " +
		"probe daemon per PoP and one scheduler with its API, built by the one assembly (package daemon) from " +
		"`daemon.DefaultProbedConfig()` and `daemon.DefaultSchedulerConfig()`, the defaults `vantage probed` and " +
		"`vantage scheduler` ship with (nothing shortened: ResultPoll " + scheduler.DefaultResultPoll.String() +
		", ProbeCount " + strconv.Itoa(scheduler.DefaultProbeCount) + " samples " + prober.DefaultInterval.String() +
		" apart, the planner at its default budget, heartbeat " + probed.DefaultHeartbeat.String() + "), each daemon's " +
		"prober in its PoP's namespace as in the demo (`demo.ProbedConfig`: `Enter = Node.Do`, names resolved by the " +
		"testbed's DNS server from the PoP), on a redis-server started by the harness. Once the scheduler leads and " +
		"every PoP has a heartbeat, applications are registered one at a time as a user does: a wrangler.toml " +
		"(`[placement] host = \"db.vantage.test:5432\"`) in a `POST /v1/apps` with a bearer token. The time is from " +
		"that request to the decision being readable in Redis (`Store.Decision`, polled every " + fleetDecisionPoll.String() +
		"): the API call, the probes' own RTTs over the emulated WAN (up to ~300 ms per round, several rounds of the " +
		"planner) and the scheduler's result polling.\n\n"
	red, err := startRedis(ctx)
	if err != nil {
		s.Notes = append(s.Notes, "time to decision: "+err.Error())
		return
	}
	defer red.stop()
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	f, closeFleet, err := startFleet(runCtx, o, red.addr, &wg)
	defer func() {
		cancel()
		wg.Wait()
		closeFleet()
	}()
	if err != nil {
		s.Notes = append(s.Notes, "time to decision: "+err.Error())
		return
	}
	zone := strings.TrimSuffix(f.tb.Zone(), ".")
	t := &Table{Header: []string{"target", "mode", "decision", "best PoP (its emulated RTT)", "emulator's nearest PoP (RTT)", "time to decision (this machine)"}}
	misplaced := 0
	var times []float64
	rounds := 2
	if o.quick {
		rounds = 1
	}
	for round := range rounds {
		for _, h := range f.spec.Hosts {
			if len(h.TCP) == 0 {
				continue
			}
			app := fmt.Sprintf("bench-%s-%d", h.Name, round)
			target := fmt.Sprintf("%s.%s:%d", h.Name, zone, h.TCP[0])
			wrangler := fmt.Sprintf("name = %q\nmain = \"src/index.ts\"\n\n[placement]\nhost = %q\n", app, target)
			np, npMs := f.nearest(h.Name)
			t0 := time.Now()
			if err := demo.PostApp(ctx, f.sched.URL(), f.token, wrangler, ""); err != nil {
				t.Add(target, "host", "registration failed: "+err.Error(), "", fmt.Sprintf("%s (%s ms)", np, num(npMs, 1)), "")
				continue
			}
			var d placement.Decision
			err := waitFor(ctx, decideTimeout, func() bool {
				var ok bool
				d, ok, _ = f.st.Decision(ctx, app)
				return ok && d.Status != ""
			})
			el := time.Since(t0)
			if err != nil {
				t.Add(target, "host", "none within "+decideTimeout.String(), "", fmt.Sprintf("%s (%s ms)", np, num(npMs, 1)), "")
				continue
			}
			times = append(times, el.Seconds()*1000)
			if d.BestPoP != np {
				misplaced++
				s.Notes = append(s.Notes, fmt.Sprintf("%s: decision %s (verdict %s, estimated %v, confidence %.2f), candidates %v; the emulator's nearest PoP is %s at %s ms.",
					app, d.BestPoP, d.Verdict, d.Estimated, d.Confidence, d.Candidates, np, num(npMs, 1)))
			}
			t.Add(target, "host", string(d.Status), fmt.Sprintf("%s (%s)", d.BestPoP, f.rttTo(d.BestPoP, h.Name)),
				fmt.Sprintf("%s (%s ms)", np, num(npMs, 1)), fmt.Sprintf("%s ms", num(el.Seconds()*1000, 0)))
		}
	}
	s.Tables = append(s.Tables, t)
	if len(times) > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("**New application to decision in Redis: median %s ms, max %s ms** over %d registrations through the API (%d PoPs up, shipped defaults); "+
			"%d of %d decisions name a PoP other than the emulator's nearest.",
			num(Percentile(times, 0.5), 0), num(Percentile(times, 1), 0), len(times), len(f.spec.PoPs), misplaced, len(times)))
		s.Headline = append(s.Headline, "Fleet: "+strings.TrimSuffix(s.Notes[len(s.Notes)-1], "."))
	}
	s.Commands = append(s.Commands, "go run ./bench -only=fleet   (time to decision: in-process testbed, daemons and scheduler built by package daemon)")
}

// scaleLoad runs the scheduler's scale test (100,000 targets over 300 PoPs, stand-in fleet) and samples the
// redis-server it starts for commands per second.
func scaleLoad(ctx context.Context, o *options, s *Section) {
	targets, window := 100_000, 40*time.Second
	if o.quick {
		targets, window = 20_000, 10*time.Second
	}
	s.Intro += fmt.Sprintf("**Recheck load on Redis**: `TestScale` (scheduler/scale_test.go, see bench/FLEET.md) with %s targets over 300 PoPs "+
		"rechecked every 5 minutes, the 300 daemons replaced by one responder process; the harness finds the "+
		"redis-server the test started (its child process), and samples `INFO stats` total_commands_processed once a second "+
		"and `INFO cpu` (used_cpu_sys+user) while the test's own window runs. Rechecks/s are the test's own log.", num(float64(targets), 0))
	dir, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		s.Notes = append(s.Notes, "scale: "+err.Error())
		return
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "scheduler.test")
	if _, cmd, err := goTest(ctx, o.root, 5*time.Minute, "test", "-c", "-o", bin, "./scheduler"); err != nil {
		s.Notes = append(s.Notes, "scale: "+err.Error())
		return
	} else {
		s.Commands = append(s.Commands, strings.Replace(cmd, bin, "/tmp/sched.test", 1))
	}
	args := []string{"-test.run", "^TestScale$", "-test.v", "-scale", fmt.Sprintf("-scale.targets=%d", targets), "-scale.window=" + window.String(), "-test.timeout=10m"}
	s.Commands = append(s.Commands, "cd scheduler && /tmp/sched.test "+shellJoin(args))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = filepath.Join(o.root, "scheduler")
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.Notes = append(s.Notes, "scale: "+err.Error())
		return
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		s.Notes = append(s.Notes, "scale: "+err.Error())
		return
	}
	var (
		mu      sync.Mutex
		lines   []string
		started = make(chan struct{}) // the test's measurement window began (after its "loops started" line + warm-up)
		logDone = make(chan struct{})
	)
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			if strings.Contains(sc.Text(), "loops started and leading") {
				once.Do(func() { close(started) })
			}
		}
	}()
	var samples []opsSample
	sampleErr := func() error {
		select {
		case <-started:
		case <-logDone:
			return fmt.Errorf("the test ended before its window")
		case <-ctx.Done():
			return ctx.Err()
		}
		addr, err := childRedis(cmd.Process.Pid)
		if err != nil {
			return err
		}
		rc := redis.NewClient(&redis.Options{Addr: addr})
		defer rc.Close()
		time.Sleep(10 * time.Second) // the test's warm-up
		end := time.Now().Add(window)
		for time.Now().Before(end) {
			if smp, err := redisSample(ctx, rc); err == nil {
				samples = append(samples, smp)
			}
			time.Sleep(time.Second)
		}
		return nil
	}()
	<-logDone
	werr := cmd.Wait()
	logs := TestLogs(strings.Join(lines, "\n"))["TestScale"]
	if werr != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("scale: TestScale: %v: %s", werr, tail(strings.Join(lines, "\n"), 5)))
	}
	if sampleErr != nil {
		s.Notes = append(s.Notes, "scale: sampling redis-server: "+sampleErr.Error())
	}
	t := &Table{Header: []string{"figure", "value (this machine)"}}
	rechecks, okR := findFloat(logs, regexp.MustCompile(`([\d.]+) rechecks/s`))
	if len(samples) >= 2 {
		a, b := samples[0], samples[len(samples)-1]
		el := b.at.Sub(a.at).Seconds()
		ops := float64(b.commands-a.commands) / el
		var inst []float64
		for _, x := range samples {
			inst = append(inst, float64(x.instOps))
		}
		t.Add("targets / PoPs", fmt.Sprintf("%s / 300", num(float64(targets), 0)))
		t.Add("Redis commands/s (total_commands_processed delta)", fmt.Sprintf("%s over %.0f s", num(ops, 0), el))
		t.Add("Redis instantaneous_ops_per_sec, median of samples", num(Percentile(inst, 0.5), 0))
		t.Add("redis-server CPU (cores)", num((b.cpu-a.cpu)/el, 2))
		s.Headline = append(s.Headline, fmt.Sprintf("Fleet at %s targets (TestScale): Redis %s commands/s at %s rechecks/s, redis-server %s cores.",
			num(float64(targets), 0), num(ops, 0), num(rechecks, 1), num((b.cpu-a.cpu)/el, 2)))
		if okR && rechecks > 0 {
			t.Add("rechecks/s (the test's log)", num(rechecks, 1))
			t.Add("Redis commands per recheck", num(ops/rechecks, 0))
			t.Add(fmt.Sprintf("projected commands/s at the 5-minute interval (%s rechecks/s)", num(float64(targets)/300, 0)), num(ops/rechecks*float64(targets)/300, 0))
		}
		s.Notes = append(s.Notes, "Redis commands include the stand-in fleet's (the responder reads each PoP's job stream and "+
			"writes results as the daemons would) and the fleet's heartbeats: the load the whole recheck pipeline puts on Redis.")
	}
	s.Tables = append(s.Tables, t)
	for _, l := range logs {
		s.Raw = append(s.Raw, l)
	}
}

type opsSample struct {
	at       time.Time
	commands int64
	instOps  int64
	cpu      float64
}

func redisSample(ctx context.Context, rc *redis.Client) (opsSample, error) {
	info, err := rc.Info(ctx, "stats", "cpu").Result()
	if err != nil {
		return opsSample{}, err
	}
	smp := opsSample{at: time.Now()}
	for _, l := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		switch k {
		case "total_commands_processed":
			smp.commands, _ = strconv.ParseInt(v, 10, 64)
		case "instantaneous_ops_per_sec":
			smp.instOps, _ = strconv.ParseInt(v, 10, 64)
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			smp.cpu += f
		}
	}
	return smp, nil
}

// childRedis finds the redis-server child of pid and returns its loopback address (from its --port argument).
func childRedis(pid int) (string, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cpid))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat)[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cpid))
		if addr, ok := redisAddrFromCmdline(string(cmdline)); ok {
			return addr, nil
		}
	}
	return "", fmt.Errorf("no redis-server child of pid %d", pid)
}

// redisAddrFromCmdline reads the port of a redis-server from its /proc cmdline: its arguments ("--port N") or
// the process title redis-server sets over them ("/usr/bin/redis-server 127.0.0.1:6379").
func redisAddrFromCmdline(cmdline string) (string, bool) {
	f := strings.Fields(strings.ReplaceAll(cmdline, "\x00", " "))
	if len(f) == 0 || !strings.HasPrefix(filepath.Base(f[0]), "redis-server") {
		return "", false
	}
	for i, a := range f[1:] {
		if a == "--port" && i+2 < len(f) {
			return net.JoinHostPort("127.0.0.1", f[i+2]), true
		}
		if _, port, err := net.SplitHostPort(a); err == nil {
			if _, err := strconv.Atoi(port); err == nil {
				return net.JoinHostPort("127.0.0.1", port), true
			}
		}
	}
	return "", false
}

// redisProc is a redis-server started by the harness.
type redisProc struct {
	addr string
	cmd  *exec.Cmd
	dir  string
}

// startRedis runs redis-server on a free loopback port, persistence off, like storage/redistest.
func startRedis(ctx context.Context) (*redisProc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not installed (apt-get install redis-server)")
	}
	dir, err := os.MkdirTemp("", "bench-redis-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &redisProc{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	// No Pdeathsig: it fires when the OS thread that started the child exits, and the testbed's namespace
	// threads do exit. The server is stopped by stop (deferred; an interrupt cancels the run first).
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	rc := redis.NewClient(&redis.Options{Addr: r.addr})
	defer rc.Close()
	if err := waitFor(ctx, 15*time.Second, func() bool { return rc.Ping(ctx).Err() == nil }); err != nil {
		r.stop()
		return nil, fmt.Errorf("redis-server on %s did not answer PING within 15 s", r.addr)
	}
	return r, nil
}

func (r *redisProc) stop() {
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(r.dir)
}

// waitFor polls cond every fleetDecisionPoll until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timeout after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(fleetDecisionPoll):
		}
	}
	return nil
}
