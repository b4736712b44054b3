package main

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober/simulate"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestProbedSimulateFlags: the --simulate flags are refused, before Redis is dialled, with the flag named.
func TestProbedSimulateFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"pop_list_without_simulate", []string{"--pop", "FRA,AMS"}, "--pop FRA,AMS: one PoP per daemon (a list only with --simulate)"},
		{"simulate_pops_without_simulate", []string{"--pop", "FRA", "--simulate-pops", "3"}, "--simulate-pops needs --simulate"},
		{"simulate_pops_and_pop", []string{"--simulate", "--pop", "FRA", "--simulate-pops", "3"}, "--simulate-pops and --pop: give one of them"},
		{"simulate_pops_too_many", []string{"--simulate", "--simulate-pops", "100000"}, "--simulate-pops 100000: the catalogue has"},
		{"simulate_no_pop", []string{"--simulate"}, "--simulate: --pop or --simulate-pops is required"},
		{"unknown_pop", []string{"--simulate", "--pop", "FRA,XXQ"}, `--pop: simulate: PoP "XXQ": not in the PoP catalogue`},
		{"twice", []string{"--simulate", "--pop", "FRA,fra"}, `PoP "FRA" given twice`},
		{"fail_fraction", []string{"--simulate", "--pop", "FRA", "--simulate-fail", "1.5"}, "failure fraction 1.5: want 0..1"},
		{"rate", []string{"--simulate", "--pop", "FRA", "--simulate-rate", "-1"}, "rate -1: want >= 0"},
		{"mesh", []string{"--simulate", "--pop", "FRA", "--mesh-listen", "127.0.0.1:0"}, "--mesh-listen: a simulated daemon takes no part in the mesh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Nothing listens on port 1: had the flags passed, the error would be Redis's.
			args := append([]string{"probed", "--redis", "127.0.0.1:1", "--listen", "127.0.0.1:0"}, tc.args...)
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2\nstderr:\n%s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errb.String())
			}
		})
	}
}

// TestProbedSimulate runs `vantage probed --simulate` for two PoPs in one process on a real redis-server: each
// PoP's jobs are answered with the latency model's RTT to the target's hashed location, every stored result is
// marked simulated, the process warns that it is a simulation and /metrics says so.
func TestProbedSimulate(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	listen := freeAddr(t)
	errb := startCmd(t, "probed", "--simulate", "--pop", "FRA,nrt", "--simulate-jitter", "0", "--redis", srv.Addr(), "--listen", listen)
	waitHTTP(t, "http://"+listen+"/readyz", 200, 15*time.Second)
	const target = "db.example.com:5432"
	for _, pop := range []string{"FRA", "NRT"} {
		if _, err := st.EnqueueJob(ctx, pop, storage.Job{Target: target, Kind: placement.ProbeTCP, Round: "r1", Key: "host:" + target}); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]storage.Result
	testwait.Eventually(t, 15*time.Second, "both PoPs' results", func() bool {
		got, _ = st.LatestResults(ctx, "host:"+target)
		return len(got) == 2
	})
	for _, code := range []string{"FRA", "NRT"} {
		p, _ := geo.LookupPoP(code)
		want := geo.DefaultModel().RTTMs(p.Point, simulate.TargetPoint("db.example.com"))
		r := got[code]
		if math.Abs(r.MinMs-want) > 1e-3 || r.Samples != 3 || r.Class != "" {
			t.Errorf("%s: result %+v, want the model's %.3f ms over 3 samples", code, r, want)
		}
		if !strings.Contains(string(r.Detail), `"simulated":true`) {
			t.Errorf("%s: result detail %s is not marked simulated", code, r.Detail)
		}
	}
	metrics := waitHTTP(t, "http://"+listen+"/metrics", 200, 5*time.Second)
	for _, want := range []string{"vantage_probed_simulated 1", `vantage_probed_simulated_probes_total{outcome="success"} 2`,
		`vantage_probed_jobs_total{outcome="success",pop="NRT"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	testwait.Eventually(t, 5*time.Second, "the SIMULATION warning", func() bool {
		return strings.Contains(errb.String(), "level=WARN msg=\"probed: SIMULATION")
	})
}
