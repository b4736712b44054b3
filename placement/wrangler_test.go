package placement

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"github.com/vantage-edge/vantage/internal/npmtest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The wrangler the differential test runs: the newest release that still runs on Node 20 (4.87 and later
// want Node 22), Debian's nodejs.
const (
	wranglerVersion = "4.86.0"
	wranglerMinNode = 20
	// npmInstallTimeout bounds the one-time install of wrangler into the cache (about 20 s on a good link).
	npmInstallTimeout = 5 * time.Minute
	// wranglerRunTimeout bounds one node run over the whole corpus (about 2 s).
	wranglerRunTimeout = 2 * time.Minute
)

// stricter lists the configs of testdata/wrangler that wrangler accepts and Vantage refuses, each with the
// sentinel its error must wrap and the reason: a value that could never be placed. An entry is "file" for
// every environment read, or "file@env" for one.
var stricter = map[string]struct {
	is     error
	reason string
}{
	"targeted-alone.toml":       {ErrNoTarget, `mode "targeted" without a region, host or hostname: nothing to place at`},
	"region-unknown.toml":       {ErrBadRegion, "a region not in the catalogue has no endpoint to measure"},
	"host-no-port.toml":         {ErrBadHost, "a host is dialled over TCP: it needs a port"},
	"hostname-url.jsonc":        {ErrBadHostname, "a URL where a hostname belongs"},
	"host-denied.toml":          {ErrDenied, "the deny policy: a private address is never probed"},
	"duplicate-key.jsonc":       {ErrDuplicate, "a key twice: wrangler silently keeps the last"},
	"name-missing.toml":         {ErrBadName, "an application without a name cannot be registered"},
	"legacy-and-placement.toml": {ErrConflict, "[placement] and [unsafe.metadata.placement] both set: which one the platform uses is unknown"},
	// wrangler appends the environment's name as written; a Worker name is lower-case.
	"env-name-upper.toml@Staging": {ErrBadName, `"shop-Staging" is not a Worker name`},
	// wrangler reads a config without a top-level name; the top level is then no application.
	"env-no-top-name.toml@": {ErrBadName, "no top-level name: the top level is no application"},
}

// wranglerResult is what the corpus runner prints for one config and environment.
type wranglerResult struct {
	OK              bool            `json:"ok"`
	Error           string          `json:"error"`
	Name            *string         `json:"name"`
	AccountID       *string         `json:"account_id"`
	Placement       json.RawMessage `json:"placement"`
	UnsafePlacement json.RawMessage `json:"unsafe_placement"`
}

// mode returns the placement wrangler resolved, in Vantage's words: the mode and its target.
func (r wranglerResult) mode() (Mode, string) {
	raw := r.Placement
	if len(raw) == 0 || string(raw) == "null" {
		raw = r.UnsafePlacement // the legacy form, passed through to the upload metadata
	}
	var p map[string]any
	if json.Unmarshal(raw, &p) != nil || p == nil { // absent, null, or false / "" / 0, which wrangler skips
		return ModeNone, ""
	}
	if p["mode"] == "off" {
		return ModeNone, ""
	}
	for _, m := range []Mode{ModeRegion, ModeHost, ModeHostname} {
		if s, ok := p[string(m)].(string); ok {
			return m, s
		}
	}
	if p["mode"] == "smart" {
		return ModeSmart, ""
	}
	return Mode("?"), string(raw)
}

const wranglerRunner = `
const fs = require("fs");
const wrangler = require(process.argv[2]);
const cases = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const out = [];
for (const c of cases) {
  try {
    const cfg = wrangler.unstable_readConfig({ config: c.path, env: c.env || undefined }, { hideWarnings: true });
    out.push({ ok: true, name: cfg.name ?? null, account_id: cfg.account_id ?? null,
      placement: cfg.placement ?? null, unsafe_placement: cfg.unsafe?.metadata?.placement ?? null });
  } catch (e) {
    out.push({ ok: false, error: String((e && e.message) || e) });
  }
}
fs.writeFileSync(process.argv[4], JSON.stringify(out));
`

// TestWranglerDifferential reads every config of testdata/wrangler with wrangler itself (npm wrangler's
// unstable_readConfig) and with Vantage, for the top level, each environment the config defines and one it
// does not, and compares: no config that wrangler rejects is accepted, and every config it accepts loads with
// the same name, account, mode and target, except the stricter cases listed above.
func TestWranglerDifferential(t *testing.T) {
	pkg := wranglerPackage(t)
	dir, err := filepath.Abs(filepath.Join("testdata", "wrangler"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type kase struct {
		Path string `json:"path"`
		Env  string `json:"env"`
		file string
	}
	var cases []kase
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		doc, err := readFile(path)
		envs := []string{""}
		if err == nil {
			envs = append(envs, envNames(doc)...)
		}
		for _, env := range append(envs, "nope") {
			cases = append(cases, kase{Path: path, Env: env, file: e.Name()})
		}
	}
	if len(entries) < 30 {
		t.Errorf("the corpus has %d configs, want at least 30", len(entries))
	}

	scratch := t.TempDir()
	in, out, script := filepath.Join(scratch, "cases.json"), filepath.Join(scratch, "out.json"), filepath.Join(scratch, "run.cjs")
	data, _ := json.Marshal(cases)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(wranglerRunner), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wranglerRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, pkg, in, out)
	cmd.Dir = scratch // no .wrangler redirect to find
	cmd.Env = append(cleanEnv(), "HOME="+scratch, "WRANGLER_SEND_METRICS=false", "WRANGLER_LOG=error")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node: %v\n%s", err, b)
	}
	var results []wranglerResult
	if b, err := os.ReadFile(out); err != nil || json.Unmarshal(b, &results) != nil || len(results) != len(cases) {
		t.Fatalf("wrangler's results: %v (%d for %d cases)", err, len(results), len(cases))
	}

	used := map[string]bool{}
	var accepted, rejected int
	for _, w := range results {
		if w.OK {
			accepted++
		} else {
			rejected++
		}
	}
	t.Logf("wrangler %s: %d configs, %d reads: %d accepted, %d rejected", wranglerVersion, len(entries), len(cases), accepted, rejected)
	for i, tc := range cases {
		w := results[i]
		t.Run(tc.file+"@"+tc.Env, func(t *testing.T) {
			p := Parser{Policy: DefaultPolicy(), Env: tc.Env}
			c, err := p.LoadFile(tc.Path)
			key := tc.file + "@" + tc.Env
			s, listed := stricter[key]
			if !listed {
				s, listed = stricter[tc.file]
				key = tc.file
			}
			switch {
			case !w.OK && err == nil:
				t.Errorf("wrangler rejects it, Vantage accepts %+v; wrangler says:\n%s", c, w.Error)
			case !w.OK:
				if listed {
					t.Errorf("listed as stricter (%s), but wrangler rejects it too:\n%s", s.reason, w.Error)
				}
				used[key] = used[key] || listed
			case err != nil && !listed:
				t.Errorf("wrangler accepts it (name %s, placement %s), Vantage rejects it:\n%v", deref(w.Name), w.Placement, err)
			case err != nil:
				used[key] = true
				if !errors.Is(err, s.is) {
					t.Errorf("stricter (%s): error does not wrap %v:\n%v", s.reason, s.is, err)
				}
			default:
				mode, target := w.mode()
				if c.App != deref(w.Name) || c.Mode != mode || c.Target() != target || c.AccountID != deref(w.AccountID) {
					t.Errorf("wrangler: name %q account %q mode %q target %q (placement %s)\nVantage: name %q account %q mode %q target %q",
						deref(w.Name), deref(w.AccountID), mode, target, cmp.Or(string(w.Placement), string(w.UnsafePlacement)),
						c.App, c.AccountID, c.Mode, c.Target())
				}
				if listed {
					t.Errorf("listed as stricter (%s), but Vantage accepts it", s.reason)
				}
			}
		})
	}
	for key := range stricter {
		if !used[key] {
			t.Errorf("stricter[%q] matches no config that wrangler accepts", key)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// cleanEnv is the environment without what would steer wrangler (CLOUDFLARE_ENV picks an environment).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDFLARE_") && !strings.HasPrefix(kv, "WRANGLER_") {
			env = append(env, kv)
		}
	}
	return env
}

// wranglerPackage returns the directory of npm's wrangler package, installed once into the cache
// ($VANTAGE_NPM_CACHE, else $XDG_CACHE_HOME/vantage-npm, else /tmp/vantage-npm). It skips the test where node
// or npm is missing or too old, and where the install fails outside CI.
func wranglerPackage(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: the wrangler differential needs Node.js >= %d and npm (Debian: apt-get install nodejs npm; .ci/deps.sh installs them)", tool, wranglerMinNode)
		}
	}
	v, err := exec.Command("node", "--version").Output()
	if m := regexp.MustCompile(`^v(\d+)\.`).FindSubmatch(v); err != nil || m == nil {
		t.Skipf("node --version: %v %q", err, v)
	} else if major, _ := strconv.Atoi(string(m[1])); major < wranglerMinNode {
		t.Skipf("node %s is older than wrangler %s needs (Node.js >= %d)", bytes.TrimSpace(v), wranglerVersion, wranglerMinNode)
	}
	return filepath.Join(npmtest.Install(t, "wrangler", wranglerVersion, cleanEnv(), npmInstallTimeout), "wrangler")
}
