package e2e_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
	"github.com/vantage-edge/vantage/testbed"
)

// wanSpec is a small emulated WAN: nine PoPs on every continent, a database in Frankfurt, an API in Ashburn
// behind a name, a host at a Tokyo cloud region answering to the region's production endpoint name, an
// anycast front end answering to another region's endpoint name, a geo-DNS name and the DNS server.
const wanSpec = `
name: e2e-wan
pops: [FRA, LHR, IAD, ORD, SIN, NRT, SYD, GRU, JNB]
hosts:
  - name: db
    pop: FRA
    tcp: [5432]
  - name: api
    region: aws:us-east-1
    http: [80]
  - name: tokyo
    region: gcp:asia-northeast1
    tcp: [443]
    aliases: [asia-northeast1-run.googleapis.com]
  - name: ns
    region: aws:eu-west-1
    dns: true
  - name: web-eu
    region: aws:eu-central-1
    http: [80]
  - name: web-us
    region: aws:us-east-1
    http: [80]
  - name: web-ap
    region: gcp:asia-southeast1
    http: [80]
anycast:
  - name: edge
    tcp: [443]
    aliases: [ec2.us-east-1.amazonaws.com]
    instances:
      - name: fra
        region: aws:eu-central-1
      - name: iad
        region: aws:us-east-1
      - name: sin
        region: gcp:asia-southeast1
geodns:
  - name: www
    hosts: [web-eu, web-us, web-ap]
`

// startWANFleet starts the emulated WAN of wanSpec (closed when the test ends), a redis-server (forked from a
// thread of its own: the testbed retiring its namespace threads cannot kill it, Pdeathsig), a store on it, and
// every PoP's probe daemon (startWANProbed). It returns them with the redis-server's address and the PoPs.
func startWANFleet(ctx context.Context, t *testing.T, log *slog.Logger) (*testbed.Testbed, *storage.Store, string, []string) {
	t.Helper()
	spec, err := testbed.ParseSpec(strings.NewReader(wanSpec), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := testbed.Start(ctx, spec, testbed.Options{Logger: log, Nice: -10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	srv := redistest.Start(t)
	st := openStore(t, []string{srv.Addr()}, log)
	startWANProbed(t, tb, spec.PoPs, st)
	return tb, st, srv.Addr(), spec.PoPs
}

// startWANProbed starts the probe daemon of every PoP of tb as the demo does (demo.ProbedConfig: the defaults
// of `vantage probed`, sockets in the PoP's namespace, names resolved by the testbed's DNS asked from the PoP).
func startWANProbed(t *testing.T, tb *testbed.Testbed, pops []string, st *storage.Store) {
	t.Helper()
	for _, pop := range pops {
		cfg := demo.ProbedConfig(tb, pop)
		cfg.Listen, cfg.Logger, cfg.Daemon.DaemonID = "127.0.0.1:0", testLogger(t).With("pop", pop), "d-"+pop
		d, err := daemon.NewProbed(cfg, st)
		if err != nil {
			t.Fatalf("probe daemon of %s: %v", pop, err)
		}
		start(t, "probed "+pop, d.Run)
	}
}

// TestPlacementOnEmulatedWAN runs a probe daemon in every PoP of an emulated WAN (real namespaces, delays from
// the latency model) and a scheduler, all with the shipped defaults, registers applications through the API,
// and checks that the decisions in Redis name the PoP nearest each back end.
func TestPlacementOnEmulatedWAN(t *testing.T) {
	needRoot(t, "placement on the emulated WAN")
	skipShort(t, "placement on the emulated WAN")
	log := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tb, st, redis, pops := startWANFleet(ctx, t, log)

	const token = "e2e-wan-token-0123456789"
	cfg := daemon.DefaultSchedulerConfig()
	cfg.Listen, cfg.Logger = "127.0.0.1:0", log
	cfg.Scheduler.Name = "s1"
	cfg.Scheduler.HostnameScheme = "http" // the URL http://api.<zone>/
	cfg.Tokens = scheduler.Tokens{token: scheduler.Operator("e2e")}
	cfg.Allow = []netip.Prefix{tb.Prefix()}
	s, err := daemon.NewScheduler(cfg, openStore(t, []string{redis}, log))
	if err != nil {
		t.Fatal(err)
	}
	api := s.URL() // before Run: URL races with Run's start
	start(t, "scheduler", s.Run)
	testwait.Eventually(t, 30*time.Second, "every PoP up", func() bool {
		fleet, err := st.Fleet(ctx)
		up := 0
		for _, p := range fleet {
			if p.Up {
				up++
			}
		}
		return err == nil && up == len(pops)
	})

	addr := func(name string) string {
		a, ok := tb.Resolve(name)
		if !ok {
			t.Fatalf("testbed has no %s", name)
		}
		return a.String()
	}
	zone := strings.TrimSuffix(tb.Zone(), ".")
	for _, app := range []struct {
		name   string
		mode   placement.Mode
		target string
	}{
		{"billing", placement.ModeHost, addr("db") + ":5432"},
		{"catalog", placement.ModeHostname, "api." + zone},
		// A region probed at its production endpoint (asia-northeast1-run.googleapis.com:443), a host at the
		// region on the emulated WAN.
		{"tokyo-app", placement.ModeRegion, "gcp:asia-northeast1"},
		// A region whose endpoint (ec2.us-east-1.amazonaws.com:443) is an anycast front end: the engine sees
		// anycast, the latency model decides.
		{"virginia-app", placement.ModeRegion, "aws:us-east-1"},
		// A geo-DNS name: each PoP is answered with its nearest replica, so the answer sets are evidence.
		{"www", placement.ModeHostname, "www." + zone},
	} {
		if err := demo.PostApp(ctx, api, token, wrangler(app.name, app.mode, app.target), ""); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]struct {
		pop       string
		estimated bool
	}{
		"billing":      {"FRA", false},
		"catalog":      {"IAD", false},
		"tokyo-app":    {"NRT", false},
		"virginia-app": {"IAD", true},
	}
	testwait.Eventually(t, 30*time.Second, "a decision for every app", func() bool {
		if d, ok := decision(st, "www"); !ok || d.Status == "" {
			return false
		}
		for app := range want {
			if d, ok := decision(st, app); !ok || d.Status == "" {
				return false
			}
		}
		return true
	})
	for app, w := range want {
		d, _ := decision(st, app)
		t.Logf("%s: best %s verdict %s status %s estimated %v confidence %.2f candidates %v", app, d.BestPoP, d.Verdict, d.Status, d.Estimated, d.Confidence, d.Candidates)
		if d.BestPoP != w.pop || d.Estimated != w.estimated || d.Status != placement.StatusSuccess {
			t.Errorf("%s: best PoP %q estimated %v status %q, want %s estimated %v SUCCESS", app, d.BestPoP, d.Estimated, d.Status, w.pop, w.estimated)
		}
	}
	// The regions were probed at the providers' endpoint templates, names the testbed's DNS serves.
	for app, ep := range map[string]string{"tokyo-app": "asia-northeast1-run.googleapis.com:443", "virginia-app": "ec2.us-east-1.amazonaws.com:443"} {
		if ts, ok := s.Scheduler().Target(app); !ok || ts.Endpoint != ep {
			t.Errorf("%s: endpoint %q, want the template's %s", app, ts.Endpoint, ep)
		}
	}
	// The geo-DNS name resolved to a different replica per region: replicated from the DNS evidence (the
	// disks alone would say anycast), unsupported, never placed.
	if d, _ := decision(st, "www"); d.Verdict != placement.VerdictReplicated || d.Status != placement.StatusUnsupportedApplication || d.BestPoP != "" {
		t.Errorf("www (geo-DNS): verdict %s status %s best %q, want replicated UNSUPPORTED_APPLICATION and no PoP", d.Verdict, d.Status, d.BestPoP)
	}
	// The measured RTT of the best PoP matches the emulated truth: never early by more than the emulator's
	// timer slack (it may release a packet up to ~0.3 ms early; the testbed's own checks allow max(1 ms,
	// RTT/10)), and late by at most a few ms on a busy machine.
	d, _ := decision(st, "billing")
	truth, err := tb.RTT("FRA", "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Candidates) == 0 || d.Candidates[0].PoP != "FRA" {
		t.Fatalf("billing candidates %v", d.Candidates)
	}
	if got, want := d.Candidates[0].RTTMs, truth.Seconds()*1000; got < want-max(1, want/10) || got > want+5 {
		t.Errorf("FRA->db measured %.3f ms, emulated %v", got, truth)
	}
}
