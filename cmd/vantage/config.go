package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/vantage-edge/vantage/placement"
)

func init() {
	register(command{
		name:    "config",
		summary: "check wrangler configs as the scheduler's config dir reads them: config check [--env NAME] [--json] FILE...",
		run:     runConfig,
	})
}

// checkResult is one file's verdict, the line `vantage config check --json` prints for it.
type checkResult struct {
	File    string `json:"file"`
	OK      bool   `json:"ok"`
	App     string `json:"app"`     // the application of the environment checked ("" when it has errors)
	Account string `json:"account"` // its account_id
	Env     string `json:"env"`     // the environment checked, --env; "" for the top level
	// Mode is smart, region, host, hostname or off ("" when the environment checked has errors).
	Mode     string       `json:"mode"`
	Target   string       `json:"target"`
	Warnings []string     `json:"warnings"`
	Errors   []checkError `json:"errors"`
}

// checkError is one problem of a file, located as placement.ConfigError locates it (0 when unknown).
type checkError struct {
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// runConfig is `vantage config check [--env NAME] [--json] [--allow CIDR] FILE...`: each file is read as the
// scheduler reads its config dir (the same Parser, with the deny policy that --allow lifts): the top level
// and every environment, or only --env's. It exits 1 when any file is bad, 2 on a usage error.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config", "check [--env NAME] [--json] FILE...", stderr)
	env := fs.String("env", "", "the wrangler environment to check, as wrangler's --env (default: the top level and every environment)")
	asJSON := fs.Bool("json", false, "one JSON line per file: file, ok, app, account, env, mode, target, warnings, errors")
	var allow listFlag
	fs.Var(&allow, "allow", "CIDR lifting the deny policy for configured hosts (repeatable), as the scheduler's --allow")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	switch {
	case len(pos) == 0:
		return fmt.Errorf("%w: config: want a subcommand: check", errUsage)
	case pos[0] != "check":
		return fmt.Errorf("%w: config: unknown subcommand %q (want check)", errUsage, pos[0])
	case len(pos) == 1:
		return fmt.Errorf("%w: config check: want one or more wrangler config files", errUsage)
	}
	prefixes, err := placement.ParsePrefixes("--allow", allow)
	if err != nil {
		return fmt.Errorf("%w: config check: %v", errUsage, err)
	}
	parser := placement.Parser{Policy: placement.DefaultPolicy(prefixes...), Env: *env}
	bad := false
	for _, file := range pos[1:] {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := checkFile(parser, file)
		bad = bad || !r.OK
		if *asJSON {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s\n", b)
		} else {
			printCheck(stdout, r)
		}
	}
	if bad {
		return exitError{code: 1}
	}
	return nil
}

// checkFile reads one file with parser and returns its verdict.
func checkFile(parser placement.Parser, file string) checkResult {
	r := checkResult{File: file, Env: parser.Env, Warnings: []string{}, Errors: []checkError{}}
	cfgs, err := parser.LoadFileEnvs(file)
	for _, c := range cfgs {
		for _, w := range c.Warnings {
			if !slices.Contains(r.Warnings, w) { // the top level's warnings come with every environment
				r.Warnings = append(r.Warnings, w)
			}
		}
		if c.Env == parser.Env {
			r.App, r.Account, r.Mode, r.Target = c.App, c.AccountID, modeName(c.Mode), c.Target()
		}
	}
	for _, e := range leaves(err) {
		var ce *placement.ConfigError
		if errors.As(e, &ce) {
			r.Errors = append(r.Errors, checkError{Line: ce.Line, Col: ce.Col, Field: ce.Field, Message: ce.Message()})
		} else {
			r.Errors = append(r.Errors, checkError{Message: e.Error()})
		}
	}
	r.OK = err == nil
	return r
}

// modeName names a mode as the check prints it: ModeNone is "off".
func modeName(m placement.Mode) string {
	if m == placement.ModeNone {
		return "off"
	}
	return string(m)
}

// leaves returns the errors an errors.Join holds, or err alone.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// printCheck prints a verdict for people: "FILE: ok: APP [env ENV] MODE TARGET (account ID)", or the errors
// as placement words them, then the warnings.
func printCheck(w io.Writer, r checkResult) {
	if r.OK {
		var b strings.Builder
		fmt.Fprintf(&b, "%s: ok: %s", r.File, r.App)
		if r.Env != "" {
			fmt.Fprintf(&b, " [env %s]", r.Env)
		}
		fmt.Fprintf(&b, " %s", r.Mode)
		if r.Target != "" {
			fmt.Fprintf(&b, " %s", r.Target)
		}
		if r.Account != "" {
			fmt.Fprintf(&b, " (account %s)", r.Account)
		}
		fmt.Fprintln(w, b.String())
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, formatCheckError(r.File, e))
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

// formatCheckError formats e as placement.ConfigError does: file:line:col: field: message.
func formatCheckError(file string, e checkError) string {
	if e.Line == 0 && e.Field == "" && strings.Contains(e.Message, file) {
		return e.Message // not a config error (a missing file): it names the file itself
	}
	ce := placement.ConfigError{File: file, Line: e.Line, Col: e.Col, Field: e.Field, Err: errors.New(e.Message)}
	return ce.Error()
}
