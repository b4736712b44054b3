package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/internal/tlstest"
)

// serve starts an HTTPS server with cfg answering its peer's certificate name, or "anonymous"; it returns the
// server's URL.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "anonymous"
		if len(r.TLS.PeerCertificates) > 0 {
			name = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, name)
	}), TLSConfig: cfg, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func get(t *testing.T, cfg *tls.Config, url string) (string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestServerAndClient(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "server", "127.0.0.1").WriteFiles(t, dir, "server")
	clientCert, clientKey := ca.Issue(t, "client-1").WriteFiles(t, dir, "client")
	caFile := ca.WriteFile(t, dir, "ca.crt")
	other := tlstest.NewCA(t, "other CA").WriteFile(t, dir, "other.crt")

	scfg, err := Server(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg.ClientAuth, scfg.ClientCAs = tls.VerifyClientCertIfGiven, ca.Pool()
	url := serve(t, scfg)

	tests := []struct {
		name    string
		client  Client
		want    string // the body, or a substring of the error
		wantErr bool
	}{
		{"ca", Client{CA: caFile}, "anonymous", false},
		{"client_certificate", Client{CA: caFile, Cert: clientCert, Key: clientKey}, "client-1", false},
		{"server_name", Client{CA: caFile, ServerName: "127.0.0.1"}, "anonymous", false},
		{"wrong_server_name", Client{CA: caFile, ServerName: "redis.example"}, "wanted to match redis.example", true},
		{"other_ca", Client{CA: other}, "certificate signed by unknown authority", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.client.Config(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := get(t, cfg, url)
			switch {
			case tt.wantErr && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("GET = %q, %v; want an error containing %q", got, err, tt.want)
			case !tt.wantErr && (err != nil || got != tt.want):
				t.Fatalf("GET = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "server", "127.0.0.1").WriteFiles(t, dir, "server")
	_, otherKey := ca.Issue(t, "other", "127.0.0.1").WriteFiles(t, dir, "other")
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    func() error
		want string
	}{
		{"server_missing_cert", func() error { _, err := Server(missing, keyFile, nil); return err }, "tls: certificate file: open " + missing},
		{"server_missing_key", func() error { _, err := Server(certFile, missing, nil); return err }, "tls: key file: open " + missing},
		{"server_mismatched_key", func() error { _, err := Server(certFile, otherKey, nil); return err }, "private key does not match public key"},
		{"server_not_pem", func() error { _, err := Server(notPEM, keyFile, nil); return err }, "no PEM block"},
		{"client_missing_ca", func() error { _, err := Client{CA: missing}.Config(nil); return err }, "tls: CA file: open " + missing},
		{"client_ca_not_pem", func() error { _, err := Client{CA: notPEM}.Config(nil); return err }, "no PEM certificate in it"},
		{"client_cert_without_key", func() error { _, err := Client{Cert: certFile}.Config(nil); return err }, "needs both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

// TestReload replaces the certificate files under a running key pair: the new certificate is served, and a
// broken pair keeps the previous one.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "test CA")
	certFile, keyFile := ca.Issue(t, "first", "127.0.0.1").WriteFiles(t, dir, "server")
	kp, err := newKeyPair(certFile, keyFile, nil, 0) // interval 0: every get checks the files
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		t.Helper()
		c, err := x509.ParseCertificate(kp.get().Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c.Subject.CommonName
	}
	if got := name(); got != "first" {
		t.Fatalf("served %q; want first", got)
	}
	ca.Issue(t, "second-with-a-longer-name", "127.0.0.1").WriteFiles(t, dir, "server")
	if got := name(); got != "second-with-a-longer-name" {
		t.Fatalf("after renewal served %q; want second-with-a-longer-name", got)
	}
	if err := os.WriteFile(keyFile, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := name(); got != "second-with-a-longer-name" {
		t.Fatalf("after a broken key served %q; want the previous certificate", got)
	}
}
