package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// The decisions the router front's section stores (seedFrontDecisions): frontDecisions applications, the one
// wrk loads (its Host header, "127.0.0.1") among those routed to LHR.
const (
	frontDecisions = 10000
	frontApp       = "127.0.0.1"
)

// seedFrontDecisions stores the section's decisions and a heartbeat for EWR and LHR (valid for an hour) in
// the Redis at addr: even applications are routed to LHR (best LHR, EWR 30 ms behind), odd ones best at EWR.
func seedFrontDecisions(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{addr}})
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	for _, pop := range []string{"EWR", "LHR"} {
		if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: pop, DaemonID: "bench-" + pop, At: now}, time.Hour); err != nil {
			return err
		}
	}
	dec := func(app string, routed bool) placement.Decision {
		cands := []placement.Candidate{{PoP: "LHR", RTTMs: 10}, {PoP: "EWR", RTTMs: 40}}
		best := "LHR"
		if !routed {
			cands, best = []placement.Candidate{{PoP: "EWR", RTTMs: 5}, {PoP: "LHR", RTTMs: 70}}, "EWR"
		}
		return placement.Decision{App: app, Mode: placement.ModeHost, Target: "db.example.com:5432", BestPoP: best,
			Status: placement.StatusSuccess, Verdict: placement.VerdictUnicast, Candidates: cands}
	}
	ds := []placement.Decision{dec(frontApp, true)}
	for i := 1; i < frontDecisions; i++ {
		ds = append(ds, dec(fmt.Sprintf("app-%05d.example.com", i), i%2 == 0))
		if len(ds) == 1000 || i == frontDecisions-1 {
			if _, err := st.PutDecisions(ctx, ds); err != nil {
				return err
			}
			ds = ds[:0]
		}
	}
	return nil
}

// luaLoad finds the shipped HAProxy configuration's directive loading vantage.lua.
var luaLoad = regexp.MustCompile(`(?m)^\s*(lua-load(?:-per-thread)?)\s+/etc/haproxy/vantage\.lua\s*$`)

func init() {
	frontHooks = append(frontHooks,
		frontHook{name: "HAProxy + Vantage maps", start: startHAProxyVantage},
		frontHook{name: "nginx + Vantage map", start: startNginxVantage})
}

// proxyWorkers hands out the two worker ports a proxy with Vantage's tables forwards to: EWR's (the ingress)
// and LHR's.
func proxyWorkers(e *frontEnv) (ewr, lhr int, err error) {
	if ewr, err = e.workerPort(); err != nil {
		return 0, 0, err
	}
	lhr, err = e.workerPort()
	return ewr, lhr, err
}

// startSync runs `vantage router --listen ""` keeping one proxy's tables (args) in sync with the harness's
// Redis.
func startSync(ctx context.Context, o *options, e *frontEnv, name string, args ...string) (*proc, error) {
	bin, err := vantageBin(ctx, o, e)
	if err != nil {
		return nil, err
	}
	args = append([]string{"router", "--redis", e.redisAddr, "--ingress", "EWR", "--listen", "", "--admin", "",
		"--proxy-pops", "EWR,LHR", "--log-level", "warn"}, args...)
	return startProc(e.dir, name, bin, args...)
}

// waitRemote waits until the front at url runs the benchmarked application at LHR: the proxy has the table.
func waitRemote(ctx context.Context, url string) error {
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	var last string
	err := waitFor(ctx, 30*time.Second, func() bool {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("cf-ray", "bench-not-in-the-baseline") // MurmurHash2 far above the 1% bound
		resp, err := c.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		resp.Body.Close()
		last = fmt.Sprintf("%d cf-placement %q", resp.StatusCode, resp.Header.Get("cf-placement"))
		return resp.StatusCode == 200 && resp.Header.Get("cf-placement") == "remote-LHR"
	})
	if err != nil {
		return fmt.Errorf("%s never ran %s at LHR (last answer: %s): %w", url, frontApp, last, err)
	}
	return nil
}

// both stops the proxy, then its sync.
func both(proxy, sync *proc) func() {
	return func() {
		if proxy != nil {
			proxy.stop()
		}
		if sync != nil {
			sync.stop()
		}
	}
}

// pidsOf is the processes of proxy and sync (the sync is idle while wrk runs, but counted).
func pidsOf(proxy, sync *proc) func() []int {
	return func() []int { return append(proxy.pids(), sync.cmd.Process.Pid) }
}

// startHAProxyVantage runs HAProxy with the shipped deploy/haproxy rules (the lines between BEGIN and END of
// haproxy.cfg, as router/proxysync's differential test runs them) and vantage.lua, its map kept by
// `vantage router --haproxy-map-file --haproxy-socket`; threads and reuse as the plain HAProxy's.
func startHAProxyVantage(ctx context.Context, o *options, e *frontEnv) (frontContender, func(), error) {
	ewr, lhr, err := proxyWorkers(e)
	if err != nil {
		return frontContender{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return frontContender{}, nil, err
	}
	deploy := filepath.Join(o.root, "deploy", "haproxy")
	b, err := os.ReadFile(filepath.Join(deploy, "haproxy.cfg"))
	if err != nil {
		return frontContender{}, nil, err
	}
	_, rest, ok1 := strings.Cut(string(b), "# BEGIN vantage\n")
	block, _, ok2 := strings.Cut(rest, "# END vantage")
	if !ok1 || !ok2 {
		return frontContender{}, nil, fmt.Errorf("deploy/haproxy/haproxy.cfg: no # BEGIN vantage ... # END vantage block")
	}
	// The directive loading vantage.lua as the shipped global section has it (lua-load or lua-load-per-thread).
	lua := luaLoad.FindStringSubmatch(string(b))
	if lua == nil {
		return frontContender{}, nil, fmt.Errorf("deploy/haproxy/haproxy.cfg: no lua-load of /etc/haproxy/vantage.lua")
	}
	mapFile, sock := filepath.Join(e.dir, "vantage.map"), filepath.Join(e.dir, "haproxy-admin.sock")
	sync, err := startSync(ctx, o, e, "haproxy-sync", "--haproxy-map-file", mapFile, "--haproxy-socket", sock)
	if err != nil {
		return frontContender{}, nil, err
	}
	// The router creates the map file (ingress and baseline only) before its first snapshot: HAProxy needs it
	// to start.
	if err := waitFor(ctx, 15*time.Second, func() bool { _, err := os.Stat(mapFile); return err == nil }); err != nil {
		return frontContender{}, both(nil, sync), fmt.Errorf("the router did not create %s: %w", mapFile, err)
	}
	cfg := fmt.Sprintf(`global
  nbthread 2
  stats socket %s mode 600 level admin
  %s %s
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend edge
  bind 127.0.0.1:%d
%s
backend pop_EWR
  server w 127.0.0.1:%d
backend pop_LHR
  server w 127.0.0.1:%d
`, sock, lua[1], filepath.Join(deploy, "vantage.lua"), port, strings.ReplaceAll(block, "/etc/haproxy/vantage.map", mapFile), ewr, lhr)
	path := filepath.Join(e.dir, "haproxy-vantage.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return frontContender{}, both(nil, sync), err
	}
	p, err := startProc(e.dir, "haproxy-vantage", "haproxy", "-db", "-f", path)
	if err != nil {
		return frontContender{}, both(nil, sync), err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := waitRemote(ctx, url); err != nil {
		return frontContender{}, both(p, sync), err
	}
	return frontContender{name: "HAProxy + Vantage maps", url: url, pids: pidsOf(p, sync), workerPort: lhr,
		note: "the plain HAProxy's global and defaults plus the shipped deploy/haproxy/haproxy.cfg lines between " +
			"`# BEGIN vantage` and `# END vantage` (kind ACLs, a `uuid` request id, three map lookups, the Lua MurmurHash2 " +
			"of the request id, the placement headers) and backends pop_EWR and pop_LHR; the map (" +
			fmt.Sprint(frontDecisions/2) + " routed applications) kept by `vantage router --listen \"\" --haproxy-map-file " +
			"--haproxy-socket`, whose (idle) process is counted in the CPU."}, both(p, sync), nil
}

// startNginxVantage runs nginx with the shipped deploy/nginx rules (vantage.conf, vantage-proxy.conf), its map
// include kept by `vantage router --nginx-map-file --nginx-pid-file`; workers and keepalive as the plain
// nginx's.
func startNginxVantage(ctx context.Context, o *options, e *frontEnv) (frontContender, func(), error) {
	ewr, lhr, err := proxyWorkers(e)
	if err != nil {
		return frontContender{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return frontContender{}, nil, err
	}
	deploy := filepath.Join(o.root, "deploy", "nginx")
	tables, pid := filepath.Join(e.dir, "tables.conf"), filepath.Join(e.dir, "nginx-vantage.pid")
	sync, err := startSync(ctx, o, e, "nginx-sync", "--nginx-map-file", tables, "--nginx-pid-file", pid)
	if err != nil {
		return frontContender{}, nil, err
	}
	if err := waitFor(ctx, 15*time.Second, func() bool { _, err := os.Stat(tables); return err == nil }); err != nil {
		return frontContender{}, both(nil, sync), fmt.Errorf("the router did not create %s: %w", tables, err)
	}
	var temps strings.Builder
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "  %s_temp_path %s;\n", t, filepath.Join(e.dir, "nginx-vantage-"+t))
	}
	conf := fmt.Sprintf(`worker_processes auto;
daemon off;
pid %[1]s;
error_log %[2]s/nginx-vantage.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
%[3]s  map_hash_bucket_size 128;
  map_hash_max_size 262144;
  include %[4]s;
  include %[5]s/vantage.conf;
  upstream vantage_pop_EWR { server 127.0.0.1:%[6]d; keepalive 256; keepalive_requests 10000000; }
  upstream vantage_pop_LHR { server 127.0.0.1:%[7]d; keepalive 256; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:%[8]d;
    location / { include %[5]s/vantage-proxy.conf; }
  }
}
`, pid, e.dir, temps.String(), tables, deploy, ewr, lhr, port)
	p, err := startNginx(ctx, e.dir, "nginx-vantage", conf)
	if err != nil {
		return frontContender{}, both(nil, sync), err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := waitRemote(ctx, url); err != nil {
		return frontContender{}, both(p, sync), err
	}
	return frontContender{name: "nginx + Vantage map", url: url, pids: pidsOf(p, sync), workerPort: lhr,
		note: "the plain nginx's settings plus the shipped deploy/nginx/vantage.conf (http) and vantage-proxy.conf " +
			"(location) and upstreams vantage_pop_EWR and vantage_pop_LHR (`keepalive 256`); the include (" +
			fmt.Sprint(frontDecisions/2) + " routed applications) kept by `vantage router --listen \"\" --nginx-map-file " +
			"--nginx-pid-file` (SIGHUP), whose (idle) process is counted in the CPU."}, both(p, sync), nil
}
