package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/smart/smarttest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// system is a deployment as an operator makes one on one machine: a real redis-server, probe daemons of three
// PoPs, two schedulers (one leads) reading a config dir, worker hosts in SYD and FRA and a router in SYD, every
// one built by package daemon with the defaults the `vantage` daemons ship with.
type system struct {
	t       *testing.T
	ctx     context.Context
	st      *storage.Store
	redis   *redistest.Server
	apis    []string // the schedulers' base URLs
	rt      *router.Router
	dir     string // the schedulers' --config-dir
	hostApp string // the config dir's host application's target
}

const testToken = "assembly-test-token"

func startSystem(t *testing.T) *system {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	srv := redistest.Start(t)
	log := testLogger(t)
	st := openStore(t, []string{srv.Addr()}, log)
	s := &system{t: t, ctx: ctx, st: st, redis: srv, dir: t.TempDir()}

	// A back end on loopback for the config dir's host application (every PoP sees it at once: anycast).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	s.hostApp = ln.Addr().String()
	s.writeConfig("dir-host", fmt.Sprintf("host = %q", s.hostApp))
	s.writeConfig("dir-smart", `mode = "smart"`)

	for _, pop := range []string{"FRA", "IAD", "SYD"} {
		cfg := daemon.DefaultProbedConfig()
		cfg.Listen, cfg.Logger = "127.0.0.1:0", log
		cfg.Daemon.PoP, cfg.Daemon.DaemonID = pop, "test-"+pop
		cfg.Prober.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		p, err := daemon.NewProbed(cfg, st)
		if err != nil {
			t.Fatal(err)
		}
		s.run("probed "+pop, p.Run)
	}
	for i := range 2 {
		cfg := daemon.DefaultSchedulerConfig()
		cfg.Listen, cfg.Logger = "127.0.0.1:0", log
		cfg.Scheduler.Name = fmt.Sprintf("scheduler-%d", i)
		cfg.ConfigDir = s.dir
		cfg.ConfigReload = time.Second // the test removes a file; the default reads the dir every minute
		cfg.Tokens = scheduler.Tokens{testToken: scheduler.Operator("ops")}
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		k, err := daemon.NewScheduler(cfg, st)
		if err != nil {
			t.Fatal(err)
		}
		s.apis = append(s.apis, k.URL())
		s.run(cfg.Scheduler.Name, k.Run)
	}
	workers := map[string]*url.URL{}
	for _, pop := range []string{"SYD", "FRA"} {
		cfg := daemon.DefaultWorkerConfig()
		cfg.Listen, cfg.ServeDB, cfg.Logger = "127.0.0.1:0", "127.0.0.1:0", log
		cfg.Worker = worker.Config{PoP: pop, Apps: []worker.App{{Name: "api-smart"}}}
		w, err := daemon.NewWorker(cfg, st)
		if err != nil {
			t.Fatal(err)
		}
		workers[pop] = &url.URL{Scheme: "http", Host: w.Addr()}
		s.run("worker "+pop, w.Run)
	}
	rc := daemon.DefaultRouterConfig()
	rc.Listen, rc.Admin, rc.Logger = "127.0.0.1:0", "127.0.0.1:0", log
	rc.Front.Ingress, rc.Front.Workers = "SYD", workers
	r, err := daemon.NewRouter(rc, st)
	if err != nil {
		t.Fatal(err)
	}
	s.rt = r.Router()
	s.run("router", r.Run)
	return s
}

// run runs a component until the test ends.
func (s *system) run(name string, fn func(context.Context) error) { start(s.t, name, fn) }

func (s *system) writeConfig(app, placementLine string) {
	s.t.Helper()
	body := fmt.Sprintf("name = %q\nmain = \"src/index.ts\"\n\n[placement]\n%s\n", app, placementLine)
	if err := os.WriteFile(filepath.Join(s.dir, app+".toml"), []byte(body), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// call sends an authenticated API request to scheduler i and returns the status and body.
func (s *system) call(i int, method, path, contentType string, body []byte) (int, string) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.ctx, method, s.apis[i]+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := apiClient(s.t).Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// telemetry posts records through scheduler i's ingest (as a worker host would), stamped from `from` on, a millisecond apart.
func (s *system) telemetry(i int, app, deploy string, from time.Time, g *smarttest.Gen) {
	s.t.Helper()
	for j := range g.Recs {
		g.Recs[j].App, g.Recs[j].Deploy, g.Recs[j].At = app, deploy, from.Add(time.Duration(j)*time.Millisecond)
	}
	b, err := json.Marshal(g.Recs)
	if err != nil {
		s.t.Fatal(err)
	}
	if code, body := s.call(i, http.MethodPost, "/v1/telemetry", "application/json", b); code/100 != 2 {
		s.t.Fatalf("POST /v1/telemetry: %d %s", code, body)
	}
}

// await waits for app's decision to be status (at best, "" for none) and computed after `after`.
func (s *system) await(step, app string, after time.Time, status placement.Status, best string, timeout time.Duration) placement.Decision {
	s.t.Helper()
	var d placement.Decision
	testwait.Eventually(s.t, timeout, fmt.Sprintf("%s: %s: a decision %s at %q computed after %v", step, app, status, best, after.Format(time.TimeOnly)), func() bool {
		var ok bool
		var err error
		d, ok, err = s.st.Decision(s.ctx, app)
		return err == nil && ok && d.ComputedAt.After(after) && d.Status == status && d.BestPoP == best
	})
	s.t.Logf("%s: %s %s at %q (%s)", step, app, d.Status, d.BestPoP, d.Reason)
	return d
}

// routes returns where the router runs a fetch of app entering at SYD, for a request outside the baseline.
func (s *system) routes(app string) (string, router.Reason) {
	for i := 0; ; i++ {
		res := s.rt.Route(app, "SYD", fmt.Sprintf("check-%d", i), router.KindFetch)
		if res.Reason != router.ReasonBaseline {
			return res.ExecPoP, res.Reason
		}
	}
}

// smartWait bounds every smart step: far less than the runner's one-minute interval, so each step shows the
// analysis running as soon as enough new telemetry (or a deploy) arrived.
const smartWait = 20 * time.Second

// TestAssembly runs a deployment of the one assembly against a real redis-server and walks an operator's
// drills: a smart application registered through the API and another through the config dir, placed from
// telemetry; a placement that made things slower ends UNSUPPORTED_APPLICATION until a deploy, which starts a
// fresh analysis; a deleted application stops being routed within a second; an emptied Redis has every
// config-dir application decided again within one result timeout.
func TestAssembly(t *testing.T) {
	if testing.Short() {
		t.Skip("assembly: skipped with -short")
	}
	s := startSystem(t)
	t0 := time.Now()
	// Registered at once, likely before any scheduler leads: the runner that comes to lead analyses it then.
	toml := "name = \"api-smart\"\nmain = \"src/index.ts\"\n\n[placement]\nmode = \"smart\"\n"
	if code, body := s.call(0, http.MethodPost, "/v1/apps?deploy=v1", "application/toml", []byte(toml)); code != http.StatusCreated {
		t.Fatalf("POST /v1/apps (smart): %d %s", code, body)
	}
	s.await("registered", "api-smart", t0, placement.StatusInsufficientInvocations, "", smartWait)
	s.await("config_dir_host", "dir-host", t0, placement.StatusUnsupportedApplication, "", time.Minute) // loopback: every PoP at once

	// Users in Sydney and Frankfurt; at FRA the database is near: both apps are placed there.
	mark := time.Now()
	s.telemetry(1, "api-smart", "v1", mark.Add(-5*time.Minute), smarttest.NewGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6))
	// The config dir's deploy is the file's content (Vantage names it): its records are the ones since Vantage
	// read the file, whatever version the workers report.
	app, ok, err := s.st.App(s.ctx, "dir-smart")
	if err != nil || !ok {
		t.Fatalf("the config dir's smart app is not registered: %v", err)
	}
	s.telemetry(0, "dir-smart", "", app.DeployedAt, smarttest.NewGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6))
	s.await("placed_from_telemetry", "api-smart", mark, placement.StatusSuccess, "FRA", smartWait)
	s.await("placed_from_telemetry", "dir-smart", mark, placement.StatusSuccess, "FRA", smartWait)
	testwait.Eventually(t, 5*time.Second, "the router runs api-smart at FRA", func() bool { pop, _ := s.routes("api-smart"); return pop == "FRA" })

	// Placed, its requests got slower than the ones held back in Sydney: UNSUPPORTED_APPLICATION.
	mark = time.Now()
	s.telemetry(1, "api-smart", "v1", mark.Add(-4*time.Minute), smarttest.NewGen(t).Add(20, "SYD", "FRA", 6).
		Edit(20, func(r *storage.Telemetry) { r.DurationMs = 3000 }))
	s.await("slower_when_placed", "api-smart", mark, placement.StatusUnsupportedApplication, "", smartWait)

	// A deploy is told to Vantage: it ends UNSUPPORTED_APPLICATION and the new deploy is analysed afresh.
	mark = time.Now()
	if code, body := s.call(1, http.MethodPost, "/v1/apps/api-smart/deploys?version=v2", "", nil); code != http.StatusCreated {
		t.Fatalf("POST /v1/apps/api-smart/deploys: %d %s", code, body)
	}
	s.await("new_deploy", "api-smart", mark, placement.StatusInsufficientInvocations, "", smartWait)
	mark = time.Now()
	s.telemetry(0, "api-smart", "v2", mark.Add(-time.Minute), smarttest.NewGen(t).Add(25, "SYD", "SYD", 6).Add(10, "FRA", "FRA", 6))
	s.await("new_deploy_analysed", "api-smart", mark, placement.StatusSuccess, "FRA", smartWait)
	testwait.Eventually(t, 5*time.Second, "the router runs api-smart at FRA after the new deploy's analysis", func() bool {
		pop, _ := s.routes("api-smart")
		return pop == "FRA"
	})

	// Deleting the application deletes its decision, and the router stops routing it within a second.
	if code, body := s.call(0, http.MethodDelete, "/v1/apps/api-smart", "", nil); code/100 != 2 {
		t.Fatalf("DELETE /v1/apps/api-smart: %d %s", code, body)
	}
	took := testwait.Eventually(t, 10*time.Second, "the router runs the deleted api-smart locally", func() bool {
		pop, _ := s.routes("api-smart")
		return pop == "SYD"
	})
	t.Logf("deleted app routed locally %v after DELETE returned", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the router stopped routing the deleted app after %v, want within 1 s", took)
	}
	if _, ok, err := s.st.Decision(s.ctx, "api-smart"); err != nil || ok {
		t.Errorf("the deleted app's decision: stored %v (%v), want none", ok, err)
	}

	// Redis emptied (a restart without persistence): the config dir's apps are registered and decided again
	// within one result timeout, without waiting for a recheck interval.
	mark = time.Now()
	if err := s.st.Client().FlushAll(s.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.await("redis_emptied", "dir-host", mark, placement.StatusUnsupportedApplication, "", daemon.DefaultSchedulerConfig().Scheduler.ResultTimeout)
	testwait.Eventually(t, smartWait, "the config dir's smart app registered again after Redis was emptied", func() bool {
		apps, err := s.st.Apps(s.ctx)
		return err == nil && slices.ContainsFunc(apps, func(a storage.App) bool { return a.Name == "dir-smart" })
	})
}
