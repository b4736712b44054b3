package placement

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const envTOML = `name = "shop"
account_id = "acct-top"

[placement]
mode = "smart"

[env.staging.placement]
region = "aws:us-east-1"

[env.production]
account_id = "acct-prod"

[env.preview]
name = "shop-preview-1"
account_id = ""
placement = { mode = "off" }

[env.bad.placement]
host = "db.example.com"
`

func TestEnvironments(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		want      Config
		err       string
		is        error
	}{
		{name: "top_level", env: "", want: Config{App: "shop", AccountID: "acct-top", Mode: ModeSmart}},
		{name: "own_placement", env: "staging",
			want: Config{App: "shop-staging", Env: "staging", AccountID: "acct-top", Mode: ModeRegion, Region: "aws:us-east-1"}},
		{name: "inherits_placement", env: "production",
			want: Config{App: "shop-production", Env: "production", AccountID: "acct-prod", Mode: ModeSmart}},
		{name: "own_name_empty_account_off", env: "preview",
			want: Config{App: "shop-preview-1", Env: "preview", AccountID: "acct-top", Warnings: []string{
				`w.toml:15:1: env.preview.account_id: "": empty: ignored, as wrangler does`}}},
		{name: "invalid_in_env", env: "bad", is: ErrBadHost,
			err: `w.toml:19:1: env.bad.placement.host: "db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`},
		{name: "undefined_env", env: "qa", is: ErrNoEnv,
			err: `w.toml: env: unknown environment "qa": the config defines bad, preview, production, staging`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parser{Policy: DefaultPolicy(), Env: tc.env}.ParseTOML("w.toml", []byte(envTOML))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || !errors.Is(err, tc.is) {
					t.Fatalf("error:\n%v\nwant (%v):\n%s", err, tc.is, tc.err)
				}
				return
			}
			tc.want.Source = "w.toml"
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}

func TestEnvironmentsJSONC(t *testing.T) {
	src := `{
  "name": "api",
  "placement": { "hostname": "api.example.com" },
  "env": {
    "eu": { "placement": { "host": "db.eu.example.com:5432" } },
    "us": { "placement": null, "name": "api-us" },
    "bad": { "placement": { "mode": "off", "hint": "wnam" } },
  },
}`
	for env, want := range map[string]Config{
		"":   {App: "api", Mode: ModeHostname, Hostname: "api.example.com"},
		"eu": {App: "api-eu", Env: "eu", Mode: ModeHost, Host: "db.eu.example.com:5432"},
		"us": {App: "api-us", Env: "us", Mode: ModeHostname, Hostname: "api.example.com"},
	} {
		got, err := Parser{Policy: DefaultPolicy(), Env: env}.ParseJSONC("w.jsonc", []byte(src))
		want.Source = "w.jsonc"
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("env %q: got %+v, %v\nwant %+v", env, got, err, want)
		}
	}
	_, err := Parser{Policy: DefaultPolicy(), Env: "bad"}.ParseJSONC("w.jsonc", []byte(src))
	if want := `w.jsonc:7:44: env.bad.placement.hint: "wnam": a hint goes with mode "smart" only, not with mode "off"`; err == nil || err.Error() != want {
		t.Errorf("env bad: %v\nwant %s", err, want)
	}
}

func TestEnvWithoutEnvironmentsIsTheTopLevel(t *testing.T) {
	src := "name = \"shop\"\n[unsafe.metadata.placement]\nmode = \"smart\"\n"
	got, err := Parser{Policy: DefaultPolicy(), Env: "qa"}.ParseTOML("w.toml", []byte(src))
	want := Config{App: "shop-qa", Env: "qa", Mode: ModeSmart, Legacy: true, Source: "w.toml", Warnings: []string{
		`w.toml: env: no environment "qa" in the config: the top level is read for it, as wrangler does (add [env.qa])`}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v, %v\nwant %+v", got, err, want)
	}
}

// TestLoadDirEnvironments: the config dir has one application per (file, environment); a bad environment
// loses only itself, a bad top level the whole file, and names are unique across files and environments.
func TestLoadDirEnvironments(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"a.toml": envTOML,
		"b.jsonc": `{"name": "cart", "placement": {"mode": "smart"},
		             "env": {"staging": {"name": "shop-staging", "placement": {"mode": "smart"}}}}`,
		"c.toml": "name = \"broken\"\n[placement]\n[env.x.placement]\nmode = \"smart\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgs, err := DefaultParser().LoadDir(dir)
	var got []string
	for _, c := range cfgs {
		got = append(got, c.App+"@"+c.Env+"="+string(c.Mode))
	}
	want := []string{"shop@=smart", "shop-preview-1@preview=", "shop-production@production=smart",
		"shop-staging@staging=region", "cart@=smart"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("apps:\n got %q\nwant %q", got, want)
	}
	a, b, c := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.jsonc"), filepath.Join(dir, "c.toml")
	wantErr := strings.Join([]string{
		a + `:19:1: env.bad.placement.host: "db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`,
		b + `: env.staging.name: "shop-staging": duplicate application: already defined in ` + a + ` (env staging)`,
		c + `:2:1: placement.mode: placement mode missing: want mode = "smart", "targeted" or "off", or one of region, host or hostname`,
	}, "\n")
	if err == nil || err.Error() != wantErr {
		t.Errorf("error:\n%v\nwant:\n%s", err, wantErr)
	}

	// With Parser.Env, the dir reads that environment of every file.
	cfgs, err = Parser{Policy: DefaultPolicy(), Env: "staging"}.LoadDir(dir)
	if len(cfgs) != 1 || cfgs[0].App != "shop-staging" || cfgs[0].Region != "aws:us-east-1" {
		t.Errorf("--env staging: %+v", cfgs)
	}
	if !errors.Is(err, ErrDuplicate) || !errors.Is(err, ErrNoMode) || errors.Is(err, ErrBadHost) {
		t.Errorf("--env staging: err = %v, want b's duplicate and c's top level only", err)
	}
}
