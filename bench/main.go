// Command bench runs Vantage's side-by-side benchmarks (prober against blackbox_exporter, fping and hping3;
// engine; router; fleet; the emulated WAN's fidelity) in one run and writes bench/RESULTS.md; `bench scale`
// is the fleet's scale run (bench/FLEET.md).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sections of a run, in order (-only picks some).
var sectionNames = []string{"probing", "engine", "router", "front", "fleet", "fidelity"}

// options are the command line of a run.
type options struct {
	quick bool
	only  map[string]bool
	out   string
	root  string // module root
	log   *slog.Logger
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerArg {
		if err := runWorker(context.Background(), os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == scaleArg {
		if err := runScale(ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "a subset of about 2 minutes (shorter windows, fewer repetitions)")
	only := fs.String("only", strings.Join(sectionNames, ","), "comma-separated sections to run: "+strings.Join(sectionNames, ","))
	out := fs.String("out", "", "markdown file to write (default bench/RESULTS.md in the module root)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	o := &options{quick: *quick, only: map[string]bool{}, out: *out, root: root,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	for _, n := range strings.Split(*only, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !contains(sectionNames, n) {
			return fmt.Errorf("bench: -only: unknown section %q (want some of %s)", n, strings.Join(sectionNames, ","))
		}
		o.only[n] = true
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "RESULTS.md")
	}
	cmdline := "go run ./bench"
	if len(args) > 0 {
		cmdline += " " + shellJoin(args)
	}
	r := &Report{Started: time.Now(), Command: cmdline, Machine: machine(ctx)}
	load0 := loadAvg()
	sections := map[string]func(context.Context, *options) *Section{
		"probing": probingSection, "engine": engineSection, "router": routerSection, "front": frontSection, "fleet": fleetSection,
		"fidelity": fidelitySection,
	}
	for _, n := range sectionNames {
		if !o.only[n] {
			continue
		}
		t0 := time.Now()
		o.log.Info("bench: section started", "section", n)
		s := sections[n](ctx, o)
		s.Notes = append(s.Notes, fmt.Sprintf("_Section time: %s; load average after it: %s._", time.Since(t0).Round(time.Second), loadAvg()))
		r.Sections = append(r.Sections, s)
		o.log.Info("bench: section done", "section", n, "took", time.Since(t0).Round(time.Second))
		if ctx.Err() != nil {
			return fmt.Errorf("bench: interrupted: %w", ctx.Err())
		}
	}
	r.Elapsed = time.Since(r.Started)
	r.Machine.LoadAvg = load0 + " / " + loadAvg()
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench: write -out %s: %w", o.out, err)
	}
	o.log.Info("bench: written", "file", o.out, "took", r.Elapsed.Round(time.Second))
	return nil
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("bench: working directory: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("bench: no go.mod above %s: run from the Vantage checkout", dir)
		}
	}
}

// machine reads what the report says about this machine.
func machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Model: "unknown", Kernel: "unknown", Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = kb / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.Go = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// errSkip marks a part that cannot run here (not root, a peer not installed).
var errSkip = errors.New("skipped")
