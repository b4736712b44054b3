package main

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

var scaleSmoke = flag.Bool("scale-smoke", false, "run TestScaleSmoke: builds cmd/vantage and runs `bench scale` at 200 targets over 5 PoPs (about 40 s on a busy 2-core machine)")

// TestScaleSmoke runs the scale harness at a tiny scale: every process starts, targets register through the
// API, the window sees rechecks, Redis commands and memory, and the report carries them. Behind -scale-smoke:
// building the vantage binary alone takes longer than `make test` allows a test.
func TestScaleSmoke(t *testing.T) {
	if !*scaleSmoke {
		t.Skip("builds cmd/vantage and runs ~40 s: go test ./bench -run TestScaleSmoke -scale-smoke -v")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := &scaleOptions{targets: 200, pops: 5, recheck: 4 * time.Second, window: 8 * time.Second, warmup: 2 * time.Second,
		rate: 200, concurrency: 1, root: root, stderr: tlogWriter{t}, cmdline: "TestScaleSmoke"}
	r, err := scaleRun(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	w := r.win
	switch {
	case w.rechecks <= 0:
		t.Errorf("no recheck in the %v window", o.window)
	case w.commands <= 0 || w.netIn <= 0 || w.netOut <= 0:
		t.Errorf("Redis counters did not move: %+v", w)
	case w.schedCPU <= 0:
		t.Errorf("no scheduler CPU measured: %+v", w)
	case r.redisMemEnd <= r.redisMemBase || r.rssEnd <= 0:
		t.Errorf("memory: Redis %d -> %d bytes, scheduler RSS %d", r.redisMemBase, r.redisMemEnd, r.rssEnd)
	case r.cmdCalls["evalsha"]+r.cmdCalls["xadd"] <= 0:
		t.Errorf("commandstats lack the recheck's commands: %v", r.cmdCalls)
	}
	md := r.markdown()
	for _, want := range []string{"### Scale run: 200 targets, 5 simulated PoPs", "rechecks per second per scheduler core", "Redis commands per recheck"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	t.Log(md)
}

// tlogWriter writes the harness's progress lines to the test log.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = tlogWriter{}
