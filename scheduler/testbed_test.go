package scheduler

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage/redistest"
	"github.com/vantage-edge/vantage/testbed"
)

// placementSpec is a small emulated WAN: nine PoPs on every continent, a database in Frankfurt, an API in
// Ashburn behind a name, a host at a Tokyo cloud region, an anycast front end and the DNS server.
const placementSpec = `
name: scheduler-placement
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

// nodeProber returns a prober whose sockets live in the PoP's namespace: dials enter it (the prober's
// EnterFunc seam is Node.Do) and names are resolved by the testbed's DNS server, asked from the PoP.
func nodeProber(t *testing.T, tb *testbed.Testbed, node *testbed.Node) *prober.Engine {
	t.Helper()
	cfg := prober.DefaultConfig()
	cfg.Allow = []netip.Prefix{tb.Prefix()}
	cfg.Interval = 10 * time.Millisecond
	cfg.Enter = node.Do
	if dnsAddr, ok := tb.DNSServer(); ok {
		cfg.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return node.DialContext(ctx, network, dnsAddr.String())
		}}
	}
	e, err := prober.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPlacementOnEmulatedWAN runs one probe daemon per PoP of an emulated WAN (real namespaces, delays from
// the latency model) and a scheduler; the decisions in Redis name the PoP nearest each back end.
func TestPlacementOnEmulatedWAN(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("scheduler: the emulated WAN needs root for network namespaces and /dev/net/tun (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("emulated WAN placement test: skipped with -short")
	}
	spec, err := testbed.ParseSpec(strings.NewReader(placementSpec), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &fleetEnv{t: t, log: testLogger(t)}
	tb, err := testbed.Start(ctx, spec, testbed.Options{Logger: f.log, Nice: -10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	srv := redistest.Start(t)
	f.addrs = []string{srv.Addr()}
	obs := f.open()

	for _, pop := range spec.PoPs {
		node := tb.Node(pop)
		f.startDaemon(pop, "d-"+pop, nodeProber(t, tb, node), time.Second)
	}
	addr := func(name string) string {
		a, ok := tb.Resolve(name)
		if !ok {
			t.Fatalf("testbed has no %s", name)
		}
		return a.String()
	}
	zone := strings.TrimSuffix(tb.Zone(), ".")
	targets := []Target{
		{App: "billing", Mode: placement.ModeHost, Target: addr("db") + ":5432"},
		{App: "catalog", Mode: placement.ModeHostname, Target: "api." + zone},
		// A region whose endpoint is a host at the region (an override, as an operator would configure).
		{App: "tokyo-app", Mode: placement.ModeRegion, Target: "gcp:asia-northeast1", Endpoint: addr("tokyo") + ":443"},
		// A region whose "endpoint" is an anycast front end: the engine sees anycast, the model decides.
		{App: "virginia-app", Mode: placement.ModeRegion, Target: "aws:us-east-1", Endpoint: addr("edge") + ":443"},
		// A geo-DNS name: each PoP is answered with its nearest replica, so the answer sets are evidence.
		{App: "www", Mode: placement.ModeHostname, Target: "www." + zone},
	}
	f.schedCfg = func(c *Config) { c.HostnameScheme = "http" } // the URL http://api.<zone>/
	f.startScheduler("s1", targets)
	want := map[string]struct {
		pop       string
		estimated bool
	}{
		"billing":      {"FRA", false},
		"catalog":      {"IAD", false},
		"tokyo-app":    {"NRT", false},
		"virginia-app": {"IAD", true},
	}
	waitUntil(t, "a decision for every app", 30*time.Second, func() bool {
		if d, ok := decision(t, obs, "www"); !ok || d.Status == "" {
			return false
		}
		for app := range want {
			if d, ok := decision(t, obs, app); !ok || d.Status == "" {
				return false
			}
		}
		return true
	})
	for app, w := range want {
		d, _ := decision(t, obs, app)
		t.Logf("%s: best %s verdict %s status %s estimated %v confidence %.2f candidates %v", app, d.BestPoP, d.Verdict, d.Status, d.Estimated, d.Confidence, d.Candidates)
		if d.BestPoP != w.pop || d.Estimated != w.estimated || d.Status != placement.StatusSuccess {
			t.Errorf("%s: best PoP %q estimated %v status %q, want %s estimated %v SUCCESS", app, d.BestPoP, d.Estimated, d.Status, w.pop, w.estimated)
		}
	}
	// The geo-DNS name resolved to a different replica per region: replicated from the DNS evidence (the
	// disks alone would say anycast), unsupported, never placed.
	if d, _ := decision(t, obs, "www"); d.Verdict != placement.VerdictReplicated || d.Status != placement.StatusUnsupportedApplication || d.BestPoP != "" {
		t.Errorf("www (geo-DNS): verdict %s status %s best %q, want replicated UNSUPPORTED_APPLICATION and no PoP", d.Verdict, d.Status, d.BestPoP)
	}
	// The measured RTT of the best PoP matches the emulated truth within a few ms.
	d, _ := decision(t, obs, "billing")
	truth, err := tb.RTT("FRA", "db")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Candidates) == 0 || d.Candidates[0].PoP != "FRA" {
		t.Fatalf("billing candidates %v", d.Candidates)
	}
	if got := d.Candidates[0].RTTMs; got < truth.Seconds()*1000 || got > truth.Seconds()*1000+5 {
		t.Errorf("FRA->db measured %.3f ms, emulated %v", got, truth)
	}
}
