package placement

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// readTOML decodes a wrangler.toml into the document model. Keys are read from a map, so they match exactly
// (BurntSushi/toml matches struct fields case-insensitively, which would take Host for host).
func readTOML(file string, data []byte) (rawDoc, error) {
	src := string(data)
	var top map[string]any
	if _, err := toml.Decode(src, &top); err != nil {
		ce := &ConfigError{File: file}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			ce.Line, ce.Col = tomlLineCol(src, pe.Position)
			ce.Err = &reason{sentinel: ErrSyntax, msg: "toml: " + pe.Message, cause: pe}
		} else {
			ce.Err = &reason{sentinel: ErrSyntax, msg: err.Error(), cause: err}
		}
		return rawDoc{}, ce
	}
	doc := rawDoc{file: file, table: "table"}
	loc := &tomlLocator{src: src}
	value := func(v any, path ...string) rawValue {
		return rawValue{val: scalar(v), kind: tomlKind(v), pos: func() (int, int) { return loc.pos(path) }}
	}
	// read reads the keys placement needs from one environment's table m, whose key path is at (nil for the
	// top level).
	read := func(e *rawEnv, m map[string]any, at ...string) {
		key := func(k ...string) []string { return append(at[:len(at):len(at)], k...) }
		if v, ok := m["name"]; ok {
			rv := value(v, key("name")...)
			e.appName = &rv
		}
		if v, ok := m["account_id"]; ok {
			rv := value(v, key("account_id")...)
			e.account = &rv
		}
		table := func(v any, legacy bool, path ...string) {
			t := rawTable{path: strings.Join(path, "."), legacy: legacy, value: value(v, path...)}
			if m, ok := v.(map[string]any); ok {
				for k, fv := range m {
					t.fields = append(t.fields, rawField{key: k, rawValue: value(fv, append(path[:len(path):len(path)], k)...)})
				}
				sortFields(t.fields)
			}
			e.tables = append(e.tables, t)
		}
		if v, ok := m["placement"]; ok {
			table(v, false, key("placement")...)
		}
		// The legacy form: unsafe.metadata is passed through to the platform's upload metadata. Anything else
		// under [unsafe] is none of ours.
		if u, ok := m["unsafe"].(map[string]any); ok {
			if md, ok := u["metadata"].(map[string]any); ok {
				if v, ok := md["placement"]; ok {
					table(v, true, key("unsafe", "metadata", "placement")...)
				}
			}
		}
	}
	read(&doc.top, top)
	if v, ok := top["env"]; ok {
		rv := value(v, "env")
		doc.envKey = &rv
		envs, _ := v.(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(envs)) {
			e := rawEnv{name: name, path: "env." + name, value: value(envs[name], "env", name)}
			if m, ok := envs[name].(map[string]any); ok {
				read(&e, m, "env", name)
			}
			doc.envs = append(doc.envs, e)
		}
	}
	return doc, nil
}

// scalar returns v if it is a value ConfigError shows, else nil.
func scalar(v any) any {
	switch v.(type) {
	case string, int64, float64, bool:
		return v
	}
	return nil
}

// tomlKind names the TOML type of a decoded value, as the TOML spec names them.
func tomlKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case map[string]any:
		return "table"
	case []map[string]any:
		return "array of tables"
	case []any:
		return "array"
	}
	return "datetime"
}

// tomlLineCol returns the line and byte column of a toml.Position, from its byte offset (Start) when that is
// in range: the library's own Line can be one past the line the offset is on.
func tomlLineCol(src string, p toml.Position) (line, col int) {
	if p.Start < 0 || p.Start > len(src) || p.Line < 1 {
		return p.Line, p.Col
	}
	return lineCol([]byte(src), p.Start)
}

// posProbe fails to decode whatever it is given, so that the TOML decoder's error tells where the value at
// its place in the document is (toml.ParseError.Position of the key being decoded).
type posProbe struct{}

// errPosProbe is what posProbe fails with. ParseError does not unwrap: it is matched by its text.
var errPosProbe = errors.New("placement: position probe")

// UnmarshalTOML implements toml.Unmarshaler.
func (posProbe) UnmarshalTOML(any) error { return errPosProbe }

// tomlLocator finds where keys are written in a TOML document. BurntSushi/toml keeps the position of every
// key but shows it only in errors; so the locator decodes the document (once, on first use) into
// toml.Primitive values, walks down to the key through more Primitives (each remembers its key path), and
// decodes the last one into a posProbe: the decoder's error carries the position. Only fixed types are
// involved, whatever the keys are called. Valid configs never use a locator.
type tomlLocator struct {
	src     string
	decoded bool
	md      toml.MetaData
	tables  map[string]map[string]toml.Primitive // by key path joined with NUL; "" is the top level
}

// pos returns the line and column of the key at path (e.g. placement, host), or 0, 0 when it cannot tell.
func (l *tomlLocator) pos(path []string) (line, col int) {
	if !l.decoded {
		l.decoded = true
		var top map[string]toml.Primitive
		md, err := toml.Decode(l.src, &top)
		if err != nil {
			return 0, 0
		}
		l.md, l.tables = md, map[string]map[string]toml.Primitive{"": top}
	}
	var (
		prim toml.Primitive
		ok   bool
	)
	for i, k := range path {
		at := strings.Join(path[:i], "\x00")
		t, seen := l.tables[at]
		if !seen { // decode the table once: it may hold many keys in error
			if !ok || l.md.PrimitiveDecode(prim, &t) != nil {
				return 0, 0
			}
			l.tables[at] = t
		}
		if prim, ok = t[k]; !ok {
			return 0, 0
		}
	}
	var pe toml.ParseError
	if err := l.md.PrimitiveDecode(prim, &posProbe{}); !errors.As(err, &pe) || pe.Message != errPosProbe.Error() || pe.Position.Line < 1 {
		return 0, 0
	}
	line, col = tomlLineCol(l.src, pe.Position)
	// The position is the value's (inside the quotes of a string), or for some forms the key's: step back to
	// the key, or to the [ of a table header.
	lines := strings.SplitN(l.src, "\n", line+1)
	if line > len(lines) {
		return 0, 0
	}
	text := lines[line-1]
	if k := keyStart(text, col-1); k >= 0 {
		col = k + 1
	} else if t := strings.TrimLeft(text, " \t"); strings.HasPrefix(t, "[") {
		col = len(text) - len(t) + 1
	}
	return line, col
}

// keyStart returns the byte offset in line of the key whose value starts at offset v (for a string, its first
// character inside the quotes): it steps back over the quotes, blanks, '=', blanks and a dotted key (bare or
// quoted parts). It returns -1 when line does not look like
// that.
func keyStart(line string, v int) int {
	if v < 0 || v > len(line) {
		return -1
	}
	i := v - 1
	// A string's position is that of its first character: step back over its opening quotes.
	for q := 0; q < 3 && i >= 0 && (line[i] == '"' || line[i] == '\'') && (q == 0 || line[i] == line[v-1]); q++ {
		i--
	}
	blanks := func() {
		for i >= 0 && (line[i] == ' ' || line[i] == '\t') {
			i--
		}
	}
	blanks()
	if i < 0 || line[i] != '=' {
		return -1
	}
	i--
	blanks()
	start := -1
	for i >= 0 {
		switch c := line[i]; {
		case c == '"' || c == '\'':
			j := strings.LastIndexByte(line[:i], c)
			if j < 0 {
				return -1
			}
			i = j - 1
		case isBareKey(c):
			for i >= 0 && isBareKey(line[i]) {
				i--
			}
		default:
			return -1
		}
		start = i + 1
		blanks()
		if i < 0 || line[i] != '.' {
			return start
		}
		i--
		blanks()
	}
	return start
}

func isBareKey(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
