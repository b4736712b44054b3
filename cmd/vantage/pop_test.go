package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

func TestPopDrainUndrainList(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: "FRA", DaemonID: "d1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	pop := func(args ...string) (string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		// The flags after the verb, as deploy/README writes them.
		code := run(ctx, append(append([]string{"pop"}, args...), "--redis", srv.Addr()), &out, &errb)
		return out.String() + errb.String(), code
	}
	drained := func() bool {
		t.Helper()
		fleet, err := st.Fleet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range fleet {
			if p.PoP == "FRA" {
				return p.Drained
			}
		}
		t.Fatal("FRA missing from the fleet")
		return false
	}
	if out, code := pop("drain", "fra"); code != 0 || !strings.Contains(out, "FRA drained") {
		t.Fatalf("drain: exit %d, output %q", code, out)
	}
	if !drained() {
		t.Fatal("FRA not drained in Redis after 'pop drain'")
	}
	if out, code := pop("list"); code != 0 || !strings.Contains(out, "FRA") || !strings.Contains(out, "up,drained") {
		t.Fatalf("list: exit %d, output %q", code, out)
	}
	if out, code := pop("undrain", "FRA"); code != 0 || !strings.Contains(out, "FRA undrained") {
		t.Fatalf("undrain: exit %d, output %q", code, out)
	}
	if drained() {
		t.Fatal("FRA still drained after 'pop undrain'")
	}
}

// TestPopUnknownRefused: drain and undrain refuse a PoP that is neither in the fleet nor in the catalogue,
// and name it; a catalogue PoP without daemons yet, or a fleet PoP outside the catalogue, is accepted.
func TestPopUnknownRefused(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// T01 is a PoP of a private fleet (not in the catalogue); FRA is in both.
	for _, pop := range []string{"FRA", "T01"} {
		if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: pop, DaemonID: "d1"}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := geo.LookupPoP("XYZ"); ok {
		t.Fatal("XYZ is in the catalogue; pick another unknown code for this test")
	}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		out     string
		errHas  []string
		drained string // a PoP that must be drained afterwards, if any
	}{
		{name: "drain_unknown", args: []string{"drain", "xyz"}, code: 2,
			errHas: []string{`pop drain: unknown PoP "XYZ"`, "not in the PoP catalogue", "the fleet in Redis has FRA, T01"}},
		{name: "undrain_unknown", args: []string{"undrain", "XYZ"}, code: 2, errHas: []string{`pop undrain: unknown PoP "XYZ"`}},
		{name: "catalogue_pop_without_daemons", args: []string{"drain", "lhr"}, out: "LHR drained", drained: "LHR"},
		{name: "fleet_pop_outside_the_catalogue", args: []string{"drain", "t01"}, out: "T01 drained", drained: "T01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(ctx, append(append([]string{"pop"}, tc.args...), "--redis", srv.Addr()), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout %q\nstderr %q", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.out)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr %q lacks %q", errb.String(), s)
				}
			}
			fleet, err := st.Fleet(ctx)
			if err != nil {
				t.Fatal(err)
			}
			drained := false
			for _, p := range fleet {
				if p.PoP == "XYZ" {
					t.Errorf("XYZ reached Redis: %+v", p)
				}
				drained = drained || p.PoP == tc.drained && p.Drained
			}
			if tc.drained != "" && !drained {
				t.Errorf("%s not drained in Redis: fleet %+v", tc.drained, fleet)
			}
		})
	}
}

func TestPopUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no_action", []string{"pop", "--redis", "127.0.0.1:1"}, "want drain"},
		{"unknown_action", []string{"pop", "--redis", "127.0.0.1:1", "explode", "FRA"}, `unknown action "explode"`},
		{"drain_without_pop", []string{"pop", "--redis", "127.0.0.1:1", "drain"}, "exactly one PoP"},
		{"no_redis", []string{"pop", "drain", "FRA"}, "--redis is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2 (usage); stderr %q", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tc.want)
			}
		})
	}
}
