// Package testnet is the loopback services and network namespaces that tests and benchmarks probe: a TCP
// listener that accepts every connection and closes it, a DNS server, and namespaces nothing can leave.
package testnet

import (
	"net"
	"testing"
)

// AcceptAndClose accepts connections on ln and closes each at once (a FIN, as a real service does), until ln
// is closed. Several goroutines may serve one listener.
func AcceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// Listen starts an AcceptAndClose service on 127.0.0.1 for the rest of tb and returns its host:port.
func Listen(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go AcceptAndClose(ln)
	return ln.Addr().String()
}
