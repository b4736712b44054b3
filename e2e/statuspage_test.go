package e2e_test

import (
	"context"
	"github.com/vantage-edge/vantage/internal/syncbuf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestStatusPageInChromium runs the demo against a real redis-server, opens its status page in headless
// Chromium (driven over the DevTools protocol), and checks that the page loads without console errors, draws
// the land and borders, the fleet, the disks and the anycast target's instances, shows the demo's applications
// and the anycast application's page (opened from the URL fragment) with its decision history, that an ad-hoc
// probe started from the form (auto-submitted from the fragment) completes with FRA first, and that an
// application's own address (/ui/app/NAME) shows its history. It writes screenshots of both pages to the
// test's temporary directory, and to bench/out/status-page.png and status-page-app.png when
// VANTAGE_SCREENSHOTS is set.
func TestStatusPageInChromium(t *testing.T) {
	needRoot(t, "the status page in Chromium")
	skipShort(t, "the status page in Chromium")
	bin := chromiumBinary(t)
	srv := redistest.Start(t) // forked from a thread of its own: the testbed retiring its namespace threads cannot kill it (Pdeathsig)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	demoCtx, stopDemo := context.WithCancel(ctx)
	var out syncbuf.Buffer
	ready := make(chan demo.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(demoCtx, demo.Config{Redis: []string{srv.Addr()}, Listen: "127.0.0.1:0", RouterListen: "127.0.0.1:0",
			Requests: 1, Ready: func(i demo.Info) { ready <- i }}, &out)
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
	var info demo.Info
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
	const anycastApp = "edge-anycast"
	url := info.APIURL + "/#token=" + info.Token + "&kind=tcp&target=db.vantage.test:5432&pops=all&count=3&submit=1&app=" + anycastApp
	if err := b.call(ctx, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := b.waitFor(ctx, "document.getElementById('probe-status').dataset.state", "done", time.Minute); err != nil {
		var text string
		b.eval(ctx, "document.getElementById('probe-status').textContent", &text)
		t.Fatalf("the ad-hoc probe did not complete: %v (state %q: %s)", err, st, text)
	}
	// The application's page: its decision history is read from the API once the state is.
	if _, err := b.waitFor(ctx, "String(document.querySelectorAll('#history tbody tr').length > 0)", "true", time.Minute); err != nil {
		var status string
		b.eval(ctx, "document.getElementById('history-status').textContent", &status)
		t.Errorf("the page of %s shows no history: %v (%q)", anycastApp, err, status)
	}
	var title, firstVerdict string
	b.eval(ctx, "document.getElementById('app-title').textContent", &title)
	b.eval(ctx, "document.querySelector('#history tbody tr') ? document.querySelector('#history tbody tr').cells[6].textContent : ''", &firstVerdict)
	if title != anycastApp || firstVerdict != "anycast" {
		t.Errorf("application page: title %q, newest history verdict %q; want %s, anycast", title, firstVerdict, anycastApp)
	}
	var apps string
	if err := b.eval(ctx, "[...document.querySelectorAll('#apps tbody tr[data-app]')].map(r => r.dataset.app).sort().join(',')", &apps); err != nil {
		t.Fatal(err)
	}
	want := []string{demo.SmartApp}
	for _, s := range demo.Scenarios {
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
		{"countries drawn (Natural Earth 1:110m has 177)", "document.querySelectorAll('#land path.country').length", func(n float64) bool { return n > 100 }},
		{"land has shape", "Math.max(...[...document.querySelectorAll('#land path.country')].map(p => p.getAttribute('d').length))", func(n float64) bool { return n > 1000 }},
		{"borders drawn", "document.querySelectorAll('#land path.border').length", func(n float64) bool { return n == 1 }},
		{"PoPs drawn up", "document.querySelectorAll('#pops circle.pop.up').length", func(n float64) bool { return n == float64(len(demo.Spec().PoPs)) }},
		{"catalogue dots", "document.querySelectorAll('#catalogue circle').length", func(n float64) bool { return n > 100 }},
		{"disks of the selected app", "document.querySelectorAll('#disks path.disk').length", func(n float64) bool { return n > 0 }},
		{"estimated locations", "document.querySelectorAll('#targets circle.loc').length", func(n float64) bool { return n >= 3 }},
		{"anycast instances", "document.querySelectorAll('#targets path.inst').length", func(n float64) bool { return n >= 2 }},
		{"the anycast app's instances, highlighted", "document.querySelectorAll('#targets path.inst:not(.dim)').length", func(n float64) bool { return n >= 2 }},
		{"candidate rows of the app's page", "document.querySelectorAll('#candidates tbody tr').length", func(n float64) bool { return n >= 1 }},
		{"reasons of the app's page", "document.querySelectorAll('#app-reasons li').length", func(n float64) bool { return n >= 1 }},
		{"why not SUCCESS (anycast, geo-DNS)", "document.querySelectorAll('#apps tbody tr.reason').length", func(n float64) bool { return n >= 2 }},
		{"probe result rows", "document.querySelectorAll('#probe-results tbody tr').length", func(n float64) bool { return n == float64(len(demo.Spec().PoPs)) }},
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

	shoot(ctx, t, b, "status-page.png")

	// An application's own address: its page, its history, its best PoP among the candidates.
	const dbApp = "frankfurt-db"
	if err := b.call(ctx, "Page.navigate", map[string]any{"url": info.APIURL + "/ui/app/" + dbApp + "#token=" + info.Token}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.waitFor(ctx, "String(document.querySelectorAll('#history tbody tr').length > 0 && document.getElementById('app-title').textContent)", dbApp, time.Minute); err != nil {
		t.Errorf("/ui/app/%s: %v", dbApp, err)
	}
	var best string
	b.eval(ctx, "document.querySelector('#history tbody tr') ? document.querySelector('#history tbody tr').cells[3].textContent : ''", &best)
	if best != "FRA" {
		t.Errorf("/ui/app/%s: newest history row places it at %q, want FRA", dbApp, best)
	}
	shoot(ctx, t, b, "status-page-app.png")
	for _, e := range b.consoleErrors() {
		t.Errorf("console %s: %s", e.Level, e.Text)
	}
}

// shoot writes a screenshot of the page to the test's temporary directory (logged), and to bench/out when
// VANTAGE_SCREENSHOTS is set.
func shoot(ctx context.Context, t *testing.T, b *browser, name string) {
	t.Helper()
	png, err := b.screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	if os.Getenv("VANTAGE_SCREENSHOTS") != "" {
		dir := filepath.Join("..", "bench", "out")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot also written to %s", filepath.Join(dir, name))
	}
}
