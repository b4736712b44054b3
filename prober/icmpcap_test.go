package prober

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// icmpChildEnv marks the copy of the test binary that TestICMPRawAsNonRootWithCapNetRaw runs as nobody.
const icmpChildEnv = "VANTAGE_ICMP_CAP_CHILD"

// TestICMPRawAsNonRootWithCapNetRaw runs this test binary as user nobody holding CAP_NET_RAW (setpriv, as
// systemd's AmbientCapabilities= and Kubernetes' capabilities.add do) in a new network namespace, where
// net.ipv4.ping_group_range is "1 0": no datagram ICMP socket is allowed there, so an echo of 127.0.0.1 can
// only succeed over a raw socket. The prober must pick the raw socket by itself (euid is not 0). Without the
// capability the same probe fails with ErrICMPNotPermitted: the capability is what makes the difference.
func TestICMPRawAsNonRootWithCapNetRaw(t *testing.T) {
	needRoot(t, "dropping to user nobody with CAP_NET_RAW in a new network namespace")
	for _, tool := range []string{"setpriv", "unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed (Debian: util-linux, iproute2; .ci/deps.sh installs them)", tool)
		}
	}
	bin := exposedTestBinary(t)
	for _, tc := range []struct {
		name, caps string
		wantOK     bool
	}{
		{"cap_net_raw", "+net_raw", true},
		{"no_capability", "-all", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := `ip link set lo up && exec setpriv --reuid=nobody --regid=nogroup --clear-groups ` +
				`--inh-caps=` + tc.caps + ` --ambient-caps=` + tc.caps + ` --bounding-set=` + tc.caps + ` "$0" -test.run='^TestICMPCapChild$' -test.v`
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "unshare", "--net", "sh", "-c", script, bin)
			cmd.Env = append(os.Environ(), icmpChildEnv+"=1")
			out, err := cmd.CombinedOutput()
			if err != nil && strings.Contains(string(out), "unshare failed") {
				t.Skipf("skipping: cannot create a network namespace: %s", out)
			}
			var rep icmpChildReport
			_, js, ok := strings.Cut(string(out), "ICMPCHILD ")
			if ok {
				js, _, _ = strings.Cut(js, "\n")
			}
			if !ok || json.Unmarshal([]byte(js), &rep) != nil {
				t.Fatalf("child printed no report (err %v):\n%s", err, out)
			}
			t.Logf("child: euid %d, CAP_NET_RAW %v, socket %q, success %v, error %q", rep.Euid, rep.CapNetRaw, rep.Socket, rep.Success, rep.Error)
			if rep.Euid == 0 {
				t.Fatal("the child runs as root: setpriv did not drop to nobody")
			}
			if rep.CapNetRaw != tc.wantOK {
				t.Errorf("child holds CAP_NET_RAW: %v, want %v", rep.CapNetRaw, tc.wantOK)
			}
			if tc.wantOK && (!rep.Success || rep.Socket != ICMPSocketRaw || rep.Samples != 2) {
				t.Errorf("with CAP_NET_RAW: success %v socket %q samples %d error %q, want 2 echoes over a raw socket",
					rep.Success, rep.Socket, rep.Samples, rep.Error)
			}
			if !tc.wantOK && (rep.Success || !rep.NotPermitted) {
				t.Errorf("without CAP_NET_RAW: success %v error %q, want ErrICMPNotPermitted", rep.Success, rep.Error)
			}
		})
	}
}

// icmpChildReport is what TestICMPCapChild prints for its parent.
type icmpChildReport struct {
	Euid         int    `json:"euid"`
	CapNetRaw    bool   `json:"cap_net_raw"`
	Socket       string `json:"socket"`
	Success      bool   `json:"success"`
	Samples      int    `json:"samples"`
	Error        string `json:"error"`
	NotPermitted bool   `json:"not_permitted"`
}

// TestICMPCapChild is the child of TestICMPRawAsNonRootWithCapNetRaw; it does nothing when run directly.
func TestICMPCapChild(t *testing.T) {
	if os.Getenv(icmpChildEnv) == "" {
		t.Skip("skipping: run by TestICMPRawAsNonRootWithCapNetRaw as user nobody")
	}
	e := newEngine(t, nil)
	r := e.Probe(context.Background(), Target{Kind: placement.ProbeICMP, Addr: "127.0.0.1", Count: 2})
	rep := icmpChildReport{Euid: os.Geteuid(), CapNetRaw: capNetRaw(), Success: r.Success, Samples: len(r.Samples),
		Error: r.Error, NotPermitted: r.Err != nil && strings.Contains(r.Error, ErrICMPNotPermitted.Error())}
	if r.ICMP != nil {
		rep.Socket = r.ICMP.Socket
	}
	b, _ := json.Marshal(rep)
	fmt.Printf("ICMPCHILD %s\n", b)
}

// exposedTestBinary copies the running test binary into a directory user nobody can read and execute (go
// test's own build directory is root's alone) and returns its path.
func exposedTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vantage-icmpcap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "prober.test")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}
