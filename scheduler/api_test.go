package scheduler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

func TestAuthTokenBucket(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAuth(map[string]string{"t": "ops"}, Quota{PerMinute: 60, Burst: 3}, func() time.Time { return now })
	steps := []struct {
		name    string
		advance time.Duration
		ok      bool
		wait    time.Duration
	}{
		{"burst_1", 0, true, 0},
		{"burst_2", 0, true, 0},
		{"burst_3", 0, true, 0},
		{"empty", 0, false, time.Second},
		{"half_refilled", 500 * time.Millisecond, false, 500 * time.Millisecond},
		{"refilled_one", 500 * time.Millisecond, true, 0},
		{"idle_refills_to_burst_only", time.Hour, true, 0},
		{"second_after_idle", 0, true, 0},
		{"third_after_idle", 0, true, 0},
		{"fourth_after_idle", 0, false, time.Second},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		ok, wait := a.Allow("ops")
		if ok != s.ok || (wait-s.wait).Abs() > time.Millisecond {
			t.Errorf("%s: Allow = %v, %v; want %v, %v", s.name, ok, wait, s.ok, s.wait)
		}
	}
	if ok, _ := a.Allow("other"); !ok {
		t.Error("buckets are per token: another token must start full")
	}
}

func TestRegionEndpoints(t *testing.T) {
	r := RegionEndpoints{Overrides: map[string]string{"aws:eu-central-1": "198.18.0.9:443"}}
	for _, tc := range []struct{ name, region, want, err string }{
		{"override", "aws:eu-central-1", "198.18.0.9:443", ""},
		{"aws_template", "aws:us-east-1", "ec2.us-east-1.amazonaws.com:443", ""},
		{"gcp_template", "gcp:europe-west3", "europe-west3-run.googleapis.com:443", ""},
		{"azure_template", "azure:westeurope", "westeurope.api.cognitive.microsoft.com:443", ""},
		{"unknown_provider", "oracle:eu-frankfurt-1", "", ""},
		{"syntax", "useast1", "", `region "useast1": want provider:region`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Endpoint(tc.region)
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Endpoint(%q) = %q, %v; want %q, %q", tc.region, got, err, tc.want, tc.err)
			}
		})
	}
	m, err := ParseRegionEndpoints(strings.NewReader("# x\naws:us-east-1 198.18.0.3:443\ngcp:asia-northeast1=198.18.0.4:80\n"), "f")
	if err != nil || m["aws:us-east-1"] != "198.18.0.3:443" || m["gcp:asia-northeast1"] != "198.18.0.4:80" {
		t.Fatalf("ParseRegionEndpoints = %v, %v", m, err)
	}
	if _, err := ParseRegionEndpoints(strings.NewReader("aws:us-east-1 nope\n"), "f"); err == nil || !strings.Contains(err.Error(), "f:1") {
		t.Errorf("bad endpoint error %v, want it located at f:1", err)
	}
}

func TestFailureReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		rs   map[string]storage.Result
		want string
	}{
		{"no_results", nil, "no PoP returned a result for h:80 within 30s"},
		{"one_pop", map[string]storage.Result{"FRA": {Class: "timeout", Error: "i/o timeout"}},
			"the only PoP's probe of h:80 failed: timeout: i/o timeout (FRA)"},
		{"grouped", map[string]storage.Result{
			"FRA": {Class: "refused", Error: "connection refused"}, "IAD": {Class: "refused", Error: "connection refused"},
			"SIN": {Class: "timeout"}, "SYD": {}},
			"every PoP's probe of h:80 failed: no sample answered (SYD); refused: connection refused (FRA, IAD); timeout (SIN)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := failureReason("h:80", tc.rs, 30*time.Second); got != tc.want {
				t.Errorf("failureReason = %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestLeaseHoldersUnique: two schedulers given the same name on one Redis are two holders: one leads, the other
// stands by, and the holder in Redis is the name with a random part.
func TestLeaseHoldersUnique(t *testing.T) {
	srv := redistest.Start(t)
	log := quietLogger()
	ctx, cancel := context.WithCancel(context.Background())
	var ls []*leadership
	var done []chan struct{}
	for range 2 {
		l := newLeadership(StoreBackend{openStore(t, srv.Addr(), log)}, DefaultLeaseName, "same", 2*time.Second, RealClock{}, log)
		ls = append(ls, l)
		ch := make(chan struct{})
		done = append(done, ch)
		go func() { defer close(ch); l.run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for _, ch := range done {
			<-ch
		}
	})
	if ls[0].holder == ls[1].holder || !strings.HasPrefix(ls[0].holder, "same~") {
		t.Fatalf("holders %q and %q: want two, each \"same~\" and a random part", ls[0].holder, ls[1].holder)
	}
	leaders := func() (n int, token int64) {
		for _, l := range ls {
			if term, _ := l.current(); term != nil {
				n++
				token = term.Token
			}
		}
		return n, token
	}
	testwait.Eventually(t, 10*time.Second, "a leader", func() bool { n, _ := leaders(); return n == 1 })
	for range 10 { // over several renewals and standby polls (every 200 ms): never two leaders
		if n, _ := leaders(); n != 1 {
			t.Fatalf("%d schedulers named \"same\" lead at once", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, token := leaders()
	lease, held, err := openStore(t, srv.Addr(), log).LeaseInfo(context.Background(), DefaultLeaseName)
	if err != nil || !held || !strings.HasPrefix(lease.Holder, "same~") || lease.Token != token {
		t.Errorf("lease in Redis %+v (%v, %v): want a \"same~\" holder with the leader's token %d", lease, held, err, token)
	}
}
