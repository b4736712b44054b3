package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribeBuild(t *testing.T) {
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "114dbc741e6f179f8f678e77e77c69f7d583172b"},
			{Key: "vcs.time", Value: "2026-12-03T13:42:50Z"}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		version  string
		line     []string // in the printed line
	}{
		{name: "go_build_from_a_clean_clone",
			bi:      &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v0.0.0-20261203134250-114dbc741e6f"}, Settings: vcs("false")},
			version: "v0.0.0-20261203134250-114dbc741e6f",
			line:    []string{"vantage v0.0.0-20261203134250-114dbc741e6f (revision 114dbc741e6f179f8f678e77e77c69f7d583172b, committed 2026-12-03T13:42:50Z; go1.26 "}},
		{name: "go_build_from_a_modified_clone",
			bi:      &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v0.0.0-20261203134250-114dbc741e6f+dirty"}, Settings: vcs("true")},
			version: "v0.0.0-20261203134250-114dbc741e6f+dirty",
			line:    []string{"committed 2026-12-03T13:42:50Z, modified; go1.26"}},
		{name: "tagged", bi: &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v1.4.0"}, Settings: vcs("false")},
			version: "v1.4.0", line: []string{"vantage v1.4.0 (revision 114dbc741e6f"}},
		{name: "vcs_without_module_version", bi: &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")},
			version: "devel-114dbc741e6f-dirty", line: []string{"modified"}},
		{name: "go_run", bi: &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}},
			version: "devel", line: []string{"vantage devel (no VCS information: go run", "; go1.26 " + runtime.GOOS + "/" + runtime.GOARCH + ")"}},
		{name: "no_build_info", version: "devel", line: []string{"no VCS information", runtime.Version()}},
		{name: "ldflags_override", bi: &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")},
			override: "v2.0.0-rc1", version: "v2.0.0-rc1", line: []string{"vantage v2.0.0-rc1 (revision 114dbc741e6f"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := describeBuild(tc.bi, tc.bi != nil, tc.override)
			if d.version != tc.version {
				t.Errorf("version %q, want %q", d.version, tc.version)
			}
			for _, s := range tc.line {
				if !strings.Contains(d.String(), s) {
					t.Errorf("line %q lacks %q", d.String(), s)
				}
			}
		})
	}
}

// TestVersionCommand runs `vantage version` in-process: a test binary has no VCS information, and says so.
func TestVersionCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "vantage "+version+" (") || !strings.Contains(out.String(), runtime.Version()) {
		t.Errorf("version %q: want vantage %s (... %s ...)", out.String(), version, runtime.Version())
	}
	if version == "" || version == "dev" {
		t.Errorf("the version variable is %q", version)
	}
}

// TestVersionOfAGitClone builds vantage with go build from a fresh git clone of this checkout (its changes
// committed), as an operator would, and checks that `vantage version` names the commit, and the modification
// once the tree is changed.
func TestVersionOfAGitClone(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds the binary (-short)")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("skipping: no git")
	}
	gitOut := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(git, append([]string{"-C", dir}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return strings.TrimSpace(string(b))
	}
	topB, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("skipping: not in a git checkout")
	}
	top := strings.TrimSpace(string(topB))
	clone := filepath.Join(t.TempDir(), "vantage")
	gitOut(".", "clone", "--quiet", "--no-hardlinks", top, clone)
	// The clone gets this checkout's uncommitted changes as one more commit: the code under test is built.
	for _, f := range strings.Split(gitOut(top, "ls-files", "--modified", "--others", "--exclude-standard"), "\n") {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(top, f))
		if os.IsNotExist(err) {
			continue // deleted: below
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(clone, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(clone, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range strings.Split(gitOut(top, "ls-files", "--deleted"), "\n") {
		if f != "" {
			os.Remove(filepath.Join(clone, f))
		}
	}
	gitOut(clone, "add", "-A")
	gitOut(clone, "-c", "user.name=vantage test", "-c", "user.email=test@invalid", "commit", "--quiet", "--no-verify",
		"--allow-empty", "-m", "the working tree under test")
	rev := gitOut(clone, "rev-parse", "HEAD")
	bin := filepath.Join(t.TempDir(), "vantage")
	build := func() string {
		t.Helper()
		// -buildvcs=auto, Go's default, against a GOFLAGS that may turn it off on this machine.
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-buildvcs=auto", "-o", bin, "./cmd/vantage")
		cmd.Dir = clone
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("vantage version: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := build(); !strings.Contains(out, "revision "+rev+",") || strings.Contains(out, "modified") || !strings.Contains(out, rev[:12]) {
		t.Errorf("clean clone at %s: vantage version %q: want the revision, unmodified", rev, out)
	}
	if err := os.WriteFile(filepath.Join(clone, "README.md"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := build(); !strings.Contains(out, "revision "+rev+",") || !strings.Contains(out, ", modified;") || !strings.Contains(out, "+dirty") {
		t.Errorf("modified clone: vantage version %q: want the revision, modified", out)
	}
}
