package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo"
	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/syncbuf"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// statusPageMeshInterval is the demo's mesh interval in TestStatusPageInChromium: the whole mesh is measured
// within it of the scheduler's start, while the test waits for the demo's decisions.
const statusPageMeshInterval = 30 * time.Second

// TestStatusPageInChromium runs the demo against a real redis-server, opens its status page in headless
// Chromium (driven over the DevTools protocol), and checks that the page loads without console errors, draws
// the land and borders, the fleet, the disks and the anycast target's instances, shows the demo's applications
// and the anycast application's page (opened from the URL fragment) with its decision history, that an ad-hoc
// probe started from the form (auto-submitted from the fragment) completes with FRA first, and that an
// application's own address (/ui/app/NAME) shows its history, and that the PoP mesh's heat map has a cell per
// measured pair (checkMeshOnPage). It writes screenshots of both pages to the test's temporary directory,
// and to bench/out/status-page.png and status-page-app.png when VANTAGE_SCREENSHOTS is set (and the top of
// the first, status-page-top.png: docs/statuspage.png).
func TestStatusPageInChromium(t *testing.T) {
	needRoot(t, "the status page in Chromium")
	skipShort(t, "the status page in Chromium")
	bin := chromiumBinary(t)
	srv := redistest.Start(t) // forked from a thread of its own: the testbed retiring its namespace threads cannot kill it (Pdeathsig)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	demoCtx, stopDemo := context.WithCancel(ctx)
	var out syncbuf.Buffer
	ready := make(chan demo.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(demoCtx, demo.Config{Redis: []string{srv.Addr()}, Listen: "127.0.0.1:0", RouterListen: "127.0.0.1:0",
			Requests: 1, MeshInterval: statusPageMeshInterval, Ready: func(i demo.Info) { ready <- i }}, &out)
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

	// The PoP mesh: the heat map has a cell per measured pair, the map a line per pair of PoPs, and no PoP is
	// mislocated (the demo's catalogue is the emulator's truth).
	checkMeshOnPage(ctx, t, b, info.APIURL, info.Token, len(demo.Spec().PoPs), "")

	shoot(ctx, t, b, "status-page.png")
	shootSpan(ctx, t, b, "header", "#app-card", "status-page-top.png") // docs/statuspage.png

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
	keepScreenshot(t, name, png)
}

// shootSpan writes a screenshot of the page from the top of the element first to the bottom of the element
// last (CSS selectors), full width, as shoot does: the pictures of the docs.
func shootSpan(ctx context.Context, t *testing.T, b *browser, first, last, name string) {
	t.Helper()
	var r []float64
	expr := fmt.Sprintf(`(() => { const a = document.querySelector(%q).getBoundingClientRect(), z = document.querySelector(%q).getBoundingClientRect();
		return [a.top + scrollY, z.bottom + scrollY + 8, document.documentElement.scrollWidth]; })()`, first, last)
	if err := b.eval(ctx, expr, &r); err != nil || len(r) != 3 {
		t.Fatalf("the span of %s to %s: %v %v", first, last, r, err)
	}
	png, err := b.screenshotClip(ctx, map[string]float64{"x": 0, "y": r[0], "width": r[2], "height": r[1] - r[0], "scale": 1})
	if err != nil {
		t.Fatal(err)
	}
	keepScreenshot(t, name, png)
}

// keepScreenshot writes png as name to the test's temporary directory, and to bench/out when
// VANTAGE_SCREENSHOTS is set.
func keepScreenshot(t *testing.T, name string, png []byte) {
	t.Helper()
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

// checkMeshOnPage waits for the page b shows to draw the whole mesh of n PoPs (a heat map cell per ordered
// pair, as many as GET /v1/mesh serves; a map line per pair of PoPs) and checks its list of mislocated PoPs:
// mislocated alone ("": none), flagged in the heat map and on the map.
func checkMeshOnPage(ctx context.Context, t *testing.T, b *browser, api, token string, n int, mislocated string) {
	t.Helper()
	want := n * (n - 1)
	const cells = "String(document.querySelectorAll('#heatmap rect.cell').length)"
	// The page reads the mesh every 30 s once it has pairs (every 5 s before); the mesh fills over its interval.
	if got, err := b.waitFor(ctx, cells, strconv.Itoa(want), 2*time.Minute); err != nil {
		var status string
		b.eval(ctx, "document.getElementById('mesh-status').textContent", &status)
		t.Fatalf("heat map: %s cells, want %d (every ordered pair): %v (%q)", got, want, err, status)
	}
	if view := fetchMesh(t, api, token); len(view.Pairs) != want {
		t.Errorf("GET /v1/mesh: %d pairs, the heat map %d cells", len(view.Pairs), want)
	}
	var status string
	b.eval(ctx, "document.getElementById('mesh-status').textContent", &status)
	if !strings.Contains(status, fmt.Sprintf("%d of %d ordered pairs measured among %d PoPs", want, want, n)) {
		t.Errorf("mesh status %q, want %d of %d pairs among %d PoPs", status, want, want, n)
	}
	m := 0 // PoPs mislocated
	if mislocated != "" {
		m = 1
	}
	checks := []struct {
		name, expr string
		want       float64
	}{
		{"heat map diagonal", "document.querySelectorAll('#heatmap rect.diag').length", float64(n)},
		{"heat map labels (rows and columns)", "document.querySelectorAll('#heatmap text.hlabel').length", float64(2 * n)},
		{"mislocated PoPs listed", "document.querySelectorAll('#mislocated li.bad').length", float64(m)},
		{"mislocated labels of the heat map", "document.querySelectorAll('#heatmap text.hlabel.misloc').length", float64(2 * m)},
		{"mislocated rows and columns outlined", "document.querySelectorAll('#heatmap rect.misband').length", float64(2 * m)},
		{"mislocated PoPs ringed on the map", "document.querySelectorAll('#mesh circle.mislocated').length", float64(m)},
	}
	for _, c := range checks {
		var got float64
		if err := b.eval(ctx, c.expr, &got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: %s = %v, want %v", c.name, c.expr, got, c.want)
		}
	}
	// The map: the faster direction of each pair; in a fleet of more than 12 PoPs, each PoP's 4 fastest pairs.
	var lines float64
	if err := b.eval(ctx, "document.querySelectorAll('#mesh path.meshline').length", &lines); err != nil {
		t.Fatal(err)
	}
	if lo, hi := min(want/2, 2*n), min(want/2, 4*n); lines < float64(lo) || lines > float64(hi) {
		t.Errorf("mesh lines on the map: %v, want %d to %d", lines, lo, hi)
	}
	var list string
	b.eval(ctx, "document.getElementById('mislocated').textContent", &list)
	if mislocated == "" && !strings.HasPrefix(list, "None: every PoP") {
		t.Errorf("mislocated PoPs: %q, want none", list)
	}
	if mislocated != "" {
		var pop string
		b.eval(ctx, "(document.querySelector('#mislocated li.bad') || {dataset: {}}).dataset.pop || ''", &pop)
		if pop != mislocated || !strings.Contains(list, "Set aside") {
			t.Errorf("mislocated PoPs: %q (first %q), want %s with the mesh's reason", list, pop, mislocated)
		}
	}
}

// TestStatusPageMislocatedPoP runs the probe daemons of the emulated WAN and a scheduler whose catalogue lists
// FRA in Sydney (as TestMeshOnEmulatedWAN), and checks that the status page says it needs a token to read the
// mesh, then, given one, shows the measured mesh's heat map
// and flags FRA with the mesh's reason: in the mislocated list, the heat map and on the map, where FRA is drawn
// where the scheduler's catalogue puts it (beside SYD). It writes screenshots: the page,
// status-page-mislocated.png, and its mesh card, status-page-mesh.png (docs/statuspage-mesh.png).
func TestStatusPageMislocatedPoP(t *testing.T) {
	needRoot(t, "the status page's mesh in Chromium")
	skipShort(t, "the status page's mesh in Chromium")
	bin := chromiumBinary(t)
	log := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tb, _, redis, pops := startWANFleet(ctx, t, log)

	cat := geo.PoPs()
	for i := range cat {
		if cat[i].Code == "FRA" {
			cat[i].Point = geo.Point{Lat: -33.9, Lon: 151.2}
		}
	}
	const token = "e2e-meshpage-token-0123456789"
	cfg := daemon.DefaultSchedulerConfig()
	cfg.Listen, cfg.Logger = "127.0.0.1:0", log
	cfg.Scheduler.Name = "s1"
	cfg.Scheduler.PoPs = cat
	cfg.Scheduler.MeshInterval = 8 * time.Second
	cfg.Tokens = scheduler.Tokens{token: scheduler.Operator("e2e")}
	cfg.Allow = []netip.Prefix{tb.Prefix()}
	s, err := daemon.NewScheduler(cfg, openStore(t, []string{redis}, log))
	if err != nil {
		t.Fatal(err)
	}
	start(t, "scheduler", s.Run)
	testwait.Eventually(t, time.Minute, "FRA flagged mislocated by the mesh", func() bool { return s.Scheduler().Mislocated("FRA") })

	b := startChromium(ctx, t, bin)
	// Without a token the page reads no mesh, and says so.
	if err := b.call(ctx, "Page.navigate", map[string]any{"url": s.URL() + "/ui/"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.waitFor(ctx, "document.getElementById('mesh-status').textContent",
		"A bearer token is needed to read the mesh: enter it in the Token field.", 30*time.Second); err != nil {
		t.Error(err)
	}
	if err := b.call(ctx, "Page.navigate", map[string]any{"url": s.URL() + "/#token=" + token}, nil); err != nil {
		t.Fatal(err)
	}
	checkMeshOnPage(ctx, t, b, s.URL(), token, len(pops), "FRA")
	// FRA is drawn where the scheduler's catalogue puts it, ringed as mislocated: beside SYD.
	var px float64
	if err := b.eval(ctx, `(() => { const c = (p) => document.querySelector('#pops circle[data-pop=' + p + ']');
		const f = c('FRA'), s = c('SYD'); return f && s ? Math.hypot(f.cx.baseVal.value - s.cx.baseVal.value, f.cy.baseVal.value - s.cy.baseVal.value) : -1; })()`, &px); err != nil {
		t.Fatal(err)
	}
	if px < 0 || px > 5 {
		t.Errorf("FRA drawn %v px from SYD, want beside it (the catalogue's wrong location)", px)
	}
	shoot(ctx, t, b, "status-page-mislocated.png")
	shootSpan(ctx, t, b, "#mesh-card", "#mesh-card", "status-page-mesh.png") // docs/statuspage-mesh.png
	for _, e := range b.consoleErrors() {
		t.Errorf("console %s: %s", e.Level, e.Text)
	}
}
