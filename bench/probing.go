package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
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
	"syscall"
	"time"

	"github.com/vantage-edge/vantage/internal/testnet"
	"github.com/vantage-edge/vantage/testbed"
)

// Probing parameters. Every contender gets the same window and, where it has one, the same concurrency.
const (
	// wanPoP is the PoP namespace the WAN contenders run in: its targets lie 0.5 ms (db in Frankfurt) to
	// ~250 ms away.
	wanPoP = "FRA"
	// wanConc is the probes in flight on the WAN: with RTTs of up to 250 ms, fewer would bound the rate by
	// latency, not by the prober.
	wanConc = 1024
	// wanConcHigh is a second WAN level: the rate of each contender is its best of the two.
	wanConcHigh = 4096
	// wanAccConc is the probes in flight of the WAN's accuracy round: a light load (~250 probes/s).
	wanAccConc = 32
	// acceptors is the number of goroutines accepting on the loopback listener: one would bound the rate.
	acceptors = 4
	// loopConc is the probes in flight on loopback, where every probe is CPU work: enough to keep 2 cores busy.
	loopConc = 64
	// blackboxConfig is the exporter's module, as its documentation's tcp_connect example.
	blackboxConfig = "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n"
)

// env is where one round of the comparison runs: loopback on the host, or the emulated WAN from a PoP.
type env struct {
	name    string
	command func(ctx context.Context, name string, args ...string) *exec.Cmd
	tcp     []string           // TCP targets, host:port
	icmp    []string           // ICMP targets, IPs
	truth   map[string]float64 // target (host:port or IP) -> emulated RTT in ms; nil on loopback
	conc    int
	window  time.Duration
	// accConc, when > 0, adds an accuracy round for the TCP probers at this many probes in flight: the same
	// light load for both, so that RTT errors compare the probers, not how each copes with saturation.
	accConc  int
	moreConc []int // further saturation levels for Vantage and blackbox_exporter (each contender's best counts)
	rounds   int   // alternating rounds of window each for Vantage and blackbox_exporter
}

// contender is one row of the comparison.
type contender struct {
	name, kind string
	where      string // the env's name
	probes, ok int
	wall, cpu  float64              // seconds
	errs       []float64            // measured - truth, ms, every answered probe
	perTarget  map[string][]float64 // the same by target
	conc       int                  // probes in flight when it differs from the env's
	rounds     []float64            // probes/s of each round
	driverCPU  float64              // blackbox_exporter: CPU seconds of its HTTP driver (Prometheus's part), not counted in cpu
	note       string
	failed     string
}

func (c contender) rate() float64 { return float64(c.probes) / c.wall }

func (c contender) cpuPer1000() float64 { return c.cpu / float64(c.probes) * 1000 }

func probingSection(ctx context.Context, o *options) *Section {
	s := &Section{Title: "Probing: Vantage's prober against blackbox_exporter, fping, hping3",
		Intro: "Each contender runs as a process of its own, against the same targets (Vantage and blackbox_exporter in " +
			"alternating rounds of the same window at the same probes in flight; fping and hping3 after them), first on loopback, then on the emulated WAN from the " + wanPoP + " PoP's namespace (`ip netns exec`: " +
			"the testbed's router runs in the harness process and is counted against nobody). Vantage's prober and the " +
			"blackbox_exporter driver are the harness re-executed as a worker (`" + workerArg + "`) with the same number of " +
			"probes in flight; blackbox_exporter " + blackboxVersion(ctx) + " is driven through `/probe?module=tcp_connect&target=...` as " +
			"Prometheus does, and its RTT is `probe_duration_seconds`. CPU is user+system CPU of the probing process only: " +
			"Vantage's worker (getrusage over its window), blackbox_exporter (/proc/<pid>/stat over the window; the HTTP " +
			"driver, playing Prometheus, is not counted), fping and hping3 (rusage of the exited process). RTT error = " +
			"measured - the emulator's RTT for the pair (testbed.RTT), over every answered probe; at 1,024 and " +
			"4,096 in flight it includes each prober's own queueing at saturation, so accuracy is compared in the light " +
			"round (32 in flight, both probers at the same time). See bench/peers.md."}
	exe, err := os.Executable()
	if err != nil {
		s.Skipped = "cannot find the harness's own binary: " + err.Error()
		return s
	}
	window, rounds := 4*time.Second, 3
	if o.quick {
		window, rounds = 3*time.Second, 1
	}
	rate := &Table{Caption: "Probe rate and CPU (the figures this section is about):",
		Header: []string{"where", "contender", "probe", "in flight", "probes", "answered", "probes/s (this machine)", "CPU s per 1,000 probes", "RTT error median", "RTT error p99 (abs)"}}
	s.Tables = append(s.Tables, rate)
	var all [][]contender

	// Loopback.
	ln, err := acceptCloser()
	if err != nil {
		s.Notes = append(s.Notes, "loopback: "+err.Error())
	} else {
		defer ln.Close()
		lo := &env{name: "loopback", command: exec.CommandContext, tcp: []string{ln.Addr().String()},
			icmp: []string{"127.0.0.1"}, conc: loopConc, window: window, rounds: rounds}
		cs := runEnv(ctx, o, exe, lo)
		all = append(all, cs)
		addRows(rate, lo, cs)
	}

	// The emulated WAN.
	if os.Geteuid() != 0 {
		msg := "**The emulated WAN part was skipped: it needs root (network namespaces, /dev/net/tun).**"
		s.Notes, s.Headline = append(s.Notes, msg), append(s.Headline, msg)
	} else if wan, stop, err := startWAN(ctx, o, window, rounds); err != nil {
		s.Notes = append(s.Notes, "emulated WAN: "+err.Error())
	} else {
		cs := runEnv(ctx, o, exe, wan)
		stop()
		all = append(all, cs)
		addRows(rate, wan, cs)
		s.Tables = append(s.Tables, perTargetTable(wan, cs))
	}
	s.Headline = verdict(all)
	s.Notes = append(s.Notes, s.Headline...)
	for _, cs := range all {
		for _, c := range cs {
			if c.failed != "" {
				s.Notes = append(s.Notes, fmt.Sprintf("%s failed: %s", c.name, c.failed))
			}
			if c.note != "" {
				s.Notes = append(s.Notes, c.where+", "+c.name+": "+c.note)
			}
			if c.driverCPU > 0 {
				s.Notes = append(s.Notes, fmt.Sprintf("%s, %s (%d in flight): its HTTP driver (Prometheus's part, same machine, not counted above) used %s CPU s per 1,000 probes.",
					c.where, c.name, c.conc, num(c.driverCPU/float64(c.probes)*1000, 3)))
			}
			if len(c.rounds) > 1 {
				rs := make([]string, len(c.rounds))
				for i, r := range c.rounds {
					rs[i] = num(r, 0)
				}
				in := c.conc
				s.Notes = append(s.Notes, fmt.Sprintf("%s, %s (%d in flight): probes/s per round %s", c.where, c.name, in, strings.Join(rs, ", ")))
			}
		}
	}
	s.Commands = append(s.Commands, "go run ./bench -only=probing"+map[bool]string{true: " -quick"}[o.quick],
		fmt.Sprintf("%s %s vantage -targets T -conc N -dur %s [-rtts]   (inside the PoP's namespace: ip netns exec NS ...)", "bench", workerArg, window),
		"prometheus-blackbox-exporter --config.file=blackbox.yml --web.listen-address=127.0.0.1:PORT --log.level=warn",
		fmt.Sprintf("%s %s blackbox -url http://127.0.0.1:PORT -targets T -conc N -dur %s [-rtts]", "bench", workerArg, window),
		fmt.Sprintf("%s %s exporter -config blackbox.yml -listen 127.0.0.1:PORT   (vantage exporter, loopback only; driven as blackbox_exporter is)", "bench", workerArg),
		"fping -C COUNT -q -p PERIOD_MS -i 0 -t 2000 IP...",
		"hping3 -S -p PORT -c COUNT -i uINTERVAL IP   (one per TCP target, all at once)")
	return s
}

// verdict compares Vantage's TCP prober with blackbox_exporter in each environment: rate and CPU at
// saturation, accuracy from the light round when there is one.
func verdict(all [][]contender) []string {
	var out []string
	for _, cs := range all {
		by := map[string]*contender{} // per kind, the fastest level
		for i := range cs {
			if c := &cs[i]; c.failed == "" && c.probes > 0 && (by[c.kind] == nil || c.rate() > by[c.kind].rate()) {
				by[c.kind] = c
			}
		}
		v, bb := by["vantage"], by["blackbox"]
		if v == nil || bb == nil {
			continue
		}
		ratio := v.rate() / bb.rate()
		met := "**met**"
		if ratio < 5 {
			met = "**not met**"
		}
		acc := ""
		av, ab, load := v, bb, "at saturation"
		if by["vantage-light"] != nil && by["blackbox-light"] != nil {
			av, ab = by["vantage-light"], by["blackbox-light"]
			load = fmt.Sprintf("at %d in flight each", av.conc)
		}
		if len(av.errs) > 0 && len(ab.errs) > 0 {
			vm, bm := Percentile(abs(av.errs), 0.5), Percentile(abs(ab.errs), 0.5)
			vp, bp := Percentile(abs(av.errs), 0.99), Percentile(abs(ab.errs), 0.99)
			better := "equal or better"
			if vm > bm*1.05+0.05 || vp > bp*1.05+0.05 {
				better = "worse"
			}
			acc = fmt.Sprintf(" Accuracy %s: median |error| %s ms (Vantage) vs %s ms (blackbox_exporter), p99 |error| %s ms vs %s ms: %s.",
				load, num(vm, 3), num(bm, 3), num(vp, 3), num(bp, 3), better)
		}
		out = append(out, fmt.Sprintf("**%s: Vantage %s probes/s (%d in flight) vs blackbox_exporter %s probes/s (its best level, %d in flight) = %.1fx** (goal >= 5x: %s); CPU per probe %.1fx lower.%s",
			cs[0].where, num(v.rate(), 0), v.conc, num(bb.rate(), 0), bb.conc, ratio, met, bb.cpuPer1000()/v.cpuPer1000(), acc))
	}
	return out
}

// perTargetTable lists, per WAN target, the emulated truth and each contender's median and p99 error.
func perTargetTable(e *env, cs []contender) *Table {
	t := &Table{Caption: "RTT error by target on the WAN (ms: median of measured - truth / p99 of |measured - truth|); truth = testbed.RTT from " + wanPoP + ":",
		Header: []string{"target", "truth ms"}}
	var with []contender
	for _, c := range cs {
		if len(c.errs) > 0 {
			with = append(with, c)
			label := c.name
			if c.conc > 0 {
				label += fmt.Sprintf(" (%d in flight)", c.conc)
			} else if c.kind == "vantage" || c.kind == "blackbox" {
				label += fmt.Sprintf(" (%d in flight)", e.conc)
			}
			t.Header = append(t.Header, label)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.truth)) {
		row := []any{k, num(e.truth[k], 2)}
		for _, c := range with {
			if errs := c.perTarget[k]; len(errs) > 0 {
				row = append(row, num(Percentile(errs, 0.5), 2)+" / "+num(Percentile(abs(errs), 0.99), 2))
			} else {
				row = append(row, "")
			}
		}
		t.Add(row...)
	}
	return t
}

func addRows(t *Table, e *env, cs []contender) {
	for _, c := range cs {
		if c.failed != "" {
			t.Add(e.name, c.name, c.kind, "", "", "", "failed", "", "", "")
			continue
		}
		med, p99 := "—", "—"
		if len(c.errs) > 0 {
			med = num(Percentile(c.errs, 0.5), 3) + " ms"
			p99 = num(Percentile(abs(c.errs), 0.99), 3) + " ms"
		}
		inflight := strconv.Itoa(e.conc)
		if c.conc > 0 {
			inflight = strconv.Itoa(c.conc)
		}
		if c.kind == "fping" || c.kind == "hping3" {
			inflight = "—"
		}
		t.Add(e.name, c.name, c.kind, inflight, num(float64(c.probes), 0), num(float64(c.ok), 0), num(c.rate(), 0), num(c.cpuPer1000(), 3), med, p99)
	}
}

// runEnv runs every contender in e, one after the other.
func runEnv(ctx context.Context, o *options, exe string, e *env) []contender {
	o.log.Info("bench: probing", "env", e.name)
	var cs []contender
	for _, conc := range append([]int{e.conc}, e.moreConc...) {
		level := *e
		level.conc = conc
		v, b := runPair(ctx, exe, &level, e.rounds)
		v.conc, b.conc = conc, conc
		cs = append(cs, v, b)
	}
	if e.accConc > 0 {
		light := *e
		light.conc, light.accConc, light.window = e.accConc, 0, e.window*time.Duration(e.rounds)
		v, b := runTogether(ctx, exe, &light)
		v.kind, b.kind = "vantage-light", "blackbox-light"
		v.conc, b.conc = light.conc, light.conc
		cs = append(cs, v, b)
	}
	if e.name == "loopback" {
		cs = append(cs, runVantageExporter(ctx, exe, e))
	}
	cs = append(cs, runFping(ctx, e))
	cs = append(cs, runHping(ctx, e))
	for i := range cs {
		cs[i].where = e.name
	}
	for _, c := range cs {
		o.log.Info("bench: contender", "env", e.name, "name", c.name, "probes", c.probes, "ok", c.ok, "rate", int(c.rate()), "cpu", c.cpu, "failed", c.failed)
	}
	return cs
}

func (e *env) workerArgs(kind string) []string {
	args := []string{workerArg, kind, "-targets", strings.Join(e.tcp, ","), "-conc", strconv.Itoa(e.conc), "-dur", e.window.String()}
	if e.truth != nil {
		args = append(args, "-rtts")
	}
	return args
}

// worker runs the harness as a worker and decodes its result.
func (e *env) worker(ctx context.Context, exe string, args ...string) (WorkerResult, error) {
	cmd := e.command(ctx, exe, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return WorkerResult{}, fmt.Errorf("worker %s: %w: %s", args[1], err, tail(errb.String(), 5))
	}
	var r WorkerResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("worker %s: output: %w", args[1], err)
	}
	return r, nil
}

func (e *env) errors(rtts map[string][]float64) ([]float64, map[string][]float64) {
	if e.truth == nil {
		return nil, nil
	}
	var errs []float64
	per := map[string][]float64{}
	for t, ms := range rtts {
		truth, ok := e.truth[t]
		if !ok {
			continue
		}
		for _, m := range ms {
			errs = append(errs, m-truth)
			per[t] = append(per[t], m-truth)
		}
	}
	return errs, per
}

func fromWorker(name, kind string, r WorkerResult, e *env) contender {
	c := contender{name: name, kind: kind, probes: r.Probes, ok: r.OK, wall: r.Wall, cpu: r.CPU}
	c.errs, c.perTarget = e.errors(r.RTTms)
	if len(r.Errors) > 0 {
		c.note = fmt.Sprintf("failures %v", r.Errors)
	}
	return c
}

func runVantage(ctx context.Context, exe string, e *env) contender {
	r, err := e.worker(ctx, exe, e.workerArgs("vantage")...)
	if err != nil {
		return contender{name: "Vantage prober", kind: "vantage", failed: err.Error()}
	}
	return fromWorker("Vantage prober", "vantage", r, e)
}

// exporter is a blackbox_exporter process (or `vantage exporter`, the harness re-executed as
// "__worker exporter", when name says so) started for a round of probes.
type exporter struct {
	name   string // "blackbox_exporter" or "vantage exporter"
	kind   string // "blackbox" or "vantage-exporter"
	addr   string
	cmd    *exec.Cmd
	log    bytes.Buffer
	dir    string
	cancel context.CancelFunc
}

// startExporter runs blackbox_exporter in e (on the host, or inside the PoP's namespace) with its own
// config file on a loopback port.
func startExporter(ctx context.Context, e *env) (*exporter, error) {
	bin, err := exec.LookPath("prometheus-blackbox-exporter")
	if err != nil {
		if bin, err = exec.LookPath("blackbox_exporter"); err != nil {
			return nil, fmt.Errorf("not installed (apt-get install prometheus-blackbox-exporter)")
		}
	}
	return startExporterBin(ctx, e, &exporter{name: "blackbox_exporter", kind: "blackbox"}, bin)
}

// startExporterBin starts x: bin with blackbox_exporter's flags, or, when bin is empty, `vantage exporter`
// (the harness, exe, re-executed) with the same configuration file.
func startExporterBin(ctx context.Context, e *env, x *exporter, bin string, exe ...string) (*exporter, error) {
	var err error
	if x.dir, err = os.MkdirTemp("", "bench-blackbox-"); err != nil {
		return nil, err
	}
	cfg := filepath.Join(x.dir, "blackbox.yml")
	if err := os.WriteFile(cfg, []byte(blackboxConfig), 0o644); err != nil {
		os.RemoveAll(x.dir)
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(x.dir)
		return nil, err
	}
	x.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	bctx, cancel := context.WithCancel(ctx)
	x.cancel = cancel
	if bin != "" {
		x.cmd = e.command(bctx, bin, "--config.file="+cfg, "--web.listen-address="+x.addr, "--log.level=warn")
	} else {
		x.cmd = e.command(bctx, exe[0], workerArg, "exporter", "-config", cfg, "-listen", x.addr)
	}
	x.cmd.Stdout, x.cmd.Stderr = &x.log, &x.log
	if err := x.cmd.Start(); err != nil {
		cancel()
		os.RemoveAll(x.dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return x, nil
}

func (x *exporter) stop() {
	x.cancel()
	x.cmd.Wait()
	os.RemoveAll(x.dir)
}

// round drives the exporter for one window; its CPU is read from /proc before and after (`ip netns exec`
// execs the program in place: the pid is the exporter's).
func (x *exporter) round(ctx context.Context, exe string, e *env) contender {
	c := contender{name: x.name, kind: x.kind}
	cpu0, err := procCPU(x.cmd.Process.Pid)
	if err != nil {
		c.failed = err.Error()
		return c
	}
	args := append(e.workerArgs("blackbox"), "-url", "http://"+x.addr)
	r, err := e.worker(ctx, exe, args...)
	if err != nil {
		c.failed = err.Error() + " " + tail(x.log.String(), 3)
		return c
	}
	cpu1, err := procCPU(x.cmd.Process.Pid)
	if err != nil {
		c.failed = err.Error()
		return c
	}
	c = fromWorker(x.name, x.kind, r, e)
	c.cpu, c.driverCPU = (cpu1 - cpu0).Seconds(), r.CPU
	return c
}

// runVantageExporter drives `vantage exporter` through /probe exactly as blackbox_exporter is driven (same
// configuration, driver, targets and probes in flight), for one window per round.
func runVantageExporter(ctx context.Context, exe string, e *env) contender {
	x, err := startExporterBin(ctx, e, &exporter{name: "vantage exporter", kind: "vantage-exporter"}, "", exe)
	if err != nil {
		return contender{name: "vantage exporter", kind: "vantage-exporter", failed: err.Error()}
	}
	defer x.stop()
	var c contender
	for range e.rounds {
		c = merge(c, x.round(ctx, exe, e))
	}
	c.conc = e.conc
	return c
}

// merge adds round b to the contender a.
func merge(a, b contender) contender {
	if a.name == "" {
		a = contender{name: b.name, kind: b.kind, perTarget: map[string][]float64{}}
	}
	if b.failed != "" {
		a.failed = b.failed
		return a
	}
	a.probes += b.probes
	a.ok += b.ok
	a.wall += b.wall
	a.cpu += b.cpu
	a.driverCPU += b.driverCPU
	a.errs = append(a.errs, b.errs...)
	if a.perTarget == nil {
		a.perTarget = map[string][]float64{}
	}
	for t, xs := range b.perTarget {
		a.perTarget[t] = append(a.perTarget[t], xs...)
	}
	if b.note != "" {
		a.note = b.note
	}
	a.rounds = append(a.rounds, b.rate())
	return a
}

// runTogether runs Vantage's prober and blackbox_exporter at the same time for one window (the light
// accuracy round: at a light load they hardly disturb each other, and a hiccup of the emulator falls on both).
func runTogether(ctx context.Context, exe string, e *env) (v, b contender) {
	x, err := startExporter(ctx, e)
	if err != nil {
		return runVantage(ctx, exe, e), contender{name: "blackbox_exporter", kind: "blackbox", failed: err.Error()}
	}
	defer x.stop()
	time.Sleep(300 * time.Millisecond)
	done := make(chan struct{})
	go func() { defer close(done); b = merge(b, x.round(ctx, exe, e)) }()
	v = merge(v, runVantage(ctx, exe, e))
	<-done
	return v, b
}

// runPair runs Vantage's prober and blackbox_exporter in alternating rounds (V, B, V, B, ...) so that a
// change in the machine's load falls on both.
func runPair(ctx context.Context, exe string, e *env, rounds int) (v, b contender) {
	x, err := startExporter(ctx, e)
	if err != nil {
		b = contender{name: "blackbox_exporter", kind: "blackbox", failed: err.Error()}
	} else {
		defer x.stop()
		time.Sleep(300 * time.Millisecond) // its start-up CPU is not the probes'
	}
	for range rounds {
		v = merge(v, runVantage(ctx, exe, e))
		if x != nil {
			b = merge(b, x.round(ctx, exe, e))
		}
	}
	return v, b
}

// runFping sends ICMP echoes to the env's ICMP targets for about the window.
func runFping(ctx context.Context, e *env) contender {
	c := contender{name: "fping (ICMP echo)", kind: "fping"}
	if _, err := exec.LookPath("fping"); err != nil {
		c.failed = "not installed (apt-get install fping)"
		return c
	}
	// One echo per target every period: on loopback as fast as fping goes, on the WAN 1 ms per target.
	period, count := 0, 20000
	if e.truth != nil {
		period, count = 1, int(e.window.Milliseconds())
	}
	args := []string{"-C", strconv.Itoa(count), "-q", "-p", strconv.Itoa(period), "-i", "0", "-t", "2000"}
	args = append(args, e.icmp...)
	cmd := e.command(ctx, "fping", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	c.wall = time.Since(t0).Seconds()
	if cmd.ProcessState == nil {
		c.failed = fmt.Sprintf("fping: %v", err)
		return c
	}
	// fping exits 1 when some echo was lost: still a result.
	rtts, sent := ParseFping(out.String())
	c.probes, c.cpu = sent, rusageCPU(cmd.ProcessState).Seconds()
	for _, ms := range rtts {
		c.ok += len(ms)
	}
	c.errs, c.perTarget = e.errors(rtts)
	if sent == 0 {
		c.failed = fmt.Sprintf("fping: %v: %s", err, tail(out.String(), 3))
	}
	c.note = fmt.Sprintf("%d echoes per target, period %d ms; its wall time includes the final wait for late replies", count, period)
	return c
}

// runHping sends TCP SYNs to every TCP target at once (one hping3 per target).
func runHping(ctx context.Context, e *env) contender {
	c := contender{name: "hping3 -S (TCP SYN)", kind: "hping3"}
	if _, err := exec.LookPath("hping3"); err != nil {
		c.failed = "not installed (apt-get install hping3)"
		return c
	}
	intervalUs, count := 100, int(e.window/(100*time.Microsecond))
	if e.truth != nil {
		intervalUs, count = 1000, int(e.window.Milliseconds())
	}
	type run struct {
		cmd    *exec.Cmd
		out    bytes.Buffer
		target string
	}
	var runs []*run
	t0 := time.Now()
	for _, t := range e.tcp {
		host, port, _ := net.SplitHostPort(t)
		r := &run{target: t}
		r.cmd = e.command(ctx, "hping3", "-S", "-p", port, "-c", strconv.Itoa(count), "-i", "u"+strconv.Itoa(intervalUs), host)
		r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
		if err := r.cmd.Start(); err != nil {
			c.failed = err.Error()
			return c
		}
		runs = append(runs, r)
	}
	rtts := map[string][]float64{}
	for _, r := range runs {
		r.cmd.Wait() // hping3 exits 1 when replies were lost: still a result
		ms, sent := ParseHping(r.out.String())
		c.probes += sent
		c.ok += len(ms)
		rtts[r.target] = ms
		if r.cmd.ProcessState != nil {
			c.cpu += rusageCPU(r.cmd.ProcessState).Seconds()
		}
	}
	c.wall = time.Since(t0).Seconds()
	c.errs, c.perTarget = e.errors(rtts)
	if c.probes == 0 {
		c.failed = "hping3 reported nothing: " + tail(runs[0].out.String(), 3)
	}
	c.note = fmt.Sprintf("%d SYNs per target at -i u%d (hping3 times with 0.1 ms resolution)", count, intervalUs)
	return c
}

var (
	hpingRTT  = regexp.MustCompile(`flags=\S*S\S*A\S* .*rtt=([\d.]+) ms`)
	hpingSent = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)
)

// ParseHping returns the RTTs (ms) of hping3's SYN-ACK replies and how many packets it sent.
func ParseHping(out string) (rtts []float64, sent int) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if m := hpingRTT.FindStringSubmatch(l); m != nil {
			if v, err := strconv.ParseFloat(m[1], 64); err == nil {
				rtts = append(rtts, v)
			}
		} else if m := hpingSent.FindStringSubmatch(l); m != nil {
			sent, _ = strconv.Atoi(m[1])
		}
	}
	return rtts, sent
}

// ParseFping reads fping -C -q output ("198.18.0.5 : 0.52 0.49 - 0.51"): the answered RTTs (ms) per target
// and how many echoes were sent in all ("-" is a lost one).
func ParseFping(out string) (rtts map[string][]float64, sent int) {
	rtts = map[string][]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		target, rest, ok := strings.Cut(sc.Text(), " : ")
		if !ok {
			continue
		}
		target = strings.TrimSpace(target)
		for _, f := range strings.Fields(rest) {
			if f == "-" {
				sent++
				continue
			}
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				continue
			}
			sent++
			rtts[target] = append(rtts[target], v)
		}
	}
	return rtts, sent
}

// startWAN starts the default emulated WAN and returns the env of its wanPoP, and a func that stops it.
func startWAN(ctx context.Context, o *options, window time.Duration, rounds int) (*env, func(), error) {
	spec := testbed.DefaultSpec()
	tb, err := testbed.Start(ctx, spec, testbed.Options{Logger: quiet(o), Nice: -10})
	if err != nil {
		return nil, nil, fmt.Errorf("testbed: %w", err)
	}
	pop := tb.Node(wanPoP)
	e := &env{name: "WAN from " + wanPoP, command: pop.Command, truth: map[string]float64{}, conc: wanConc, window: window, accConc: wanAccConc, moreConc: []int{wanConcHigh}, rounds: rounds}
	for _, h := range spec.Hosts {
		n := tb.Node(h.Name)
		if n == nil {
			continue
		}
		rtt, err := tb.RTT(wanPoP, h.Name)
		if err != nil {
			tb.Close()
			return nil, nil, err
		}
		ms := float64(rtt) / 1e6
		if len(h.TCP) > 0 {
			t := netip.AddrPortFrom(n.Addr(), uint16(h.TCP[0])).String()
			e.tcp = append(e.tcp, t)
			e.truth[t] = ms
		}
		if (h.ICMP == nil || *h.ICMP) && len(h.TCP) > 0 {
			e.icmp = append(e.icmp, n.Addr().String())
			e.truth[n.Addr().String()] = ms
		}
	}
	if len(e.tcp) == 0 {
		tb.Close()
		return nil, nil, fmt.Errorf("testbed: the default spec has no TCP host")
	}
	return e, func() { tb.Close() }, nil
}

// acceptCloser listens on loopback and closes every connection at once (a TCP service for the probes).
func acceptCloser() (net.Listener, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	// A graceful close (FIN), as real services and the testbed's listeners do: an RST racing the handshake
	// makes Go's dialer (blackbox_exporter's) report "connection reset by peer".
	for range acceptors {
		go testnet.AcceptAndClose(ln)
	}
	return ln, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// procCPU returns the user+system CPU time of process pid (/proc/<pid>/stat, clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a /proc/<pid>/stat line.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %q: no ')'", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the name", len(f))
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc stat: utime %q stime %q", f[11], f[12])
	}
	const tick = 10 * time.Millisecond // sysconf(_SC_CLK_TCK) = 100 on Linux
	return time.Duration(ut+st) * tick, nil
}

func rusageCPU(ps *os.ProcessState) time.Duration {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return ps.UserTime() + ps.SystemTime()
}

func blackboxVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "prometheus-blackbox-exporter", "--version").CombinedOutput()
	if err != nil {
		return "(not installed)"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return strings.TrimSuffix(f[2], ",")
	}
	return ""
}

func abs(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = math.Abs(x)
	}
	return out
}
