package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// configFiles writes the check's example configs into a temp dir and returns their paths by name.
func configFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"good.toml": "name = \"shop\"\naccount_id = \"acct1\"\n[placement]\nmode = \"smart\"\ncolour = \"blue\"\n",
		"env.toml": "name = \"shop\"\n[placement]\nmode = \"smart\"\n\n[env.staging.placement]\nregion = \"aws:us-east-1\"\n\n" +
			"[env.broken.placement]\nmode = \"off\"\nhint = \"wnam\"\n",
		"bad.jsonc":     "{\n  \"name\": \"billing\",\n  \"placement\": {\"host\": \"db.example.com\"}\n}\n",
		"local.toml":    "name = \"local\"\n[placement]\nhost = \"127.0.0.1:5432\"\n",
		"off.toml":      "name = \"static\"\n",
		"hostname.json": "{\"name\": \"api\", \"placement\": {\"hostname\": \"api.example.com\"}}",
	}
	out := map[string]string{}
	for name, src := range files {
		out[name] = filepath.Join(dir, name)
		if err := os.WriteFile(out[name], []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out["missing.toml"] = filepath.Join(dir, "missing.toml")
	return out
}

func TestConfigCheck(t *testing.T) {
	f := configFiles(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string // lines, with FILE(name) replaced by the path
	}{
		{"good", []string{"check", "good.toml"}, 0, []string{
			"good.toml: ok: shop smart (account acct1)",
			`warning: good.toml:5:1: placement.colour: "blue": unknown key, ignored (want mode, region, host, hostname or hint)`}},
		{"hostname_and_off", []string{"check", "hostname.json", "off.toml"}, 0, []string{
			"hostname.json: ok: api hostname api.example.com", "off.toml: ok: static off"}},
		{"bad", []string{"check", "bad.jsonc"}, 1, []string{
			`bad.jsonc:3:17: placement.host: "db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`}},
		{"one_bad_of_two", []string{"check", "good.toml", "bad.jsonc"}, 1, []string{
			"good.toml: ok: shop smart (account acct1)",
			`warning: good.toml:5:1: placement.colour: "blue": unknown key, ignored (want mode, region, host, hostname or hint)`,
			`bad.jsonc:3:17: placement.host: "db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`}},
		// Without --env, every environment is checked, as the config dir loads them.
		{"every_env", []string{"check", "env.toml"}, 1, []string{
			`env.toml:10:1: env.broken.placement.hint: "wnam": a hint goes with mode "smart" only, not with mode "off"`}},
		{"env", []string{"check", "--env", "staging", "env.toml"}, 0, []string{"env.toml: ok: shop-staging [env staging] region aws:us-east-1"}},
		{"env_undefined", []string{"check", "env.toml", "--env=qa"}, 1, []string{
			`env.toml: env: unknown environment "qa": the config defines broken, staging`}},
		{"denied", []string{"check", "local.toml"}, 1, []string{
			`local.toml:3:1: placement.host: "127.0.0.1:5432": address 127.0.0.1: denied by policy (rule loopback, 127.0.0.0/8)`}},
		{"allow_lifts_the_deny", []string{"check", "--allow", "127.0.0.0/8", "local.toml"}, 0, []string{"local.toml: ok: local host 127.0.0.1:5432"}},
		{"missing_file", []string{"check", "missing.toml"}, 1, []string{"placement: stat missing.toml: no such file or directory"}},
		{"no_files", []string{"check"}, 2, nil},
		{"no_subcommand", nil, 2, nil},
		{"unknown_subcommand", []string{"lint", "good.toml"}, 2, nil},
		{"bad_allow", []string{"check", "--allow", "nope", "good.toml"}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"config"}
			for _, a := range tc.args {
				args = append(args, cmpOrPath(f, a))
			}
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, &out, &errb)
			}
			var want []string
			for _, l := range tc.stdout {
				for name, path := range f {
					l = strings.ReplaceAll(l, name, path)
				}
				want = append(want, l)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if out.Len() == 0 {
				got = nil
			}
			if !slices.Equal(got, want) {
				t.Errorf("stdout:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if tc.code == 2 && !strings.Contains(errb.String(), "config") {
				t.Errorf("usage error without a message: %q", errb.String())
			}
		})
	}
}

func cmpOrPath(f map[string]string, a string) string {
	if p, ok := f[a]; ok {
		return p
	}
	return a
}

// TestConfigCheckJSON: one line per file with exactly the documented keys.
func TestConfigCheckJSON(t *testing.T) {
	f := configFiles(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"config", "check", "--json", "--env", "staging", f["env.toml"], f["bad.jsonc"]}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, &errb)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), &out)
	}
	wantKeys := []string{"account", "app", "env", "errors", "file", "mode", "ok", "target", "warnings"}
	for _, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("keys %v, want %v", keys, wantKeys)
		}
	}
	var good, bad checkResult
	if err := json.Unmarshal([]byte(lines[0]), &good); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &bad); err != nil {
		t.Fatal(err)
	}
	want := checkResult{File: f["env.toml"], OK: true, App: "shop-staging", Env: "staging", Mode: "region",
		Target: "aws:us-east-1", Warnings: []string{}, Errors: []checkError{}}
	if !reflect.DeepEqual(good, want) {
		t.Errorf("good:\n got %+v\nwant %+v", good, want)
	}
	// bad.jsonc has no environment staging, and no environments at all: wrangler reads the top level as
	// billing-staging, with a warning, and so does the check.
	wantBad := checkResult{File: f["bad.jsonc"], Env: "staging", Warnings: []string{}, Errors: []checkError{{Line: 3, Col: 17,
		Field: "placement.host", Message: `"db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`}}}
	if !reflect.DeepEqual(bad, wantBad) {
		t.Errorf("bad:\n got %+v\nwant %+v", bad, wantBad)
	}
	if !strings.Contains(lines[0], `"warnings":[]`) || !strings.Contains(lines[0], `"errors":[]`) {
		t.Errorf("empty lists must be [] not null: %s", lines[0])
	}
}
