// Package strictjson decodes JSON bodies the way an API documents them: unknown fields are refused, and so is a
// known field spelled in another case ("tArget"), which encoding/json would otherwise accept, and a time that
// is not an RFC 3339 date-time ("2026-01-01T0:00:00Z", a one-digit hour time.Time accepts).
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Unmarshal decodes data into v (a pointer) refusing unknown fields and field names that match a known one
// only when case is ignored. The error names the field.
func Unmarshal(data []byte, v any) error {
	if !json.Valid(data) {
		// One JSON value and nothing after it: a Decoder would stop after the first value, and checkKeys, which
		// skips what does not parse, would not have looked at it ({"tArget":...}0 went through).
		var x any
		return bound(json.Unmarshal(data, &x))
	}
	if err := checkKeys(json.RawMessage(data), reflect.TypeOf(v), ""); err != nil {
		return bound(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return bound(dec.Decode(v))
}

// MaxErrorLen bounds the text of Unmarshal's errors: they quote a field name or a value of the request
// (encoding/json's "unknown field" and "cannot unmarshal number ..." quote them whole), and an API that answers
// with the error must not echo a request back (FuzzAPIProbes: 700 invalid bytes as a field name made a 4 KiB
// answer).
const MaxErrorLen = 256

// boundedError is an error whose text was cut to MaxErrorLen valid UTF-8 bytes; it wraps the original.
type boundedError struct {
	err error
	msg string
}

func (e *boundedError) Error() string { return e.msg }
func (e *boundedError) Unwrap() error { return e.err }

// bound returns err with its text made valid UTF-8 (runs of invalid bytes become "?") and cut to MaxErrorLen
// bytes (then ending in "..."); err itself when it already is.
func bound(err error) error {
	if err == nil {
		return nil
	}
	orig := err.Error()
	msg := strings.ToValidUTF8(orig, "?")
	if len(msg) > MaxErrorLen {
		cut := MaxErrorLen - len("...")
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	if msg == orig {
		return err
	}
	return &boundedError{err: err, msg: msg}
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	timeType        = reflect.TypeFor[time.Time]()
)

// dateTime is RFC 3339's date-time as OpenAPI's "format: date-time" checks it (the pattern of
// kin-openapi, which validates the API's bodies against openapi.json in the tests).
var dateTime = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|10|11|12)-(0[1-9]|[12][0-9]|3[01])T([0-1][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)([0-1][0-9]|2[0-3]):[0-5][0-9])$`)

// checkKeys walks raw along t and refuses an object key that is not the exact JSON name of a field of the
// struct it decodes into, and a time.Time string that is not an RFC 3339 date-time. Other values that decode
// themselves (json.Unmarshaler) and values that are not valid JSON (the decoder reports those) are left alone.
func checkKeys(raw json.RawMessage, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer && t.Elem() == timeType {
		t = t.Elem()
	}
	if t == timeType {
		var s string
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte(`"`)) && json.Unmarshal(raw, &s) == nil && !dateTime.MatchString(s) {
			return fmt.Errorf("json: field %.64q: %.40q is not an RFC 3339 date-time (e.g. 2026-01-02T15:04:05Z)", strings.TrimPrefix(path, "."), s)
		}
		return nil
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(jsonUnmarshaler) || t.Implements(textUnmarshaler) {
			return nil
		}
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		fields := fieldTypes(t)
		for k, v := range obj {
			ft, ok := fields[k]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, k) {
						return fmt.Errorf("json: field %.64q%s: unknown field (did you mean %q? names are case-sensitive)", k, at(path), name)
					}
				}
				continue // unknown in every case: DisallowUnknownFields reports it
			}
			if err := checkKeys(v, ft, path+"."+k); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return nil
		}
		for i, e := range elems {
			if err := checkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		for k, e := range m {
			if err := checkKeys(e, t.Elem(), path+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " in " + strings.TrimPrefix(path, ".")
}

// fieldTypes returns the JSON names of t's fields (embedded structs' fields promoted) and their types.
func fieldTypes(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for n, ft := range fieldTypes(et) {
					if _, ok := out[n]; !ok {
						out[n] = ft
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
