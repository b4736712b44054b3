package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// engineSection runs the triangulation engine's benchmark and its accuracy tests on the WonderProxy data set
// and reports their figures.
func engineSection(ctx context.Context, o *options) *Section {
	s := &Section{Title: "Engine (triangulate)", Intro: "Decisions per second and allocations from `BenchmarkDecide` " +
		"(full decisions on 300-PoP RTT vectors, one Engine per goroutine); accuracy from the engine's own tests on " +
		"the WonderProxy 2020 ping matrix (246 servers), whose logged summary lines are parsed. See bench/ENGINE.md " +
		"for what each test does."}
	benchArgs := []string{"test", "-run", "^$", "-bench", "^BenchmarkDecide$", "-benchtime", "2s", "-cpu", "1,2", "-count", "2", "./triangulate"}
	if o.quick {
		benchArgs = []string{"test", "-run", "^$", "-bench", "^BenchmarkDecide$", "-benchtime", "1s", "-cpu", "2", "-count", "1", "./triangulate"}
	}
	out, cmd, err := goTest(ctx, o.root, 5*time.Minute, benchArgs...)
	s.Commands = append(s.Commands, cmd)
	if err != nil {
		s.Notes = append(s.Notes, "Benchmark failed: "+err.Error())
	} else {
		t := &Table{Caption: "`BenchmarkDecide` (every run; GOMAXPROCS = the -N suffix):",
			Header: []string{"run", "ns/op", "decisions/s (wall, this machine)", "decisions per CPU-second", "B/op", "allocs/op"}}
		var bestCPU, bestWall, allocs float64
		for _, l := range ParseBench(out) {
			bestCPU, bestWall = max(bestCPU, l.Metrics["decisions/cpu-s"]), max(bestWall, l.Metrics["decisions/s"])
			allocs = max(allocs, l.Metrics["allocs/op"])
			t.Add(fmt.Sprintf("%s-%d", l.Name, l.Procs), num(l.Metrics["ns/op"], 0), num(l.Metrics["decisions/s"], 0),
				num(l.Metrics["decisions/cpu-s"], 0), num(l.Metrics["B/op"], 0), num(l.Metrics["allocs/op"], 0))
		}
		s.Tables = append(s.Tables, t)
		s.Headline = append(s.Headline, fmt.Sprintf("Engine: up to %s decisions per CPU-second (%s decisions/s wall on this machine), %s allocs per decision (`BenchmarkDecide`, 300 PoPs).",
			num(bestCPU, 0), num(bestWall, 0), num(allocs, 0)))
	}

	out, cmd, err = goTest(ctx, o.root, 5*time.Minute, "test", "-run", "WonderProxy", "-v", "-count=1", "./triangulate")
	s.Commands = append(s.Commands, cmd)
	if err != nil {
		s.Notes = append(s.Notes, "Accuracy tests failed: "+err.Error())
		return s
	}
	logs := TestLogs(out)
	t := &Table{Caption: "Accuracy on the WonderProxy matrix (parsed from the tests' logs):", Header: []string{"figure", "target", "measured", "test"}}
	type fig struct {
		name, target, test, unit string
		re                       string
	}
	for _, f := range []fig{
		{"placement regret, median", "<= 1 ms", "TestWonderProxyPlacementRegret", " ms", `placement regret over .*: median ([\d.]+) ms`},
		{"placement regret, p95", "<= 5 ms", "TestWonderProxyPlacementRegret", " ms", `placement regret over .* p95 ([\d.]+) ms`},
		{"PoPs probed (median share)", "<= 15 %", "TestWonderProxyPlacementRegret", " %", `PoPs probed: median ([\d.]+)%`},
		{"anycast true-positive rate", ">= 0.95", "TestWonderProxyAnycastDetection", "", `true-positive rate ([\d.]+)`},
		{"anycast false-positive rate (unicast servers)", "<= 0.01", "TestWonderProxyAnycastDetection", "", `false-positive rate ([\d.]+)`},
		{"anycast instance count within +-1 (all targets)", ">= 90 %", "TestWonderProxyAnycastDetection", " %", `instance count within \+-1: ([\d.]+)% of the targets`},
		{"geolocation median error, production configuration", "", "TestWonderProxyGeolocation", " km", `production \(.*median error\s+([\d.]+) km`},
		{"geolocation median error below plain CBG", ">= 25 %", "TestWonderProxyGeolocation", " %", `production \(.*median error\s+[\d.]+ km \(([\d.]+)% below`},
		{"geolocation median error, plain CBG", "", "TestWonderProxyGeolocation", " km", `plain CBG .*median error\s+([\d.]+) km`},
	} {
		v, ok := findFloat(logs[f.test], regexp.MustCompile(f.re))
		val := "not found in the test's log"
		if ok {
			val = fmt.Sprintf("%g%s", v, f.unit)
		}
		t.Add(f.name, f.target, val, "`"+f.test+"`")
	}
	s.Tables = append(s.Tables, t)
	var acc []string
	for _, row := range t.Rows {
		acc = append(acc, row[0]+" "+row[2])
	}
	s.Headline = append(s.Headline, "Engine accuracy (WonderProxy 2020): "+strings.Join(acc, "; ")+".")
	for _, name := range []string{"TestWonderProxyPlacementRegret", "TestWonderProxyAnycastDetection", "TestWonderProxyGeolocation"} {
		for _, l := range logs[name] {
			if strings.Contains(l, "placement regret over") || strings.HasPrefix(l, "anycast:") || strings.HasPrefix(l, "unicast:") ||
				strings.HasPrefix(l, "geolocation,") || strings.Contains(l, "median error") {
				s.Raw = append(s.Raw, l)
			}
		}
	}
	return s
}

// routerSection runs the router's Route and reload benchmarks (the reload one against a real redis-server
// that the benchmark starts) and reports their figures.
func routerSection(ctx context.Context, o *options) *Section {
	s := &Section{Title: "Router", Intro: "`Route` latency over a snapshot of 1,000,000 applications (`BenchmarkRoute`: " +
		"Zipf(1.1), uniform and single-app draws; single calls sampled for p50/p99; `-parallel` on every core) and " +
		"snapshot reload (`BenchmarkReload1M`: 1,000,000 decisions in a real redis-server that the benchmark starts " +
		"like storage/redistest; `scan` is storage.ScanDecisions alone, `reload` the router's whole Reload: scan, " +
		"build, swap). Best of the runs (lowest ns/op) per benchmark."}
	routeTime, count, reloadTime := "1s", "3", "3x"
	if o.quick {
		routeTime, count, reloadTime = "300ms", "1", "1x"
	}
	out, cmd, err := goTest(ctx, o.root, 6*time.Minute, "test", "-run", "^$", "-bench", "^BenchmarkRoute$", "-benchtime", routeTime, "-count", count, "./router")
	s.Commands = append(s.Commands, cmd)
	if err != nil {
		s.Notes = append(s.Notes, "Route benchmark failed: "+err.Error())
	} else {
		t := &Table{Header: []string{"Route", "ns/op (mean)", "p50 ns/call", "p99 ns/call", "calls/s", "B/op", "allocs/op"}}
		for _, l := range Best(ParseBench(out), "ns/op") {
			if l.Name == "Route/zipf" || l.Name == "Route/uniform" {
				s.Headline = append(s.Headline, fmt.Sprintf("Router: `%s` over 1,000,000 apps: p50 %s ns, p99 %s ns per call, %s allocs.",
					l.Name, num(l.Metrics["p50-ns/call"], 0), num(l.Metrics["p99-ns/call"], 0), num(l.Metrics["allocs/op"], 0)))
			}
			p50, p99 := "—", "—"
			if v, ok := l.Metrics["p50-ns/call"]; ok {
				p50, p99 = num(v, 0), num(l.Metrics["p99-ns/call"], 0)
			}
			t.Add(fmt.Sprintf("%s-%d", l.Name, l.Procs), num(l.Metrics["ns/op"], 1), p50, p99, num(1e9/l.Metrics["ns/op"], 0),
				num(l.Metrics["B/op"], 0), num(l.Metrics["allocs/op"], 0))
		}
		s.Tables = append(s.Tables, t)
	}
	out, cmd, err = goTest(ctx, o.root, 8*time.Minute, "test", "-run", "^$", "-bench", "^BenchmarkReload1M$", "-benchtime", reloadTime, "-count", "1", "-timeout", "15m", "./router")
	s.Commands = append(s.Commands, cmd)
	if err != nil {
		s.Notes = append(s.Notes, "Reload benchmark failed: "+err.Error())
		return s
	}
	t := &Table{Header: []string{"1,000,000 decisions", "wall s/op (this machine)", "router CPU s/op", "redis-server CPU s/op", "MB/op", "allocs/op"}}
	for _, l := range Best(ParseBench(out), "ns/op") {
		if l.Name == "Reload1M/reload" {
			s.Headline = append(s.Headline, fmt.Sprintf("Router: snapshot reload of 1,000,000 decisions from Redis in %s s wall (%s s router CPU, %s s redis-server CPU).",
				num(l.Metrics["ns/op"]/1e9, 2), num(l.Metrics["cpu-s/op"], 2), num(l.Metrics["redis-cpu-s/op"], 2)))
		}
		t.Add(l.Name, num(l.Metrics["ns/op"]/1e9, 2), num(l.Metrics["cpu-s/op"], 2), num(l.Metrics["redis-cpu-s/op"], 2),
			num(l.Metrics["B/op"]/1e6, 0), num(l.Metrics["allocs/op"], 0))
	}
	s.Tables = append(s.Tables, t)
	return s
}
