package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The demo database's line protocol: the client sends Ping, the server answers Pong, once per round trip, on
// one TCP connection. Anything else is answered with "ERR unknown command\n".
const (
	Ping = "PING\n"
	Pong = "PONG\n"
)

// DB protocol limits.
const (
	// dbIdleTimeout closes a database connection idle for this long.
	dbIdleTimeout = time.Minute
	// maxLine bounds a command line.
	maxLine = 64
)

// Query makes one round trip on a database connection: it writes Ping and reads the answer through r (a reader
// on c, kept across queries). The caller sets deadlines.
func Query(c net.Conn, r *bufio.Reader) error {
	if _, err := io.WriteString(c, Ping); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != Pong {
		return fmt.Errorf("answer %q: want %q", line, Pong)
	}
	return nil
}

// ServeDB serves the demo database's line protocol on ln until ctx is done, then closes ln and every
// connection and returns nil (or the listener's error if it failed first). Each connection is served by its
// own goroutine, all stopped before ServeDB returns.
func ServeDB(ctx context.Context, ln net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("worker: db: accept on %s: %w", ln.Addr(), err)
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			return nil
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			serveDBConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		})
	}
}

// serveDBConn answers one connection's commands until it closes, idles out or sends a line that is too long.
func serveDBConn(c net.Conn) {
	r := bufio.NewReaderSize(c, maxLine)
	for {
		c.SetReadDeadline(time.Now().Add(dbIdleTimeout))
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		answer := Pong
		if string(line) != Ping {
			answer = "ERR unknown command\n"
		}
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
	}
}
