package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestHelpListsEverySubcommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &out, &errb); code != 0 {
		t.Fatalf("help exit %d, stderr %q", code, errb.String())
	}
	for name := range commands {
		if !strings.Contains(out.String(), "  "+name+" ") {
			t.Errorf("help does not list %q:\n%s", name, out.String())
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"nope"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), `unknown command "nope"`) {
		t.Errorf("stderr %q does not name the command", errb.String())
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		pos     []string
		count   int
		verbose bool
		token   string
		err     string // "" for none; "help" for flag.ErrHelp
	}{
		{name: "flags_first", args: []string{"--count", "5", "tcp", "h:1"}, pos: []string{"tcp", "h:1"}, count: 5},
		{name: "flags_last", args: []string{"tcp", "h:1", "--count=4"}, pos: []string{"tcp", "h:1"}, count: 4},
		{name: "flags_between", args: []string{"tcp", "-count", "2", "h:1", "h:2"}, pos: []string{"tcp", "h:1", "h:2"}, count: 2},
		{name: "bool_takes_no_value", args: []string{"-v", "list", "x"}, pos: []string{"list", "x"}, count: 3, verbose: true},
		{name: "bool_with_value", args: []string{"list", "--v=false"}, pos: []string{"list"}, count: 3},
		{name: "terminator", args: []string{"tcp", "--", "--count", "-v"}, pos: []string{"tcp", "--count", "-v"}, count: 3},
		{name: "terminator_first", args: []string{"--v", "--", "-x"}, pos: []string{"-x"}, count: 3, verbose: true},
		{name: "dash_is_positional", args: []string{"-", "--count", "1"}, pos: []string{"-"}, count: 1},
		{name: "double_dash_as_a_value", args: []string{"--token", "--", "a"}, pos: []string{"a"}, count: 3, token: "--"},
		{name: "no_args", count: 3},
		{name: "unknown_flag_after_positional", args: []string{"list", "--nope"}, err: "flag provided but not defined: -nope"},
		{name: "missing_value_at_end", args: []string{"list", "--count"}, err: "flag needs an argument: -count"},
		{name: "bad_value", args: []string{"list", "--count", "x"}, err: `invalid value "x" for flag -count`},
		{name: "help_after_positional", args: []string{"list", "-h"}, err: "help"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("test", "", io.Discard)
			count := fs.Int("count", 3, "")
			verbose := fs.Bool("v", false, "")
			token := fs.String("token", "", "")
			err := parseFlags(fs, tc.args)
			switch {
			case tc.err == "help":
				if !errors.Is(err, flag.ErrHelp) {
					t.Fatalf("err %v, want flag.ErrHelp", err)
				}
				return
			case tc.err != "":
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want a usage error containing %q", err, tc.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if !slices.Equal(fs.Args(), tc.pos) {
				t.Errorf("fs.Args() %q, want %q", fs.Args(), tc.pos)
			}
			if *count != tc.count || *verbose != tc.verbose || *token != tc.token {
				t.Errorf("count %d verbose %v token %q, want %d %v %q", *count, *verbose, *token, tc.count, tc.verbose, tc.token)
			}
		})
	}
}

// commandVerbs are the words a subcommand needs before its own flags (its sub-subcommand).
var commandVerbs = map[string][]string{"testbed": {"down"}, "pop": {"list"}}

// TestFlagsAfterArgumentsEverySubcommand asks every subcommand for help after a positional argument: each one
// parses flags wherever they stand, so it prints its usage instead of taking "--help" as an argument.
func TestFlagsAfterArgumentsEverySubcommand(t *testing.T) {
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			args := append(append([]string{name}, commandVerbs[name]...), "arg", "--help")
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 0 {
				t.Fatalf("%q: exit %d, want 0 (help)\nstderr:\n%s", args, code, errb.String())
			}
			if !strings.Contains(errb.String(), "usage: vantage "+name) {
				t.Errorf("%q: stderr lacks the usage of %s:\n%s", args, name, errb.String())
			}
		})
	}
}

// TestStrayArgumentsRefused: subcommands without positional arguments refuse them, wherever the flags stand.
func TestStrayArgumentsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"probed", "--pop", "FRA", "stray", "--redis", "127.0.0.1:1"},
		{"scheduler", "stray", "--redis", "127.0.0.1:1"},
		{"router", "--ingress", "FRA", "stray"},
		{"worker", "stray", "--pop", "FRA"},
		{"demo", "--once", "stray"},
		{"triangulate", "stray", "--in", "-"},
		{"version", "stray"},
		{"testbed", "list", "stray"},
		{"testbed", "up", "stray", "-v"},
		{"pop", "--redis", "127.0.0.1:1", "list", "stray"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2 (usage)\nstderr:\n%s", code, errb.String())
			}
			if !strings.Contains(errb.String(), "stray") && !strings.Contains(errb.String(), "takes no arguments") {
				t.Errorf("stderr does not name the stray argument:\n%s", errb.String())
			}
		})
	}
}

// TestNoEnvironmentValueInHelp: with secrets in every variable the commands read, no help output prints one;
// probe's help documents fleet probing and the variables it reads.
func TestNoEnvironmentValueInHelp(t *testing.T) {
	secrets := map[string]string{}
	for _, env := range []string{envToken, envScheduler, "VANTAGE_REDIS_PASSWORD"} {
		secrets[env] = "secret-of-" + env
		t.Setenv(env, secrets[env])
	}
	helps := [][]string{{"help"}, {"probe", "--fleet", "--help"}, {"probe", "tcp", "x", "--fleet", "-h"}}
	for name := range commands {
		helps = append(helps, []string{"help", name})
	}
	for _, verb := range []string{"up", "exec", "down", "list"} {
		helps = append(helps, []string{"testbed", verb, "--help"})
	}
	for _, args := range helps {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 0 {
			t.Errorf("%q: exit %d, want 0; stderr:\n%s", args, code, errb.String())
		}
		for env, secret := range secrets {
			if strings.Contains(out.String()+errb.String(), secret) {
				t.Errorf("%q prints the value of $%s:\n%s%s", args, env, out.String(), errb.String())
			}
		}
	}
	var out, errb bytes.Buffer
	run(context.Background(), []string{"help", "probe"}, &out, &errb)
	for _, want := range []string{"vantage probe --fleet", "-fleet", "-scheduler URL", "-token token", "-pops",
		"(default $VANTAGE_TOKEN)", "(default $VANTAGE_SCHEDULER, else http://127.0.0.1:8080)"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("help probe lacks %q:\n%s", want, errb.String())
		}
	}
}

// TestNoFlagDefaultFromEnvironment reads every flag definition of the package's sources: a default computed
// from the environment would be printed by --help (envStringVar is the way to default from a variable).
func TestNoFlagDefaultFromEnvironment(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	definers := regexp.MustCompile(`^(String|Int|Int64|Uint|Uint64|Float64|Bool|Duration|Func|TextVar)(Var)?$`)
	checked := 0
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !definers.MatchString(sel.Sel.Name) || len(call.Args) < 3 {
				return true
			}
			checked++
			for _, arg := range call.Args {
				ast.Inspect(arg, func(n ast.Node) bool {
					if c, ok := n.(*ast.CallExpr); ok {
						name := ""
						switch fn := c.Fun.(type) {
						case *ast.SelectorExpr:
							name = fn.Sel.Name
						case *ast.Ident:
							name = fn.Name
						}
						if strings.Contains(strings.ToLower(name), "env") {
							t.Errorf("%s: flag default from the environment (%s): --help would print it", fset.Position(c.Pos()), name)
						}
					}
					return true
				})
			}
			return true
		})
	}
	if checked < 50 {
		t.Errorf("only %d flag definitions found; the check reads the wrong files", checked)
	}
}
