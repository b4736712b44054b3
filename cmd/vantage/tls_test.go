package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/daemon"
	"github.com/vantage-edge/vantage/internal/tlstest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestTLSFlags: --tls-cert/--tls-key and the Redis TLS flags parse into the daemon's TLS files and the
// storage options; a missing or half-given file is a usage error naming the flag.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "flags CA")
	caFile := ca.WriteFile(t, dir, "ca.crt")
	cert, key := ca.Issue(t, "daemon", "127.0.0.1").WriteFiles(t, dir, "daemon")
	_, otherKey := ca.Issue(t, "other", "127.0.0.1").WriteFiles(t, dir, "other")
	missing := filepath.Join(dir, "missing.pem")
	redis := []string{"--redis", "127.0.0.1:6379"}
	tests := []struct {
		name    string
		args    []string
		err     string // a usage error containing it; "" : success
		tls     daemon.TLSFiles
		redis   bool   // storage.Options.TLS is set
		sni     string // its ServerName
		roots   bool   // it has RootCAs (--redis-ca)
		getCert bool   // it presents a client certificate
	}{
		{name: "plain_defaults", args: redis},
		{name: "listener_tls", args: append([]string{"--tls-cert", cert, "--tls-key", key}, redis...), tls: daemon.TLSFiles{Cert: cert, Key: key}},
		{name: "redis_tls_system_roots", args: append([]string{"--redis-tls"}, redis...), redis: true},
		{name: "redis_ca_implies_tls", args: append([]string{"--redis-ca", caFile}, redis...), redis: true, roots: true},
		{name: "redis_every_option", args: append([]string{"--redis-tls", "--redis-ca", caFile, "--redis-cert", cert, "--redis-key", key,
			"--redis-server-name", "redis.internal"}, redis...), redis: true, roots: true, getCert: true, sni: "redis.internal"},
		{name: "tls_key_missing_file", args: append([]string{"--tls-cert", cert, "--tls-key", missing}, redis...), err: "--tls-key: open " + missing},
		{name: "tls_cert_missing_file", args: append([]string{"--tls-cert", missing, "--tls-key", key}, redis...), err: "--tls-cert: open " + missing},
		{name: "tls_cert_without_key", args: append([]string{"--tls-cert", cert}, redis...), err: "--tls-cert " + cert + " needs --tls-key"},
		{name: "tls_key_without_cert", args: append([]string{"--tls-key", key}, redis...), err: "--tls-key " + key + " needs --tls-cert"},
		{name: "tls_mismatched_pair", args: append([]string{"--tls-cert", cert, "--tls-key", otherKey}, redis...), err: "private key does not match public key"},
		{name: "redis_ca_missing", args: append([]string{"--redis-ca", missing}, redis...), err: "--redis-ca: open " + missing},
		{name: "redis_key_missing", args: append([]string{"--redis-cert", cert, "--redis-key", missing}, redis...), err: "--redis-key: open " + missing},
		{name: "redis_cert_without_key", args: append([]string{"--redis-cert", cert}, redis...), err: "--redis-cert " + cert + " needs --redis-key"},
		{name: "redis_ca_not_pem", args: append([]string{"--redis-ca", key}, redis...), err: "no PEM certificate in it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("daemon", "", io.Discard)
			d := addDaemonFlags(fs, daemonFlagOptions{Redis: redisRequired, TLS: true})
			err := parseFlags(fs, tc.args)
			if err == nil {
				err = d.check()
			}
			if tc.err != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v; want a usage error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := d.tlsFiles(); got != tc.tls {
				t.Errorf("TLS files %+v; want %+v", got, tc.tls)
			}
			o, err := d.redisOptions(nil)
			if err != nil {
				t.Fatal(err)
			}
			if (o.TLS != nil) != tc.redis {
				t.Fatalf("Redis TLS %v; want %v", o.TLS != nil, tc.redis)
			}
			if o.TLS != nil && (o.TLS.ServerName != tc.sni || (o.TLS.RootCAs != nil) != tc.roots || (o.TLS.GetClientCertificate != nil) != tc.getCert) {
				t.Errorf("Redis TLS: server name %q, roots %v, client certificate %v; want %q, %v, %v",
					o.TLS.ServerName, o.TLS.RootCAs != nil, o.TLS.GetClientCertificate != nil, tc.sni, tc.roots, tc.getCert)
			}
		})
	}
	// Commands without HTTP listeners have no --tls-cert.
	fs := newFlagSet("demo", "", io.Discard)
	addDaemonFlags(fs, daemonFlagOptions{Redis: redisOptional})
	if err := parseFlags(fs, []string{"--tls-cert", cert}); err == nil {
		t.Error("--tls-cert accepted without the TLS option")
	}
}

// TestTLSCommands runs a probe daemon and a scheduler through the CLI, both serving TLS with a certificate made
// by the test and speaking TLS with a client certificate to a real redis-server that listens only on its TLS
// port and requires client certificates; `vantage probe --fleet` reaches the scheduler over https with
// --scheduler-ca (or $VANTAGE_SCHEDULER_CA), and fails without it.
func TestTLSCommands(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Config{TLSAuthClients: true})
	redisCA, redisCert, redisKey := srv.CertFiles()
	redisFlags := []string{"--redis", srv.Addr(), "--redis-ca", redisCA, "--redis-cert", redisCert, "--redis-key", redisKey,
		"--redis-server-name", "127.0.0.1"}
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "listeners CA")
	caFile := ca.WriteFile(t, dir, "ca.crt")
	cert, key := ca.Issue(t, "daemons", "127.0.0.1").WriteFiles(t, dir, "daemons")
	listenerFlags := []string{"--tls-cert", cert, "--tls-key", key}

	probed, api := freeAddr(t), freeAddr(t)
	const token = "tls-token-0123456789"
	startCmd(t, append(append([]string{"probed", "--pop", "FRA", "--listen", probed, "--allow", "127.0.0.0/8",
		"--heartbeat", "200ms", "--log-level", "warn"}, redisFlags...), listenerFlags...)...)
	startCmd(t, append(append([]string{"scheduler", "--listen", api, "--token", token, "--allow", "127.0.0.0/8",
		"--adhoc-timeout", "20s", "--lease-ttl", "1s", "--log-level", "warn"}, redisFlags...), listenerFlags...)...)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}, Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	for _, u := range []string{"https://" + probed + "/readyz", "https://" + api + "/readyz"} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := client.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v; want 200 within 15 s", u, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if code, body := httpGet(t, "http://"+api+"/readyz"); code == http.StatusOK {
		t.Errorf("plain HTTP to the scheduler: %d %q; want a refusal", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	target := probeListener(t)
	for _, tc := range []struct {
		name   string
		env    string
		flags  []string
		code   int
		errHas string
	}{
		{name: "scheduler_ca_flag", flags: []string{"--scheduler-ca", caFile}, errHas: "1/1 PoPs"},
		{name: "scheduler_ca_environment", env: caFile, errHas: "1/1 PoPs"},
		{name: "system_roots", code: 1, errHas: "certificate signed by unknown authority"},
		{name: "scheduler_ca_missing", flags: []string{"--scheduler-ca", filepath.Join(dir, "none.crt")}, code: 2, errHas: "--scheduler-ca: tls: CA file: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envSchedulerCA, tc.env)
			var out, errb bytes.Buffer
			args := append([]string{"probe", "tcp", target, "--fleet", "--pops", "FRA", "--count", "1",
				"--scheduler", "https://" + api, "--token", token}, tc.flags...)
			if code := run(ctx, args, &out, &errb); code != tc.code {
				t.Fatalf("%q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), tc.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tc.errHas, errb.String())
			}
		})
	}
	// What the daemons wrote went through the TLS Redis: the probe daemon's heartbeat is there.
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, TLS: srv.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if fleet, err := st.Fleet(ctx); err != nil || len(fleet) != 1 || fleet[0].PoP != "FRA" {
		t.Errorf("fleet in Redis %+v, %v; want FRA", fleet, err)
	}
}
