package main

import (
	"flag"
	"io"
	"math"
	"strings"
	"testing"
)

func TestGCPolicy(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    gcPolicy
		wantErr string
	}{
		{"defaults", nil, nil, gcPolicy{setPercent: true, setLimit: true, percent: 400, limit: 1 << 30}, ""},
		{"flags", []string{"--gc-percent", "200", "--memory-limit", "512MiB"}, nil,
			gcPolicy{setPercent: true, setLimit: true, percent: 200, limit: 512 << 20}, ""},
		{"env_wins_over_defaults", nil, map[string]string{"GOGC": "150", "GOMEMLIMIT": "2GiB"}, gcPolicy{}, ""},
		{"flags_win_over_env", []string{"--gc-percent", "100", "--memory-limit", "none"}, map[string]string{"GOGC": "150", "GOMEMLIMIT": "2GiB"},
			gcPolicy{setPercent: true, setLimit: true, percent: 100, limit: math.MaxInt64}, ""},
		{"decimal_units", []string{"--memory-limit", "1.5GB"}, nil, gcPolicy{setPercent: true, setLimit: true, percent: 400, limit: 1_500_000_000}, ""},
		{"bytes", []string{"--memory-limit", "1048576"}, nil, gcPolicy{setPercent: true, setLimit: true, percent: 400, limit: 1 << 20}, ""},
		{"off_with_limit", []string{"--gc-percent", "-1"}, nil, gcPolicy{setPercent: true, setLimit: true, percent: -1, limit: 1 << 30}, ""},
		{"off_without_limit", []string{"--gc-percent", "-1", "--memory-limit", "0"}, nil, gcPolicy{}, "needs a --memory-limit"},
		{"bad_percent", []string{"--gc-percent", "-5"}, nil, gcPolicy{}, "--gc-percent -5"},
		{"bad_limit", []string{"--memory-limit", "lots"}, nil, gcPolicy{}, `size "lots"`},
		{"negative_limit", []string{"--memory-limit", "-1GiB"}, nil, gcPolicy{}, `size "-1GiB"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("router", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			g := addGCFlags(fs, DefaultRouterGCPercent, DefaultRouterMemoryLimit)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := g.resolve(fs, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("policy %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestSchedulerGCPolicy checks `vantage scheduler` takes the GC flags with its own defaults (50 %, no limit)
// and refuses a bad value before it connects anywhere.
func TestSchedulerGCPolicy(t *testing.T) {
	fs := flag.NewFlagSet("scheduler", flag.ContinueOnError)
	g := addGCFlags(fs, DefaultSchedulerGCPercent, "none")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	got, err := g.resolve(fs, func(string) string { return "" })
	if want := (gcPolicy{setPercent: true, setLimit: true, percent: 50, limit: math.MaxInt64}); err != nil || got != want {
		t.Errorf("scheduler defaults: %+v, %v; want %+v", got, err, want)
	}
	err = runScheduler(t.Context(), []string{"--redis", "127.0.0.1:1", "--gc-percent", "-5"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--gc-percent -5") {
		t.Errorf("vantage scheduler --gc-percent -5: %v, want an error naming the flag", err)
	}
}
