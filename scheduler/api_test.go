package scheduler

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestAuthTokenBucket(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAuth(map[string]string{"t": "ops"}, Quota{PerMinute: 60, Burst: 3}, func() time.Time { return now })
	steps := []struct {
		name    string
		advance time.Duration
		ok      bool
		wait    time.Duration
	}{
		{"burst_1", 0, true, 0},
		{"burst_2", 0, true, 0},
		{"burst_3", 0, true, 0},
		{"empty", 0, false, time.Second},
		{"half_refilled", 500 * time.Millisecond, false, 500 * time.Millisecond},
		{"refilled_one", 500 * time.Millisecond, true, 0},
		{"idle_refills_to_burst_only", time.Hour, true, 0},
		{"second_after_idle", 0, true, 0},
		{"third_after_idle", 0, true, 0},
		{"fourth_after_idle", 0, false, time.Second},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		ok, wait := a.Allow("ops")
		if ok != s.ok || (wait-s.wait).Abs() > time.Millisecond {
			t.Errorf("%s: Allow = %v, %v; want %v, %v", s.name, ok, wait, s.ok, s.wait)
		}
	}
	if ok, _ := a.Allow("other"); !ok {
		t.Error("buckets are per token: another token must start full")
	}
}

func TestParseTokens(t *testing.T) {
	toks, err := ParseTokens(bytes.NewBufferString("# ops\nabcdefghijklmnop ops\n\nqrstuvwxyz0123456789\n"), "tokens")
	if err != nil || toks["abcdefghijklmnop"] != "ops" || toks["qrstuvwxyz0123456789"] != "token-4" {
		t.Fatalf("ParseTokens = %v, %v", toks, err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"short", "abc\n", "tokens:1: token shorter than 16 characters"},
		{"three_fields", "abcdefghijklmnop a b\n", "tokens:1: want \"token [name]\", got 3 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseTokens(strings.NewReader(tc.in), "tokens"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRegionEndpoints(t *testing.T) {
	r := RegionEndpoints{Overrides: map[string]string{"aws:eu-central-1": "198.18.0.9:443"}}
	for _, tc := range []struct{ name, region, want, err string }{
		{"override", "aws:eu-central-1", "198.18.0.9:443", ""},
		{"aws_template", "aws:us-east-1", "ec2.us-east-1.amazonaws.com:443", ""},
		{"gcp_template", "gcp:europe-west3", "europe-west3-run.googleapis.com:443", ""},
		{"azure_template", "azure:westeurope", "westeurope.api.cognitive.microsoft.com:443", ""},
		{"unknown_provider", "oracle:eu-frankfurt-1", "", ""},
		{"syntax", "useast1", "", `region "useast1": want provider:region`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Endpoint(tc.region)
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Endpoint(%q) = %q, %v; want %q, %q", tc.region, got, err, tc.want, tc.err)
			}
		})
	}
	m, err := ParseRegionEndpoints(strings.NewReader("# x\naws:us-east-1 198.18.0.3:443\ngcp:asia-northeast1=198.18.0.4:80\n"), "f")
	if err != nil || m["aws:us-east-1"] != "198.18.0.3:443" || m["gcp:asia-northeast1"] != "198.18.0.4:80" {
		t.Fatalf("ParseRegionEndpoints = %v, %v", m, err)
	}
	if _, err := ParseRegionEndpoints(strings.NewReader("aws:us-east-1 nope\n"), "f"); err == nil || !strings.Contains(err.Error(), "f:1") {
		t.Errorf("bad endpoint error %v, want it located at f:1", err)
	}
}
