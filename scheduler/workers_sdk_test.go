package scheduler

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/npmtest"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
)

// sdkVersion is the official Cloudflare TypeScript SDK the Workers API is tested with.
const sdkVersion = "7.3.0"

// sdkScript drives the API with the official SDK: it sets each of the four placements, reads them back, uploads
// a script, lists, deletes, and is refused for a bad token and another account's script. It prints one JSON
// object.
const sdkScript = `
const Cloudflare = require('cloudflare');
const { toFile } = require('cloudflare');
const [baseURL, tokA, acctA, tokB, acctB] = process.argv.slice(2);
const a = new Cloudflare({ apiToken: tokA, baseURL, maxRetries: 0 });
const b = new Cloudflare({ apiToken: tokB, baseURL, maxRetries: 0 });
const settings = a.workers.scripts.scriptAndVersionSettings;
const status = async (p) => { try { await p; return 200; } catch (e) { return e.status ?? String(e); } };
(async () => {
  const out = { edits: [], gets: [] };
  for (const placement of [{ mode: 'smart' }, { region: 'aws:us-east-1' }, { host: 'db.shop.example:5432' }, { mode: 'targeted', hostname: 'api.shop.example' }]) {
    out.edits.push(await settings.edit('shop', { account_id: acctA, settings: { placement } }));
    out.gets.push(await settings.get('shop', { account_id: acctA }));
  }
  out.badEdit = await status(settings.edit('shop', { account_id: acctA, settings: { placement: { mode: 'fast' } } }));
  out.upload = await a.workers.scripts.update('cart', { account_id: acctA,
    metadata: { main_module: 'index.js', placement: { mode: 'smart' } },
    files: [await toFile(Buffer.from('export default {}'), 'index.js', { type: 'application/javascript+module' })] });
  out.list = [];
  for await (const s of a.workers.scripts.list({ account_id: acctA })) out.list.push(s);
  out.deleted = await status(a.workers.scripts.delete('cart', { account_id: acctA }));
  out.afterDelete = await status(settings.get('cart', { account_id: acctA }));
  out.badToken = await status(new Cloudflare({ apiToken: 'not-a-token-0123456789', baseURL, maxRetries: 0 }).workers.scripts.list({ account_id: acctA }));
  out.otherAccount = await status(b.workers.scripts.scriptAndVersionSettings.get('shop', { account_id: acctB }));
  out.otherAccountDelete = await status(b.workers.scripts.delete('shop', { account_id: acctB }));
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`

// installSDK installs the SDK once into the cache shared with placement's wrangler differential
// ($VANTAGE_NPM_CACHE, else $XDG_CACHE_HOME/vantage-npm, else /tmp/vantage-npm) and returns its node_modules. It
// skips where node or npm is missing, and where the install fails outside CI (under CI it fails).
func installSDK(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: the Workers API is tested with the official Cloudflare SDK (npm cloudflare@%s) under Node.js >= 18 (Debian: apt-get install nodejs npm; .ci/deps.sh installs them)", tool, sdkVersion)
		}
	}
	return npmtest.Install(t, "cloudflare", sdkVersion, os.Environ(), 5*time.Minute)
}

func TestWorkersAPIWithOfficialSDK(t *testing.T) {
	modules := installSDK(t)
	e := newAccountsEnv(t, Limits{})
	// B's own script, which A's calls must not reach and B reaches only under its account.
	e.must(200, "PATCH", "/client/v4/accounts/"+acctB+"/workers/scripts/rival/settings", tokB, `{"placement":{"hostname":"api.rival.example"}}`)
	script := filepath.Join(t.TempDir(), "sdk.js")
	if err := os.WriteFile(script, []byte(sdkScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// node makes the calls: the server validates each exchange against openapi.json.
	sdk := httptest.NewServer(openapitest.Handler(t, e.api.Handler()))
	defer sdk.Close()
	cmd := exec.CommandContext(ctx, "node", script, sdk.URL+"/client/v4", tokA, acctA, tokB, acctB)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var out struct {
		Edits, Gets  []ScriptSettings
		BadEdit      any
		Upload       WorkerScript
		List         []WorkerScript
		Deleted      any
		AfterDelete  any
		BadToken     any
		OtherAccount any
		// OtherAccountDelete is B deleting "shop" under its own account: A's script is not found there.
		OtherAccountDelete any
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("the script's output %s: %v", raw, err)
	}
	want := []PlatformPlacement{{Mode: "smart"}, {Mode: "targeted", Region: "aws:us-east-1"},
		{Mode: "targeted", Host: "db.shop.example:5432"}, {Mode: "targeted", Hostname: "api.shop.example"}}
	if len(out.Edits) != len(want) || len(out.Gets) != len(want) {
		t.Fatalf("output %s: want %d edits and gets", raw, len(want))
	}
	for i, w := range want {
		for what, got := range map[string]ScriptSettings{"edit": out.Edits[i], "get": out.Gets[i]} {
			if p := got.Placement; p == nil || p.Mode != w.Mode || p.Region != w.Region || p.Host != w.Host || p.Hostname != w.Hostname {
				t.Errorf("%s %d: placement %+v, want %+v", what, i, p, w)
			}
		}
	}
	if out.BadEdit != float64(400) {
		t.Errorf("bad placement: %v, want 400", out.BadEdit)
	}
	if out.Upload.ID != "cart" || out.Upload.PlacementMode != "smart" || out.Upload.Vantage == nil || out.Upload.Vantage.Deploy == "" {
		t.Errorf("upload: %+v", out.Upload)
	}
	var ids []string
	for _, s := range out.List {
		ids = append(ids, s.ID+":"+s.PlacementMode)
	}
	if strings.Join(ids, ",") != "cart:smart,shop:targeted" || out.List[1].Placement == nil || out.List[1].Placement.Hostname != "api.shop.example" {
		t.Errorf("list: %v (%+v)", ids, out.List)
	}
	for what, got := range map[string]any{"delete": out.Deleted, "get after delete": out.AfterDelete, "bad token": out.BadToken,
		"another account's script": out.OtherAccount, "another account's delete": out.OtherAccountDelete} {
		w := map[string]float64{"delete": 200, "get after delete": 404, "bad token": 401, "another account's script": 404, "another account's delete": 404}[what]
		if got != w {
			t.Errorf("%s: %v, want %v", what, got, w)
		}
	}
	if _, found, err := e.st.App(t.Context(), "shop"); err != nil || !found {
		t.Errorf("A's script after B's delete: found %v, %v", found, err)
	}
}
