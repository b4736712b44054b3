package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// EmbeddedSocket is the name of the embedded server's unix socket in its directory.
const EmbeddedSocket = "redis.sock"

// Embedded is an in-process Redis-protocol server (miniredis) on a loopback port, plus a unix socket that
// forwards to it so that processes in other network namespaces can reach it through the filesystem. Key TTLs
// run on the wall clock. It is for the demo and single-process runs: data lives in memory only.
type Embedded struct {
	m       *miniredis.Miniredis
	ln      net.Listener
	dir     string
	tempDir bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// StartEmbedded starts an embedded server on 127.0.0.1 (a free port) and its unix socket dir/redis.sock. An empty
// dir means a new temporary directory, removed by Close.
func StartEmbedded(ctx context.Context, dir string) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("storage: embedded: %w", err)
	}
	e := &Embedded{dir: dir, conns: map[net.Conn]struct{}{}}
	if dir == "" {
		d, err := os.MkdirTemp("", "vantage-redis-")
		if err != nil {
			return nil, fmt.Errorf("storage: embedded: socket directory: %w", err)
		}
		e.dir, e.tempDir = d, true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: embedded: socket directory %q: %w", dir, err)
	}
	e.m = miniredis.NewMiniRedis()
	e.m.ClockTTL(true)
	if err := e.m.StartAddr("127.0.0.1:0"); err != nil {
		e.cleanDir()
		return nil, fmt.Errorf("storage: embedded: listen on 127.0.0.1: %w", err)
	}
	sock := filepath.Join(e.dir, EmbeddedSocket)
	_ = os.Remove(sock) // a stale socket from a previous run
	ln, err := net.Listen("unix", sock)
	if err != nil {
		e.m.Close()
		e.cleanDir()
		return nil, fmt.Errorf("storage: embedded: listen on %s: %w", sock, err)
	}
	_ = os.Chmod(sock, 0o777) // reachable by daemons running as other users
	e.ln = ln
	e.wg.Add(1)
	go e.accept()
	return e, nil
}

// Addr returns the TCP address, "127.0.0.1:port".
func (e *Embedded) Addr() string { return e.m.Addr() }

// UnixAddr returns the unix socket address as Options.Addrs takes it, "unix:/dir/redis.sock".
func (e *Embedded) UnixAddr() string { return "unix:" + filepath.Join(e.dir, EmbeddedSocket) }

// Miniredis returns the server itself, for tests that inspect or manipulate it.
func (e *Embedded) Miniredis() *miniredis.Miniredis { return e.m }

func (e *Embedded) accept() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return // closed
		}
		if !e.track(c, true) {
			c.Close()
			return
		}
		e.wg.Add(1)
		go e.forward(c)
	}
}

// track adds or removes c from the open connections; it reports false when the server is closing.
func (e *Embedded) track(c net.Conn, add bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if add {
		if e.closed {
			return false
		}
		e.conns[c] = struct{}{}
	} else {
		delete(e.conns, c)
	}
	return true
}

// forward copies bytes between a unix-socket client and the TCP server until either side closes.
func (e *Embedded) forward(client net.Conn) {
	defer e.wg.Done()
	defer e.track(client, false)
	defer client.Close()
	server, err := net.DialTimeout("tcp", e.m.Addr(), 2*time.Second)
	if err != nil {
		return
	}
	if !e.track(server, true) {
		server.Close()
		return
	}
	defer e.track(server, false)
	defer server.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(server, client)
	go cp(client, server)
	<-done
	<-done
}

// Close stops the unix forwarder and the server and waits for every forwarding goroutine.
func (e *Embedded) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	err := e.ln.Close()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
	e.m.Close()
	_ = os.Remove(filepath.Join(e.dir, EmbeddedSocket))
	e.cleanDir()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (e *Embedded) cleanDir() {
	if e.tempDir {
		_ = os.RemoveAll(e.dir)
	}
}
