package placement

import (
	"bytes"
	"regexp"
	"slices"
	"strconv"

	"github.com/tailscale/hujson"
)

// hujsonErr is how hujson.Parse reports where it failed.
var hujsonErr = regexp.MustCompile(`(?s)^hujson: line (\d+), column (\d+): (.*)$`)

// readJSONC decodes a wrangler.jsonc into the document model: hujson parses it (comments and trailing commas
// allowed), Standardize turns it into plain JSON in place (byte offsets unchanged, so positions stay those of
// the file), and the object tree is read member by member, which keeps the order, the exact spelling and the
// offset of every key.
func readJSONC(file string, data []byte) (rawDoc, error) {
	buf := bytes.Clone(data) // hujson aliases the input, and Standardize rewrites it
	v, err := hujson.Parse(buf)
	if err != nil {
		ce := &ConfigError{File: file, Err: &reason{sentinel: ErrSyntax, msg: err.Error(), cause: err}}
		if m := hujsonErr.FindStringSubmatch(err.Error()); m != nil {
			ce.Line, _ = strconv.Atoi(m[1])
			ce.Col, _ = strconv.Atoi(m[2])
			ce.Err.(*reason).msg = "jsonc: " + m[3]
		}
		return rawDoc{}, ce
	}
	v.Standardize()

	doc := rawDoc{file: file, table: "object"}
	at := func(off int) func() (int, int) {
		return func() (int, int) { return lineCol(data, off) }
	}
	value := func(key, val *hujson.Value) rawValue {
		rv := rawValue{kind: jsonKind(val.Value), pos: at(key.StartOffset)}
		if lit, ok := val.Value.(hujson.Literal); ok {
			switch lit.Kind() {
			case '"':
				rv.val = lit.String()
			case '0':
				if f, err := strconv.ParseFloat(string(lit), 64); err == nil {
					rv.val = f // else out of range: not shown
				}
			case 't', 'f':
				rv.val = lit.Bool()
			}
		}
		return rv
	}
	top, ok := v.Value.(*hujson.Object)
	if !ok {
		line, col := lineCol(data, v.StartOffset)
		return rawDoc{}, &ConfigError{File: file, Line: line, Col: col,
			Err: typeError(jsonKind(v.Value), "an object at the top level")}
	}
	// members returns obj's members by name, reporting a name given twice when it is one we read (JSON
	// leaves duplicates undefined; encoding/json would silently keep the last).
	members := func(obj *hujson.Object, path string, ours func(string) bool) (names []string, byName map[string]*hujson.ObjectMember) {
		byName = map[string]*hujson.ObjectMember{}
		for i := range obj.Members {
			m := &obj.Members[i]
			name := m.Name.Value.(hujson.Literal).String()
			if first, dup := byName[name]; dup && ours(name) {
				rv := value(&m.Name, &m.Value)
				line, _ := lineCol(data, first.Name.StartOffset)
				doc.errs = append(doc.errs, withPos(&ConfigError{File: file, Field: join(path, name), Value: rv.val,
					Err: because(ErrDuplicate, "%s key: first given on line %d", ErrDuplicate, line)}, rv.pos))
				continue
			}
			if _, dup := byName[name]; !dup {
				byName[name] = m
				names = append(names, name)
			}
		}
		return names, byName
	}
	// read reads the keys placement needs from one environment's object obj, whose key path is at ("" for the
	// top level). null is JSON's "not set", as wrangler reads it: a null placement is no placement (and an
	// environment's inherits the top level's).
	ours := func(k string) bool {
		return k == "name" || k == "placement" || k == "unsafe" || k == "account_id" || k == "env"
	}
	read := func(e *rawEnv, obj *hujson.Object, at string) map[string]*hujson.ObjectMember {
		_, byName := members(obj, at, ours)
		if m := byName["name"]; m != nil {
			rv := value(&m.Name, &m.Value)
			e.appName = &rv
		}
		if m := byName["account_id"]; m != nil {
			rv := value(&m.Name, &m.Value)
			e.account = &rv
		}
		table := func(m *hujson.ObjectMember, path string, legacy bool) {
			if jsonKind(m.Value.Value) == "null" {
				return
			}
			t := rawTable{path: path, legacy: legacy, value: value(&m.Name, &m.Value)}
			if obj, ok := m.Value.Value.(*hujson.Object); ok {
				names, byName := members(obj, path, func(string) bool { return true })
				for _, k := range names {
					f := byName[k]
					t.fields = append(t.fields, rawField{key: k, rawValue: value(&f.Name, &f.Value)})
				}
				sortFields(t.fields)
			}
			e.tables = append(e.tables, t)
		}
		if m := byName["placement"]; m != nil {
			table(m, join(at, "placement"), false)
		}
		if u := byName["unsafe"]; u != nil {
			if uo, ok := u.Value.Value.(*hujson.Object); ok {
				_, ub := members(uo, join(at, "unsafe"), func(k string) bool { return k == "metadata" })
				if md := ub["metadata"]; md != nil {
					if mo, ok := md.Value.Value.(*hujson.Object); ok {
						path := join(at, "unsafe.metadata")
						_, mb := members(mo, path, func(k string) bool { return k == "placement" })
						if p := mb["placement"]; p != nil {
							table(p, join(path, "placement"), true)
						}
					}
				}
			}
		}
		return byName
	}

	topByName := read(&doc.top, top, "")
	if m := topByName["env"]; m != nil && jsonKind(m.Value.Value) != "null" {
		rv := value(&m.Name, &m.Value)
		doc.envKey = &rv
		if obj, ok := m.Value.Value.(*hujson.Object); ok {
			names, byName := members(obj, "env", func(string) bool { return true })
			slices.Sort(names)
			for _, name := range names {
				em := byName[name]
				e := rawEnv{name: name, path: "env." + name, value: value(&em.Name, &em.Value)}
				if eo, ok := em.Value.Value.(*hujson.Object); ok {
					read(&e, eo, e.path)
				}
				doc.envs = append(doc.envs, e)
			}
		}
	}
	return doc, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func withPos(ce *ConfigError, pos func() (int, int)) *ConfigError {
	ce.Line, ce.Col = pos()
	return ce
}

// jsonKind names the JSON type of a value.
func jsonKind(v hujson.ValueTrimmed) string {
	switch v := v.(type) {
	case *hujson.Object:
		return "object"
	case *hujson.Array:
		return "array"
	case hujson.Literal:
		switch v.Kind() {
		case '"':
			return "string"
		case '0':
			return "number"
		case 't', 'f':
			return "boolean"
		}
	}
	return "null"
}

// lineCol turns a byte offset into a 1-based line and byte column.
func lineCol(b []byte, off int) (line, col int) {
	off = min(max(off, 0), len(b))
	line = 1 + bytes.Count(b[:off], []byte("\n"))
	col = 1 + off - (bytes.LastIndexByte(b[:off], '\n') + 1)
	return line, col
}
