package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// BenchLine is one result line of `go test -bench`: "BenchmarkX/sub-2  1000  1234 ns/op  5 B/op ...".
type BenchLine struct {
	Name    string             // without the "Benchmark" prefix and the -GOMAXPROCS suffix: "Route/zipf"
	Procs   int                // the -N suffix (GOMAXPROCS); 1 when absent
	N       int64              // iterations
	Metrics map[string]float64 // unit -> value: "ns/op", "B/op", "allocs/op", custom units
}

// ParseBench extracts the benchmark result lines of `go test -bench` output; other lines are ignored.
func ParseBench(out string) []BenchLine {
	var lines []BenchLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		bl := BenchLine{Name: strings.TrimPrefix(f[0], "Benchmark"), Procs: 1, N: n, Metrics: map[string]float64{}}
		if i := strings.LastIndexByte(bl.Name, '-'); i > 0 {
			if p, err := strconv.Atoi(bl.Name[i+1:]); err == nil {
				bl.Name, bl.Procs = bl.Name[:i], p
			}
		}
		ok := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				ok = false
				break
			}
			bl.Metrics[f[i+1]] = v
		}
		if ok {
			lines = append(lines, bl)
		}
	}
	return lines
}

// Best returns, for each benchmark name, the line with the lowest value of unit (the least disturbed run on a
// shared machine), in first-seen order of names.
func Best(lines []BenchLine, unit string) []BenchLine {
	idx := map[string]int{}
	var out []BenchLine
	for _, l := range lines {
		key := fmt.Sprintf("%s-%d", l.Name, l.Procs)
		i, seen := idx[key]
		if !seen {
			idx[key] = len(out)
			out = append(out, l)
			continue
		}
		if v, ok := l.Metrics[unit]; ok && v < out[i].Metrics[unit] {
			out[i] = l
		}
	}
	return out
}

// TestLogs returns, per test name, the lines the test logged (t.Logf) in `go test -v` output, with the
// "file.go:123: " prefix removed. Subtests are keyed by their full name; a benchmark's log (always printed,
// after its "--- BENCH:" line) by its name with the -GOMAXPROCS suffix.
func TestLogs(out string) map[string][]string {
	logs := map[string][]string{}
	var cur string
	logLine := regexp.MustCompile(`^\s+[\w.-]+\.go:\d+: (.*)$`)
	status := regexp.MustCompile(`^\s*(?:=== (?:RUN|CONT|PAUSE|NAME)|--- (?:PASS|FAIL|SKIP|BENCH):)\s+(\S+)`)
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := status.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if m := logLine.FindStringSubmatch(line); m != nil && cur != "" {
			logs[cur] = append(logs[cur], m[1])
		}
	}
	return logs
}

// findFloat returns the first number captured by re (one group) in any of lines.
func findFloat(lines []string, re *regexp.Regexp) (float64, bool) {
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

// goTest runs `go <args>` in the module root and returns its combined output; the command line is returned
// for the report.
func goTest(ctx context.Context, root string, timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	line := "go " + shellJoin(args)
	if err != nil {
		return out.String(), line, fmt.Errorf("bench: %s: %w\n%s", line, err, tail(out.String(), 20))
	}
	return out.String(), line, nil
}

// shellJoin quotes args that need it for a copy-pasteable command line.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " *?$^|()[]{}'\"\\") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mustRe compiles a regular expression known to be valid.
func mustRe(s string) *regexp.Regexp { return regexp.MustCompile(s) }
