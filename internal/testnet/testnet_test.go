package testnet

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestListen: a connection to the service is accepted and then closed by the service (a read sees EOF).
func TestListen(t *testing.T) {
	addr := Listen(t)
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("read %d bytes, err %v; want EOF (closed by the service)", n, err)
		}
		c.Close()
	}
}
