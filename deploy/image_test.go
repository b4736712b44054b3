package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// caBundle is the CA bundle the image carries, Debian's ca-certificates.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// TestImage builds the container image from deploy/Dockerfile as its comment says (a static binary built
// beforehand, FROM scratch: no registry), with buildah (or podman when buildah is missing), into a private
// storage root, and runs `vantage version` in it as the image's user. It skips, saying why, when neither tool
// is installed or the machine cannot run them (no user namespaces, not root).
func TestImage(t *testing.T) {
	tool := ""
	for _, name := range []string{"buildah", "podman"} {
		if _, err := exec.LookPath(name); err == nil {
			tool = name
			break
		}
	}
	if tool == "" {
		t.Skip("skipping: neither buildah nor podman is installed (Debian: buildah; .ci/deps.sh installs it)")
	}
	if os.Geteuid() != 0 {
		t.Skipf("skipping: %s runs here as root only (rootless needs subuids and user namespaces)", tool)
	}
	if _, err := os.Stat(caBundle); err != nil {
		t.Skipf("skipping: no CA bundle for the image: %v (Debian: ca-certificates)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ctxDir := filepath.Join(dir, "context")
	if err := os.Mkdir(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 4)
	rand.Read(nonce)
	ver := "v0.0.0-imagetest-" + hex.EncodeToString(nonce)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+ver,
		"-o", filepath.Join(ctxDir, "vantage"), "../cmd/vantage")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "ca-certificates.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	// A private storage root (vfs works on any file system) keeps the test away from the host's images.
	store := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, tool, append(append([]string{}, store...), args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	t.Cleanup(func() {
		// vfs layers are plain directories: remove them through the tool, which knows their mounts.
		exec.Command(tool, append(append([]string{}, store...), "rmi", "--all", "--force")...).Run()
	})
	const image = "localhost/vantage:imagetest"
	buildArgs := []string{"bud", "--pull-never", "-f", "Dockerfile", "-t", image, ctxDir}
	if tool == "podman" {
		buildArgs[0] = "build"
	}
	if out, err := run(buildArgs...); err != nil {
		if strings.Contains(out, "user namespace") || strings.Contains(out, "unshare") {
			t.Skipf("skipping: %s cannot run here: %s", tool, out)
		}
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(buildArgs, " "), err, out)
	}
	cfg, err := run("inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}}|{{.OCIv1.Config.Entrypoint}}", image)
	if tool == "podman" {
		cfg, err = run("image", "inspect", "--format", "{{.Config.User}}|{{.Config.Entrypoint}}", image)
	}
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, cfg)
	}
	if want := "65532:65532|[/usr/local/bin/vantage]"; cfg != want {
		t.Errorf("image user and entrypoint %s, want %s", cfg, want)
	}

	var out string
	if tool == "buildah" {
		// buildah runs a working container with chroot isolation: no OCI runtime, no cgroups needed.
		ctr, err := run("from", "--pull-never", "--name", "vantage-imagetest-"+hex.EncodeToString(nonce), image)
		if err != nil {
			t.Fatalf("buildah from: %v\n%s", err, ctr)
		}
		t.Cleanup(func() { exec.Command(tool, append(append([]string{}, store...), "rm", ctr)...).Run() })
		out, err = run("run", "--isolation", "chroot", "--user", "65532:65532", ctr, "--", "/usr/local/bin/vantage", "version")
		if err != nil {
			t.Fatalf("buildah run vantage version: %v\n%s", err, out)
		}
	} else {
		out, err = run("run", "--rm", "--network", "none", "--cgroups", "disabled", "--ulimit", "nofile=1024:1024",
			"--ulimit", "nproc=1024:1024", image, "version")
		if err != nil && strings.Contains(out, "OCI runtime") {
			t.Skipf("skipping the run: the image built, but podman's OCI runtime cannot start containers here: %s", out)
		}
		if err != nil {
			t.Fatalf("podman run vantage version: %v\n%s", err, out)
		}
	}
	if !strings.HasPrefix(out, "vantage "+ver+" ") {
		t.Errorf("vantage version in the image printed %q, want it to start with %q", out, "vantage "+ver+" ")
	}
	t.Logf("%s: %s", tool, out)
}
