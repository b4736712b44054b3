package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vantage-edge/vantage/testbed"
)

func init() {
	register(command{name: "testbed", summary: "run the emulated WAN: up, exec, down, list", run: runTestbed})
}

// testbedNice is the nice value `testbed up` gives its threads (the router's runs at real-time priority): on a
// shared machine it keeps the router's process from being starved (see testbed.Options.Nice).
const testbedNice = -10

const testbedUsage = `usage: vantage testbed <subcommand> [flags] [args]

subcommands:
  up [--spec FILE]                       start a testbed (default: the shipped spec), print its nodes and the
                                         RTT matrix it emulates, run until SIGINT/SIGTERM, then tear it down
  exec [--testbed NAME] NODE -- CMD...   run CMD inside NODE's namespace of a running testbed
  down [--stale] [NAME]                  remove every testbed, or the one NAME ("vt3", "3" or the spec name);
                                         a live one is stopped with SIGTERM first unless --stale
  list                                   show the testbeds on this machine
`

func runTestbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, testbedUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: testbed: a subcommand is needed", errUsage)
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "up":
		return runTestbedUp(ctx, args[1:], stdout, stderr)
	case "exec":
		return runTestbedExec(ctx, args[1:], stdout, stderr)
	case "down":
		return runTestbedDown(ctx, args[1:], stdout, stderr)
	case "list":
		return runTestbedList(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, testbedUsage)
	return fmt.Errorf("%w: testbed: unknown subcommand %q", errUsage, args[0])
}

func runTestbedUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("testbed up", "", stderr)
	specPath := fs.String("spec", "", "topology spec, .yaml/.yml or .json (default: the shipped default spec)")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: testbed up: unexpected arguments %q", errUsage, fs.Args())
	}
	spec := testbed.DefaultSpec()
	if *specPath != "" {
		var err error
		if spec, err = testbed.LoadSpec(*specPath); err != nil {
			return err
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	tb, err := testbed.Start(ctx, spec, testbed.Options{Logger: log, Nice: testbedNice})
	if err != nil {
		return err
	}
	defer tb.Close()
	printTestbed(stdout, tb)
	fmt.Fprintf(stdout, "testbed %s up (%d nodes, %v); run commands with: vantage testbed exec --testbed %s NODE -- CMD...\n",
		tb.Name(), len(tb.Nodes()), tb.Prefix(), tb.Name())
	<-ctx.Done()
	st := tb.Stats()
	fmt.Fprintf(stdout, "testbed %s stopping: %d packets forwarded, %d dropped outside the subnet, lateness mean %v max %v\n",
		tb.Name(), st.Forwarded, st.DroppedOutside, st.LateMean, st.LateMax)
	return tb.Close()
}

// printTestbed prints each node's address and the RTT matrix in milliseconds.
func printTestbed(w io.Writer, tb *testbed.Testbed) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tADDRESS\tNAMESPACE\tCITY\tLAT\tLON")
	for _, n := range tb.Nodes() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.4f\t%.4f\n", n.Name, n.Kind, n.Addr(), n.NS, n.City, n.Point.Lat, n.Point.Lon)
	}
	tw.Flush()
	for _, a := range tb.AnycastTargets() {
		names := make([]string, len(a.Instances))
		for i, n := range a.Instances {
			names[i] = n.Name
		}
		fmt.Fprintf(w, "anycast %s %v: %s\n", a.Name, a.Addr, strings.Join(names, " "))
	}
	if dns, ok := tb.DNSServer(); ok {
		fmt.Fprintf(w, "DNS server %v (zone %s)\n", dns, tb.Zone())
	}
	m := tb.RTTMatrix()
	fmt.Fprintln(w, "\nemulated RTT matrix (ms):")
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, n := range m.Names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintln(tw)
	for i, row := range m.RTT {
		fmt.Fprintf(tw, "%s\t", m.Names[i])
		for _, d := range row {
			fmt.Fprintf(tw, "%.1f\t", float64(d)/float64(time.Millisecond))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func runTestbedExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("testbed exec", "NODE -- CMD [ARGS...]", stderr)
	which := fs.String("testbed", "", "testbed name (vt<id>, id or spec name); needed when several run")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return fmt.Errorf("%w: testbed exec: want NODE -- CMD [ARGS...]", errUsage)
	}
	node, cmdArgs := rest[0], rest[1:]
	if cmdArgs[0] == "--" {
		cmdArgs = cmdArgs[1:]
	}
	if len(cmdArgs) == 0 {
		return fmt.Errorf("%w: testbed exec: no command after %s --", errUsage, node)
	}
	_, ns, err := testbed.FindNode(*which, node)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.NS}, cmdArgs...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitError{code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("testbed exec %s: %w", node, err)
	}
	return nil
}

func runTestbedDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("testbed down", "[NAME]", stderr)
	stale := fs.Bool("stale", false, "only remove dead testbeds' leftovers; leave running ones alone")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("%w: testbed down: at most one NAME, got %q", errUsage, fs.Args())
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	done, err := testbed.Down(ctx, fs.Arg(0), !*stale, log)
	if len(done) > 0 {
		fmt.Fprintf(stdout, "removed %s\n", strings.Join(done, " "))
	} else if err == nil {
		fmt.Fprintln(stdout, "no testbed to remove")
	}
	return err
}

func runTestbedList(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("testbed list", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: testbed list: unexpected arguments %q", errUsage, fs.Args())
	}
	states, err := testbed.States()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSPEC\tPREFIX\tPID\tNODES\tSTATE")
	for _, s := range states {
		state := "dead (leftovers; vantage testbed down)"
		if s.Live {
			state = "running since " + s.Started.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\n", s.Name, s.Spec, s.Prefix, s.PID, len(s.Nodes), state)
	}
	return tw.Flush()
}
