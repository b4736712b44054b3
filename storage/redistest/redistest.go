// Package redistest runs real redis-server processes (single nodes and clusters) on loopback for tests.
//
// Every server runs in its own t.TempDir() with persistence off (`--save "" --appendonly no`) and is stopped
// by t.Cleanup. When redis-server (or, for clusters, redis-cli) is not installed the test is skipped with a
// message naming the Debian package, unless the environment variable CI is set, in which case it fails.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vantage-edge/vantage/internal/tlstest"
)

// Timeouts for starting and stopping servers. They are generous because the test machines are shared and busy.
const (
	// StartTimeout bounds how long a server may take to answer PING after it is started.
	StartTimeout = 15 * time.Second
	// StopTimeout bounds how long a server may take to exit after SIGTERM before it is killed.
	StopTimeout = 10 * time.Second
	// ClusterTimeout bounds how long a new cluster may take to reach cluster_state:ok on every node.
	ClusterTimeout = 30 * time.Second
)

// Config adjusts a server started with StartWith. The zero Config is what Start uses.
type Config struct {
	// Password sets `requirepass` (AUTH for the default user).
	Password string
	// Users are ACL rules, one `--user` directive each, e.g. "alice on >secret ~* &* +@all".
	Users []string
	// TLS serves TLS only (the plain port is disabled) with a certificate for 127.0.0.1 from a fresh CA;
	// Server.TLSConfig returns a client configuration trusting it, Server.CertFiles the PEM files.
	TLS bool
	// TLSAuthClients serves TLS and requires a client certificate from the CA (`--tls-auth-clients yes`).
	TLSAuthClients bool
	// Unix also listens on the unix socket Server.UnixSocket returns.
	Unix bool
	// Args are extra redis-server arguments, e.g. "--maxmemory", "64mb".
	Args []string
}

// Server is one redis-server process on a loopback port.
type Server struct {
	bin  string
	dir  string
	port int
	args []string
	tls  *tls.Config
	pass string
	user string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{} // closed when cmd has exited
}

// need returns the path of binary name, or skips (fails in CI) the test when it is missing.
func need(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("redistest: %s not found in PATH (%v); install Debian's %s package (make deps does)", name, err, pkg)
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}

// Start runs redis-server on a free loopback port in a temporary directory; t.Cleanup stops it.
func Start(tb testing.TB) *Server { tb.Helper(); return StartWith(tb, Config{}) }

// StartWith runs redis-server configured by c on a free loopback port; t.Cleanup stops it.
func StartWith(tb testing.TB, c Config) *Server {
	tb.Helper()
	s := newServer(tb, c, nil)
	tb.Cleanup(func() { s.Stop(tb) })
	return s
}

func newServer(tb testing.TB, c Config, extra []string) *Server {
	tb.Helper()
	s := &Server{bin: need(tb, "redis-server", "redis-server"), dir: tb.TempDir(), pass: c.Password}
	if c.TLS || c.TLSAuthClients {
		s.tls = writeCerts(tb, s.dir)
	}
	var err error
	// A free port can be taken between our probe and redis-server's bind: try a few.
	for attempt := 0; attempt < 3; attempt++ {
		s.port = freePort(tb)
		s.args = s.buildArgs(c, extra)
		if err = s.start(); err == nil {
			return s
		}
	}
	tb.Fatalf("redistest: start redis-server: %v", err)
	return nil
}

func (s *Server) buildArgs(c Config, extra []string) []string {
	p := strconv.Itoa(s.port)
	args := []string{
		"--bind", "127.0.0.1", "--dir", s.dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"), "--loglevel", "notice",
	}
	if s.tls != nil {
		auth := "no"
		if c.TLSAuthClients {
			auth = "yes"
		}
		args = append(args, "--port", "0", "--tls-port", p,
			"--tls-cert-file", filepath.Join(s.dir, "server.crt"), "--tls-key-file", filepath.Join(s.dir, "server.key"),
			"--tls-ca-cert-file", filepath.Join(s.dir, "ca.crt"), "--tls-auth-clients", auth)
	} else {
		args = append(args, "--port", p)
	}
	if c.Unix {
		args = append(args, "--unixsocket", s.UnixSocket(), "--unixsocketperm", "700")
	}
	if c.Password != "" && len(c.Users) == 0 {
		args = append(args, "--requirepass", c.Password)
	}
	if len(c.Users) > 0 {
		// ACL rules with spaces cannot be passed as arguments: write an ACL file.
		var b strings.Builder
		b.WriteString("user default on nopass ~* &* +@all\n")
		if c.Password != "" {
			b.Reset()
			fmt.Fprintf(&b, "user default on >%s ~* &* +@all\n", c.Password)
		}
		for _, u := range c.Users {
			fmt.Fprintf(&b, "user %s\n", u)
		}
		acl := filepath.Join(s.dir, "users.acl")
		if err := os.WriteFile(acl, []byte(b.String()), 0o600); err == nil {
			args = append(args, "--aclfile", acl)
		}
	}
	args = append(args, extra...)
	return append(args, c.Args...)
}

// Addr returns the server's "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// UnixSocket returns the path of the server's unix socket (listened on only with Config.Unix).
func (s *Server) UnixSocket() string { return filepath.Join(s.dir, "redis.sock") }

// Dir returns the server's data directory (its log is redis.log there).
func (s *Server) Dir() string { return s.dir }

// CertFiles returns the PEM files of a TLS server: its CA's certificate, and a client certificate from that CA
// with its key. They are "" for a plain server.
func (s *Server) CertFiles() (ca, clientCert, clientKey string) {
	if s.tls == nil {
		return "", "", ""
	}
	return filepath.Join(s.dir, "ca.crt"), filepath.Join(s.dir, "client.crt"), filepath.Join(s.dir, "client.key")
}

// TLSConfig returns a client TLS configuration trusting the server's certificate and presenting the client
// certificate of CertFiles, or nil for a plain server.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Clone()
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	done, err := startOnOwnThread(cmd)
	if err != nil {
		return fmt.Errorf("redistest: run %s: %w", s.bin, err)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	for {
		if _, err := s.Do(ctx, "PING"); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redistest: redis-server on port %d exited at start: %s", s.port, s.logTail())
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("redistest: redis-server on port %d did not answer PING within %v: %s", s.port, StartTimeout, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startOnOwnThread starts cmd from an OS thread locked for the child's lifetime and returns a channel closed
// when the child has exited. Pdeathsig fires when the thread that forked the child exits, not the process, and
// the runtime ends the threads that goroutines locked and left (testbed's namespace threads): a child forked
// from a pooled thread that such a goroutine later takes would be killed then.
func startOnOwnThread(cmd *exec.Cmd) (<-chan struct{}, error) {
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(StopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Stop stops the server (for outage tests). The port and the data directory are kept for Restart. Stopping a
// stopped server does nothing.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.kill()
}

// Restart starts a stopped server again on the same port and waits until it answers PING.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.kill()
	var err error
	// The port was ours a moment ago; if it is briefly in use, wait for it.
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("redistest: restart: %v", err)
}

// Do sends one command to the server on a fresh connection and returns the reply rendered as text: simple
// strings, integers and bulk strings as they are, arrays as their elements joined by newlines. A Redis error
// reply is returned as an error.
func (s *Server) Do(ctx context.Context, args ...string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	var (
		c   net.Conn
		err error
	)
	if s.tls != nil {
		c, err = (&tls.Dialer{NetDialer: &d, Config: s.tls}).DialContext(ctx, "tcp", s.Addr())
	} else {
		c, err = d.DialContext(ctx, "tcp", s.Addr())
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	r := bufio.NewReader(c)
	if s.pass != "" {
		if _, err := roundTrip(c, r, "AUTH", s.pass); err != nil {
			return "", err
		}
	}
	return roundTrip(c, r, args...)
}

func roundTrip(c net.Conn, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(r)
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Sentinel is one redis-server in sentinel mode monitoring one master.
type Sentinel struct {
	*Server
	MasterName string
}

// StartSentinel runs a sentinel (redis-server --sentinel) on a free loopback port monitoring master under the
// name masterName (quorum 1) and waits until it reports the master's address; t.Cleanup stops it.
func StartSentinel(tb testing.TB, master *Server, masterName string) *Sentinel {
	tb.Helper()
	s := &Server{bin: need(tb, "redis-server", "redis-server"), dir: tb.TempDir()}
	conf := filepath.Join(s.dir, "sentinel.conf")
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		s.port = freePort(tb)
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
			s.port, s.dir, filepath.Join(s.dir, "redis.log"), masterName, master.port, masterName)
		if master.pass != "" {
			text += fmt.Sprintf("sentinel auth-pass %s %s\n", masterName, master.pass)
		}
		if err = os.WriteFile(conf, []byte(text), 0o600); err != nil {
			tb.Fatalf("redistest: write %s: %v", conf, err)
		}
		s.args = []string{conf, "--sentinel"}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: start sentinel: %v", err)
	}
	tb.Cleanup(func() { s.Stop(tb) })
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	for {
		got, err := s.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)
		if err == nil && got == "127.0.0.1\n"+strconv.Itoa(master.port) {
			return &Sentinel{Server: s, MasterName: masterName}
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("redistest: sentinel on %s does not report master %s at %s: %q, %v", s.Addr(), masterName, master.Addr(), got, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Cluster is a Redis Cluster of masters without replicas, one redis-server per master.
type Cluster struct {
	Nodes []*Server
}

// StartCluster runs masters redis-servers with `--cluster-enabled yes`, joins them with `redis-cli --cluster
// create --cluster-replicas 0` and waits until every node reports cluster_state:ok; t.Cleanup stops them.
// Redis Cluster needs at least 3 masters.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if masters < 3 {
		tb.Fatalf("redistest: a cluster needs at least 3 masters, got %d", masters)
	}
	cli := need(tb, "redis-cli", "redis-tools")
	c := &Cluster{}
	tb.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Stop(tb)
		}
	})
	for i := 0; i < masters; i++ {
		dir := tb.TempDir()
		n := newServer(tb, Config{}, []string{"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "5000"})
		c.Nodes = append(c.Nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), ClusterTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, n := range c.Nodes {
		for {
			info, err := n.Do(ctx, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") {
				break
			}
			select {
			case <-ctx.Done():
				tb.Fatalf("redistest: cluster node %s not ok within %v: %v %s", n.Addr(), ClusterTimeout, err, info)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return c
}

// Addrs returns the masters' "127.0.0.1:port" addresses (the seed list for a cluster client).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client certificate into dir and returns a
// client configuration trusting the CA and presenting the client certificate.
func writeCerts(tb testing.TB, dir string) *tls.Config {
	tb.Helper()
	ca := tlstest.NewCA(tb, "redistest CA")
	ca.WriteFile(tb, dir, "ca.crt")
	ca.Issue(tb, "127.0.0.1", "127.0.0.1", "localhost").WriteFiles(tb, dir, "server")
	client := ca.Issue(tb, "redistest client")
	client.WriteFiles(tb, dir, "client")
	cfg := ca.ClientConfig()
	cfg.ServerName = "127.0.0.1"
	cfg.Certificates = []tls.Certificate{client.TLS}
	return cfg
}

// InfoFloat reads one numeric field of Redis's INFO section (e.g. "stats", "total_commands_processed").
func InfoFloat(ctx context.Context, c redis.UniversalClient, section, field string) (float64, error) {
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return 0, fmt.Errorf("redistest: INFO %s: %w", section, err)
	}
	for _, l := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("redistest: INFO %s field %s: %w", section, field, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("redistest: INFO %s has no field %s", section, field)
}
