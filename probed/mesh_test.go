package probed

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestMeshProbe: a mesh job (key "mesh:LHR") probes LHR's mesh listener (ServeMesh) from FRA's daemon and
// the RTT lands in the PoP mesh as the pair FRA>LHR, not in a target's results; a failed mesh probe stores
// nothing; the heartbeat advertises the daemon's mesh address.
func TestMeshProbe(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); ServeMesh(ctx, ln, testLogger(t)) }()
	t.Cleanup(func() { cancel(); <-served })

	cfg := fastConfig("FRA", "fra-1")
	cfg.Logger = testLogger(t)
	q := &StoreQueue{DB: st, PoP: "FRA", DaemonID: "fra-1", MeshAddr: "198.18.0.1:9102"}
	d, err := New(cfg, q, newEngine(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(dctx) }()
	t.Cleanup(func() { dcancel(); <-done })

	// A closed port: the probe fails, nothing is stored for FRA>ORD.
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, j := range []storage.Job{
		{Target: closedAddr, Kind: placement.ProbeTCP, Count: 2, Key: MeshKeyPrefix + "ORD"},
		{Target: ln.Addr().String(), Kind: placement.ProbeTCP, Count: 3, Key: MeshKeyPrefix + "LHR"},
	} {
		if _, err := st.EnqueueJob(context.Background(), "FRA", j); err != nil {
			t.Fatal(err)
		}
	}
	var mesh []storage.MeshRTT
	testwait.Eventually(t, 10*time.Second, "the FRA>LHR mesh pair", func() bool {
		mesh, _ = st.MeshRTTs(context.Background(), 0)
		return len(mesh) > 0 && pending(t, st, "FRA") == 0
	})
	if len(mesh) != 1 || mesh[0].Src != "FRA" || mesh[0].Dst != "LHR" || mesh[0].Samples != 3 || !(mesh[0].RTTMs > 0) {
		t.Fatalf("mesh = %+v, want FRA>LHR alone with 3 samples and an RTT", mesh)
	}
	if rs, err := st.LatestResults(context.Background(), MeshKeyPrefix+"LHR"); err != nil || len(rs) != 0 {
		t.Errorf("a mesh result was stored as a target's result too: %+v, %v", rs, err)
	}
	fleet, err := st.Fleet(context.Background())
	if err != nil || len(fleet) != 1 || len(fleet[0].Daemons) != 1 || fleet[0].Daemons[0].MeshAddr != "198.18.0.1:9102" {
		t.Fatalf("fleet %+v (%v): want the mesh address advertised", fleet, err)
	}
}
