package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/storage"
)

func TestDaemonFlags(t *testing.T) {
	t.Setenv(envRedisPassword, "pw-from-env")
	tests := []struct {
		name      string
		opts      daemonFlagOptions
		args      []string
		err       string // from parsing or check
		hasRedis  bool
		addrs     []string
		master    string
		user      string
		format    string
		level     string
		helpHas   string
		helpLacks string
	}{
		{name: "defaults_without_redis", format: "text", level: "info", helpLacks: "-redis"},
		{name: "every_flag", opts: daemonFlagOptions{Redis: redisRequired},
			args:     []string{"--log-format", "json", "--log-level=debug", "--redis", "a:1, b:2", "--redis-master", "mymaster", "--redis-user", "vantage", "--pprof", "127.0.0.1:0"},
			hasRedis: true, addrs: []string{"a:1", "b:2"}, master: "mymaster", user: "vantage", format: "json", level: "debug",
			helpHas: "(required)"},
		{name: "required_redis_missing", opts: daemonFlagOptions{Redis: redisRequired}, err: "--redis is required"},
		{name: "required_redis_only_commas", opts: daemonFlagOptions{Redis: redisRequired}, args: []string{"--redis", " , "}, err: "--redis is required"},
		{name: "optional_redis_empty", opts: daemonFlagOptions{Redis: redisOptional}, format: "text", level: "info", helpHas: "(empty: none)"},
		{name: "optional_redis_given", opts: daemonFlagOptions{Redis: redisOptional}, args: []string{"--redis=unix:/run/redis.sock"},
			hasRedis: true, addrs: []string{"unix:/run/redis.sock"}, format: "text", level: "info"},
		{name: "demo_log_level_default", opts: daemonFlagOptions{LogLevel: "warn"}, format: "text", level: "warn", helpHas: `(default "warn")`},
		{name: "no_redis_flag_without_the_option", args: []string{"--redis", "a:1"}, err: "flag provided but not defined: -redis"},
		{name: "bad_format", args: []string{"--log-format", "xml"}, err: `--log-format "xml": want json or text`},
		{name: "bad_level", args: []string{"--log-level", "loud"}, err: `--log-level "loud": want debug, info, warn or error`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var help bytes.Buffer
			fs := newFlagSet("daemon", "", &help)
			d := addDaemonFlags(fs, tc.opts)
			err := parseFlags(fs, tc.args)
			if err == nil {
				err = d.check()
			}
			if tc.err != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want a usage error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.logFormat != tc.format || d.logLevel != tc.level {
				t.Errorf("log %s/%s, want %s/%s", d.logFormat, d.logLevel, tc.format, tc.level)
			}
			if d.hasRedis() != tc.hasRedis {
				t.Errorf("hasRedis %v, want %v", d.hasRedis(), tc.hasRedis)
			}
			if tc.opts.Redis != noRedis {
				o, err := d.redisOptions(nil)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(o.Addrs, tc.addrs) || o.MasterName != tc.master || o.Username != tc.user {
					t.Errorf("redis options %+v, want %q %q %q", o, tc.addrs, tc.master, tc.user)
				}
				if tc.hasRedis && o.Password != "pw-from-env" {
					t.Errorf("password %q, want $%s's", o.Password, envRedisPassword)
				}
			}
			fs.Usage()
			if !strings.Contains(help.String(), tc.helpHas) {
				t.Errorf("help lacks %q:\n%s", tc.helpHas, help.String())
			}
			if tc.helpLacks != "" && strings.Contains(help.String(), tc.helpLacks) {
				t.Errorf("help has %q:\n%s", tc.helpLacks, help.String())
			}
			if strings.Contains(help.String(), "pw-from-env") {
				t.Errorf("help prints the Redis password:\n%s", help.String())
			}
		})
	}
}

// TestDaemonFlagsStart: start's logger writes JSON from the first line (the profiler's) at the chosen level;
// the profiler answers until stop, and an address in use fails start with the flag named.
func TestDaemonFlagsStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fs := newFlagSet("daemon", "", io.Discard)
	d := addDaemonFlags(fs, daemonFlagOptions{})
	if err := parseFlags(fs, []string{"--log-format", "json", "--log-level", "info", "--pprof", "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log, stop, err := d.start(ctx, &logs)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	log.Debug("not at info")
	log.Info("second line")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log lines %q, want the profiler's and the second", lines)
	}
	var first struct{ Msg, Addr string }
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Msg != "pprof: serving" {
		t.Fatalf("first log line %q is not the profiler's JSON line (%v)", lines[0], err)
	}
	resp, err := http.Get("http://" + first.Addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pprof cmdline: %s", resp.Status)
	}
	stop()
	stopped = true
	if resp, err := http.Get("http://" + first.Addr + "/debug/pprof/"); err == nil {
		resp.Body.Close()
		t.Errorf("pprof still serving after stop: %s", resp.Status)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fs = newFlagSet("daemon", "", io.Discard)
	d = addDaemonFlags(fs, daemonFlagOptions{})
	if err := parseFlags(fs, []string{"--pprof", ln.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.start(ctx, io.Discard); err == nil || !strings.Contains(err.Error(), "--pprof "+ln.Addr().String()) {
		t.Errorf("start with --pprof in use: %v, want an error naming --pprof %s", err, ln.Addr())
	}
	// Bad flags fail start before anything logs.
	fs = newFlagSet("daemon", "", io.Discard)
	d = addDaemonFlags(fs, daemonFlagOptions{})
	if err := parseFlags(fs, []string{"--log-format", "xml"}); err != nil {
		t.Fatal(err)
	}
	var none bytes.Buffer
	if _, _, err := d.start(ctx, &none); !errors.Is(err, errUsage) || none.Len() != 0 {
		t.Errorf("start with --log-format xml: %v, logged %q; want a usage error and nothing logged", err, none.String())
	}
}

// TestDecisionHistoryFlags: the scheduler's --decision-history and --decision-history-every reach the store's
// options (0 keeps no history); commands without them keep the store's defaults.
func TestDecisionHistoryFlags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		register  bool
		args      []string
		wantLen   int
		wantEvery time.Duration
		err       string
	}{
		{"defaults", true, nil, storage.DefaultDecisionHistoryLen, storage.DefaultDecisionHistoryEvery, ""},
		{"set", true, []string{"--decision-history", "20", "--decision-history-every", "10m"}, 20, 10 * time.Minute, ""},
		{"off", true, []string{"--decision-history", "0"}, -1, storage.DefaultDecisionHistoryEvery, ""},
		{"bad_interval", true, []string{"--decision-history-every", "0s"}, 0, 0, "--decision-history-every 0s: want > 0"},
		{"not_registered", false, nil, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("scheduler", "", io.Discard)
			d := addDaemonFlags(fs, daemonFlagOptions{Redis: redisRequired})
			if tc.register {
				d.redis.addHistoryFlags(fs)
			}
			if err := parseFlags(fs, append([]string{"--redis", "a:1"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			o, err := d.redisOptions(nil)
			if tc.err != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want a usage error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.DecisionHistoryLen != tc.wantLen || o.DecisionHistoryEvery != tc.wantEvery {
				t.Errorf("history options %d, %v; want %d, %v", o.DecisionHistoryLen, o.DecisionHistoryEvery, tc.wantLen, tc.wantEvery)
			}
		})
	}
}
