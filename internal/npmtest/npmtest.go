// Package npmtest installs an npm package once into a cache shared by the tests that drive real Node.js clients
// (wrangler, the Cloudflare SDK).
package npmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Install installs name@version (npm install, no scripts) into the cache ($VANTAGE_NPM_CACHE, else
// $XDG_CACHE_HOME/vantage-npm, else the temporary directory's vantage-npm) unless it is there already, and
// returns its node_modules directory. env is npm's environment. A failed install skips t outside CI and fails it
// under CI (CI is set).
func Install(t *testing.T, name, version string, env []string, timeout time.Duration) string {
	t.Helper()
	cache := os.Getenv("VANTAGE_NPM_CACHE")
	if cache == "" {
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			cache = filepath.Join(x, "vantage-npm")
		} else {
			cache = filepath.Join(os.TempDir(), "vantage-npm")
		}
	}
	dir := filepath.Join(cache, name+"-"+version)
	modules := filepath.Join(dir, "node_modules")
	installed := filepath.Join(modules, name, "package.json")
	if _, err := os.Stat(installed); err == nil {
		return modules
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	// Install into a fresh directory and rename it into place, so that a run that stops half way, or two runs
	// at once, never leave a broken package behind.
	tmp, err := os.MkdirTemp(cache, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", tmp, "--no-audit", "--no-fund", "--ignore-scripts",
		name+"@"+version)
	cmd.Env = append(env, "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("npm install %s@%s: %v\n%s", name, version, err, out)
		}
		t.Skipf("npm install %s@%s failed (offline?): %v\n%s", name, version, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(installed); serr != nil {
			t.Fatalf("installing %s into %s: %v", name, dir, err)
		} // else another run installed it first
	}
	return modules
}
