package scheduler

import (
	"context"
	"github.com/vantage-edge/vantage/internal/syncbuf"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

func TestLoadDirReplacesTheDirectorysTargets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	parser := placement.Parser{Policy: placement.DefaultPolicy(netip.MustParsePrefix("127.0.0.0/8"))}
	regions := RegionEndpoints{Overrides: map[string]string{"aws:eu-central-1": "127.0.0.1:9"}}
	s := newScheduler(Config{Logger: quietLogger()}, nil, nil)
	s.AddTarget(SourceAPI, Target{App: "from-api", Mode: placement.ModeHost, Target: "127.0.0.1:1"})

	write("billing.toml", "name = \"billing\"\n[placement]\nhost = \"127.0.0.1:5432\"\n")
	write("catalog.jsonc", `{"name": "catalog", /* c */ "placement": {"region": "aws:eu-central-1"}}`)
	write("smart.toml", "name = \"smart\"\n[placement]\nmode = \"smart\"\n")
	n, err := s.LoadDir(dir, parser, regions)
	if n != 2 || err == nil || !strings.Contains(err.Error(), "smart.toml: app \"smart\": smart placement needs the app registry") {
		t.Fatalf("LoadDir = %d, %v; want 2 targets, smart.toml skipped (no registry to hand it to)", n, err)
	}
	want := func(step string, apps ...string) {
		t.Helper()
		var got []string
		for _, tg := range s.Targets() {
			got = append(got, tg.App+"="+tg.ProbeAddr())
		}
		if strings.Join(got, " ") != strings.Join(apps, " ") {
			t.Errorf("%s: targets %v, want %v", step, got, apps)
		}
	}
	want("first load", "billing=127.0.0.1:5432", "catalog=127.0.0.1:9", "from-api=127.0.0.1:1")

	// A changed file changes its target; a removed one removes it; a bad one is reported and the rest kept.
	write("billing.toml", "name = \"billing\"\n[placement]\nhost = \"127.0.0.1:6543\"\n")
	os.Remove(filepath.Join(dir, "catalog.jsonc"))
	write("broken.toml", "name = \"broken\"\n[placement]\nhost = \n")
	n, err = s.LoadDir(dir, parser, regions)
	if err == nil || !strings.Contains(err.Error(), "broken.toml") || n != 1 {
		t.Errorf("reload = %d, %v; want 1 target and an error naming broken.toml", n, err)
	}
	want("reload", "billing=127.0.0.1:6543", "from-api=127.0.0.1:1")

	// The directory's targets never replace the API's.
	write("from-api.toml", "name = \"from-api\"\n[placement]\nhost = \"127.0.0.1:2\"\n")
	s.LoadDir(dir, parser, regions)
	want("same app in both sources", "billing=127.0.0.1:6543", "from-api=127.0.0.1:1")
}

// TestLoadDirSmartAppsAndSkippedFiles loads a config dir on a real redis-server: smart applications (both
// spellings) go to the app registry with the file's hash as their deploy, skipped files are logged once per
// content, counted in vantage_scheduler_config_files and listed by SkippedConfigs.
func TestLoadDirSmartAppsAndSkippedFiles(t *testing.T) {
	srv := redistest.Start(t)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b := StoreBackend{openStore(t, srv.Addr(), log)}
	reg := prometheus.NewRegistry()
	s, err := New(Config{Name: "dir", Logger: log}, b, NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	parser := placement.Parser{Policy: placement.DefaultPolicy(netip.MustParsePrefix("127.0.0.0/8"))}
	load := func(step string, wantN int) {
		t.Helper()
		if n, _ := s.LoadDir(dir, parser, RegionEndpoints{}); n != wantN {
			t.Fatalf("%s: LoadDir placed %d apps, want %d", step, n, wantN)
		}
	}
	registry := func() map[string]storage.App {
		t.Helper()
		apps, err := b.Apps(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]storage.App{}
		for _, a := range apps {
			out[a.Name] = a
		}
		return out
	}
	gauge := func(state string) float64 {
		t.Helper()
		var m dto.Metric
		if err := s.metrics.configFiles.WithLabelValues(state).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	skippedLines := func() int { return strings.Count(logs.String(), "config file skipped") }

	write("billing.toml", "name = \"billing\"\n[placement]\nhost = \"127.0.0.1:5432\"\n")
	write("shop.toml", "name = \"shop\"\n[placement]\nmode = \"smart\"\n")
	write("legacy.jsonc", `{"name": "legacy", "unsafe": {"metadata": {"placement": {"mode": "smart"}}}}`)
	write("plain.toml", "name = \"plain\"\n")
	write("broken.toml", "name = \"broken\"\n[placement]\nhost = \n")
	load("first", 3)
	load("unchanged", 3)
	apps := registry()
	shop, legacy := apps["shop"], apps["legacy"]
	if len(apps) != 2 || shop.Mode != placement.ModeSmart || shop.Source != SourceDir(dir) || !shop.DeployGenerated ||
		!strings.HasPrefix(shop.DeployVersion, "sha256:") || legacy.Mode != placement.ModeSmart || legacy.DeployVersion == shop.DeployVersion {
		t.Fatalf("registry %+v; want shop and legacy, smart, from the dir, with their files' hashes as deploys", apps)
	}
	if ts := s.Targets(); len(ts) != 1 || ts[0].App != "billing" {
		t.Errorf("targets %+v, want billing only", ts)
	}
	skipped := s.SkippedConfigs()
	if len(skipped) != 2 || !strings.HasSuffix(skipped[0].Path, "broken.toml") || !strings.Contains(skipped[0].Error, "broken.toml:3") ||
		!strings.HasSuffix(skipped[1].Path, "plain.toml") || !strings.Contains(skipped[1].Error, "no placement") {
		t.Errorf("SkippedConfigs = %+v; want broken.toml (its syntax error) and plain.toml (no placement)", skipped)
	}
	if ok, sk := gauge(ConfigOK), gauge(ConfigSkipped); ok != 3 || sk != 2 {
		t.Errorf("vantage_scheduler_config_files ok=%v skipped=%v, want 3 and 2", ok, sk)
	}
	if n := skippedLines(); n != 2 {
		t.Errorf("%d 'config file skipped' log lines after two loads, want 2 (once per file):\n%s", n, logs.String())
	}

	// A changed file is a new deploy; a changed bad file is logged again; a removed smart file's app stays while
	// another file fails to load (it may be the removed one, half renamed); an application the API registered is
	// not taken over.
	write("shop.toml", "name = \"shop\"\n# redeployed\n[placement]\nmode = \"smart\"\n")
	write("broken.toml", "name = \"broken\"\n[placement]\nhost = 5\n")
	os.Remove(filepath.Join(dir, "legacy.jsonc"))
	if err := b.RegisterApp(ctx, storage.App{Name: "taken", Mode: placement.ModeSmart, Source: SourceAPI}); err != nil {
		t.Fatal(err)
	}
	write("taken.toml", "name = \"taken\"\n[placement]\nmode = \"smart\"\n")
	load("changed", 2)
	apps = registry()
	if a := apps["shop"]; a.DeployVersion == shop.DeployVersion || !a.DeployedAt.After(shop.DeployedAt) {
		t.Errorf("shop after its file changed: %+v; want a new deploy (was %s)", a, shop.DeployVersion)
	}
	if _, ok := apps["legacy"]; !ok || apps["taken"].Source != SourceAPI {
		t.Errorf("registry %+v; want legacy kept (broken.toml fails to load) and taken still the API's", apps)
	}
	if n := skippedLines(); n != 4 {
		t.Errorf("%d 'config file skipped' lines, want 4 (broken.toml changed, taken.toml new):\n%s", n, logs.String())
	}
	if sk := s.SkippedConfigs(); len(sk) != 3 || !strings.Contains(sk[2].Error, "already registered by api") {
		t.Errorf("SkippedConfigs = %+v; want taken.toml skipped as the API's", sk)
	}

	// A clean read: the removed smart file's app leaves the registry, with its decision.
	for _, f := range []string{"broken.toml", "plain.toml", "taken.toml"} {
		os.Remove(filepath.Join(dir, f))
	}
	if _, err := b.PutDecision(ctx, placement.Decision{App: "legacy", Mode: placement.ModeSmart, Status: placement.StatusInsufficientInvocations}); err != nil {
		t.Fatal(err)
	}
	load("clean", 2)
	if _, ok := registry()["legacy"]; ok {
		t.Errorf("registry %+v; want legacy gone after a clean read", registry())
	}
	if _, ok, err := b.Decision(ctx, "legacy"); err != nil || ok {
		t.Errorf("legacy's decision: found %v (%v), want deleted with the app", ok, err)
	}
}
