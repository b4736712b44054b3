package testbed

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes TestHelperProcess start a testbed and wait to be killed (the test binary re-executed).
const helperEnv = "VANTAGE_TESTBED_HELPER"

// hygieneSpec is a small testbed for the helper process.
const hygieneSpec = `name: hygiene
pops: [FRA, SYD]
hosts:
  - name: db
    pop: FRA
    tcp: [5432]
`

// TestHelperProcess is not a test: it is the process TestCrashedTestbedIsSwept kills.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestCrashedTestbedIsSwept")
	}
	spec, err := ParseSpec(strings.NewReader(hygieneSpec), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	// KeepStale: the parent's sweep is what is under test.
	tb, err := Start(context.Background(), spec, Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), KeepStale: true})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("UP " + tb.Name() + "\n")
	select {} // until SIGKILL
}

// TestCrashedTestbedIsSwept kills a process running a testbed while another testbed runs in this process: the
// two had distinct names and subnets, the dead one's namespaces are left behind and marked dead, and the sweep
// removes them without touching the live one.
func TestCrashedTestbedIsSwept(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	up := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "UP "); ok {
				up <- name
			}
		}
		close(up)
	}()
	var dead string
	select {
	case name, ok := <-up:
		if !ok {
			t.Fatalf("helper exited: %s", stderr.String())
		}
		dead = name
	case <-ctx.Done():
		t.Fatalf("helper not up: %s", stderr.String())
	}

	spec, err := ParseSpec(strings.NewReader(hygieneSpec), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	live := startTestbed(t, spec)
	if live.Name() == dead {
		t.Fatalf("two running testbeds are both %s", dead)
	}
	for _, s := range mustStates(t) {
		if s.Name == dead && s.Prefix.Overlaps(live.Prefix()) {
			t.Fatalf("testbeds %s (%v) and %s (%v) overlap", dead, s.Prefix, live.Name(), live.Prefix())
		}
	}
	c, err := live.Node("FRA").DialContext(ctx, "tcp", "db:5432")
	if err != nil {
		t.Fatalf("live testbed beside another: %v", err)
	}
	c.Close()

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	left, err := listNS(dead + "-")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 3 {
		t.Fatalf("after SIGKILL %d namespaces of %s are left, want all 3 (else the sweep is not tested)", len(left), dead)
	}
	for _, s := range mustStates(t) {
		if s.Name == dead && s.Live {
			t.Fatalf("%s is still marked live after its process died", dead)
		}
		if s.Name == live.Name() && !s.Live {
			t.Fatalf("%s is marked dead while it runs", live.Name())
		}
	}
	removed, err := Down(ctx, "", false, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, dead) || slices.Contains(removed, live.Name()) {
		t.Errorf("sweep removed %v, want %s (and never the live %s)", removed, dead, live.Name())
	}
	assertGone(t, dead)
	if nss, _ := listNS(live.Name() + "-"); len(nss) != 3 {
		t.Errorf("the sweep touched the live testbed: %d of its 3 namespaces left", len(nss))
	}
}

func mustStates(t *testing.T) []State {
	t.Helper()
	s, err := States()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
