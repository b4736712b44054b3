package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/syncbuf"
	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/scheduler/openapitest"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

var meshTestCodes = []string{"FRA", "LHR", "AMS", "CDG", "MAD", "IAD", "ORD", "LAX", "SIN", "NRT", "SYD", "GRU", "JNB"}

// putTrueMesh stores the full mesh of codes with RTTs from the catalogue's (true) locations, scaled by scale:
// 1.2 x the fibre bound + 2 ms when scale is 1.
func putTrueMesh(t *testing.T, st *storage.Store, codes []string, scale float64, at time.Time) {
	t.Helper()
	for _, a := range codes {
		for _, b := range codes {
			if a == b {
				continue
			}
			pa, _ := geo.LookupPoP(a)
			pb, _ := geo.LookupPoP(b)
			rtt := scale * (1.2*geo.DistanceKm(pa.Point, pb.Point)/geo.FibreKmPerMs + 2)
			if _, err := st.PutMeshRTT(context.Background(), storage.MeshRTT{Src: a, Dst: b, RTTMs: rtt, Samples: 3, At: at}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// meshScheduler returns a scheduler on st whose catalogue lists the PoPs of codes, moved is moved there.
func meshScheduler(t *testing.T, st *storage.Store, moved map[string]geo.Point, reg prometheus.Registerer, log *slog.Logger) *Scheduler {
	t.Helper()
	var cat []geo.PoP
	for _, c := range meshTestCodes {
		p, _ := geo.LookupPoP(c)
		if q, ok := moved[c]; ok {
			p.Point = q
		}
		cat = append(cat, p)
	}
	s, err := New(Config{Name: "s1", PoPs: cat, Logger: log}, StoreBackend{Store: st}, NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMeshRefitsOnChange: the calibration is fitted from the mesh in Redis, refitted when the mesh changes and
// not when it does not; pooled engines pick the new calibration up.
func TestMeshRefitsOnChange(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	ctx := context.Background()
	s := meshScheduler(t, st, nil, nil, quietLogger())
	m := s.deps.mesh

	s.refreshMesh(ctx, m)
	if s.Calibration() != nil || m.gen.Load() != 0 {
		t.Fatalf("an empty mesh gave calibration %+v (gen %d)", s.Calibration(), m.gen.Load())
	}
	putTrueMesh(t, st, meshTestCodes, 1, time.Now())
	s.refreshMesh(ctx, m)
	first := s.Calibration()
	if first == nil || len(first.PerVP) != len(meshTestCodes) || len(first.Suspects) != 0 || m.gen.Load() != 1 {
		t.Fatalf("calibration %+v (gen %d): want a line per PoP and no suspect", first, m.gen.Load())
	}
	if w := s.deps.getWorkers(); w.engine.Config().Calibration != first {
		t.Error("a pooled engine does not decide with the mesh's calibration")
	}
	s.refreshMesh(ctx, m) // unchanged: no refit
	if s.Calibration() != first || m.gen.Load() != 1 {
		t.Errorf("an unchanged mesh refitted (gen %d)", m.gen.Load())
	}
	putTrueMesh(t, st, meshTestCodes, 0.8, time.Now().Add(time.Second)) // a faster network
	s.refreshMesh(ctx, m)
	second := s.Calibration()
	if second == first || m.gen.Load() != 2 || !(second.Line("LHR").SlopeMsPerKm < first.Line("LHR").SlopeMsPerKm) {
		t.Fatalf("after the mesh changed: gen %d, LHR slope %v (was %v): want a refit to a flatter line",
			m.gen.Load(), second.Line("LHR").SlopeMsPerKm, first.Line("LHR").SlopeMsPerKm)
	}
	if w := s.deps.getWorkers(); w.engine.Config().Calibration != second {
		t.Error("a pooled engine kept the old calibration")
	}
	// Forwarding RTTs come from the mesh: the smaller direction; NaN for a pair never measured.
	if v := s.MeshRTT("FRA", "LHR"); math.IsNaN(v) || v <= 0 {
		t.Errorf("MeshRTT(FRA, LHR) = %v, want the measured RTT", v)
	}
	if v := s.MeshRTT("FRA", "WAW"); !math.IsNaN(v) {
		t.Errorf("MeshRTT(FRA, WAW) = %v, want NaN (not measured: the model answers)", v)
	}
	if _, err := st.PutMeshRTT(ctx, storage.MeshRTT{Src: "LHR", Dst: "FRA", RTTMs: 1.5, At: time.Now().Add(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	s.refreshMesh(ctx, m)
	if v := s.MeshRTT("FRA", "LHR"); v != 1.5 {
		t.Errorf("MeshRTT(FRA, LHR) = %v, want 1.5 (the smaller direction)", v)
	}
}

// TestMeshFlagsMislocatedPoP: a PoP whose catalogue location contradicts its mesh RTTs is flagged (metric,
// one WARN, the API) and set aside from the PoPs rechecks use, and trusted again once the mesh agrees.
func TestMeshFlagsMislocatedPoP(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	ctx := context.Background()
	var logs syncbuf.Buffer
	reg := prometheus.NewPedanticRegistry()
	wrong := geo.Point{Lat: -33.9, Lon: 151.2} // FRA listed in Sydney
	s := meshScheduler(t, st, map[string]geo.Point{"FRA": wrong}, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	m := s.deps.mesh
	putTrueMesh(t, st, meshTestCodes, 1, time.Now())
	s.refreshMesh(ctx, m)
	s.refreshMesh(ctx, m)

	if !s.Mislocated("FRA") || s.Mislocated("LHR") {
		t.Fatalf("mislocated FRA %v, LHR %v: want FRA alone", s.Mislocated("FRA"), s.Mislocated("LHR"))
	}
	if got := metricValue(s.metrics.mesh.mislocated.WithLabelValues("FRA")); got != 1 {
		t.Errorf("vantage_mesh_pop_mislocated{pop=FRA} = %v, want 1", got)
	}
	if n := strings.Count(logs.String(), "PoP mislocated"); n != 1 {
		t.Errorf("%d WARN lines for FRA, want 1:\n%s", n, logs.String())
	}
	if cal := s.Calibration(); !cal.Suspect("FRA") {
		t.Error("the engine's calibration does not hold FRA as a suspect")
	}
	var cat []geo.PoP
	for _, c := range []string{"AMS", "FRA", "LHR"} {
		p, _ := s.deps.pops(c)
		cat = append(cat, p)
	}
	if got := s.trusted(cat); len(got) != 2 || slices.ContainsFunc(got, func(p geo.PoP) bool { return p.Code == "FRA" }) {
		t.Errorf("trusted PoPs %v: want FRA set aside", got)
	}

	// GET /v1/mesh serves the pairs and the flag, in exactly the documented shape.
	h := openapitest.Handler(t, (&API{Sched: s, Auth: NewAuth(map[string]string{testToken: "ops"}, Quota{}, nil)}).Handler())
	req := httptest.NewRequest("GET", "/v1/mesh", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body struct {
		Pairs []struct {
			Src, Dst string
			RTTMs    float64 `json:"rtt_ms"`
			At       time.Time
		}
		Mislocated []struct{ PoP, Reason string }
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	if rec.Code != http.StatusOK || dec.Decode(&body) != nil {
		t.Fatalf("GET /v1/mesh: %d %s", rec.Code, rec.Body.String())
	}
	n := len(meshTestCodes)
	if len(body.Pairs) != n*(n-1) || body.Pairs[0].Src != "AMS" || body.Pairs[0].At.IsZero() || len(body.Mislocated) != 1 ||
		body.Mislocated[0].PoP != "FRA" || !strings.Contains(body.Mislocated[0].Reason, "faster than light") {
		t.Errorf("GET /v1/mesh: %d pairs (first %+v), mislocated %+v", len(body.Pairs), body.Pairs[0], body.Mislocated)
	}

	// FRA moves to where it is listed (its RTTs now agree with Sydney): trusted again.
	syd, _ := geo.LookupPoP("SYD")
	later := time.Now().Add(time.Second)
	for _, c := range meshTestCodes {
		if c == "FRA" {
			continue
		}
		p, _ := geo.LookupPoP(c)
		rtt := 1.2*geo.DistanceKm(wrong, p.Point)/geo.FibreKmPerMs + 2
		if c == "SYD" {
			rtt = 1.2*geo.DistanceKm(wrong, syd.Point)/geo.FibreKmPerMs + 2
		}
		for _, pr := range [][2]string{{"FRA", c}, {c, "FRA"}} {
			if _, err := st.PutMeshRTT(ctx, storage.MeshRTT{Src: pr[0], Dst: pr[1], RTTMs: rtt, At: later}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.refreshMesh(ctx, m)
	if s.Mislocated("FRA") || len(s.Mesh().Mislocated) != 0 {
		t.Errorf("FRA still flagged after its RTTs agree with its listed location: %+v", s.Mesh().Mislocated)
	}
	if got := metricValue(s.metrics.mesh.mislocated.WithLabelValues("FRA")); got != 0 {
		t.Errorf("vantage_mesh_pop_mislocated{pop=FRA} = %v, want 0", got)
	}
}

// TestMeshRoundEnqueuesEveryPair: one round enqueues a TCP job to every other PoP's advertised mesh address
// on every PoP that answers mesh probes, keyed for the mesh; PoPs without a mesh address are left out.
func TestMeshRoundEnqueuesEveryPair(t *testing.T) {
	srv := redistest.Start(t)
	st := openStore(t, srv.Addr(), quietLogger())
	ctx := context.Background()
	addrs := map[string]string{"FRA": "198.18.0.1:9102", "LHR": "198.18.0.2:9102", "IAD": "198.18.0.3:9102"}
	for pop, a := range addrs {
		if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: pop, DaemonID: "d-" + pop, MeshAddr: a}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutHeartbeat(ctx, storage.Heartbeat{PoP: "SIN", DaemonID: "d-SIN"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	s, err := New(Config{Name: "s1", MeshInterval: 60 * time.Millisecond, MeshBudget: 1 << 20, Logger: quietLogger()}, StoreBackend{Store: st}, NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	s.meshRound(&Term{Ctx: ctx, Token: 7})
	for src := range addrs {
		jobs, err := st.ReadJobs(ctx, src, "c", 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, j := range jobs {
			dst, ok := strings.CutPrefix(j.Key, probed.MeshKeyPrefix)
			if !ok || j.Kind != "tcp" || j.Target != addrs[dst] || j.Count != DefaultMeshProbeCount || j.Deadline.IsZero() {
				t.Errorf("%s: job %+v: want a TCP mesh job to a peer's mesh address", src, j)
			}
			got = append(got, dst)
		}
		slices.Sort(got)
		var want []string
		for dst := range addrs {
			if dst != src {
				want = append(want, dst)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s measures %v, want %v", src, got, want)
		}
	}
	if jobs, _ := st.ReadJobs(ctx, "SIN", "c", 100, 0); len(jobs) != 0 {
		t.Errorf("SIN (no mesh address) got mesh jobs %+v", jobs)
	}
	if got := metricValue(s.metrics.mesh.enqueued); got != 6 {
		t.Errorf("vantage_mesh_probes_enqueued_total = %v, want 6", got)
	}
}

func TestMeshPairsOrder(t *testing.T) {
	got := meshPairs([]string{"A", "B", "C"})
	want := [][2]string{{"A", "B"}, {"B", "C"}, {"C", "A"}, {"A", "C"}, {"B", "A"}, {"C", "B"}}
	if !slices.Equal(got, want) {
		t.Errorf("meshPairs = %v, want %v", got, want)
	}
}

// metricValue reads a gauge's or a counter's value.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetGauge().GetValue() + m.GetCounter().GetValue()
}
