package triangulate

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/geo"
)

func TestReadMeshHostileInput(t *testing.T) {
	loc := PoPLocator([]geo.PoP{{Code: "ZZA", Point: geo.Point{Lat: 10, Lon: 10}}})
	for _, tc := range []struct {
		name, in string
		line     int
		want     string // in the error text
	}{
		{"bad number", `{"src":"FRA","dst":"LHR","rtt_ms":"9.7"}`, 1, `"rtt_ms": string is not a float64`},
		{"number out of float range", `{"src":"FRA","dst":"LHR","rtt_ms":1e999}`, 1, `"rtt_ms": number 1e999 is not a float64`},
		{"NaN is not JSON", `{"src":"FRA","dst":"LHR","rtt_ms":NaN}`, 1, "invalid JSON"},
		{"negative RTT", `{"src":"FRA","dst":"LHR","rtt_ms":-1}`, 1, `"rtt_ms": -1: negative`},
		{"absurd RTT", `{"src":"FRA","dst":"LHR","rtt_ms":99999}`, 1, `"rtt_ms": 99999: above 5000 ms`},
		{"missing RTT", `{"src":"FRA","dst":"LHR"}`, 1, `"rtt_ms" is missing`},
		{"unknown src code", `{"src":"XQX","dst":"LHR","rtt_ms":3}`, 1, `"src": "XQX": no src_lat/src_lon and not a known PoP code`},
		{"unknown dst code", "\n" + `{"src":"FRA","dst":"XQX","rtt_ms":3}`, 2, `"dst": "XQX": no dst_lat/dst_lon`},
		{"lat without lon", `{"src":"FRA","src_lat":50,"dst":"LHR","rtt_ms":3}`, 1, `"src_lat" without "src_lon"`},
		{"latitude out of range", `{"src":"FRA","src_lat":95,"src_lon":8,"dst":"LHR","rtt_ms":3}`, 1, `"src_lat", "src_lon": 95, 8: out of range`},
		{"self pair", `{"src":"FRA","dst":"FRA","rtt_ms":3}`, 1, `a site does not measure itself`},
		{"empty src", `{"src":" ","dst":"LHR","rtt_ms":3}`, 1, `"src" is missing or empty`},
		{"unknown field", `{"src":"FRA","dst":"LHR","rtt_ms":3,"rtt":4}`, 1, `unknown field "rtt"`},
		{"two values on a line", `{"src":"FRA","dst":"LHR","rtt_ms":3} {}`, 1, "more than one value"},
		{"not an object", `[1,2]`, 1, "invalid JSON"},
		{"site at two places", `{"src":"FRA","dst":"LHR","rtt_ms":9}` + "\n" +
			`{"src":"FRA","src_lat":1,"src_lon":1,"dst":"ZZA","rtt_ms":9}`, 2, `"src": FRA at`},
		{"huge line", `{"src":"FRA","dst":"LHR","rtt_ms":9}` + "\n" + `{"src":"` + strings.Repeat("A", MaxMeshLineBytes) + `"}`, 2, "longer than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadMesh(strings.NewReader(tc.in), loc)
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LineError", err)
			}
			if le.Line != tc.line || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrMesh) {
				t.Errorf("err = %q (line %d), want line %d and %q, wrapping ErrMesh", err, le.Line, tc.line, tc.want)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", tc.line)) {
				t.Errorf("err = %q: does not start with its line", err)
			}
		})
	}
}

func TestReadMeshGood(t *testing.T) {
	in := `{"src":"FRA","src_lat":50.03,"src_lon":8.56,"dst":"LHR","dst_lat":51.47,"dst_lon":-0.45,"rtt_ms":9.7}

{"src":"AMS","dst":"ZZA","rtt_ms":40}
`
	ms, err := ReadMesh(strings.NewReader(in), PoPLocator([]geo.PoP{{Code: "ZZA", Point: geo.Point{Lat: 10, Lon: 10}}}))
	if err != nil {
		t.Fatal(err)
	}
	ams, _ := geo.LookupPoP("AMS")
	want := []MeshRTT{
		{Src: "FRA", Dst: "LHR", SrcPoint: geo.Point{Lat: 50.03, Lon: 8.56}, DstPoint: geo.Point{Lat: 51.47, Lon: -0.45}, RTTMs: 9.7},
		{Src: "AMS", Dst: "ZZA", SrcPoint: ams.Point, DstPoint: geo.Point{Lat: 10, Lon: 10}, RTTMs: 40},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %d pairs, want %d: %+v", len(ms), len(want), ms)
	}
	if ms[0] != want[0] || ms[1] != want[1] {
		t.Errorf("pairs = %+v, want %+v", ms, want)
	}
}

// meshOf returns the full mesh of sites with RTTs from their true points: rtt(distance) = 1.2 x the fibre bound
// + 2 ms; listed gives the locations the mesh is listed with (true unless a test moves one).
func meshOf(sites []geo.PoP, listed map[string]geo.Point) []MeshRTT {
	var out []MeshRTT
	for _, a := range sites {
		for _, b := range sites {
			if a.Code == b.Code {
				continue
			}
			la, lb := a.Point, b.Point
			if p, ok := listed[a.Code]; ok {
				la = p
			}
			if p, ok := listed[b.Code]; ok {
				lb = p
			}
			rtt := 1.2*2*geo.DistanceKm(a.Point, b.Point)/geo.FibreKmPerMs/2 + 2
			out = append(out, MeshRTT{Src: a.Code, Dst: b.Code, SrcPoint: la, DstPoint: lb, RTTMs: rtt})
		}
	}
	return out
}

func meshSites(t *testing.T, codes ...string) []geo.PoP {
	t.Helper()
	var out []geo.PoP
	for _, c := range codes {
		p, ok := geo.LookupPoP(c)
		if !ok {
			t.Fatalf("no PoP %s", c)
		}
		out = append(out, p)
	}
	return out
}

var meshCodes = []string{"FRA", "LHR", "AMS", "CDG", "MAD", "IAD", "ORD", "LAX", "SIN", "NRT", "SYD", "GRU", "JNB"}

func TestMeshCalibrationFlagsMislocatedAndRefits(t *testing.T) {
	sites := meshSites(t, meshCodes...)
	cc := DefaultCalibrationConfig()

	good, err := MeshCalibration(meshOf(sites, nil), cc)
	if err != nil {
		t.Fatal(err)
	}
	if len(good.Suspects) != 0 || len(good.PerVP) != len(sites) {
		t.Fatalf("true mesh: suspects %v, %d lines, want none and %d", good.Suspects, len(good.PerVP), len(sites))
	}
	// Every line is steeper than fibre (RTTs are 1.2 x the bound plus a fixed cost).
	for vp, l := range good.PerVP {
		if l.SlopeMsPerKm <= FibreLine().SlopeMsPerKm {
			t.Errorf("%s: slope %v, want above the fibre slope", vp, l.SlopeMsPerKm)
		}
	}

	// The mesh changes: FRA is listed in Sydney. The refit flags it, gives it no line, and leaves it out of
	// everyone's fit.
	syd, _ := geo.LookupPoP("SYD")
	moved, err := MeshCalibration(meshOf(sites, map[string]geo.Point{"FRA": {Lat: syd.Point.Lat + 1, Lon: syd.Point.Lon}}), cc)
	if err != nil {
		t.Fatal(err)
	}
	if len(moved.Suspects) != 1 || moved.Suspects[0].VP != "FRA" || !moved.Suspect("FRA") {
		t.Fatalf("suspects = %+v, want FRA alone", moved.Suspects)
	}
	if _, ok := moved.PerVP["FRA"]; ok {
		t.Error("FRA still has a line of its own")
	}
	if len(moved.PerVP) != len(sites)-1 {
		t.Errorf("%d lines, want %d", len(moved.PerVP), len(sites)-1)
	}

	// A faster mesh (a better network) refits to flatter lines.
	faster := meshOf(sites, nil)
	for i := range faster {
		faster[i].RTTMs = faster[i].RTTMs*0.9 - 0.1
	}
	refit, err := MeshCalibration(faster, cc)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := refit.Line("LHR").SlopeMsPerKm, good.Line("LHR").SlopeMsPerKm; !(a < b) {
		t.Errorf("LHR slope after a faster mesh %v, want below %v", a, b)
	}
}

func TestMeshCalibrationRefusesBadPairs(t *testing.T) {
	fra, lhr := geo.Point{Lat: 50, Lon: 8}, geo.Point{Lat: 51, Lon: 0}
	for _, tc := range []struct {
		name string
		in   []MeshRTT
		want string
	}{
		{"NaN", []MeshRTT{{Src: "A", Dst: "B", SrcPoint: fra, DstPoint: lhr, RTTMs: math.NaN()}}, "not a finite number"},
		{"negative", []MeshRTT{{Src: "A", Dst: "B", SrcPoint: fra, DstPoint: lhr, RTTMs: -2}}, "negative"},
		{"self", []MeshRTT{{Src: "A", Dst: "A", SrcPoint: fra, DstPoint: fra, RTTMs: 2}}, "measured itself"},
		{"empty code", []MeshRTT{{Src: "", Dst: "A", SrcPoint: fra, DstPoint: fra, RTTMs: 2}}, "empty site code"},
		{"bad point", []MeshRTT{{Src: "A", Dst: "B", SrcPoint: geo.Point{Lat: 91}, DstPoint: lhr, RTTMs: 2}}, "out of range"},
		{"two places", []MeshRTT{
			{Src: "A", Dst: "B", SrcPoint: fra, DstPoint: lhr, RTTMs: 2},
			{Src: "B", Dst: "A", SrcPoint: lhr, DstPoint: lhr, RTTMs: 2},
		}, "in an earlier pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MeshCalibration(tc.in, DefaultCalibrationConfig())
			if !errors.Is(err, ErrMesh) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrMesh and %q", err, tc.want)
			}
		})
	}
}
