package placement

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestDeepNestingIsRefused: a megabyte of '[' would overflow the parsers' stacks (a fatal error); it must be
// refused, quickly, at the bracket past the limit.
func TestDeepNestingIsRefused(t *testing.T) {
	deep := strings.Repeat("[", MaxConfigBytes-100)
	for _, tc := range []struct {
		name  string
		src   string
		parse func(string, []byte) (Config, error)
		want  string
	}{
		{"toml_array", "name = \"a\"\nx = " + deep, ParseWranglerTOML, "w:2:69: syntax error: nested deeper than 64 levels"},
		{"toml_inline_tables", "x = " + strings.Repeat("{a=", 100), ParseWranglerTOML, "w:1:197: syntax error: nested deeper than 64 levels"},
		{"jsonc_array", "{\"x\": " + deep, ParseWranglerJSONC, "w:1:70: syntax error: nested deeper than 64 levels"},
		{"jsonc_objects", strings.Repeat("{\"a\":", 100), ParseWranglerJSONC, "w:1:321: syntax error: nested deeper than 64 levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.parse("w", []byte(tc.src))
			if !errors.Is(err, ErrSyntax) || err.Error() != tc.want {
				t.Errorf("err = %v, want %s", err, tc.want)
			}
		})
	}
}

// TestBracketsInStringsAndCommentsDoNotNest: the depth scan skips strings and comments.
func TestBracketsInStringsAndCommentsDoNotNest(t *testing.T) {
	b := strings.Repeat("[{", 100)
	tomlSrc := fmt.Sprintf("# %s\nname = \"a\"\nx = \"%s\"\ny = '%s'\nz = \"\"\"\n%s\n\"\"\"\nw = '''%s'''\nq = \"\\\"%s\"\n[placement]\nmode = \"smart\" # %s\n",
		b, b, b, b, b, b, b)
	if c, err := ParseWranglerTOML("w.toml", []byte(tomlSrc)); err != nil || c.Mode != ModeSmart {
		t.Errorf("toml: %+v, %v", c, err)
	}
	jsonSrc := fmt.Sprintf("// %s\n{\"name\": \"a\", /* %s */ \"x\": \"%s\", \"y\": \"\\\"%s\", \"placement\": {\"mode\": \"smart\"}}\n", b, b, b, b)
	if c, err := ParseWranglerJSONC("w.jsonc", []byte(jsonSrc)); err != nil || c.Mode != ModeSmart {
		t.Errorf("jsonc: %+v, %v", c, err)
	}
}

func TestTooManyErrorsAreCounted(t *testing.T) {
	var b strings.Builder
	b.WriteString("{\"name\": \"a\", \"placement\": {\n")
	for range 25 {
		b.WriteString("\"mode\": \"smart\",\n")
	}
	b.WriteString("}}\n")
	_, err := ParseWranglerJSONC("w.jsonc", []byte(b.String()))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 11 {
		t.Fatalf("%d lines:\n%v", len(lines), err)
	}
	if want := `w.jsonc:3:1: placement.mode: "smart": duplicate key: first given on line 2`; lines[0] != want {
		t.Errorf("first: %s\nwant   %s", lines[0], want)
	}
	if want := `w.jsonc: too many errors: 14 more not shown`; lines[10] != want || !errors.Is(err, ErrTooMany) {
		t.Errorf("last: %s\nwant  %s", lines[10], want)
	}
}

// BenchmarkParseLargeBadTOML measures a megabyte of bad keys: the first 10 are located (which decodes the
// file once more), the rest counted.
func BenchmarkParseLargeBadTOML(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("name = \"a\"\n[placement]\n")
	for i := 0; sb.Len() < MaxConfigBytes-100; i++ {
		fmt.Fprintf(&sb, "key%06d = 1\n", i)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseWranglerTOML("w.toml", data); !errors.Is(err, ErrTooMany) {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseWranglerTOML(b *testing.B) {
	data := []byte("name = \"shop\"\nmain = \"src/index.ts\"\n[vars]\nA = \"1\"\n[placement]\nhost = \"db.example.com:5432\"\n")
	for b.Loop() {
		if _, err := ParseWranglerTOML("w.toml", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseWranglerJSONC(b *testing.B) {
	data := []byte("{\n  // c\n  \"name\": \"shop\",\n  \"main\": \"src/index.ts\",\n  \"vars\": {\"A\": \"1\"},\n  \"placement\": {\"host\": \"db.example.com:5432\",},\n}\n")
	for b.Loop() {
		if _, err := ParseWranglerJSONC("w.jsonc", data); err != nil {
			b.Fatal(err)
		}
	}
}
