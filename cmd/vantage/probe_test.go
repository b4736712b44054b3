package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// probeListener starts a loopback TCP listener that accepts and closes, stopped in t.Cleanup.
func probeListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// probeDNSServer answers a.test A 192.0.2.1 (data only) and CHAOS TXT id.server "lhr1" on 127.0.0.1 UDP.
func probeDNSServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		var s string
		switch {
		case q.Qclass == dns.ClassCHAOS && q.Name == "id.server.":
			s = `id.server. 0 CH TXT "lhr1"`
		case q.Qclass == dns.ClassCHAOS && q.Name == "hostname.bind.":
			s = `hostname.bind. 0 CH TXT "ns1.lhr"`
		case q.Name == "a.test." && q.Qtype == dns.TypeA:
			s = "a.test. 300 IN A 192.0.2.1"
		}
		if rr, err := dns.NewRR(s); err == nil && rr != nil {
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

func TestProbeCommand(t *testing.T) {
	tcpAddr := probeListener(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(web.Close)
	dnsAddr := probeDNSServer(t)
	allow := "--allow=127.0.0.0/8,::1/128"

	tests := []struct {
		name    string
		args    []string
		code    int
		outHas  []string
		errHas  string
		root    bool
		jsonOut func(t *testing.T, rs []prober.Result)
	}{
		{name: "tcp_table", args: []string{"tcp", tcpAddr, allow, "--count", "2", "--interval", "0"},
			outHas: []string{"KIND", "MEDIAN", "tcp", tcpAddr, "127.0.0.1", " ok"}},
		{name: "tcp_json_flags_first", args: []string{"--json", allow, "--count=3", "tcp", tcpAddr, tcpAddr},
			jsonOut: func(t *testing.T, rs []prober.Result) {
				if len(rs) != 2 || rs[0].Kind != placement.ProbeTCP || len(rs[0].Samples) != 3 || !rs[1].Success {
					t.Errorf("results %+v", rs)
				}
			}},
		{name: "http_table_with_phases", args: []string{"http", web.URL, allow, "--count", "2"},
			outHas: []string{"http", "status 200", "phases resolve", "2 of 2 on the kept-alive connection"}},
		{name: "dns_chaos", args: []string{"dns", "a.test", "--server", dnsAddr, "--chaos", allow, "--type", "A"},
			outHas: []string{"rcode NOERROR", "A 192.0.2.1 ttl 300", `id.server "lhr1"`, `hostname.bind "ns1.lhr"`}},
		{name: "dns_json", args: []string{"dns", "a.test", "--server=" + dnsAddr, "--json", allow, "--chaos"},
			jsonOut: func(t *testing.T, rs []prober.Result) {
				if len(rs) != 1 || rs[0].DNS == nil || rs[0].DNS.ServerID != "lhr1" || rs[0].DNS.Answers[0].TTL != 300 {
					t.Errorf("results %+v", rs)
				}
			}},
		{name: "icmp", root: true, args: []string{"icmp", "127.0.0.1", allow, "--count", "2", "--interval", "10ms"},
			outHas: []string{"icmp", "127.0.0.1", " ok"}},
		{name: "policy_denied_exit_1", args: []string{"tcp", "10.0.0.1:5432"}, code: 1,
			outHas: []string{"policy", "rule rfc1918"}},
		{name: "refused_exit_1", args: []string{"tcp", closedTCPPort(t), allow, "--json"}, code: 1,
			jsonOut: func(t *testing.T, rs []prober.Result) {
				if len(rs) != 1 || rs[0].Class != prober.ClassRefused {
					t.Errorf("results %+v", rs)
				}
			}},
		{name: "source_not_local", args: []string{"tcp", tcpAddr, allow, "--source", "198.18.0.1"}, code: 1,
			errHas: "source address 198.18.0.1: not assigned to any local interface"},
		{name: "no_target", args: []string{"tcp"}, code: 2, errHas: "want a kind and at least one target"},
		{name: "bad_kind", args: []string{"smtp", "x"}, code: 2, errHas: `probe kind "smtp"`},
		{name: "bad_allow", args: []string{"tcp", tcpAddr, "--allow", "nope"}, code: 2, errHas: `--allow: "nope"`},
		{name: "bad_count", args: []string{"tcp", tcpAddr, "--count", "0"}, code: 2, errHas: "--count 0"},
		{name: "bad_source", args: []string{"tcp", tcpAddr, "--source", "x"}, code: 2, errHas: `--source "x"`},
		{name: "fleet_goes_to_the_scheduler", args: []string{"tcp", tcpAddr, "--fleet", "--scheduler",
			"http://" + closedTCPPort(t), "--token", "t", "--timeout", "5s"}, code: 1, errHas: "probe --fleet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("skipping: ICMP needs root (run as root, as CI does)")
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"probe"}, tc.args...), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errb.String())
			}
			for _, s := range tc.outHas {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			if !strings.Contains(errb.String(), tc.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tc.errHas, errb.String())
			}
			if tc.jsonOut != nil {
				var rs []prober.Result
				for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
					var r prober.Result
					if err := json.Unmarshal([]byte(line), &r); err != nil {
						t.Fatalf("line %q is not a JSON result: %v", line, err)
					}
					rs = append(rs, r)
				}
				tc.jsonOut(t, rs)
			}
		})
	}
}

// closedTCPPort returns a loopback address with nothing listening.
func closedTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestFleetProbeFromEnvironment runs `vantage probe --fleet` against a real scheduler with its URL and token
// from $VANTAGE_SCHEDULER and $VANTAGE_TOKEN; the flags, when given, win over the variables.
func TestFleetProbeFromEnvironment(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// FRA is up but has no daemon: the ad-hoc probe ends at --adhoc-timeout with FRA pending ("no answer").
	if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: "FRA", DaemonID: "d1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	api := freeAddr(t)
	const token = "env-token-0123456789"
	startCmd(t, "scheduler", "--redis", srv.Addr(), "--listen", api, "--token", token, "--adhoc-timeout", "1s", "--allow", "127.0.0.0/8",
		"--lease-ttl", "1s", "--log-level", "warn")
	waitHTTP(t, "http://"+api+"/readyz", 200, 15*time.Second)
	apiURL := validatingProxy(t, api) // every API call of the command is validated against openapi.json
	target := probeListener(t)

	for _, tc := range []struct {
		name             string
		envURL, envToken string
		flags            []string
		code             int
		errHas           string
	}{
		{name: "both_from_the_environment", envURL: apiURL, envToken: token, errHas: "0/1 PoPs"},
		{name: "flag_token_wins", envURL: apiURL, envToken: "wrong-token", flags: []string{"--token", token}, errHas: "0/1 PoPs"},
		{name: "flag_scheduler_wins", envURL: "http://" + closedTCPPort(t), envToken: token,
			flags: []string{"--scheduler", apiURL}, errHas: "0/1 PoPs"},
		{name: "wrong_token_from_the_environment", envURL: apiURL, envToken: "wrong-token", code: 1, errHas: "401"},
		{name: "no_token", envURL: apiURL, code: 1, errHas: "401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envScheduler, tc.envURL)
			t.Setenv(envToken, tc.envToken)
			var out, errb bytes.Buffer
			args := append([]string{"probe", "tcp", target, "--fleet", "--pops", "FRA"}, tc.flags...)
			if code := run(ctx, args, &out, &errb); code != tc.code {
				t.Fatalf("%q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), tc.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tc.errHas, errb.String())
			}
			if tc.code == 0 && (!strings.Contains(out.String(), "FRA") || !strings.Contains(out.String(), "no answer")) {
				t.Errorf("stdout lacks FRA with no answer:\n%s", out.String())
			}
		})
	}
}
