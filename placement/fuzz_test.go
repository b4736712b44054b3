package placement

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzzers' seeds are the example configs of testdata/valid and testdata/invalid; the corpus they grew is
// kept in testdata/fuzz/<FuzzName>/. Run one with
//
//	go test -run='^$' -fuzz=FuzzParseWranglerTOML -fuzztime=60s ./placement

// sentinels are the errors every config error must wrap one of.
var sentinels = []error{ErrSyntax, ErrTooMany, ErrTooLarge, ErrType, ErrUnknownKey, ErrDuplicate, ErrBadName, ErrConflict,
	ErrUnknownMode, ErrNoMode, ErrNoEnv, ErrNoTarget, ErrBadRegion, ErrBadHost, ErrBadHostname, ErrBadHint, ErrBadAccount}

func addSeeds(f *testing.F, exts ...string) {
	f.Helper()
	for _, dir := range []string{"valid", "invalid", "dir"} {
		entries, err := os.ReadDir(filepath.Join("testdata", dir))
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() || !hasExt(e.Name(), exts...) {
				continue
			}
			data, err := os.ReadFile(filepath.Join("testdata", dir, e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

func hasExt(name string, exts ...string) bool {
	for _, x := range exts {
		if strings.HasSuffix(name, x) {
			return true
		}
	}
	return false
}

func FuzzParseWranglerTOML(f *testing.F) {
	addSeeds(f, ".toml")
	f.Add([]byte("name = \"a\"\nplacement = { mode = \"targeted\", host = \"[2001:db8::1]:443\" }\n"))
	f.Add([]byte("name = \"a\"\n[unsafe.metadata]\nplacement.hostname = \"API.example.com.\"\n"))
	f.Add([]byte("name = \"a\"\naccount_id = \"x\"\n[placement]\nmode = \"smart\"\n[env.staging]\nname = \"b\"\n[env.staging.placement]\nregion = \"aws:us-east-1\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseWranglerTOML("fuzz.toml", data)
		checkResult(t, "fuzz.toml", data, c, err)
		c, err = Parser{Policy: DefaultPolicy(), Env: "staging"}.ParseTOML("fuzz.toml", data)
		checkResult(t, "fuzz.toml", data, c, err)
	})
}

func FuzzParseWranglerJSONC(f *testing.F) {
	addSeeds(f, ".json", ".jsonc")
	f.Add([]byte("{\"name\":\"a\",\"placement\":{\"mode\":\"targeted\",\"host\":\"[2001:db8::1]:443\",},}"))
	f.Add([]byte("/* c */ {\"name\":\"a\", \"unsafe\": {\"metadata\": {\"placement\": {\"hostname\": \"API.example.com.\"}}}}"))
	f.Add([]byte("{\"name\":\"a\", \"env\": {\"staging\": {\"placement\": {\"host\": \"db:1\"}, \"account_id\": \"\"}}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		c, err := ParseWranglerJSONC("fuzz.jsonc", data)
		if !bytes.Equal(data, orig) {
			t.Fatalf("input modified")
		}
		checkResult(t, "fuzz.jsonc", data, c, err)
		c, err = Parser{Policy: DefaultPolicy(), Env: "staging"}.ParseJSONC("fuzz.jsonc", data)
		checkResult(t, "fuzz.jsonc", data, c, err)
	})
}

// checkResult holds for every input: a config that parses validates again, and reads back the same from
// both formats; a config that does not gives only *ConfigErrors, naming the file, inside the input, each
// wrapping a sentinel.
func checkResult(t *testing.T, file string, data []byte, c Config, err error) {
	t.Helper()
	if err != nil {
		if !reflect.DeepEqual(c, Config{}) {
			t.Fatalf("config %+v returned with error %v", c, err)
		}
		checkErrors(t, file, data, err)
		return
	}
	if c.Source != file || !c.Mode.Valid() {
		t.Fatalf("bad config %+v", c)
	}
	if err := DefaultParser().Validate(c); err != nil {
		t.Fatalf("parsed config %+v does not validate: %v", c, err)
	}
	if (c.Target() == "") != (c.Mode == ModeNone || c.Mode == ModeSmart) || (c.ProbeKind() == "") != (c.Target() == "") {
		t.Fatalf("config %+v: target %q, probe kind %q", c, c.Target(), c.ProbeKind())
	}
	for _, rt := range []struct {
		name  string
		src   []byte
		parse func(string, []byte) (Config, error)
	}{
		{"re.toml", renderTOML(c), ParseWranglerTOML},
		{"re.jsonc", renderJSONC(c), ParseWranglerJSONC},
	} {
		again, err := rt.parse(rt.name, rt.src)
		if err != nil {
			t.Fatalf("config %+v rendered as\n%s\ndoes not parse: %v", c, rt.src, err)
		}
		again.Source, again.Env = c.Source, c.Env
		again.Warnings, c.Warnings = nil, nil // a target beside mode "off" is dropped with a warning, and not rendered
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("config %+v rendered as\n%s\nreads back as %+v", c, rt.src, again)
		}
	}
}

func checkErrors(t *testing.T, file string, data []byte, err error) {
	t.Helper()
	leaves := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		leaves = j.Unwrap()
	}
	lines := 1 + bytes.Count(data, []byte("\n"))
	for _, e := range leaves {
		ce, ok := e.(*ConfigError)
		if !ok {
			t.Fatalf("error %T is not a *ConfigError: %v", e, e)
		}
		if ce.File != file || ce.Line < 0 || ce.Line > lines || ce.Col < 0 || ce.Err == nil {
			t.Fatalf("bad error %+v (input has %d lines)", ce, lines)
		}
		wraps := false
		for _, s := range sentinels {
			wraps = wraps || errors.Is(ce, s)
		}
		if !wraps {
			t.Fatalf("error %v wraps no sentinel", ce)
		}
		if strings.Contains(ce.Error(), "position probe") {
			t.Fatalf("internal error leaked: %v", ce)
		}
	}
}

func renderTOML(c Config) []byte {
	var b strings.Builder
	b.WriteString("name = " + quote(c.App) + "\n")
	if c.AccountID != "" {
		b.WriteString("account_id = " + quote(c.AccountID) + "\n")
	}
	if c.Legacy {
		b.WriteString("[unsafe.metadata.placement]\n")
	} else {
		b.WriteString("[placement]\n")
	}
	switch c.Mode {
	case ModeNone:
		b.WriteString("mode = \"off\"\n")
	case ModeSmart:
		b.WriteString("mode = \"smart\"\n")
	default:
		b.WriteString(string(c.Mode) + " = " + quote(c.Target()) + "\n")
	}
	if c.Hint != "" {
		b.WriteString("hint = " + quote(c.Hint) + "\n")
	}
	return []byte(b.String())
}

func renderJSONC(c Config) []byte {
	var p string
	switch c.Mode {
	case ModeNone:
		p = `{"mode": "off"`
		if c.Hint != "" {
			p += `, "hint": ` + quote(c.Hint)
		}
		p += `}`
	case ModeSmart:
		p = `{"mode": "smart"`
		if c.Hint != "" {
			p += `, "hint": ` + quote(c.Hint)
		}
		p += `}`
	default:
		p = `{"mode": "targeted", "` + string(c.Mode) + `": ` + quote(c.Target()) + `,}`
	}
	account := ""
	if c.AccountID != "" {
		account = "  \"account_id\": " + quote(c.AccountID) + ",\n"
	}
	if c.Legacy {
		p = `{"metadata": {"placement": ` + p + `}}`
		return []byte("{\n  \"name\": " + quote(c.App) + ",\n" + account + "  // legacy\n  \"unsafe\": " + p + ",\n}\n")
	}
	return []byte("{\n  \"name\": " + quote(c.App) + ",\n" + account + "  \"placement\": " + p + ", // placement\n}\n")
}

// FuzzHost checks the host validator alone: it never panics, what it accepts is a dialable host:port that it
// accepts again unchanged, and what it refuses wraps ErrBadHost.
func FuzzHost(f *testing.F) {
	for _, s := range []string{"db.example.com:5432", "[2001:db8::1]:443", "10.0.0.5:5432", "DB.example.com.:05432",
		"my_database_host.com:5432", ":5432", "db:", "db:0", "db:65536", "[::1]", "tcp://db:1", "10.1:80", "[fe80::1%eth0]:22"} {
		f.Add(s)
	}
	p := DefaultParser()
	f.Fuzz(func(t *testing.T, s string) {
		norm, err := p.checkHost(s)
		if err != nil {
			if !errors.Is(err, ErrBadHost) {
				t.Fatalf("%q: error %v does not wrap ErrBadHost", s, err)
			}
			return
		}
		host, port, err := net.SplitHostPort(norm)
		if err != nil || host == "" {
			t.Fatalf("%q accepted as %q, which does not split: %v", s, norm, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			t.Fatalf("%q accepted as %q: bad port", s, norm)
		}
		if again, err := p.checkHost(norm); err != nil || again != norm {
			t.Fatalf("%q accepted as %q, which checks as %q, %v", s, norm, again, err)
		}
	})
}

// FuzzHostname checks the hostname validator alone, like FuzzHost.
func FuzzHostname(f *testing.F) {
	for _, s := range []string{"api.example.com", "API.Example.com.", "my_api_server.com", "2001:db8::2", "[2001:db8::2]",
		"169.254.169.254", "https://api.example.com", "api.example.com/v1", "api.example.com:443", "10.1", "0x7f000001",
		"bücher.example", "-a.example", "a..b"} {
		f.Add(s)
	}
	p := DefaultParser()
	f.Fuzz(func(t *testing.T, s string) {
		norm, err := p.checkHostname(s)
		if err != nil {
			if !errors.Is(err, ErrBadHostname) {
				t.Fatalf("%q: error %v does not wrap ErrBadHostname", s, err)
			}
			return
		}
		if norm == "" || strings.ContainsAny(norm, "/?#@[] \t") || strings.HasSuffix(norm, ".") || norm != strings.ToLower(norm) {
			t.Fatalf("%q accepted as %q", s, norm)
		}
		if again, err := p.checkHostname(norm); err != nil || again != norm {
			t.Fatalf("%q accepted as %q, which checks as %q, %v", s, norm, again, err)
		}
		if _, err := p.checkHost(net.JoinHostPort(norm, "443")); err != nil {
			t.Fatalf("hostname %q accepted, but not as host %q: %v", s, net.JoinHostPort(norm, "443"), err)
		}
	})
}

// FuzzFormatsAgree writes the same placement as wrangler.toml and as wrangler.jsonc and checks the parsers
// agree: the same Config, or the same problems (field, value and reason; positions differ by format). present
// says which keys are written (bit 0 mode, 1 region, 2 host, 3 hostname, 4 name), so empty values are tried
// too; legacy writes [unsafe.metadata.placement].
func FuzzFormatsAgree(f *testing.F) {
	f.Add(uint8(0b10001), "app", "smart", "", "", "", false)
	f.Add(uint8(0b10010), "app", "", "aws:us-east-1", "", "", false)
	f.Add(uint8(0b10101), "app", "targeted", "", "db.example.com:5432", "", true)
	f.Add(uint8(0b11001), "app", "smart", "", "", "api.example.com", false)
	f.Add(uint8(0b11110), "App", "", "aws:us-east1", "10.0.0.5:5432", "https://x", false)
	f.Add(uint8(0b01000), "", "", "", "", "[fe80::1]", false)
	f.Fuzz(func(t *testing.T, present uint8, name, mode, region, host, hostname string, legacy bool) {
		for _, s := range []string{name, mode, region, host, hostname} {
			if !utf8.ValidString(s) {
				t.Skip("TOML cannot hold invalid UTF-8")
			}
		}
		tomlSrc, jsonSrc := renderFields(present, name, mode, region, host, hostname, legacy)
		ct, errT := ParseWranglerTOML("w", []byte(tomlSrc))
		cj, errJ := ParseWranglerJSONC("w", []byte(jsonSrc))
		if pt, pj := problems(t, errT), problems(t, errJ); !slices.Equal(pt, pj) {
			t.Fatalf("TOML\n%s-> %v\nJSONC\n%s-> %v", tomlSrc, errT, jsonSrc, errJ)
		}
		ct.Warnings, cj.Warnings = stripPos(ct.Warnings), stripPos(cj.Warnings)
		if !reflect.DeepEqual(ct, cj) {
			t.Fatalf("TOML\n%s-> %+v\nJSONC\n%s-> %+v", tomlSrc, ct, jsonSrc, cj)
		}
		if errT == nil {
			checkResult(t, "w", []byte(tomlSrc), ct, nil)
		}
	})
}

// renderFields writes the same placement as wrangler.toml and as wrangler.jsonc, for FuzzFormatsAgree.
func renderFields(present uint8, name, mode, region, host, hostname string, legacy bool) (tomlSrc, jsonSrc string) {
	keys := []struct{ k, v string }{{"mode", mode}, {"region", region}, {"host", host}, {"hostname", hostname}}
	var tb, jb strings.Builder
	jb.WriteString("{\n")
	if present&(1<<4) != 0 {
		tb.WriteString("name = " + tomlQuote(name) + "\n")
		jb.WriteString("  \"name\": " + jsonQuote(name) + ",\n")
	}
	if legacy {
		tb.WriteString("[unsafe.metadata.placement]\n")
		jb.WriteString("  \"unsafe\": { \"metadata\": { \"placement\": {\n")
	} else {
		tb.WriteString("[placement]\n")
		jb.WriteString("  \"placement\": {\n")
	}
	for i, kv := range keys {
		if present&(1<<i) != 0 {
			tb.WriteString(kv.k + " = " + tomlQuote(kv.v) + "\n")
			jb.WriteString("    \"" + kv.k + "\": " + jsonQuote(kv.v) + ",\n")
		}
	}
	if legacy {
		jb.WriteString("  } } },\n}\n")
	} else {
		jb.WriteString("  },\n}\n")
	}
	return tb.String(), jb.String()
}

// problems lists the errors in err without their positions, sorted.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	leaves := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		leaves = j.Unwrap()
	}
	var out []string
	for _, e := range leaves {
		ce, ok := e.(*ConfigError)
		if !ok {
			t.Fatalf("not a *ConfigError: %v", e)
		}
		out = append(out, fmt.Sprintf("%s|%#v|%v", ce.Field, ce.Value, ce.Err))
	}
	slices.Sort(out)
	return out
}

func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func jsonQuote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// stripPos drops the file:line:col of warnings, which differ by format.
func stripPos(ws []string) []string {
	var out []string
	for _, w := range ws {
		if _, rest, ok := strings.Cut(w, ": "); ok {
			w = rest
		}
		out = append(out, w)
	}
	return out
}
