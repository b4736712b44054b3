package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/triangulate"
)

func init() {
	register(command{
		name:    "triangulate",
		summary: "judge targets from RTT measurements: best PoP, location, unicast/anycast (JSONL or CSV in, JSONL out)",
		run:     runTriangulate,
	})
}

// triangulateStdin is where "vantage triangulate" reads when --in is "-" (a seam for tests).
var triangulateStdin io.Reader = os.Stdin

// maxTriangulateLine bounds one JSONL line (a target with thousands of measurements fits easily).
const maxTriangulateLine = 16 << 20

// The input and output formats are documented in triangulate/doc.go and triangulate/FORMAT.md.

type triTarget struct {
	Target       string           `json:"target"`
	Measurements []triMeasurement `json:"measurements"`
	Previous     string           `json:"previous,omitempty"`
	DNS          []triDNS         `json:"dns,omitempty"`
}

type triMeasurement struct {
	VP    string   `json:"vp"`
	Lat   *float64 `json:"lat,omitempty"`
	Lon   *float64 `json:"lon,omitempty"`
	RTTMs *float64 `json:"rtt_ms"`
}

type triDNS struct {
	VP      string   `json:"vp"`
	Answers []string `json:"answers,omitempty"`
	Chaos   string   `json:"chaos,omitempty"`
}

type triVerdict struct {
	Target     string                `json:"target"`
	Verdict    placement.Verdict     `json:"verdict"`
	Status     placement.Status      `json:"status,omitempty"`
	BestVP     string                `json:"best_vp"`
	BestRTTMs  float64               `json:"best_rtt_ms"`
	Location   *triLocation          `json:"location,omitempty"`
	Instances  []triInstance         `json:"instances,omitempty"`
	Confidence float64               `json:"confidence"`
	Candidates []placement.Candidate `json:"candidates,omitempty"`
	Violations []triViolation        `json:"violations,omitempty"`
	Notes      []string              `json:"notes,omitempty"`
}

type triLocation struct {
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	RadiusKm float64 `json:"radius_km"`
}

type triInstance struct {
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	City     string  `json:"city,omitempty"`
	PoP      string  `json:"pop,omitempty"`
	VP       string  `json:"vp"`
	RadiusKm float64 `json:"radius_km"`
}

type triViolation struct {
	VP        string `json:"vp"`
	Conflicts int    `json:"conflicts"`
}

// triangulator turns parsed targets into verdict lines and counts the bad ones.
type triangulator struct {
	engine *triangulate.Engine
	pops   map[string]geo.Point // --pops entries by upper-case code
	out    *bufio.Writer
	stderr io.Writer
	bad    int
}

func runTriangulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("triangulate", "< measurements.jsonl|csv > verdicts.jsonl", stderr)
	popsFile := fs.String("pops", "", "PoP list resolving vp codes given without lat/lon (geo.LoadPoPsFile formats: Cloudflare/CloudFront JSON, CSV); codes not in it fall back to the embedded Cloudflare catalogue")
	in := fs.String("in", "-", "input file, JSONL or CSV (detected by its first line); - for stdin")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: triangulate: unexpected argument %q", errUsage, fs.Arg(0))
	}
	t := &triangulator{pops: map[string]geo.Point{}, out: bufio.NewWriter(stdout), stderr: stderr}
	cities := geo.PoPs()
	if *popsFile != "" {
		list, err := geo.LoadPoPsFile(*popsFile)
		if err != nil {
			return fmt.Errorf("%w: triangulate: --pops: %w", errUsage, err)
		}
		for _, p := range list {
			t.pops[strings.ToUpper(p.Code)] = p.Point
		}
		cities = append(list, cities...)
	}
	cfg := triangulate.DefaultConfig()
	cfg.Cities = cities
	engine, err := triangulate.NewEngine(cfg)
	if err != nil {
		return fmt.Errorf("triangulate: %w", err)
	}
	t.engine = engine

	var r io.Reader = triangulateStdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("triangulate: --in: %w", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 64<<10)
	csvInput, err := looksLikeCSV(br)
	if err != nil {
		return fmt.Errorf("triangulate: reading input: %w", err)
	}
	if csvInput {
		err = t.readCSV(ctx, br)
	} else {
		err = t.readJSONL(ctx, br)
	}
	if ferr := t.out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("triangulate: writing output: %w", ferr)
	}
	if err != nil {
		return err
	}
	if t.bad > 0 {
		fmt.Fprintf(stderr, "vantage triangulate: %d bad input line(s) skipped\n", t.bad)
		return exitError{code: 1}
	}
	return nil
}

// looksLikeCSV peeks at the first non-blank line: CSV when it is a header naming a target column (JSONL lines
// start with "{").
func looksLikeCSV(br *bufio.Reader) (bool, error) {
	for n := 512; ; n *= 2 {
		buf, err := br.Peek(n)
		trimmed := bytes.TrimLeft(buf, " \t\r\n\ufeff")
		if i := bytes.IndexByte(trimmed, '\n'); i >= 0 || err != nil || n >= 1<<16 {
			if i >= 0 {
				trimmed = trimmed[:i]
			}
			if len(trimmed) == 0 || trimmed[0] == '{' {
				if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
					return false, err
				}
				return false, nil
			}
			return bytes.Contains(bytes.ToLower(trimmed), []byte("target")), nil
		}
	}
}

func (t *triangulator) badLine(line int, err error) {
	t.bad++
	fmt.Fprintf(t.stderr, "vantage triangulate: line %d: %v\n", line, err)
}

func (t *triangulator) readJSONL(ctx context.Context, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxTriangulateLine)
	line := 0
	for sc.Scan() {
		line++
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("triangulate: %w", err)
		}
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var tg triTarget
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tg); err != nil {
			t.badLine(line, fmt.Errorf("invalid JSON: %w", err))
			continue
		}
		if dec.More() {
			t.badLine(line, errors.New("invalid JSON: more than one value on the line"))
			continue
		}
		in, err := t.input(tg)
		if err != nil {
			t.badLine(line, err)
			continue
		}
		if err := t.decide(in); err != nil {
			t.badLine(line, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("triangulate: line %d: longer than %d bytes: %w", line+1, maxTriangulateLine, err)
		}
		return fmt.Errorf("triangulate: reading input: %w", err)
	}
	return nil
}

// input checks a parsed target and resolves its vantage points' coordinates.
func (t *triangulator) input(tg triTarget) (triangulate.Input, error) {
	in := triangulate.Input{Target: tg.Target, Previous: tg.Previous}
	if tg.Target == "" {
		return in, errors.New(`"target" is missing or empty`)
	}
	if len(tg.Measurements) == 0 {
		return in, fmt.Errorf("target %q: \"measurements\" is missing or empty", tg.Target)
	}
	for i, m := range tg.Measurements {
		if m.VP == "" {
			return in, fmt.Errorf("target %q: measurement %d: \"vp\" is missing or empty", tg.Target, i)
		}
		if m.RTTMs == nil {
			return in, fmt.Errorf("target %q: vp %q: \"rtt_ms\" is missing", tg.Target, m.VP)
		}
		p, err := t.locate(m.VP, m.Lat, m.Lon)
		if err != nil {
			return in, fmt.Errorf("target %q: %w", tg.Target, err)
		}
		in.Measurements = append(in.Measurements, triangulate.Measurement{VP: m.VP, Point: p, RTTMs: *m.RTTMs})
	}
	for _, d := range tg.DNS {
		in.DNS = append(in.DNS, triangulate.DNSAnswer{VP: d.VP, Addrs: d.Answers, ServerID: d.Chaos})
	}
	return in, nil
}

// locate returns the vantage point's coordinates: given, else from --pops, else from the embedded catalogue.
func (t *triangulator) locate(vp string, lat, lon *float64) (geo.Point, error) {
	switch {
	case lat != nil && lon != nil:
		return geo.Point{Lat: *lat, Lon: *lon}, nil
	case lat != nil || lon != nil:
		return geo.Point{}, fmt.Errorf("vp %q: give both \"lat\" and \"lon\" or neither", vp)
	}
	if p, ok := t.pops[strings.ToUpper(vp)]; ok {
		return p, nil
	}
	if p, ok := geo.LookupPoP(vp); ok {
		return p.Point, nil
	}
	return geo.Point{}, fmt.Errorf("vp %q: no lat/lon and not a known PoP code (embedded catalogue or --pops)", vp)
}

func (t *triangulator) decide(in triangulate.Input) error {
	r, err := t.engine.Decide(in)
	if err != nil {
		return err
	}
	v := triVerdict{
		Target:     r.Target,
		Verdict:    r.Verdict,
		Status:     r.Status,
		BestVP:     r.Best.PoP,
		BestRTTMs:  round(r.Best.RTTMs, 1000),
		Confidence: r.Confidence,
		Notes:      r.Notes(),
	}
	if r.HasLoc {
		v.Location = &triLocation{Lat: round(r.Location.Lat, 1e4), Lon: round(r.Location.Lon, 1e4), RadiusKm: math.Round(r.Location.RadiusKm)}
	}
	for _, c := range r.Candidates {
		v.Candidates = append(v.Candidates, placement.Candidate{PoP: c.PoP, RTTMs: round(c.RTTMs, 1000)})
	}
	for _, in := range r.Instances {
		v.Instances = append(v.Instances, triInstance{Lat: round(in.Point.Lat, 1e4), Lon: round(in.Point.Lon, 1e4), City: in.City, PoP: in.PoP, VP: in.VP, RadiusKm: math.Round(in.RadiusKm)})
	}
	for _, x := range r.Violations {
		v.Violations = append(v.Violations, triViolation{VP: x.VP, Conflicts: x.Conflicts})
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the verdict: %w", err)
	}
	t.out.Write(b)
	return t.out.WriteByte('\n')
}

func round(x, scale float64) float64 { return math.Round(x*scale) / scale }

// csvTarget collects one target's rows.
type csvTarget struct {
	line  int // of its first row
	input triangulate.Input
}

// csvRow parses one CSV row into its target and a valid measurement.
func (t *triangulator) csvRow(rec []string, cell func([]string, string) (string, bool)) (string, triangulate.Measurement, error) {
	var m triangulate.Measurement
	name, _ := cell(rec, "target")
	vp, _ := cell(rec, "vp")
	rttS, hasRTT := cell(rec, "rtt_ms")
	switch {
	case name == "":
		return "", m, errors.New(`"target" is empty`)
	case vp == "":
		return "", m, fmt.Errorf("target %q: \"vp\" is empty", name)
	case !hasRTT:
		return "", m, fmt.Errorf("target %q: vp %q: \"rtt_ms\" is empty", name, vp)
	}
	rtt, err := strconv.ParseFloat(rttS, 64)
	if err != nil {
		return "", m, fmt.Errorf("target %q: vp %q: rtt_ms %q: %w", name, vp, rttS, err)
	}
	var coords [2]*float64
	for i, c := range []string{"lat", "lon"} {
		if s, ok := cell(rec, c); ok {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return "", m, fmt.Errorf("target %q: vp %q: %s %q: %w", name, vp, c, s, err)
			}
			coords[i] = &v
		}
	}
	p, err := t.locate(vp, coords[0], coords[1])
	if err != nil {
		return "", m, fmt.Errorf("target %q: %w", name, err)
	}
	m = triangulate.Measurement{VP: vp, Point: p, RTTMs: rtt}
	cfg := t.engine.Config()
	if err := triangulate.ValidateMeasurement(&cfg, m); err != nil {
		return "", m, fmt.Errorf("target %q: %w", name, err)
	}
	return name, m, nil
}

// readCSV reads the CSV form: a header naming target, vp, lat, lon, rtt_ms (any order; lat/lon cells may be
// empty for known PoP codes), then one row per measurement, grouped by target in order of first appearance.
// A bad row is reported and skipped; its target is still judged on its good rows.
func (t *triangulator) readCSV(ctx context.Context, r io.Reader) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("triangulate: CSV header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	for _, need := range []string{"target", "vp", "rtt_ms"} {
		if _, ok := col[need]; !ok {
			return fmt.Errorf("%w: triangulate: CSV header %q has no %q column (want target,vp,lat,lon,rtt_ms)", errUsage, strings.Join(header, ","), need)
		}
	}
	cell := func(rec []string, name string) (string, bool) {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return "", false
		}
		s := strings.TrimSpace(rec[i])
		return s, s != ""
	}
	byName := map[string]*csvTarget{}
	var order []*csvTarget
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("triangulate: %w", err)
		}
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				t.badLine(pe.Line, err)
				continue
			}
			return fmt.Errorf("triangulate: reading CSV: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		name, m, err := t.csvRow(rec, cell)
		if err != nil {
			t.badLine(line, err)
			continue
		}
		tg := byName[name]
		if tg == nil {
			tg = &csvTarget{line: line, input: triangulate.Input{Target: name}}
			byName[name] = tg
			order = append(order, tg)
		}
		tg.input.Measurements = append(tg.input.Measurements, m)
	}
	for _, tg := range order {
		if err := t.decide(tg.input); err != nil {
			t.badLine(tg.line, err)
		}
	}
	return nil
}
