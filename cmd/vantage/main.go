// Command vantage decides where edge compute should run: it probes back ends from every PoP, triangulates them,
// and routes requests to the PoP nearest the back end. Each job is a subcommand; "vantage help" lists them.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// command is one subcommand. Each lives in its own file and registers itself from an init function.
type command struct {
	name    string
	summary string // one line for "vantage help"
	// run executes the subcommand with the arguments after its name. It returns errUsage (possibly wrapped)
	// for bad flags or arguments, which exits 2; any other error exits 1.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// register adds c to the subcommands; a duplicate name is a programming error.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("vantage: duplicate subcommand " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error as a usage error (exit status 2).
var errUsage = errors.New("usage")

// exitError carries a specific exit status without another message (the command printed its own).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return exitCode(c.run(ctx, []string{"-h"}, stdout, stderr), stderr)
			}
		}
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "vantage: unknown command %q; run 'vantage help' for the list\n", args[0])
		return 2
	}
	return exitCode(c.run(ctx, args[1:], stdout, stderr), stderr)
}

func exitCode(err error, stderr io.Writer) int {
	var ee exitError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "vantage: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "vantage: %v\n", err)
		return 1
	}
}

// usage prints every subcommand with its summary.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vantage <command> [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, n := range slices.Sorted(maps.Keys(commands)) {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'vantage help <command>' for a command's flags. Flags may come before or after the")
	fmt.Fprintln(w, "arguments; \"--\" ends them.")
}

// newFlagSet returns a FlagSet for a subcommand that reports errors instead of exiting and prints its usage
// to stderr.
func newFlagSet(name, argsUsage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("vantage "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: vantage %s [flags] %s\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs, with flags before, between or after the positional arguments, for every
// subcommand: `vantage pop list --redis ADDR` and `vantage pop --redis ADDR list` are the same. "--" ends the
// flags; everything after it is positional. Afterwards fs.Args() holds the positional arguments in order (a
// subcommand that takes none refuses them itself). Parse failures are usage errors; -h and --help return
// flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	flags, pos := splitArgs(fs, args)
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	// A leading "--" leaves exactly pos in fs.Args(); the flags parsed above keep their values.
	if err := fs.Parse(append([]string{"--"}, pos...)); err != nil {
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	return nil
}

// splitArgs separates args into flags (each with its value when the flag takes one as the next argument) and
// positional arguments, by the flag package's syntax: -name, --name, -name=value, --name=value, or -name value
// for a flag of fs that is not boolean. "-" alone is positional; "--" ends the flags. Unknown or malformed
// flags go to flags as they are, for fs.Parse to report.
func splitArgs(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(pos, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(a[1:], "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil || isBoolFlag(f) || i+1 == len(args) {
			continue
		}
		i++
		flags = append(flags, args[i])
	}
	return flags, pos
}

// isBoolFlag reports whether f takes no value (the flag package's own test).
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// envFlag is a string flag whose default is read from an environment variable after parsing, so that help
// output shows "(default $NAME)" and never the variable's value: a token in the environment must not be
// printed by --help. Build one with envStringVar.
type envFlag struct {
	env, fallback string
	value         string
	set           bool
}

// envStringVar registers the string flag name on fs: its value is the flag's when given, else $env when set
// and not empty, else fallback. usage gets "(default $env[, else fallback])" appended.
func envStringVar(fs *flag.FlagSet, name, env, fallback, usage string) *envFlag {
	f := &envFlag{env: env, fallback: fallback}
	def := "$" + env
	if fallback != "" {
		def += ", else " + fallback
	}
	fs.Var(f, name, usage+" (default "+def+")")
	return f
}

// String is empty whatever the value, so the flag package never prints a default of its own.
func (f *envFlag) String() string { return "" }

func (f *envFlag) Set(s string) error {
	f.value, f.set = s, true
	return nil
}

// get returns the flag's value, else the environment's, else the fallback.
func (f *envFlag) get() string {
	if f.set {
		return f.value
	}
	return cmp.Or(os.Getenv(f.env), f.fallback)
}
