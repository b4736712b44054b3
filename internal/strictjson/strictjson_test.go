package strictjson

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

type inner struct {
	Host string     `json:"host"`
	At   time.Time  `json:"at"`
	Seen *time.Time `json:"seen"`
}

type embedded struct {
	Version string `json:"version"`
}

type req struct {
	embedded
	Target string            `json:"target"`
	Count  int               `json:"count,omitempty"`
	Inner  *inner            `json:"inner"`
	List   []inner           `json:"list"`
	ByPoP  map[string]inner  `json:"by_pop"`
	Ignore string            `json:"-"`
	Extra  map[string]string `json:"extra"`
}

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"exact", `{"target":"a:1","count":2,"version":"v1","inner":{"host":"h","at":"2026-01-02T15:04:05.5+01:00","seen":null},"list":[{"host":"x"}],"by_pop":{"FRA":{"host":"y"}},"extra":{"Any":"case"}}`, ""},
		{"case_top", `{"tArget":"a:1"}`, `field "tArget": unknown field (did you mean "target"?`},
		{"case_embedded", `{"Version":"v"}`, `field "Version": unknown field (did you mean "version"?`},
		{"case_nested", `{"inner":{"HOST":"h"}}`, `field "HOST" in inner`},
		{"case_in_list", `{"list":[{"host":"a"},{"Host":"b"}]}`, `field "Host" in list[1]`},
		{"case_in_map", `{"by_pop":{"FRA":{"hOst":"b"}}}`, `field "hOst" in by_pop.FRA`},
		{"unknown", `{"nope":1}`, `unknown field "nope"`},
		{"ignored_field_is_unknown", `{"Ignore":"x"}`, `unknown field "Ignore"`},
		{"syntax", `{"target":`, `unexpected end of JSON input`},
		{"trailing_value", `{"tArget":"a:1"}0`, `invalid character '0' after top-level value`},
		{"two_objects", `{"target":"a:1"} {"target":"b:1"}`, `after top-level value`},
		{"time_one_digit_hour", `{"list":[{"at":"0000-01-01T0:00:00Z"}]}`, `field "list[0].at": "0000-01-01T0:00:00Z" is not an RFC 3339 date-time`},
		{"time_pointer_lowercase_t", `{"inner":{"seen":"2026-01-02t15:04:05Z"}}`, `field "inner.seen": "2026-01-02t15:04:05Z" is not an RFC 3339`},
		{"time_no_zone", `{"by_pop":{"FRA":{"at":"2026-01-02T15:04:05"}}}`, `field "by_pop.FRA.at"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r req
			err := Unmarshal([]byte(tc.body), &r)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				if r.Target != "a:1" || r.Version != "v1" || r.Inner.Host != "h" || r.ByPoP["FRA"].Host != "y" {
					t.Fatalf("decoded %+v", r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Unmarshal(%s) = %v, want an error containing %q", tc.body, err, tc.wantErr)
			}
		})
	}
}

// TestErrorsAreBounded checks an error never echoes a long or invalid piece of the request whole.
func TestErrorsAreBounded(t *testing.T) {
	invalid := strings.Repeat(string([]byte{0xa8}), 700)
	for _, tc := range []struct{ name, body, want string }{
		{"invalid_utf8_key", `{"` + invalid + `":1}`, "unknown field"},
		{"long_key_other_case", `{"TARGET` + strings.Repeat("x", 5000) + `":1}`, "unknown field"},
		{"long_number", `{"count":` + strings.Repeat("9", 5000) + `}`, "cannot unmarshal"},
		{"long_time", `{"inner":{"at":"` + strings.Repeat("2", 5000) + `"}}`, "not an RFC 3339"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r req
			err := Unmarshal([]byte(tc.body), &r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Unmarshal: %.300v, want an error containing %q", err, tc.want)
			}
			if msg := err.Error(); len(msg) > MaxErrorLen || !utf8.ValidString(msg) {
				t.Errorf("error of %d bytes (valid UTF-8: %v), want at most %d valid bytes: %.80q", len(msg), utf8.ValidString(msg), MaxErrorLen, msg)
			}
		})
	}
}
