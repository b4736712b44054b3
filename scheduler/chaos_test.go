package scheduler

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// chaosSites answers CHAOS TXT id.server by the client's address, as an anycast DNS service answers from the
// site each client reaches: "site-<last octet>", or one name for all with same.
type chaosSites struct{ same bool }

func (h chaosSites) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if q := req.Question[0]; q.Qclass == dns.ClassCHAOS && q.Name == "id.server." {
		id := "site-all"
		if !h.same {
			ap, _ := netip.ParseAddrPort(w.RemoteAddr().String())
			id = "site-" + strings.TrimPrefix(ap.Addr().String(), "127.0.0.")
		}
		rr, _ := dns.NewRR(`id.server. 0 CH TXT "` + id + `"`)
		m.Answer = append(m.Answer, rr)
	} else {
		m.Rcode = dns.RcodeRefused
	}
	w.WriteMsg(m)
}

// serveDNS53 starts h on addr:53, UDP and TCP; the test's cleanup stops it.
func serveDNS53(t *testing.T, addr string, h dns.Handler) {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, ChaosPort))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, ChaosPort))
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started, done := make(chan struct{}), make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { defer close(done); s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { s.Shutdown(); <-done })
	}
}

// TestChaosThroughProbeDaemons: the whole path with real probe daemons. Three PoPs listed in one metro (so
// latency cannot tell them apart) probe a DNS server's address on port 53 from their own loopback sources;
// the server answers id.server by source, as anycast sites do. Different answers make the target anycast; one
// answer for all leaves it unicast.
func TestChaosThroughProbeDaemons(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binding port 53 needs root")
	}
	// A few km apart: the engine merges vantage points at one point.
	pops := []geo.PoP{{Code: "FRA1", City: "Frankfurt", Point: geo.Point{Lat: 50.11, Lon: 8.68}},
		{Code: "FRA2", City: "Frankfurt", Point: geo.Point{Lat: 50.05, Lon: 8.57}},
		{Code: "FRA3", City: "Frankfurt", Point: geo.Point{Lat: 50.13, Lon: 8.75}}}
	rs := redistest.Start(t)
	st := openStore(t, rs.Addr(), nil)
	for i, p := range pops {
		cfg := prober.DefaultConfig()
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		cfg.Sources = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, byte(11 + i)})}
		cfg.Interval = 10 * time.Millisecond
		eng, err := prober.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		d, err := probed.New(probed.Config{PoP: p.Code, DaemonID: "d-" + p.Code, Heartbeat: 200 * time.Millisecond,
			ReadBlock: 100 * time.Millisecond}, &probed.StoreQueue{DB: st, PoP: p.Code, DaemonID: "d-" + p.Code}, eng, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	s, err := New(Config{Name: "chaos", PoPs: pops, ResultTimeout: 20 * time.Second, ResultPoll: 20 * time.Millisecond,
		Budget: len(pops)}, StoreBackend{st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	testwait.Eventually(t, 10*time.Second, "the three daemons' heartbeats", func() bool {
		up, err := StoreBackend{st}.UpPoPs(ctx)
		return err == nil && len(up) == len(pops)
	})
	term := &Term{Ctx: ctx, Lease: "vantage-shard-000", Token: 1, Seq: 1, Start: time.Now()}
	for i, tc := range []struct {
		name    string
		same    bool
		verdict placement.Verdict
	}{{"one_site", true, placement.VerdictUnicast}, {"a_site_per_pop", false, placement.VerdictAnycast}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := netip.AddrFrom4([4]byte{127, 0, 53, byte(1 + i)}).String()
			serveDNS53(t, addr, chaosSites{same: tc.same})
			dec, err := s.recheck(ctx, term, Target{App: tc.name, Mode: placement.ModeHost, Target: addr + ":53"})
			if err != nil {
				t.Fatal(err)
			}
			e, _, err := st.Explanation(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s %q; CHAOS %v", addr, dec.Verdict, dec.Reason, e.Chaos)
			if dec.Verdict != tc.verdict || len(e.Chaos) != len(pops) {
				t.Errorf("verdict %s with CHAOS answers %v; want %s and an answer from each PoP", dec.Verdict, e.Chaos, tc.verdict)
			}
		})
	}
}
