package placement

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/vantage-edge/vantage/geo"
)

func TestLoadDirKeepsTheGoodFiles(t *testing.T) {
	dir := filepath.Join("testdata", "dir")
	got, err := LoadDir(dir)
	want := []Config{
		{App: "shop", Mode: ModeSmart, Source: filepath.Join(dir, "a-shop.toml")},
		{App: "orders", Mode: ModeRegion, Region: "aws:us-east-1", Source: filepath.Join(dir, "b-orders.jsonc")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("configs:\n got %+v\nwant %+v", got, want)
	}
	wantErr := strings.Join([]string{
		`testdata/dir/c-billing.toml:4:1: placement.host: "db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`,
		`testdata/dir/d-catalog.json:4:3: jsonc: invalid character '"' after object value (expecting ',' or '}')`,
		`testdata/dir/e-shop-again.toml: name: "shop": duplicate application: already defined in testdata/dir/a-shop.toml`,
	}, "\n")
	if err == nil || err.Error() != wantErr {
		t.Errorf("error:\n%v\nwant:\n%s", err, wantErr)
	}
	for _, s := range []error{ErrBadHost, ErrSyntax, ErrDuplicate} {
		if !errors.Is(err, s) {
			t.Errorf("errors.Is(err, %v) = false", s)
		}
	}
}

func TestLoadDirEmptyAndMissing(t *testing.T) {
	got, err := LoadDir(t.TempDir())
	if err != nil || len(got) != 0 {
		t.Errorf("empty dir: %v, %v", got, err)
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: err = %v, want fs.ErrNotExist", err)
	}
}

func TestLoadFile(t *testing.T) {
	c, err := LoadFile(filepath.Join("testdata", "valid", "hostname.json"))
	if err != nil || c.Hostname != "api.example.com" {
		t.Errorf(".json: %+v, %v", c, err)
	}

	dir := t.TempDir()
	txt := filepath.Join(dir, "wrangler.yaml")
	if err := os.WriteFile(txt, []byte("name: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadFile(txt)
	if !errors.Is(err, ErrFormat) || err.Error() != txt+": unknown config format (want .toml, .json or .jsonc)" {
		t.Errorf("yaml: err = %v", err)
	}

	if _, err := LoadFile(filepath.Join(dir, "missing.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: err = %v, want fs.ErrNotExist", err)
	}

	big := filepath.Join(dir, "big.toml")
	data := []byte("name = \"big\"\n" + strings.Repeat("# padding\n", MaxConfigBytes/10+1))
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadFile(big)
	if !errors.Is(err, ErrTooLarge) || err.Error() != big+": config too large: more than 1048576 bytes" {
		t.Errorf("big: err = %v", err)
	}
}

func TestConfigTargetAndProbeKind(t *testing.T) {
	for _, tc := range []struct {
		c      Config
		target string
		kind   ProbeKind
	}{
		{Config{Mode: ModeNone}, "", ""},
		{Config{Mode: ModeSmart}, "", ""},
		{Config{Mode: ModeRegion, Region: "aws:us-east-1"}, "aws:us-east-1", ProbeTCP},
		{Config{Mode: ModeHost, Host: "db.example.com:5432"}, "db.example.com:5432", ProbeTCP},
		{Config{Mode: ModeHostname, Hostname: "api.example.com"}, "api.example.com", ProbeHTTP},
	} {
		if got := tc.c.Target(); got != tc.target {
			t.Errorf("%s: Target() = %q, want %q", tc.c.Mode, got, tc.target)
		}
		if got := tc.c.ProbeKind(); got != tc.kind {
			t.Errorf("%s: ProbeKind() = %q, want %q", tc.c.Mode, got, tc.kind)
		}
	}
}

func TestValidate(t *testing.T) {
	p := DefaultParser()
	for _, tc := range []struct {
		name string
		c    Config
		want string // "" for valid
	}{
		{"smart", Config{App: "a", Mode: ModeSmart}, ""},
		{"none", Config{App: "a"}, ""},
		{"region", Config{App: "a", Mode: ModeRegion, Region: "gcp:us-east4"}, ""},
		{"host_not_normalised", Config{App: "a", Mode: ModeHost, Host: "DB.example.com:05432"}, ""},
		{"hostname", Config{App: "a", Mode: ModeHostname, Hostname: "api.example.com"}, ""},
		{"no_app", Config{Source: "api", Mode: ModeSmart},
			`api: name: "": empty: every application needs a name`},
		{"bad_mode", Config{App: "a", Mode: "fast", Source: "api"},
			`api: placement.mode: "fast": unknown placement mode (want "smart", "region", "host", "hostname" or none)`},
		{"mode_without_target", Config{App: "a", Mode: ModeHost, Source: "api"},
			`api: placement.host: "": empty: want host:port, e.g. "db.example.com:5432"`},
		{"two_targets", Config{App: "a", Mode: ModeHost, Host: "db.example.com:5432", Region: "aws:us-east-1", Source: "api"},
			`api: placement.region: "aws:us-east-1": set, but the mode is "host"`},
		{"smart_with_hostname", Config{App: "a", Mode: ModeSmart, Hostname: "api.example.com", Source: "api"},
			`api: placement.hostname: "api.example.com": set, but the mode is "smart"`},
		{"denied", Config{App: "a", Mode: ModeHostname, Hostname: "fe80::1", Source: "api"},
			`api: placement.hostname: "fe80::1": address fe80::1: denied by policy (rule link-local, fe80::/10)`},
		{"bad_region", Config{App: "a", Mode: ModeRegion, Region: "aws:mars-1", Source: "api"},
			`api: placement.region: "aws:mars-1": not in the region catalogue`},
		{"smart_with_hint", Config{App: "a", Mode: ModeSmart, Hint: "wnam"}, ""},
		{"host_with_hint", Config{App: "a", Mode: ModeHost, Host: "db.example.com:5432", Hint: "wnam", Source: "api"},
			`api: placement.hint: "wnam": a hint goes with mode "smart" only`},
		{"off_with_hint", Config{App: "a", Hint: "wnam", Source: "api"},
			`api: placement.hint: "wnam": a hint goes with mode "smart" only`},
		{"bad_hint", Config{App: "a", Mode: ModeSmart, Hint: "wnam\n", Source: "api"},
			`api: placement.hint: "wnam\n": invalid hint: '\n': want printable ASCII without spaces`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Validate(tc.c)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("no error, want %s", tc.want)
			case tc.want != "" && !strings.HasPrefix(err.Error(), tc.want):
				t.Errorf("error:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
}

// TestTOMLKeyPositions checks that errors point at the key however the TOML spells the table and the key.
func TestTOMLKeyPositions(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line, col int
	}{
		{"header", "name = \"a\"\n[placement]\nhost = \"10.0.0.5:1\"\n", 3, 1},
		{"indented", "name = \"a\"\n[placement]\n    host = \"10.0.0.5:1\"\n", 3, 5},
		{"tab_before_equals", "name = \"a\"\n[placement]\nhost\t=\t\"10.0.0.5:1\"\n", 3, 1},
		{"no_blanks", "name = \"a\"\n[placement]\nhost=\"10.0.0.5:1\"\n", 3, 1},
		{"spaced_header", "name = \"a\"\n[ placement ] # the placement\nhost = \"10.0.0.5:1\"\n", 3, 1},
		{"quoted_header", "name = \"a\"\n[\"placement\"]\n\"host\" = \"10.0.0.5:1\"\n", 3, 1},
		{"literal_string", "name = \"a\"\n[placement]\nhost = '10.0.0.5:1'\n", 3, 1},
		{"multiline_string", "name = \"a\"\n[placement]\nhost = \"\"\"10.0.0.5:1\"\"\"\n", 3, 1},
		{"dotted", "name = \"a\"\nplacement.host = \"10.0.0.5:1\"\n", 2, 1},
		{"dotted_spaced_quoted", "name = \"a\"\n\"placement\" . \"host\" = \"10.0.0.5:1\"\n", 2, 1},
		{"inline", "name = \"a\"\nplacement = { host = \"10.0.0.5:1\" }\n", 2, 15},
		{"inline_quoted_key", "name = \"a\"\nplacement = { \"host\" = \"10.0.0.5:1\" }\n", 2, 15},
		{"crlf", "name = \"a\"\r\n[placement]\r\nhost = \"10.0.0.5:1\"\r\n", 3, 1},
		{"after_multiline_string", "name = \"a\"\ndescription = \"\"\"\n[placement]\nhost = 1\n\"\"\"\n[placement]\nhost = \"10.0.0.5:1\"\n", 7, 1},
		{"legacy", "name = \"a\"\n[unsafe.metadata]\nplacement = { host = \"10.0.0.5:1\" }\n", 3, 15},
		{"table_header_of_legacy", "name = \"a\"\n[placement]\nmode = \"smart\"\n[unsafe.metadata.placement]\nmode = \"off\"\n", 4, 1},
		{"missing_mode_at_header", "name = \"a\"\n\n[placement]\n", 3, 1},
		{"env_placement", "name = \"a\"\n[env.staging.placement]\nhost = \"10.0.0.5:1\"\n", 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parser{Policy: DefaultPolicy(), Env: "staging"}.ParseTOML("w.toml", []byte(tc.src))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if ce.Line != tc.line || ce.Col != tc.col {
				t.Errorf("at %d:%d, want %d:%d (%v)", ce.Line, ce.Col, tc.line, tc.col, err)
			}
		})
	}
}

// TestRegionCapAdmitsTheCatalogue: the length cap applied before geo's lookup must not refuse any real region.
func TestRegionCapAdmitsTheCatalogue(t *testing.T) {
	regions := geo.Regions()
	if len(regions) == 0 {
		t.Fatal("empty region catalogue")
	}
	for _, r := range regions {
		if len(r.ID) > maxRegionLen {
			t.Errorf("region %q is longer than maxRegionLen %d", r.ID, maxRegionLen)
		}
		if id, err := checkRegion(r.ID); err != nil || id != r.ID {
			t.Errorf("region %q: checkRegion = %q, %v", r.ID, id, err)
		}
	}
}

func TestLoadDirSkipsSpecialFilesAndFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.toml"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	real := filepath.Join(t.TempDir(), "real.toml")
	if err := os.WriteFile(real, []byte("name = \"linked\"\n[placement]\nmode = \"smart\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "dirlink.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling.toml")); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDir(dir) // must not block on the FIFO
	if len(got) != 1 || got[0].App != "linked" {
		t.Errorf("configs: %+v", got)
	}
	if !errors.Is(err, fs.ErrNotExist) || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "dangling.toml") {
		t.Errorf("err = %v, want only the dangling link's", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "fifo.toml")); err == nil || err.Error() != "placement: "+filepath.Join(dir, "fifo.toml")+": not a regular file" {
		t.Errorf("LoadFile(fifo) = %v", err)
	}
}

func TestConfigErrorWithoutFileName(t *testing.T) {
	_, err := ParseWranglerTOML("", []byte("[placement]\nmode = \"smart\"\n"))
	if want := "<input>: name: missing: every application needs a name"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}
