package triangulate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/triangulate"
)

func TestDecodeTarget(t *testing.T) {
	loc := triangulate.PoPLocator([]geo.PoP{{Code: "QQA", Point: geo.Point{Lat: 1, Lon: 2}}})
	fra, _ := geo.LookupPoP("FRA")
	tests := []struct {
		name, line string
		want       triangulate.Input // compared when wantErr is ""
		wantErr    string
	}{
		{
			name: "coordinates_given_and_looked_up",
			line: `{"target":"t","measurements":[{"vp":"probe","lat":50.5,"lon":8.25,"rtt_ms":0.9},{"vp":"fra","rtt_ms":3},{"vp":"qqa","rtt_ms":7}],"previous":"FRA","dns":[{"vp":"FRA","answers":["192.0.2.1"],"chaos":"fra1"}]}`,
			want: triangulate.Input{Target: "t", Previous: "FRA",
				Measurements: []triangulate.Measurement{
					{VP: "probe", Point: geo.Point{Lat: 50.5, Lon: 8.25}, RTTMs: 0.9},
					{VP: "fra", Point: fra.Point, RTTMs: 3},
					{VP: "qqa", Point: geo.Point{Lat: 1, Lon: 2}, RTTMs: 7},
				},
				DNS: []triangulate.DNSAnswer{{VP: "FRA", Addrs: []string{"192.0.2.1"}, ServerID: "fra1"}},
			},
		},
		{name: "not_json", line: `not json`, wantErr: `invalid JSON: invalid character`},
		{name: "unknown_field", line: `{"target":"c","measurements":[],"x":1}`, wantErr: `invalid JSON: json: unknown field "x"`},
		{name: "two_values", line: `{"target":"h","measurements":[{"vp":"FRA","rtt_ms":1}]} {}`, wantErr: `invalid JSON: more than one value on the line`},
		{name: "no_target", line: `{"measurements":[{"vp":"FRA","rtt_ms":1}]}`, wantErr: `"target" is missing or empty`},
		{name: "no_measurements", line: `{"target":"d"}`, wantErr: `target "d": "measurements" is missing or empty`},
		{name: "no_vp", line: `{"target":"d","measurements":[{"rtt_ms":1}]}`, wantErr: `target "d": measurement 0: "vp" is missing or empty`},
		{name: "no_rtt", line: `{"target":"e","measurements":[{"vp":"FRA"}]}`, wantErr: `target "e": vp "FRA": "rtt_ms" is missing`},
		{name: "lat_without_lon", line: `{"target":"f","measurements":[{"vp":"FRA","lat":50,"rtt_ms":1}]}`, wantErr: `target "f": vp "FRA": give both "lat" and "lon" or neither`},
		{name: "unknown_code", line: `{"target":"b","measurements":[{"vp":"ZZZ","rtt_ms":3}]}`, wantErr: `target "b": vp "ZZZ": no lat/lon and not a known PoP code`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := triangulate.DecodeTarget([]byte(tc.line), loc)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one starting %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(tc.want)
			if !bytes.Equal(gb, wb) {
				t.Fatalf("got  %s\nwant %s", gb, wb)
			}
		})
	}
}

func TestPoPLocator(t *testing.T) {
	// The list comes first, case-insensitively; the embedded catalogue after it.
	loc := triangulate.PoPLocator([]geo.PoP{{Code: "FRA", Point: geo.Point{Lat: 1, Lon: 1}}})
	if p, ok := loc("fra"); !ok || p != (geo.Point{Lat: 1, Lon: 1}) {
		t.Errorf("FRA from the list: %v %v", p, ok)
	}
	nrt, _ := geo.LookupPoP("NRT")
	if p, ok := loc("NRT"); !ok || p != nrt.Point {
		t.Errorf("NRT from the catalogue: %v %v", p, ok)
	}
	if _, ok := loc("ZZZ"); ok {
		t.Error("ZZZ found")
	}
	if p, ok := triangulate.PoPLocator(nil)("FRA"); !ok || p == (geo.Point{Lat: 1, Lon: 1}) {
		t.Errorf("nil list: %v %v", p, ok)
	}
}

// decoded is what a Decoder returned for one call to Next.
type decoded struct {
	target string // Input.Target, or "" for an error
	line   int
	vps    int    // len(Input.Measurements)
	err    string // the *LineError's text
}

// decodeAll reads dec to the end and returns what it returned, or the error that stopped it.
func decodeAll(t *testing.T, input string) ([]decoded, error) {
	t.Helper()
	dec := triangulate.NewDecoder(strings.NewReader(input), triangulate.DefaultConfig(), triangulate.PoPLocator(nil))
	var out []decoded
	for {
		in, line, err := dec.Next(context.Background())
		var le *triangulate.LineError
		switch {
		case errors.Is(err, io.EOF):
			return out, nil
		case errors.As(err, &le):
			if le.Line != line {
				t.Errorf("LineError.Line %d, Next's line %d", le.Line, line)
			}
			out = append(out, decoded{line: line, err: err.Error()})
		case err != nil:
			return out, err
		default:
			out = append(out, decoded{target: in.Target, line: line, vps: len(in.Measurements)})
		}
		if len(out) > 100 {
			t.Fatal("Next does not end")
		}
	}
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name, input string
		want        []decoded
		wantErr     string // of the error that ends the input early
	}{
		{name: "empty", input: "", want: nil},
		{name: "blank_lines", input: "\n  \n\n", want: nil},
		{
			name: "jsonl_streams_with_bad_lines",
			input: "\n" + `{"target":"a","measurements":[{"vp":"FRA","rtt_ms":1}]}` + "\n" +
				"oops\n" +
				`{"target":"b","measurements":[{"vp":"FRA","rtt_ms":1},{"vp":"NRT","rtt_ms":2}]}`,
			want: []decoded{
				{target: "a", line: 2, vps: 1},
				{line: 3, err: "line 3: invalid JSON: invalid character 'o' looking for beginning of value"},
				{target: "b", line: 4, vps: 2},
			},
		},
		{
			name: "csv_grouped_by_target_bad_rows_first",
			input: "\ufefftarget, vp ,lat,lon,RTT_MS\n" +
				"t1,FRA,,,1.9\n" +
				"t2,IAD,,,2.1\n" +
				"\n" +
				"t1,AMS,52.31,4.76,8.1\n" +
				"t1,XXX,,,3\n" +
				"t2,LHR,,,abc\n" +
				"t2,FRA,,,-4\n" +
				",FRA,,,1\n" +
				"t2,,,,1\n" +
				"t2,FRA,,,\n" +
				"t2,FRA,91,,1\n" +
				"t2,FRA,x,1,1\n" +
				"t2,\"FRA\"x,,,3\n" +
				"t2,ORD,,,20\n",
			want: []decoded{
				{line: 6, err: `line 6: target "t1": vp "XXX": no lat/lon and not a known PoP code (embedded catalogue or --pops)`},
				{line: 7, err: `line 7: target "t2": vp "LHR": rtt_ms "abc": strconv.ParseFloat: parsing "abc": invalid syntax`},
				{line: 8, err: `line 8: target "t2": triangulate: invalid measurement: vp "FRA": rtt_ms = -4 is negative`},
				{line: 9, err: `line 9: "target" is empty`},
				{line: 10, err: `line 10: target "t2": "vp" is empty`},
				{line: 11, err: `line 11: target "t2": vp "FRA": "rtt_ms" is empty`},
				{line: 12, err: `line 12: target "t2": vp "FRA": give both "lat" and "lon" or neither`},
				{line: 13, err: `line 13: target "t2": vp "FRA": lat "x": strconv.ParseFloat: parsing "x": invalid syntax`},
				{line: 14, err: `line 14: parse error on line 14, column 8: extraneous or missing " in quoted-field`},
				{target: "t1", line: 2, vps: 2},
				{target: "t2", line: 3, vps: 2},
			},
		},
		{name: "csv_header_only", input: "target,vp,rtt_ms\n", want: nil},
		{name: "csv_missing_column", input: "target,vp,lat\nx,FRA,1\n", wantErr: `triangulate: CSV header "target,vp,lat" has no "rtt_ms" column (want target,vp,lat,lon,rtt_ms)`},
		{
			name:    "jsonl_line_too_long",
			input:   `{"target":"a","measurements":[{"vp":"FRA","rtt_ms":1}]}` + "\n" + `{"target":"` + strings.Repeat("x", triangulate.MaxLineBytes) + `"}`,
			want:    []decoded{{target: "a", line: 1, vps: 1}},
			wantErr: "triangulate: line 2: longer than 16777216 bytes: bufio.Scanner: token too long",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll(t, tc.input)
			if (err == nil) != (tc.wantErr == "") || err != nil && err.Error() != tc.wantErr {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d results, want %d:\n%+v", len(got), len(tc.want), got)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("result %d:\n got %+v\nwant %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestDecoderHeaderErrorAndCancel(t *testing.T) {
	dec := triangulate.NewDecoder(strings.NewReader("target,rtt_ms\n"), triangulate.DefaultConfig(), nil)
	_, _, err := dec.Next(context.Background())
	var he *triangulate.HeaderError
	if !errors.As(err, &he) || he.Missing != "vp" {
		t.Fatalf("error %v, want a *HeaderError missing vp", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dec = triangulate.NewDecoder(strings.NewReader(`{"target":"a","measurements":[{"vp":"FRA","rtt_ms":1}]}`), triangulate.DefaultConfig(), nil)
	if _, _, err := dec.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: error %v", err)
	}
}

func TestWriteVerdict(t *testing.T) {
	e, err := triangulate.NewEngine(triangulate.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	at := func(code string) geo.Point { p, _ := geo.LookupPoP(code); return p.Point }
	r, err := e.Decide(triangulate.Input{Target: "198.18.3.7", Measurements: []triangulate.Measurement{
		{VP: "FRA", Point: at("FRA"), RTTMs: 1.80049},
		{VP: "AMS", Point: at("AMS"), RTTMs: 8.9},
		{VP: "LHR", Point: at("LHR"), RTTMs: 15.2},
		{VP: "IAD", Point: at("IAD"), RTTMs: 92.4},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := triangulate.WriteVerdict(&buf, r); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	var v triangulate.Verdict
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Target != "198.18.3.7" || v.Verdict != placement.VerdictUnicast || v.Status != placement.StatusSuccess ||
		v.BestVP != "FRA" || v.BestRTTMs != 1.8 || len(v.Candidates) != 4 || v.Candidates[0] != (placement.Candidate{PoP: "FRA", RTTMs: 1.8}) {
		t.Errorf("verdict %+v", v)
	}
	if v.Location == nil || v.Location.RadiusKm != float64(int(v.Location.RadiusKm)) || v.Location.Lat*1e4 != float64(int(v.Location.Lat*1e4)) {
		t.Errorf("location not rounded to 0.0001 degree and 1 km: %+v", v.Location)
	}
	// The JSON field names are the stable interface of FORMAT.md.
	for _, field := range []string{`"target":`, `"verdict":`, `"status":`, `"best_vp":`, `"best_rtt_ms":`, `"location":{"lat":`, `"radius_km":`, `"confidence":`, `"candidates":[{"pop":"FRA","rtt_ms":1.8}`} {
		b, _ := json.Marshal(v)
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("output lacks %s: %s", field, b)
		}
	}
}

func TestNewVerdictAnycast(t *testing.T) {
	r := triangulate.Result{
		Target: "a", Verdict: placement.VerdictAnycast, Status: placement.StatusUnsupportedApplication,
		Best:       placement.Candidate{PoP: "FRA", RTTMs: 1.23456},
		Instances:  []triangulate.Instance{{VP: "FRA", Point: geo.Point{Lat: 50.123456, Lon: 8.654321}, City: "Frankfurt", PoP: "FRA", RadiusKm: 120.6}},
		Violations: []triangulate.Violation{{VP: "SYD", Conflicts: 3}},
		Flags:      triangulate.FlagSpeedOfLight,
	}
	v := triangulate.NewVerdict(r)
	want := triangulate.VerdictInstance{Lat: 50.1235, Lon: 8.6543, City: "Frankfurt", PoP: "FRA", VP: "FRA", RadiusKm: 121}
	if v.Location != nil || len(v.Instances) != 1 || v.Instances[0] != want || v.BestRTTMs != 1.235 {
		t.Errorf("verdict %+v", v)
	}
	if len(v.Violations) != 1 || v.Violations[0] != (triangulate.VerdictViolation{VP: "SYD", Conflicts: 3}) || len(v.Notes) != 1 || !strings.Contains(v.Notes[0], "SYD") {
		t.Errorf("violations %+v notes %q", v.Violations, v.Notes)
	}
}
