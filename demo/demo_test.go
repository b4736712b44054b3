package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage/redistest"
)

func TestCheckRoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		euid int
		want error
	}{
		{"root", 0, nil},
		{"user", 1000, ErrNotRoot},
		{"nobody", 65534, ErrNotRoot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckRoot(tc.euid); !errors.Is(err, tc.want) {
				t.Fatalf("CheckRoot(%d) = %v, want %v", tc.euid, err, tc.want)
			}
		})
	}
	if strings.Contains(ErrNotRoot.Error(), "\n") {
		t.Errorf("the not-root message is not one line: %q", ErrNotRoot)
	}
}

// TestSpec checks the demo's WAN: at least 24 PoPs on every inhabited continent, the showcase's hosts, and the
// database's port left to the demo's own server.
func TestSpec(t *testing.T) {
	s := Spec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(s.PoPs) < 24 {
		t.Errorf("%d PoPs, want at least 24", len(s.PoPs))
	}
	regions := map[string]bool{}
	for _, c := range s.PoPs {
		p, ok := geo.LookupPoP(c)
		if !ok {
			t.Fatalf("PoP %s is not in the catalogue", c)
		}
		regions[p.Region] = true
	}
	for _, r := range []string{"Europe", "North America", "Latin America & the Caribbean", "Africa", "Asia", "Oceania"} {
		if !regions[r] {
			t.Errorf("no PoP in %s (regions %v)", r, regions)
		}
	}
	if !slices.Contains(s.PoPs, Ingress) {
		t.Errorf("the ingress PoP %s is not in the spec", Ingress)
	}
	hosts := map[string]bool{}
	for _, h := range s.Hosts {
		hosts[h.Name] = true
		if h.Name == "db" && slices.Contains(h.TCP, DBPort) {
			t.Errorf("db still has the testbed's listener on %d: %v", DBPort, h.TCP)
		}
	}
	for _, h := range []string{"db", "api", "tokyo", "ns", "web-eu", "web-us", "web-ap"} {
		if !hosts[h] {
			t.Errorf("no host %s", h)
		}
	}
	if len(s.Anycast) == 0 || len(s.GeoDNS) == 0 {
		t.Errorf("want an anycast address and a geo-DNS name: %d, %d", len(s.Anycast), len(s.GeoDNS))
	}
}

// TestScenariosParse checks that every showcase wrangler.toml parses to the intended placement.
func TestScenariosParse(t *testing.T) {
	for _, s := range Scenarios {
		t.Run(s.App, func(t *testing.T) {
			c, err := placement.ParseWranglerTOML("wrangler.toml", []byte(s.wrangler("vantage.test")))
			if err != nil {
				t.Fatal(err)
			}
			if c.App != s.App || c.Mode != s.Mode || c.Target() != s.target("vantage.test") {
				t.Errorf("parsed %+v, want app %s mode %s target %s", c, s.App, s.Mode, s.target("vantage.test"))
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"one", []float64{3}, 3},
		{"odd", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := median(tc.in); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startRedis starts a real redis-server from an OS thread that stays alive until the test ends. redistest
// sets Pdeathsig on the server, which fires when the thread that forked it exits, and the testbed retires the
// threads it moved into namespaces: a server forked from one of the runtime's pooled threads may be killed at
// any moment once a testbed starts.
func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (Debian package redis-server)")
		}
		t.Skip("redis-server is not installed: apt-get install redis-server")
	}
	ch := make(chan *redistest.Server, 1)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(ch) // also when redistest gives up (FailNow ends this goroutine)
		ch <- redistest.Start(t)
		<-release
	}()
	srv := <-ch
	if srv == nil {
		t.FailNow()
	}
	t.Cleanup(func() { close(release) }) // runs before redistest stops the server
	return srv
}

// TestStatusPageInChromium runs the demo against a real redis-server, opens its status page in headless
// Chromium (driven over the DevTools protocol), and checks that the page loads without console errors, shows
// the fleet and the demo's applications, and that an ad-hoc probe started from the form (auto-submitted from
// the URL fragment) completes with FRA first. It writes a screenshot to the test's temporary directory, and to
// bench/out/status-page.png when VANTAGE_SCREENSHOTS is set.
func TestStatusPageInChromium(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("demo: the emulated WAN needs root for network namespaces (CI runs as root)")
	}
	if testing.Short() {
		t.Skip("status page in Chromium: skipped with -short")
	}
	bin := chromiumBinary(t)
	srv := startRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	demoCtx, stopDemo := context.WithCancel(ctx)
	var out syncBuffer
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(demoCtx, Config{Redis: []string{srv.Addr()}, Listen: "127.0.0.1:0", RouterListen: "127.0.0.1:0",
			Requests: 1, Ready: func(i Info) { ready <- i }}, &out)
	}()
	var name string
	t.Cleanup(func() {
		stopDemo() // as Ctrl-C does: the command's context is cancelled
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
		if name == "" {
			return
		}
		// Everything is torn down: no namespace of the demo's testbed is left.
		nss, err := exec.Command("ip", "netns", "list").Output()
		if err != nil {
			t.Fatalf("ip netns list: %v", err)
		}
		for _, ns := range strings.Fields(string(nss)) {
			if strings.HasPrefix(ns, name+"-") {
				t.Errorf("namespace %s left behind by the demo", ns)
			}
		}
	})
	var info Info
	select {
	case info = <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("demo ended before its report: %v\n%s", err, out.String())
	case <-ctx.Done():
		t.Fatalf("no demo report in time:\n%s", out.String())
	}
	t.Logf("demo report:\n%s", out.String())
	name = info.Testbed.Name()

	b := startChromium(ctx, t, bin)
	url := info.APIURL + "/#token=" + info.Token + "&kind=tcp&target=db.vantage.test:5432&pops=all&count=3&submit=1"
	if err := b.call(ctx, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := b.waitFor(ctx, "document.getElementById('probe-status').dataset.state", "done", time.Minute); err != nil {
		var text string
		b.eval(ctx, "document.getElementById('probe-status').textContent", &text)
		t.Fatalf("the ad-hoc probe did not complete: %v (state %q: %s)", err, st, text)
	}
	var apps string
	if err := b.eval(ctx, "[...document.querySelectorAll('#apps tbody tr')].map(r => r.dataset.app).sort().join(',')", &apps); err != nil {
		t.Fatal(err)
	}
	want := []string{SmartApp}
	for _, s := range Scenarios {
		want = append(want, s.App)
	}
	slices.Sort(want)
	if apps != strings.Join(want, ",") {
		t.Errorf("applications shown: %q, want %q", apps, strings.Join(want, ","))
	}
	checks := []struct {
		name, expr string
		ok         func(float64) bool
	}{
		{"PoPs drawn up", "document.querySelectorAll('#pops circle.pop.up').length", func(n float64) bool { return n == float64(len(Spec().PoPs)) }},
		{"catalogue dots", "document.querySelectorAll('#catalogue circle').length", func(n float64) bool { return n > 100 }},
		{"disks of the selected app", "document.querySelectorAll('#disks path.disk').length", func(n float64) bool { return n > 0 }},
		{"estimated locations", "document.querySelectorAll('#targets circle.loc').length", func(n float64) bool { return n >= 3 }},
		{"anycast instances", "document.querySelectorAll('#targets path.inst').length", func(n float64) bool { return n >= 2 }},
		{"probe result rows", "document.querySelectorAll('#probe-results tbody tr').length", func(n float64) bool { return n == float64(len(Spec().PoPs)) }},
	}
	for _, c := range checks {
		var n float64
		if err := b.eval(ctx, c.expr, &n); err != nil {
			t.Fatal(err)
		}
		if !c.ok(n) {
			t.Errorf("%s: %s = %v", c.name, c.expr, n)
		}
	}
	var first, verdict string
	b.eval(ctx, "document.querySelector('#probe-results tbody tr').dataset.pop", &first)
	b.eval(ctx, "document.getElementById('probe-verdict').textContent", &verdict)
	if first != "FRA" {
		t.Errorf("the fastest PoP of the ad-hoc probe to db is %q, want FRA", first)
	}
	if !strings.Contains(verdict, "unicast") || !strings.Contains(verdict, "FRA") {
		t.Errorf("ad-hoc verdict %q, want unicast at FRA", verdict)
	}

	png, err := b.screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "status-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	if os.Getenv("VANTAGE_SCREENSHOTS") != "" {
		dir := filepath.Join("..", "..", "bench", "out")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot also written to %s", filepath.Join(dir, "status-page.png"))
	}
	for _, e := range b.consoleErrors() {
		t.Errorf("console %s: %s", e.Level, e.Text)
	}
}
