package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/internal/shareddata"
	"github.com/vantage-edge/vantage/triangulate"
)

// runTri runs "vantage triangulate" on input and returns the exit code, the decoded output lines and stderr.
func runTri(t *testing.T, input string, args ...string) (int, []triVerdict, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(path, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"triangulate", "--in", path}, args...), &out, &errb)
	var vs []triVerdict
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var v triVerdict
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		vs = append(vs, v)
	}
	return code, vs, errb.String()
}

// phantomLine returns a JSONL target measured from the PoP codes (coordinates looked up by the command).
func phantomLine(t *testing.T, target string, codes []string, sites ...string) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(target)), 7))
	var vps []geo.PoP
	for _, c := range codes {
		p, ok := geo.LookupPoP(c)
		if !ok {
			t.Fatalf("no PoP %s", c)
		}
		vps = append(vps, p)
	}
	var at []geo.Point
	for _, s := range sites {
		p, _ := geo.LookupPoP(s)
		at = append(at, p.Point)
	}
	ms := triangulate.GenerateAnycast(rng, triangulate.PhantomConfig{Inflation: 1.5, BaseMs: 0.3}, vps, at)
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf(`{"vp":%q,"rtt_ms":%.3f}`, m.VP, m.RTTMs))
	}
	return fmt.Sprintf(`{"target":%q,"measurements":[%s]}`, target, strings.Join(parts, ","))
}

var triVPs = []string{"FRA", "AMS", "LHR", "CDG", "MAD", "WAW", "IAD", "ORD", "SJC", "GRU", "NRT", "SIN", "SYD", "JNB", "BOM"}

func TestTriangulateJSONL(t *testing.T) {
	input := strings.Join([]string{
		phantomLine(t, "198.18.3.7", triVPs, "FRA"),
		"",
		phantomLine(t, "198.18.9.9", triVPs, "FRA", "NRT", "IAD"),
		`{"target":"198.18.1.1","measurements":[{"vp":"probe-1","lat":50.11,"lon":8.68,"rtt_ms":0.9},{"vp":"LHR","rtt_ms":14.5},{"vp":"IAD","rtt_ms":88}],"previous":"LHR"}`,
		`{"target":"www.example","measurements":[{"vp":"FRA","rtt_ms":1},{"vp":"NRT","rtt_ms":230},{"vp":"IAD","rtt_ms":88}],"dns":[{"vp":"FRA","answers":["192.0.2.1"]},{"vp":"NRT","answers":["198.51.100.1"]}]}`,
	}, "\n") + "\n"
	code, vs, stderr := runTri(t, input)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if len(vs) != 4 {
		t.Fatalf("%d output lines, want 4", len(vs))
	}
	uni, any, custom, dns := vs[0], vs[1], vs[2], vs[3]
	if uni.Target != "198.18.3.7" || uni.Verdict != "unicast" || uni.Status != "SUCCESS" || uni.BestVP != "FRA" || uni.Location == nil || uni.Confidence <= 0 || uni.Confidence > 1 {
		t.Errorf("unicast line: %+v", uni)
	}
	fra, _ := geo.LookupPoP("FRA")
	if d := geo.DistanceKm(geo.Point{Lat: uni.Location.Lat, Lon: uni.Location.Lon}, fra.Point); d > uni.Location.RadiusKm+50 {
		t.Errorf("unicast location %.0f km from FRA, radius %.0f", d, uni.Location.RadiusKm)
	}
	if any.Verdict != "anycast" || any.Status != "UNSUPPORTED_APPLICATION" || any.Location != nil || len(any.Instances) < 2 || any.Instances[0].VP == "" || any.Instances[0].City == "" {
		t.Errorf("anycast line: %+v", any)
	}
	if custom.BestVP != "probe-1" || custom.BestRTTMs != 0.9 || custom.Verdict != "unicast" {
		t.Errorf("vantage point with explicit coordinates: %+v", custom)
	}
	if dns.Verdict != "replicated" || dns.Status != "UNSUPPORTED_APPLICATION" || len(dns.Notes) == 0 {
		t.Errorf("DNS evidence line: %+v", dns)
	}
}

func TestTriangulateBadLinesAreReportedAndSkipped(t *testing.T) {
	good := phantomLine(t, "198.18.3.7", triVPs, "FRA")
	lines := []struct {
		text, want string
	}{
		{good, ""},
		{`{"target":"a","measurements":[{"vp":"FRA","rtt_ms":-1},{"vp":"AMS","rtt_ms":3}]}`, `line 2: target "a": triangulate: invalid measurement: vp "FRA": rtt_ms = -1 is negative`},
		{`not json`, `line 3: invalid JSON`},
		{`{"target":"b","measurements":[{"vp":"ZZZ","rtt_ms":3}]}`, `line 4: target "b": vp "ZZZ": no lat/lon and not a known PoP code`},
		{`{"target":"c","measurements":[],"x":1}`, `line 5: invalid JSON: json: unknown field "x"`},
		{`{"target":"d","measurements":[]}`, `line 6: target "d": "measurements" is missing or empty`},
		{`{"target":"e","measurements":[{"vp":"FRA"}]}`, `line 7: target "e": vp "FRA": "rtt_ms" is missing`},
		{`{"target":"f","measurements":[{"vp":"FRA","lat":50,"rtt_ms":1}]}`, `line 8: target "f": vp "FRA": give both "lat" and "lon" or neither`},
		{`{"target":"g","measurements":[{"vp":"FRA","rtt_ms":1e9}]}`, `line 9: target "g": triangulate: invalid measurement: vp "FRA": rtt_ms = 1e+09 is above the 5000 ms limit`},
		{`{"target":"h","measurements":[{"vp":"FRA","rtt_ms":1}]} {"target":"i"}`, `line 10: invalid JSON: more than one value`},
		{`{"measurements":[{"vp":"FRA","rtt_ms":1}]}`, `line 11: "target" is missing or empty`},
		{strings.Replace(good, "198.18.3.7", "198.18.3.8", 1), ""},
	}
	var in []string
	for _, l := range lines {
		in = append(in, l.text)
	}
	code, vs, stderr := runTri(t, strings.Join(in, "\n"))
	if code != 1 {
		t.Fatalf("exit %d, want 1 (some lines bad)", code)
	}
	if len(vs) != 2 || vs[0].Target != "198.18.3.7" || vs[1].Target != "198.18.3.8" {
		t.Fatalf("good lines not all written: %+v", vs)
	}
	for _, l := range lines {
		if l.want != "" && !strings.Contains(stderr, l.want) {
			t.Errorf("stderr does not report %q:\n%s", l.want, stderr)
		}
	}
	if !strings.Contains(stderr, "10 bad input line(s) skipped") {
		t.Errorf("stderr lacks the count:\n%s", stderr)
	}
}

func TestTriangulateCSV(t *testing.T) {
	input := "target,vp,lat,lon,rtt_ms\n" +
		"198.18.3.7,FRA,,,1.9\n" +
		"198.18.5.5,IAD,,,2.1\n" +
		"198.18.3.7,AMS,52.31,4.76,8.1\n" +
		"198.18.5.5,FRA,,,90.4\n" +
		"198.18.3.7,LHR,,,14.9\n" +
		"198.18.3.7,NRT,,,230\n" +
		"198.18.5.5,SJC,,,66\n" +
		"198.18.5.5,ORD,,,20\n" +
		"198.18.3.7,XXX,,,3\n" +
		"198.18.5.5,LHR,,,abc\n" +
		"198.18.5.5,\"AMS\"x,,,3\n" +
		"198.18.5.5,AMS,,,-4\n"
	code, vs, stderr := runTri(t, input)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr, `line 10: target "198.18.3.7": vp "XXX": no lat/lon`) || !strings.Contains(stderr, `line 11: target "198.18.5.5": vp "LHR": rtt_ms "abc"`) ||
		!strings.Contains(stderr, `line 12: parse error on line 12`) || !strings.Contains(stderr, `line 13: target "198.18.5.5": triangulate: invalid measurement: vp "AMS": rtt_ms = -4 is negative`) {
		t.Errorf("stderr:\n%s", stderr)
	}
	if len(vs) != 2 || vs[0].Target != "198.18.3.7" || vs[0].BestVP != "FRA" || vs[1].Target != "198.18.5.5" || vs[1].BestVP != "IAD" || vs[0].Verdict != "unicast" {
		t.Fatalf("verdicts %+v", vs)
	}
	// Reordered columns, all good: exit 0.
	code, vs, stderr = runTri(t, "rtt_ms,target,vp\n2,t1,FRA\n9,t1,AMS\n15,t1,LHR\n")
	if code != 0 || len(vs) != 1 || vs[0].BestVP != "FRA" {
		t.Fatalf("exit %d verdicts %+v stderr %q", code, vs, stderr)
	}
}

func TestTriangulatePoPsFile(t *testing.T) {
	dir := t.TempDir()
	pops := filepath.Join(dir, "pops.csv")
	if err := os.WriteFile(pops, []byte("code,city,lat,lon\nQQA,Phantom Frankfurt,50.05,8.6\nQQB,Phantom Tokyo,35.7,139.7\nQQC,Phantom Ashburn,39.0,-77.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := `{"target":"t","measurements":[{"vp":"QQA","rtt_ms":1.1},{"vp":"qqb","rtt_ms":240},{"vp":"QQC","rtt_ms":85}]}` + "\n"
	code, vs, stderr := runTri(t, in, "--pops", pops)
	if code != 0 || len(vs) != 1 || vs[0].BestVP != "QQA" || vs[0].Location == nil || vs[0].Location.Lat < 48 || vs[0].Location.Lat > 52 {
		t.Fatalf("exit %d verdicts %+v stderr %q", code, vs, stderr)
	}
	// Without the file the codes are unknown.
	if code, _, stderr := runTri(t, in); code != 1 || !strings.Contains(stderr, `vp "QQA": no lat/lon`) {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	// A missing --pops file is a usage error.
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"triangulate", "--pops", filepath.Join(dir, "nope.csv")}, &out, &errb); code != 2 {
		t.Fatalf("missing --pops: exit %d, stderr %q", code, errb.String())
	}
}

func TestTriangulateReadsStdin(t *testing.T) {
	old := triangulateStdin
	t.Cleanup(func() { triangulateStdin = old })
	triangulateStdin = strings.NewReader(phantomLine(t, "s", triVPs, "SIN") + "\n")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"triangulate"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"best_vp":"SIN"`) {
		t.Fatalf("exit %d out %q err %q", code, out.String(), errb.String())
	}
}

// TestTriangulateGeoIP: with --geoip, an IP target that GeoIP places in London but that answers from Frankfurt
// keeps its verdict and best PoP and gets a note; a target the database does not know gets none.
func TestTriangulateGeoIP(t *testing.T) {
	// 81.2.69.142 is data here (GeoIP2-City-Test: London); the measurements are generated.
	input := phantomLine(t, "81.2.69.142", triVPs, "FRA") + "\n" + phantomLine(t, "198.18.3.7", triVPs, "FRA") + "\n"
	code, plain, stderr := runTri(t, input)
	if code != 0 || stderr != "" || len(plain) != 2 {
		t.Fatalf("without --geoip: exit %d, stderr %q, %d lines", code, stderr, len(plain))
	}
	code, vs, stderr := runTri(t, input, "--geoip", shareddata.Path(t, "maxmind-test-mmdb", "GeoIP2-City-Test.mmdb"))
	if code != 0 || stderr != "" || len(vs) != 2 {
		t.Fatalf("exit %d, stderr %q, %d lines", code, stderr, len(vs))
	}
	london, other := vs[0], vs[1]
	if london.Verdict != plain[0].Verdict || london.BestVP != plain[0].BestVP || london.BestVP != "FRA" ||
		!strings.Contains(strings.Join(london.Notes, ";"), "GeoIP places the target") {
		t.Errorf("81.2.69.142: %+v; want FRA, unicast as without --geoip (%+v) and a GeoIP note", london, plain[0])
	}
	if strings.Contains(strings.Join(other.Notes, ";"), "GeoIP") {
		t.Errorf("198.18.3.7 (not in the database): notes %q", other.Notes)
	}
	if code, _, stderr := runTri(t, input, "--geoip", "triangulate_test.go"); code != 2 || !strings.Contains(stderr, "--geoip") {
		t.Errorf("--geoip of a non-database: exit %d, stderr %q; want a usage error", code, stderr)
	}
}

// meshFile writes the full mesh of codes as JSON Lines, RTTs 1.2 x the fibre bound + 2 ms over the true
// distances; a code in listed is written with those coordinates instead of its own (a mislocated site).
func meshFile(t *testing.T, codes []string, listed map[string]geo.Point) string {
	t.Helper()
	var b strings.Builder
	for _, a := range codes {
		for _, c := range codes {
			if a == c {
				continue
			}
			pa, _ := geo.LookupPoP(a)
			pc, _ := geo.LookupPoP(c)
			rtt := 1.2*geo.DistanceKm(pa.Point, pc.Point)/geo.FibreKmPerMs + 2
			src := fmt.Sprintf(`"src":%q`, a)
			if p, ok := listed[a]; ok {
				src += fmt.Sprintf(`,"src_lat":%v,"src_lon":%v`, p.Lat, p.Lon)
			}
			dst := fmt.Sprintf(`"dst":%q`, c)
			if p, ok := listed[c]; ok {
				dst += fmt.Sprintf(`,"dst_lat":%v,"dst_lon":%v`, p.Lat, p.Lon)
			}
			fmt.Fprintf(&b, "{%s,%s,\"rtt_ms\":%.3f}\n", src, dst, rtt)
		}
	}
	path := filepath.Join(t.TempDir(), "mesh.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTriangulateMesh: --mesh calibrates the disks (a smaller location region than the fibre bound's), names
// the mislocated vantage points on stderr, and refuses a bad mesh file with its line and field.
func TestTriangulateMesh(t *testing.T) {
	in := phantomLine(t, "198.18.3.7", triVPs, "FRA") + "\n"
	code, plain, stderr := runTri(t, in)
	if code != 0 || len(plain) != 1 || plain[0].Location == nil {
		t.Fatalf("without a mesh: exit %d, %+v, stderr %q", code, plain, stderr)
	}
	mesh := meshFile(t, triVPs, map[string]geo.Point{"WAW": {Lat: -33.9, Lon: 151.2}}) // Warsaw listed in Sydney
	code, cal, stderr := runTri(t, in, "--mesh", mesh)
	if code != 0 || len(cal) != 1 || cal[0].Location == nil {
		t.Fatalf("with a mesh: exit %d, %+v, stderr %q", code, cal, stderr)
	}
	if !strings.Contains(stderr, "WAW is mislocated") || !strings.Contains(stderr, "14 vantage points calibrated") {
		t.Errorf("stderr %q: want WAW named mislocated and 14 vantage points calibrated", stderr)
	}
	if !(cal[0].Location.RadiusKm < plain[0].Location.RadiusKm) {
		t.Errorf("calibrated region radius %v km, want below the fibre bound's %v km", cal[0].Location.RadiusKm, plain[0].Location.RadiusKm)
	}
	fra, _ := geo.LookupPoP("FRA")
	if d := geo.DistanceKm(geo.Point{Lat: cal[0].Location.Lat, Lon: cal[0].Location.Lon}, fra.Point); d > cal[0].Location.RadiusKm+50 {
		t.Errorf("calibrated location %.0f km from FRA, radius %.0f", d, cal[0].Location.RadiusKm)
	}

	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"src":"FRA","dst":"LHR","rtt_ms":9.7}`+"\n"+`{"src":"FRA","dst":"LHR","rtt_ms":-3}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"triangulate", "--mesh", bad}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `line 2: triangulate: invalid mesh: "rtt_ms": -3: negative`) {
		t.Fatalf("bad mesh: exit %d, stderr %q", code, errb.String())
	}
}
