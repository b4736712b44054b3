package redistest

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestServerStopRestart(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Do(ctx, "SET", "k", "v"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := s.Do(ctx, "GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}
	s.Stop(t)
	if _, err := s.Do(ctx, "PING"); err == nil {
		t.Fatal("PING after Stop succeeded; want an error")
	}
	addr := s.Addr()
	s.Restart(t)
	if s.Addr() != addr {
		t.Errorf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if got, err := s.Do(ctx, "PING"); err != nil || got != "PONG" {
		t.Fatalf("PING after Restart = %q, %v", got, err)
	}
	// Persistence is off: a restart loses the data.
	if got, err := s.Do(ctx, "EXISTS", "k"); err != nil || got != "0" {
		t.Errorf("EXISTS k after restart = %q, %v; want 0", got, err)
	}
}

func TestStartWith(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// probe checks the configured feature.
		probe func(t *testing.T, s *Server)
	}{
		{"password", Config{Password: "s3cret"}, func(t *testing.T, s *Server) {
			if got, err := s.Do(context.Background(), "ACL", "WHOAMI"); err != nil || got != "default" {
				t.Errorf("ACL WHOAMI = %q, %v", got, err)
			}
			s.pass = ""
			if _, err := s.Do(context.Background(), "GET", "x"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
				t.Errorf("GET without AUTH: %v; want NOAUTH", err)
			}
		}},
		{"tls", Config{TLS: true}, func(t *testing.T, s *Server) {
			if s.TLSConfig() == nil {
				t.Fatal("TLSConfig() = nil for a TLS server")
			}
			if got, err := s.Do(context.Background(), "PING"); err != nil || got != "PONG" {
				t.Errorf("PING over TLS = %q, %v", got, err)
			}
		}},
		{"tls_auth_clients", Config{TLSAuthClients: true}, func(t *testing.T, s *Server) {
			if got, err := s.Do(context.Background(), "PING"); err != nil || got != "PONG" {
				t.Errorf("PING over TLS with the client certificate = %q, %v", got, err)
			}
			cfg := s.TLSConfig()
			cfg.Certificates = nil
			c, err := tls.Dial("tcp", s.Addr(), cfg)
			if err == nil {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Write([]byte("PING\r\n"))
				if err == nil {
					_, err = c.Read(make([]byte, 64)) // TLS 1.3: the refusal arrives after the handshake
				}
			}
			if err == nil {
				t.Error("PING over TLS without a client certificate succeeded")
			}
			if ca, cert, key := s.CertFiles(); ca == "" || cert == "" || key == "" {
				t.Errorf("CertFiles() = %q, %q, %q", ca, cert, key)
			}
		}},
		{"acl_user", Config{Users: []string{"alice on >pw ~* &* +@all"}}, func(t *testing.T, s *Server) {
			got, err := s.Do(context.Background(), "ACL", "LIST")
			if err != nil || !strings.Contains(got, "user alice on") {
				t.Errorf("ACL LIST = %q, %v; want alice", got, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.probe(t, StartWith(t, tt.cfg))
		})
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs() = %v; want 3", c.Addrs())
	}
	info, err := c.Nodes[0].Do(context.Background(), "CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_known_nodes:3") {
		t.Errorf("CLUSTER INFO = %q, %v; want 3 known nodes", info, err)
	}
}

func TestStartSentinel(t *testing.T) {
	m := Start(t)
	s := StartSentinel(t, m, "mymaster")
	got, err := s.Do(context.Background(), "SENTINEL", "MASTERS")
	if err != nil || !strings.Contains(got, "mymaster") {
		t.Errorf("SENTINEL MASTERS = %q, %v", got, err)
	}
}

// TestMissingBinary checks both outcomes when redis-server is not installed: a skip with a clear message, or
// in CI a failure. It re-runs this test binary with an empty PATH.
func TestMissingBinary(t *testing.T) {
	if os.Getenv("REDISTEST_CHILD") == "1" {
		Start(t)
		t.Log("started despite an empty PATH")
		return
	}
	tests := []struct {
		name     string
		ci       string
		wantFail bool
		wantOut  string
	}{
		{"skipped_outside_ci", "", false, "--- SKIP: TestMissingBinary"},
		{"fails_in_ci", "true", true, "--- FAIL: TestMissingBinary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMissingBinary$", "-test.v")
			cmd.Env = append(os.Environ(), "REDISTEST_CHILD=1", "PATH="+t.TempDir(), "CI="+tt.ci)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tt.wantFail {
				t.Errorf("child failed = %v (%v); want %v\n%s", failed, err, tt.wantFail, out)
			}
			msg := "redistest: redis-server not found in PATH"
			if !strings.Contains(string(out), tt.wantOut) || !strings.Contains(string(out), msg) ||
				!strings.Contains(string(out), "install Debian's redis-server package") {
				t.Errorf("child output lacks %q and %q:\n%s", tt.wantOut, msg, out)
			}
		})
	}
}

// TestServerOutlivesTheStartingThread starts a server from a goroutine that locks its OS thread and returns
// without unlocking it, so that the runtime ends the thread (as testbed's namespace goroutines do): Pdeathsig
// must not kill the server with it.
func TestServerOutlivesTheStartingThread(t *testing.T) {
	ch := make(chan *Server, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		defer close(ch)        // also when Start gives up (FailNow ends this goroutine)
		ch <- Start(t)
	}()
	s := <-ch
	if s == nil {
		t.FailNow()
	}
	select {
	case <-s.done:
		t.Fatalf("redis-server exited after the thread that started Start ended: %s", s.logTail())
	case <-time.After(500 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := s.Do(ctx, "PING"); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
}
