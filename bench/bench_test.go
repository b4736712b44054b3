package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/vantage-edge/vantage/triangulate
cpu: AMD EPYC
BenchmarkDecide       	   28101	     90382 ns/op	     30273 decisions/cpu-s	     11064 decisions/s	      12 B/op	       0 allocs/op
BenchmarkDecide-2     	   32212	     88868 ns/op	     24031 decisions/cpu-s	     11253 decisions/s	      21 B/op	       0 allocs/op
BenchmarkRoute/zipf-2 	 1000000	        52.5 ns/op	  40 p50-ns/call	 0 B/op	 0 allocs/op
BenchmarkRoute/zipf-2 	 1000000	        48.0 ns/op	  41 p50-ns/call	 0 B/op	 0 allocs/op
BenchmarkBroken-2 	 notanumber	 1 ns/op
--- BENCH: BenchmarkX
PASS
ok  	github.com/vantage-edge/vantage/triangulate	13.718s
`
	lines := ParseBench(out)
	if len(lines) != 4 {
		t.Fatalf("parsed %d lines, want 4: %+v", len(lines), lines)
	}
	tests := []struct {
		name  string
		i     int
		bench string
		procs int
		n     int64
		unit  string
		want  float64
	}{
		{"no_procs_suffix", 0, "Decide", 1, 28101, "decisions/cpu-s", 30273},
		{"procs_suffix", 1, "Decide", 2, 32212, "ns/op", 88868},
		{"sub_benchmark", 2, "Route/zipf", 2, 1000000, "ns/op", 52.5},
		{"allocs", 1, "Decide", 2, 32212, "allocs/op", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := lines[tc.i]
			if l.Name != tc.bench || l.Procs != tc.procs || l.N != tc.n {
				t.Errorf("line %d = %s-%d n=%d, want %s-%d n=%d", tc.i, l.Name, l.Procs, l.N, tc.bench, tc.procs, tc.n)
			}
			if got, ok := l.Metrics[tc.unit]; !ok || got != tc.want {
				t.Errorf("%s = %v (present %v), want %v", tc.unit, got, ok, tc.want)
			}
		})
	}
	best := Best(lines, "ns/op")
	if len(best) != 3 {
		t.Fatalf("Best kept %d lines, want 3 (Decide-1, Decide-2, Route/zipf-2)", len(best))
	}
	if got := best[2].Metrics["ns/op"]; got != 48 {
		t.Errorf("Best Route/zipf ns/op = %v, want the lower run's 48", got)
	}
}

func TestTestLogs(t *testing.T) {
	out := `=== RUN   TestWonderProxyPlacementRegret
    wonderproxy_test.go:243: regret 20.5: target 104 Chisinau
    wonderproxy_test.go:250: placement regret over 246 WonderProxy targets, planner budget 15% of 245 PoPs: median 0.00 ms, p90 0.00 ms, p95 0.99 ms, max 74.4 ms (Nairobi); PoPs probed: median 14.7%, max 14.7%
--- PASS: TestWonderProxyPlacementRegret (3.95s)
=== RUN   TestWonderProxyLaCeiba
=== RUN   TestWonderProxyLaCeiba/calibrated
    wonderproxy_test.go:471: calibrated: 39
--- PASS: TestWonderProxyLaCeiba (3.05s)
PASS
`
	logs := TestLogs(out)
	if got := len(logs["TestWonderProxyPlacementRegret"]); got != 2 {
		t.Fatalf("regret test: %d lines, want 2: %q", got, logs)
	}
	if got := logs["TestWonderProxyLaCeiba/calibrated"]; len(got) != 1 || got[0] != "calibrated: 39" {
		t.Errorf("subtest logs = %q, want [calibrated: 39]", got)
	}
	tests := []struct {
		name string
		re   string
		want float64
	}{
		{"median", `placement regret over .*: median ([\d.]+) ms`, 0},
		{"p95", `placement regret over .* p95 ([\d.]+) ms`, 0.99},
		{"probed", `PoPs probed: median ([\d.]+)%`, 14.7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := findFloat(logs["TestWonderProxyPlacementRegret"], mustRe(tc.re))
			if !ok || got != tc.want {
				t.Errorf("%s = %v (found %v), want %v", tc.re, got, ok, tc.want)
			}
		})
	}
}

// TestBenchLogs parses BenchmarkFidelity's output as `go test -bench` prints it: the result line with its
// custom metrics, then the benchmark's log (always printed, cut by the testing package).
func TestBenchLogs(t *testing.T) {
	out := `goos: linux
pkg: github.com/vantage-edge/vantage/testbed
BenchmarkFidelity-2   	       3	3068465701 ns/op	       685.0 handshakes	         0.1630 p50-dial-ms	        13.33 p99-dial-ms	         0.7290 p99-kernel-ms	       120.0 stolen-ms	         0.3390 worst-median-dial-ms
--- BENCH: BenchmarkFidelity-2
    bench_test.go:153: testbed vt116 (198.19.208.0/22) with 40 nodes up in 408ms
    bench_test.go:165: the issue's precise bounds (BenchmarkFidelity's) are missed: a pair's median TCP connect is off by 338.507µs (> ±300µs)
	... [output truncated]
PASS
ok  	github.com/vantage-edge/vantage/testbed	3.677s
`
	lines := ParseBench(out)
	if len(lines) != 1 || lines[0].Name != "Fidelity" || lines[0].Procs != 2 || lines[0].N != 3 {
		t.Fatalf("ParseBench = %+v, want one Fidelity-2 line of 3 iterations", lines)
	}
	for unit, want := range map[string]float64{"worst-median-dial-ms": 0.339, "p99-kernel-ms": 0.729, "stolen-ms": 120, "handshakes": 685} {
		if got := lines[0].Metrics[unit]; got != want {
			t.Errorf("%s = %v, want %v", unit, got, want)
		}
	}
	logs := TestLogs(out)["BenchmarkFidelity-2"]
	if len(logs) != 2 || !strings.HasPrefix(logs[1], "the issue's precise bounds") {
		t.Errorf("benchmark log = %q, want its 2 lines", logs)
	}
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"median_odd", []float64{5, 1, 3}, 0.5, 3},
		{"median_even_interpolates", []float64{4, 1, 2, 3}, 0.5, 2.5},
		{"p99_of_100", seq(100), 0.99, 99.01},
		{"max", []float64{7, 9, 8}, 1, 9},
		{"min", []float64{7, 9, 8}, 0, 7},
		{"single", []float64{42}, 0.99, 42},
		{"clamped", []float64{1, 2}, 1.5, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.xs...)
			if got := Percentile(tc.xs, tc.p); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.xs, tc.p, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.xs[i] {
					t.Fatalf("Percentile reordered its input: %v", tc.xs)
				}
			}
		})
	}
	if got := Percentile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("Percentile(nil) = %v, want NaN", got)
	}
}

func seq(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	return xs
}

func TestParsePeers(t *testing.T) {
	fping := "198.18.8.27 : 0.52 0.49 - 0.51\n198.18.8.28 : 97.1 - -\n\n 3 ICMP Echos sent\n"
	rtts, sent := ParseFping(fping)
	if sent != 7 || len(rtts["198.18.8.27"]) != 3 || len(rtts["198.18.8.28"]) != 1 || rtts["198.18.8.28"][0] != 97.1 {
		t.Errorf("ParseFping: sent %d rtts %v, want 7 sent, 3 + 1 answers", sent, rtts)
	}
	hping := `HPING 127.0.0.1 (lo 127.0.0.1): S set, 40 headers + 0 data bytes
len=44 ip=127.0.0.1 ttl=64 DF id=0 sport=45999 flags=SA seq=0 win=65495 rtt=0.4 ms
len=40 ip=127.0.0.1 ttl=64 DF id=0 sport=45999 flags=RA seq=1 win=0 rtt=1.5 ms
len=44 ip=127.0.0.1 ttl=64 DF id=0 sport=45999 flags=SA seq=2 win=65495 rtt=17.7 ms

--- 127.0.0.1 hping statistic ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.4/12.0/17.8 ms
`
	ms, sent := ParseHping(hping)
	if sent != 3 || len(ms) != 2 || ms[0] != 0.4 || ms[1] != 17.7 {
		t.Errorf("ParseHping: sent %d rtts %v, want 3 sent and the two SYN-ACKs [0.4 17.7] (RST-ACK is a closed port)", sent, ms)
	}
	success, secs, err := parseProbeMetrics(strings.NewReader("# HELP probe_success x\nprobe_success 1\nprobe_duration_seconds 0.000546\nprobe_ip_protocol 4\n"))
	if err != nil || !success || secs != 0.000546 {
		t.Errorf("parseProbeMetrics = %v %v %v, want true 0.000546 nil", success, secs, err)
	}
	if _, _, err := parseProbeMetrics(strings.NewReader("probe_ip_protocol 4\n")); err == nil {
		t.Error("parseProbeMetrics accepted a page without probe_success")
	}
	cpu, err := parseStatCPU("1234 (prometheus-bla) S 1 2 3 4 5 6 7 8 9 10 250 37 0 0 20 0")
	if err != nil || cpu != 2870*time.Millisecond {
		t.Errorf("parseStatCPU = %v %v, want 2.87s (287 ticks)", cpu, err)
	}
}

func TestRender(t *testing.T) {
	tab := &Table{Caption: "Rates:", Header: []string{"contender", "probes/s"}}
	tab.Add("Vantage | prober", num(13457.2, 0))
	tab.Add("short row")
	r := &Report{Started: time.Date(2026, 11, 23, 13, 30, 0, 0, time.UTC), Elapsed: 421 * time.Second, Command: "go run ./bench",
		Machine: Machine{CPUs: 2, Model: "AMD EPYC", MemoryGiB: 23.5, Kernel: "6.1", Go: "go1.26", LoadAvg: "1.0 1.0 1.0 / 2.0 2.0 2.0"},
		Sections: []*Section{
			{Title: "Probing", Intro: "How.", Tables: []*Table{tab}, Notes: []string{"**7.3x**"}, Headline: []string{"Vantage 7.3x"}, Commands: []string{"go run ./bench -only=probing"}},
			{Title: "Fleet", Skipped: "needs root"},
		}}
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# Vantage benchmarks",
		"started 2026-11-23 13:30 UTC, took 7m1s",
		"2 CPUs (AMD EPYC), 23.5 GiB memory, Linux 6.1, go1.26",
		"## Probing\n\nHow.\n\nRates:\n\n| contender | probes/s |\n|---|---|\n| Vantage \\| prober | 13,457 |\n| short row |  |\n",
		"**7.3x**",
		"## Summary\n\n- Vantage 7.3x\n- Fleet: skipped (needs root)\n\n## Probing",
		"```\ngo run ./bench -only=probing\n```",
		"## Fleet\n\nSkipped: needs root",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered report lacks %q:\n%s", want, out)
		}
	}
}

func TestNum(t *testing.T) {
	tests := []struct {
		x    float64
		d    int
		want string
	}{
		{13457.2, 0, "13,457"},
		{1234567.891, 2, "1,234,567.89"},
		{-0.0004, 3, "0.000"},
		{-1500, 0, "-1,500"},
		{999, 0, "999"},
		{math.NaN(), 1, "—"},
	}
	for _, tc := range tests {
		if got := num(tc.x, tc.d); got != tc.want {
			t.Errorf("num(%v, %d) = %q, want %q", tc.x, tc.d, got, tc.want)
		}
	}
}

func TestRedisAddrFromCmdline(t *testing.T) {
	tests := []struct {
		name, cmdline, want string
		ok                  bool
	}{
		{"args", "/usr/bin/redis-server\x00--port\x0042185\x00--save\x00\x00", "127.0.0.1:42185", true},
		{"process_title", "/usr/bin/redis-server 127.0.0.1:42185\x00\x00\x00", "127.0.0.1:42185", true},
		{"wildcard_title", "redis-server *:6390", "127.0.0.1:6390", true},
		{"not_redis", "/usr/bin/sleep\x0010", "", false},
		{"empty", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := redisAddrFromCmdline(tc.cmdline)
			if got != tc.want || ok != tc.ok {
				t.Errorf("redisAddrFromCmdline(%q) = %q %v, want %q %v", tc.cmdline, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 4s test @ http://127.0.0.1:19002/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.75ms    2.55ms  23.53ms   87.99%
    Req/Sec    32.13k    19.13k   59.62k    44.44%
  Latency Distribution
     50%  748.00us
     75%    1.20ms
     90%    3.10ms
     99%   41.09ms
  253241 requests in 4.00s, 40.09MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:  63184.15
Transfer/sec:     10.02MB
`
	r, err := ParseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 63184.15 || r.requests != 253241 || r.p50 != 0.748 || r.p99 != 41.09 || r.errors != 10 {
		t.Errorf("ParseWrk = %+v, want rps 63184.15, 253241 requests, p50 0.748 ms, p99 41.09 ms, 10 errors", r)
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("ParseWrk of a failed run: no error")
	}
}

func TestCountTimeWait(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4A51 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:8B1C 0100007F:4A51 06 00000000:00000000 03:00000D2C 00000000     0        0 0 3 0000000000000000
   2: 0100007F:4A51 0100007F:8B1E 06 00000000:00000000 03:00000D2C 00000000     0        0 0 3 0000000000000000
   3: 0100007F:8B20 0100007F:4A52 06 00000000:00000000 03:00000D2C 00000000     0        0 0 3 0000000000000000
   4: 0100007F:8B22 0100007F:4A51 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000
`
	if got := CountTimeWait(tcp, 0x4A51); got != 2 {
		t.Errorf("CountTimeWait(port 0x4A51) = %d, want 2 (one each way; not the listener, not ESTABLISHED)", got)
	}
}
