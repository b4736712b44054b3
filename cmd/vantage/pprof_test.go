package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPprofFlag runs `vantage worker --pprof ADDR`: the profiler answers on its own address while the daemon
// runs and stops with it; an address already in use is a start-up error that names the flag.
func TestPprofFlag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pp := workerFreeAddr(t)
	t.Run("serving", func(t *testing.T) { // startCmd stops the worker, and checks it exits 0, at the subtest's end
		startCmd(t, "worker", "--pop", "fra", "--listen", workerFreeAddr(t), "--serve-db", workerFreeAddr(t), "--pprof", pp)
		if b := waitHTTP(t, "http://"+pp+"/debug/pprof/cmdline", 200, 15*time.Second); !strings.Contains(b, "vantage") && !strings.Contains(b, ".test") {
			t.Fatalf("pprof cmdline %q names no program", b)
		}
	})
	if code, _ := httpGet(t, "http://"+pp+"/debug/pprof/"); code != 0 {
		t.Errorf("pprof still serving after the daemon stopped (%d)", code)
	}

	// The address is taken: the daemon refuses to start and says which flag.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"worker", "--pop", "fra", "--listen", workerFreeAddr(t), "--serve-db", workerFreeAddr(t),
		"--pprof", ln.Addr().String()}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "--pprof "+ln.Addr().String()) {
		t.Errorf("exit %d, stderr %q: want a failure naming --pprof %s", code, errOut.String(), ln.Addr())
	}
}
