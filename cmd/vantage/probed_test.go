package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestProbedOwnPrefix: probed refuses to start, before dialling Redis, with a source address inside one of
// the platform's own prefixes (--own-prefix, repeatable or comma-separated), as deploy/systemd/vantage.env
// says; a source outside them starts.
func TestProbedOwnPrefix(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"inside", []string{"--source", "127.0.0.2", "--own-prefix", "127.0.0.0/24"},
			"--source 127.0.0.2 is inside --own-prefix 127.0.0.0/24"},
		{"inside_second_of_repeated", []string{"--source", "127.0.0.1,127.0.0.3", "--own-prefix", "198.18.0.0/15", "--own-prefix", "127.0.0.3"},
			"--source 127.0.0.3 is inside --own-prefix 127.0.0.3/32"},
		{"inside_comma_separated", []string{"--source", "::1", "--own-prefix", "198.18.0.0/15,::/64"},
			"--source ::1 is inside --own-prefix ::/64"},
		{"not_a_cidr", []string{"--own-prefix", "anycast"}, `--own-prefix: "anycast" is not a CIDR`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Nothing listens on port 1: had the flags passed, the error would be Redis's.
			args := append([]string{"probed", "--pop", "FRA", "--redis", "127.0.0.1:1", "--listen", "127.0.0.1:0"}, tc.args...)
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2\nstderr:\n%s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errb.String())
			}
		})
	}
	t.Run("outside", func(t *testing.T) {
		srv := redistest.Start(t)
		listen := freeAddr(t)
		errb := startCmd(t, "probed", "--pop", "FRA", "--redis", srv.Addr(), "--listen", listen, "--allow", "127.0.0.0/8",
			"--source", "127.0.0.1", "--own-prefix", "198.18.0.0/15", "--own-prefix", "192.0.2.0/24", "--log-level", "warn")
		waitHTTP(t, "http://"+listen+"/readyz", 200, 15*time.Second)
		if s := errb.String(); strings.Contains(s, "own-prefix") {
			t.Errorf("probed complained about --own-prefix:\n%s", s)
		}
	})
}
