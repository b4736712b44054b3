package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/demo"
)

// TestDemoNotRoot checks the one-line refusal without root: the decision is made on the effective user id
// (demoEUID), before anything is started.
func TestDemoNotRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		old := demoEUID
		demoEUID = func() int { return 65534 }
		t.Cleanup(func() { demoEUID = old })
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "--once"}, &out, &errb)
	if code == 0 {
		t.Fatalf("exit status 0 without root; stdout %q", out.String())
	}
	msg := errb.String()
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "needs root") {
		t.Errorf("stderr %q: want one line saying root is needed", msg)
	}
	if out.Len() != 0 {
		t.Errorf("stdout %q: want nothing (no fallback)", out.String())
	}
}

// TestDemoNotRootForReal runs `vantage demo --once` as the unprivileged user nobody (a copy of this test
// binary re-executed with another uid): one line on stderr, a non-zero exit, nothing started.
func TestDemoNotRootForReal(t *testing.T) {
	if os.Getenv("VANTAGE_DEMO_AS_NOBODY") == "1" {
		os.Exit(run(context.Background(), []string{"demo", "--once"}, os.Stdout, os.Stderr))
	}
	if os.Geteuid() != 0 {
		t.Skip("switching to the user nobody needs root; TestDemoNotRoot covers the unprivileged path")
	}
	dir, err := os.MkdirTemp("", "vantage-demo-nobody-") // t.TempDir's parent is closed to other users
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vantage.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestDemoNotRootForReal$")
	cmd.Env = append(os.Environ(), "VANTAGE_DEMO_AS_NOBODY=1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("as nobody: %v, want exit status 1; stderr %q", err, errb.String())
	}
	if msg := errb.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "needs root") {
		t.Errorf("as nobody: stderr %q, want one line saying root is needed", msg)
	}
	if out.Len() != 0 {
		t.Errorf("as nobody: stdout %q, want nothing", out.String())
	}
}

func TestDemoUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"argument", []string{"demo", "extra"}},
		{"queries zero", []string{"demo", "--queries", "0"}},
		{"queries too many", []string{"demo", "--queries", "101"}},
		{"requests zero", []string{"demo", "--requests", "0"}},
		{"log format", []string{"demo", "--log-format", "xml"}},
		{"unknown flag", []string{"demo", "--nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errb); code != 2 {
				t.Errorf("exit status %d, want 2 (stderr %q)", code, errb.String())
			}
		})
	}
}

// reportRow is one decision line of the demo's report.
type reportRow struct {
	mode, app, target, status, best, rtt, verdict string
}

// parseDecisions returns the decision lines of a demo report by app.
func parseDecisions(out string) map[string]reportRow {
	rows := map[string]reportRow{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !slices.Contains([]string{"host", "hostname", "region", "smart"}, f[0]) {
			continue
		}
		rows[f[1]] = reportRow{mode: f[0], app: f[1], target: f[2], status: f[3], best: f[4], rtt: f[5], verdict: f[6]}
	}
	return rows
}

var decidedRE = regexp.MustCompile(`all \d+ applications decided ([\d.]+) s after the fleet came up`)

var sydneyRE = regexp.MustCompile(`(?m)^\s+(without|with|with smart) placement\s+app (\S+)\s+cf-placement: (\S+)\s+ran at (\S+)\s+median\s+(\d+) ms`)

// TestDemoOnce runs `vantage demo --once` (root: network namespaces) and checks the printed report: each
// showcase target's status, best PoP and verdict, and the Sydney user's request faster with placement.
func TestDemoOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("vantage demo needs root for network namespaces (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("vantage demo: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"demo", "--once", "--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0"}, &out, &errb)
	t.Logf("vantage demo --once: exit %d after %s\n%s", code, time.Since(start).Round(time.Millisecond), out.String())
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, errb.String())
	}
	rows := parseDecisions(out.String())
	// The emulator's truth: each unicast back end's nearest PoP of the demo's WAN (its delays are the latency
	// model's), and the anycast and geo-DNS targets never placed.
	nearest := func(host string) string {
		n, err := demo.NearestPoP(demo.Spec(), host)
		if err != nil {
			t.Fatal(err)
		}
		return n.PoP
	}
	for _, tc := range []struct {
		app, mode, status string
		best              string // "-" when never placed
		verdict           string
	}{
		{"frankfurt-db", "host", "SUCCESS", nearest("db"), "unicast"},
		{"ashburn-api", "hostname", "SUCCESS", nearest("api"), "unicast"},
		{"tokyo-app", "region", "SUCCESS", nearest("tokyo"), "unicast"},
		{"edge-anycast", "host", "UNSUPPORTED_APPLICATION", "-", "anycast"},
		{"www-geodns", "hostname", "UNSUPPORTED_APPLICATION", "-", "replicated"},
		{"sydney-smart", "smart", "SUCCESS", nearest("db"), "-"},
	} {
		r, ok := rows[tc.app]
		switch {
		case !ok:
			t.Errorf("%s: no decision line in the report", tc.app)
		case r.mode != tc.mode || r.status != tc.status || r.best != tc.best || r.verdict != tc.verdict:
			t.Errorf("%s: mode %s status %s best %s verdict %s; want %s %s %s %s", tc.app, r.mode, r.status, r.best, r.verdict,
				tc.mode, tc.status, tc.best, tc.verdict)
		}
	}
	if m := decidedRE.FindStringSubmatch(out.String()); m == nil {
		t.Error("the report does not say when every application was decided")
	} else {
		t.Logf("every application decided %s s after the fleet came up (the issue's goal: ~15 s)", m[1])
	}
	got := map[string][]string{}
	for _, m := range sydneyRE.FindAllStringSubmatch(out.String(), -1) {
		got[m[1]] = m[2:]
	}
	without, with := got["without"], got["with"]
	if without == nil || with == nil {
		t.Fatalf("no Sydney comparison in the report (matched %v)", got)
	}
	if without[1] != "local-SYD" || without[2] != "SYD" {
		t.Errorf("without placement: cf-placement %s ran at %s, want local-SYD at SYD", without[1], without[2])
	}
	if with[0] != "frankfurt-db" || with[1] != "remote-FRA" || with[2] != "FRA" {
		t.Errorf("with placement: app %s cf-placement %s ran at %s, want frankfurt-db remote-FRA at FRA", with[0], with[1], with[2])
	}
	wo, _ := strconv.Atoi(without[3])
	wi, _ := strconv.Atoi(with[3])
	if wi <= 0 || wi >= wo {
		t.Errorf("with placement %d ms, without %d ms: want faster with placement", wi, wo)
	}
	if sm := got["with smart"]; sm == nil || sm[0] != "sydney-smart" || sm[1] != "remote-FRA" || sm[2] != "FRA" {
		t.Errorf("with smart placement: %v, want sydney-smart remote-FRA at FRA", sm)
	} else if ws, _ := strconv.Atoi(sm[3]); ws <= 0 || ws >= wo {
		t.Errorf("with smart placement %d ms, without %d ms: want faster with placement", ws, wo)
	}
	for _, want := range []string{"status page     http://127.0.0.1:", "/metrics (scheduler)", "vantage probe --fleet"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report does not say %q", want)
		}
	}
}
