package scheduler

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/placement"
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
	if err != nil || n != 2 {
		t.Fatalf("LoadDir = %d, %v; want 2 targets (smart has none to probe)", n, err)
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
