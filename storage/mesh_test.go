package storage

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func init() { areas = append(areas, area{"mesh", testMesh}) }

func testMesh(t *testing.T, open func(*testing.T, Options) *Store) {
	clock := &fakeClock{now: t0}
	s := open(t, Options{Now: clock.Now})
	ctx := testCtx(t)
	put := func(m MeshRTT) bool {
		t.Helper()
		ok, err := s.PutMeshRTT(ctx, m)
		if err != nil {
			t.Fatalf("PutMeshRTT(%+v): %v", m, err)
		}
		return ok
	}
	if !put(MeshRTT{Src: "FRA", Dst: "LHR", RTTMs: 9.7, Samples: 3, At: t0}) || !put(MeshRTT{Src: "LHR", Dst: "FRA", RTTMs: 9.9, Samples: 3}) {
		t.Fatal("first measurements not stored")
	}
	// A late result of an older job does not replace a newer one; a newer one does.
	if put(MeshRTT{Src: "FRA", Dst: "LHR", RTTMs: 50, Samples: 3, At: t0.Add(-time.Minute)}) {
		t.Error("an older measurement replaced a newer one")
	}
	if !put(MeshRTT{Src: "FRA", Dst: "IAD", RTTMs: 80, Samples: 2, At: t0.Add(-20 * time.Minute)}) {
		t.Error("an old measurement of a new pair not stored")
	}
	got, err := s.MeshRTTs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []MeshRTT{
		{Src: "FRA", Dst: "IAD", RTTMs: 80, Samples: 2, At: t0.Add(-20 * time.Minute)},
		{Src: "FRA", Dst: "LHR", RTTMs: 9.7, Samples: 3, At: t0},
		{Src: "LHR", Dst: "FRA", RTTMs: 9.9, Samples: 3, At: t0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MeshRTTs = %+v, want %+v", got, want)
	}
	// A maximum age drops (and deletes) the stale pair.
	if got, err = s.MeshRTTs(ctx, 10*time.Minute); err != nil || len(got) != 2 || got[0].Dst != "LHR" {
		t.Fatalf("MeshRTTs(10m) = %+v, %v", got, err)
	}
	if got, err = s.MeshRTTs(ctx, 0); err != nil || len(got) != 2 {
		t.Fatalf("after the stale pair was dropped: %+v, %v", got, err)
	}
	// A corrupt value is skipped, not fatal.
	if err := s.Client().HSet(ctx, KeyMesh, "SIN>NRT", "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err = s.MeshRTTs(ctx, 0); err != nil || len(got) != 2 {
		t.Fatalf("with a corrupt value: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		m    MeshRTT
		want string
	}{
		{MeshRTT{Src: "FRA", Dst: "FRA", RTTMs: 1}, "does not measure itself"},
		{MeshRTT{Src: "FRA", Dst: "LHR", RTTMs: math.NaN()}, "want a finite number"},
		{MeshRTT{Src: "FRA", Dst: "LHR", RTTMs: -1}, "want a finite number"},
		{MeshRTT{Src: "", Dst: "LHR", RTTMs: 1}, "mesh src PoP is empty"},
		{MeshRTT{Src: "A>B", Dst: "LHR", RTTMs: 1}, "contains '>'"},
	} {
		if _, err := s.PutMeshRTT(ctx, tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PutMeshRTT(%+v) = %v, want %q", tc.m, err, tc.want)
		}
	}
}
