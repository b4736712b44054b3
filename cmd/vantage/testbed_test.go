package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/testbed"
)

// helperSpecEnv makes TestHelperTestbedUp run `vantage testbed up --spec $VALUE` in this test binary.
const helperSpecEnv = "VANTAGE_TESTBED_HELPER_SPEC"

// TestHelperTestbedUp is not a test: it is the `vantage testbed up` process the other tests start, SIGKILL
// and SIGTERM (the test binary re-executed with helperSpecEnv set).
func TestHelperTestbedUp(t *testing.T) {
	spec := os.Getenv(helperSpecEnv)
	if spec == "" {
		t.Skip("helper process for TestTestbedCLI")
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// SIGTERM ends `up` cleanly, as main's signal context does.
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-ch
		stop()
	}()
	os.Exit(run(ctx, []string{"testbed", "up", "--spec", spec}, os.Stdout, os.Stderr))
}

const smallSpec = `name: cli-test
pops: [FRA, SYD, IAD]
hosts:
  - name: web
    pop: FRA
    http: [80]
`

var upLine = regexp.MustCompile(`testbed (vt[0-9]+) up`)

// startUp starts `vantage testbed up` as a helper process and returns it with the testbed's name once up.
func startUp(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	spec := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(spec, []byte(smallSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHelperTestbedUp$")
	cmd.Env = append(os.Environ(), helperSpecEnv+"="+spec)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	type upResult struct{ name, printed string }
	found := make(chan upResult, 1)
	go func() {
		var printed strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			printed.WriteString(sc.Text() + "\n")
			if m := upLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- upResult{m[1], printed.String()}
			}
		}
		close(found)
	}()
	select {
	case res, ok := <-found:
		if !ok {
			t.Fatalf("testbed up exited before it was up; stderr:\n%s", stderr.String())
		}
		name, out := res.name, res.printed
		for _, want := range []string{"FRA", "web", "emulated RTT matrix (ms):", "198."} {
			if !strings.Contains(out, want) {
				t.Errorf("testbed up output lacks %q:\n%s", want, out)
			}
		}
		return cmd, name
	case <-time.After(60 * time.Second):
		t.Fatalf("testbed up not up after 60 s; stderr:\n%s", stderr.String())
	}
	return nil, ""
}

// namespaces returns the namespaces of testbed name.
func namespaces(t *testing.T, name string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var nss []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, name+"-") {
			nss = append(nss, strings.Fields(l)[0])
		}
	}
	return nss
}

func TestTestbedCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("testbed: needs root for network namespaces and /dev/net/tun (CI runs as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("exec_then_sigkill_then_down", func(t *testing.T) {
		cmd, name := startUp(t)
		if got := len(namespaces(t, name)); got != 4 {
			t.Fatalf("%s has %d namespaces, want 4", name, got)
		}
		var out, errb bytes.Buffer
		code := run(ctx, []string{"testbed", "exec", "--testbed", name, "SYD", "--", "ip", "-4", "-o", "addr", "show", "dev", "vtun0"}, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), "inet 198.") {
			t.Fatalf("exec: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
		}
		out.Reset()
		code = run(ctx, []string{"testbed", "exec", "--testbed", name, "SYD", "--", "sh", "-c", "exit 7"}, &out, &errb)
		if code != 7 {
			t.Errorf("exec of a command exiting 7: exit %d", code)
		}

		// A crash: the namespaces stay behind, the testbed shows as dead, and down removes everything.
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if len(namespaces(t, name)) == 0 {
			t.Fatal("no namespaces left after SIGKILL: the test would prove nothing")
		}
		states, err := testbed.States()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if s.Name == name && s.Live {
				t.Errorf("%s shows as live after its process was killed", name)
			}
		}
		out.Reset()
		errb.Reset()
		if code := run(ctx, []string{"testbed", "down", name}, &out, &errb); code != 0 {
			t.Fatalf("down: exit %d: %s", code, errb.String())
		}
		if left := namespaces(t, name); len(left) != 0 {
			t.Errorf("namespaces left after down: %v", left)
		}
		links, _ := exec.Command("ip", "-o", "link").CombinedOutput()
		if strings.Contains(string(links), "vtun0") {
			t.Errorf("a TUN is left in the host namespace:\n%s", links)
		}
	})

	t.Run("down_stops_a_live_testbed", func(t *testing.T) {
		cmd, name := startUp(t)
		var out, errb bytes.Buffer
		if code := run(ctx, []string{"testbed", "down", "--stale", name}, &out, &errb); code != 0 || !strings.Contains(out.String(), "no testbed to remove") {
			t.Errorf("down --stale of a live testbed: exit %d, %q", code, out.String())
		}
		if len(namespaces(t, name)) == 0 {
			t.Fatal("down --stale removed a live testbed")
		}
		if code := run(ctx, []string{"testbed", "down", name}, &out, &errb); code != 0 {
			t.Fatalf("down: exit %d: %s", code, errb.String())
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("testbed up after SIGTERM: %v (want a clean exit)", err)
		}
		if left := namespaces(t, name); len(left) != 0 {
			t.Errorf("namespaces left after down: %v", left)
		}
	})

	t.Run("usage_errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
		}{
			{"no_subcommand", []string{"testbed"}, 2},
			{"unknown_subcommand", []string{"testbed", "sideways"}, 2},
			{"exec_without_command", []string{"testbed", "exec", "FRA"}, 2},
			{"exec_no_such_testbed", []string{"testbed", "exec", "--testbed", "vt999", "FRA", "--", "true"}, 1},
			{"up_bad_spec", []string{"testbed", "up", "--spec", "/nonexistent.yaml"}, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var out, errb bytes.Buffer
				if code := run(ctx, tc.args, &out, &errb); code != tc.code {
					t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errb.String())
				}
			})
		}
	})
}
