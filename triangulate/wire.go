package triangulate

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
	"strconv"
	"strings"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// This file is the wire format of "vantage triangulate" (FORMAT.md, and the package documentation): a Decoder
// reading targets from JSON Lines or CSV, and the Verdict written for each. It does I/O only through the
// io.Reader and io.Writer it is given.

// MaxLineBytes bounds one JSONL line (a target with thousands of measurements fits easily).
const MaxLineBytes = 16 << 20

// peekLimit bounds the look at the first line when detecting CSV: a longer first line is judged on its first
// 64 KiB.
const peekLimit = 1 << 16

// WireTarget is one JSONL input line: a target and its measurements.
type WireTarget struct {
	Target       string            `json:"target"`
	Measurements []WireMeasurement `json:"measurements"`
	Previous     string            `json:"previous,omitempty"`
	DNS          []WireDNS         `json:"dns,omitempty"`
}

// WireMeasurement is one vantage point's RTT in a WireTarget. Lat and Lon are both set or both nil (look VP
// up); RTTMs is required.
type WireMeasurement struct {
	VP    string   `json:"vp"`
	Lat   *float64 `json:"lat,omitempty"`
	Lon   *float64 `json:"lon,omitempty"`
	RTTMs *float64 `json:"rtt_ms"`
}

// WireDNS is one vantage point's DNS evidence in a WireTarget.
type WireDNS struct {
	VP      string   `json:"vp"`
	Answers []string `json:"answers,omitempty"`
	Chaos   string   `json:"chaos,omitempty"`
}

// Locator resolves a vantage point code given without coordinates; ok is false for an unknown code.
type Locator func(vp string) (p geo.Point, ok bool)

// PoPLocator returns a Locator looking a code up (case-insensitive) in pops first, then in the embedded
// Cloudflare catalogue (geo.LookupPoP). pops may be nil.
func PoPLocator(pops []geo.PoP) Locator {
	byCode := make(map[string]geo.Point, len(pops))
	for _, p := range pops {
		byCode[strings.ToUpper(p.Code)] = p.Point
	}
	return func(vp string) (geo.Point, bool) {
		if p, ok := byCode[strings.ToUpper(vp)]; ok {
			return p, true
		}
		if p, ok := geo.LookupPoP(vp); ok {
			return p.Point, true
		}
		return geo.Point{}, false
	}
}

// locateVP returns the vantage point's coordinates: given, else from loc.
func locateVP(loc Locator, vp string, lat, lon *float64) (geo.Point, error) {
	switch {
	case lat != nil && lon != nil:
		return geo.Point{Lat: *lat, Lon: *lon}, nil
	case lat != nil || lon != nil:
		return geo.Point{}, fmt.Errorf("vp %q: give both \"lat\" and \"lon\" or neither", vp)
	}
	if loc != nil {
		if p, ok := loc(vp); ok {
			return p, nil
		}
	}
	return geo.Point{}, fmt.Errorf("vp %q: no lat/lon and not a known PoP code (embedded catalogue or --pops)", vp)
}

// Input checks a parsed target and resolves its vantage points' coordinates with loc. It does not validate
// the RTTs: Engine.Decide does.
func (tg *WireTarget) Input(loc Locator) (Input, error) {
	in := Input{Target: tg.Target, Previous: tg.Previous}
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
		p, err := locateVP(loc, m.VP, m.Lat, m.Lon)
		if err != nil {
			return in, fmt.Errorf("target %q: %w", tg.Target, err)
		}
		in.Measurements = append(in.Measurements, Measurement{VP: m.VP, Point: p, RTTMs: *m.RTTMs})
	}
	for _, d := range tg.DNS {
		in.DNS = append(in.DNS, DNSAnswer{VP: d.VP, Addrs: d.Answers, ServerID: d.Chaos})
	}
	return in, nil
}

// DecodeTarget parses one JSONL line (one JSON object, unknown fields refused) into an Input, resolving
// vantage points given without coordinates with loc.
func DecodeTarget(line []byte, loc Locator) (Input, error) {
	var tg WireTarget
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tg); err != nil {
		return Input{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return Input{}, errors.New("invalid JSON: more than one value on the line")
	}
	return tg.Input(loc)
}

// LineError is a bad input line (or CSV row): the Decoder skips it and goes on.
type LineError struct {
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// HeaderError is a CSV header lacking a required column: the input cannot be read at all.
type HeaderError struct {
	Header  []string
	Missing string // the first required column not found
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("triangulate: CSV header %q has no %q column (want target,vp,lat,lon,rtt_ms)", strings.Join(e.Header, ","), e.Missing)
}

// A Decoder reads targets in the input format of "vantage triangulate": JSON Lines, or CSV when the first
// non-blank line is a header naming a target column. JSONL targets stream one per line; CSV rows are grouped
// by target in order of first appearance, so CSV targets come after the whole input has been read.
type Decoder struct {
	br  *bufio.Reader
	cfg Config
	loc Locator

	started bool
	sc      *bufio.Scanner // JSONL
	line    int            // JSONL: lines read

	cr      *csv.Reader // CSV, until its end
	col     map[string]int
	byName  map[string]int // target -> index in pending
	pending []csvTarget    // CSV targets, returned once the rows are all read
}

// csvTarget collects one target's rows.
type csvTarget struct {
	line  int // of its first row
	input Input
}

// NewDecoder returns a Decoder reading r. loc resolves vantage points given without coordinates; cfg bounds
// the measurements of CSV rows (ValidateMeasurement), so a bad row drops only itself.
func NewDecoder(r io.Reader, cfg Config, loc Locator) *Decoder {
	return &Decoder{br: bufio.NewReaderSize(r, 64<<10), cfg: cfg, loc: loc}
}

// Next returns the next target and the line it starts on. A bad line or row is a *LineError: skip it and
// call Next again. io.EOF ends the input; any other error (ctx done, a read error, a *HeaderError, a line
// longer than MaxLineBytes) ends it too.
func (d *Decoder) Next(ctx context.Context) (Input, int, error) {
	if !d.started {
		d.started = true
		csvInput, err := looksLikeCSV(d.br)
		if err != nil {
			return Input{}, 0, fmt.Errorf("triangulate: reading input: %w", err)
		}
		if csvInput {
			if err := d.startCSV(); err != nil {
				return Input{}, 0, err
			}
		} else {
			d.sc = bufio.NewScanner(d.br)
			d.sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
		}
	}
	if d.sc != nil {
		return d.nextJSONL(ctx)
	}
	return d.nextCSV(ctx)
}

// looksLikeCSV peeks at the first non-blank line: CSV when it is a header naming a target column (JSONL lines
// start with "{").
func looksLikeCSV(br *bufio.Reader) (bool, error) {
	for n := 512; ; n *= 2 {
		buf, err := br.Peek(n)
		trimmed := bytes.TrimLeft(buf, " \t\r\n\ufeff")
		if i := bytes.IndexByte(trimmed, '\n'); i >= 0 || err != nil || n >= peekLimit {
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

func (d *Decoder) nextJSONL(ctx context.Context) (Input, int, error) {
	for d.sc.Scan() {
		d.line++
		if err := ctx.Err(); err != nil {
			return Input{}, 0, fmt.Errorf("triangulate: %w", err)
		}
		text := bytes.TrimSpace(d.sc.Bytes())
		if len(text) == 0 {
			continue
		}
		in, err := DecodeTarget(text, d.loc)
		if err != nil {
			return Input{}, d.line, &LineError{Line: d.line, Err: err}
		}
		return in, d.line, nil
	}
	if err := d.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Input{}, 0, fmt.Errorf("triangulate: line %d: longer than %d bytes: %w", d.line+1, MaxLineBytes, err)
		}
		return Input{}, 0, fmt.Errorf("triangulate: reading input: %w", err)
	}
	return Input{}, 0, io.EOF
}

// startCSV reads the header: target, vp and rtt_ms are required, lat and lon optional, in any order.
func (d *Decoder) startCSV() error {
	d.cr = csv.NewReader(d.br)
	d.cr.FieldsPerRecord = -1
	d.cr.TrimLeadingSpace = true
	header, err := d.cr.Read()
	if err != nil {
		return fmt.Errorf("triangulate: CSV header: %w", err)
	}
	d.col = map[string]int{}
	for i, h := range header {
		d.col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	for _, need := range []string{"target", "vp", "rtt_ms"} {
		if _, ok := d.col[need]; !ok {
			return &HeaderError{Header: header, Missing: need}
		}
	}
	d.byName = map[string]int{}
	return nil
}

// nextCSV reads rows until a bad one (returned as a *LineError) or the end, then hands out the targets.
func (d *Decoder) nextCSV(ctx context.Context) (Input, int, error) {
	for d.cr != nil {
		if err := ctx.Err(); err != nil {
			return Input{}, 0, fmt.Errorf("triangulate: %w", err)
		}
		rec, err := d.cr.Read()
		if errors.Is(err, io.EOF) {
			d.cr = nil
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return Input{}, pe.Line, &LineError{Line: pe.Line, Err: err}
			}
			return Input{}, 0, fmt.Errorf("triangulate: reading CSV: %w", err)
		}
		line, _ := d.cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		name, m, err := d.csvRow(rec)
		if err != nil {
			return Input{}, line, &LineError{Line: line, Err: err}
		}
		i, ok := d.byName[name]
		if !ok {
			i = len(d.pending)
			d.byName[name] = i
			d.pending = append(d.pending, csvTarget{line: line, input: Input{Target: name}})
		}
		d.pending[i].input.Measurements = append(d.pending[i].input.Measurements, m)
	}
	if len(d.pending) == 0 {
		return Input{}, 0, io.EOF
	}
	tg := d.pending[0]
	d.pending[0] = csvTarget{}
	d.pending = d.pending[1:]
	return tg.input, tg.line, nil
}

// cell returns the named column's trimmed value in rec and whether it is non-empty.
func (d *Decoder) cell(rec []string, name string) (string, bool) {
	i, ok := d.col[name]
	if !ok || i >= len(rec) {
		return "", false
	}
	s := strings.TrimSpace(rec[i])
	return s, s != ""
}

// csvRow parses one CSV row into its target and a valid measurement.
func (d *Decoder) csvRow(rec []string) (string, Measurement, error) {
	var m Measurement
	name, _ := d.cell(rec, "target")
	vp, _ := d.cell(rec, "vp")
	rttS, hasRTT := d.cell(rec, "rtt_ms")
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
		if s, ok := d.cell(rec, c); ok {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return "", m, fmt.Errorf("target %q: vp %q: %s %q: %w", name, vp, c, s, err)
			}
			coords[i] = &v
		}
	}
	p, err := locateVP(d.loc, vp, coords[0], coords[1])
	if err != nil {
		return "", m, fmt.Errorf("target %q: %w", name, err)
	}
	m = Measurement{VP: vp, Point: p, RTTMs: rtt}
	if err := ValidateMeasurement(&d.cfg, m); err != nil {
		return "", m, fmt.Errorf("target %q: %w", name, err)
	}
	return name, m, nil
}

// Verdict is one output line of "vantage triangulate": a Result, rounded (RTTs to 0.001 ms, coordinates to
// 0.0001 degree, radii to 1 km), with the field names of FORMAT.md.
type Verdict struct {
	Target     string                `json:"target"`
	Verdict    placement.Verdict     `json:"verdict"`
	Status     placement.Status      `json:"status,omitempty"`
	BestVP     string                `json:"best_vp"`
	BestRTTMs  float64               `json:"best_rtt_ms"`
	Location   *VerdictLocation      `json:"location,omitempty"`
	Instances  []VerdictInstance     `json:"instances,omitempty"`
	Confidence float64               `json:"confidence"`
	Candidates []placement.Candidate `json:"candidates,omitempty"`
	Violations []VerdictViolation    `json:"violations,omitempty"`
	Notes      []string              `json:"notes,omitempty"`
}

// VerdictLocation is a Verdict's location estimate: centre and radius of the feasible region.
type VerdictLocation struct {
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	RadiusKm float64 `json:"radius_km"`
}

// VerdictInstance is one anycast instance of a Verdict.
type VerdictInstance struct {
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	City     string  `json:"city,omitempty"`
	PoP      string  `json:"pop,omitempty"`
	VP       string  `json:"vp"`
	RadiusKm float64 `json:"radius_km"`
}

// VerdictViolation is a vantage point a Verdict set aside for breaking the speed-of-light bound.
type VerdictViolation struct {
	VP        string `json:"vp"`
	Conflicts int    `json:"conflicts"`
}

// NewVerdict returns r's output line. It copies what it keeps: r may alias the engine's buffers.
func NewVerdict(r Result) Verdict {
	v := Verdict{
		Target:     r.Target,
		Verdict:    r.Verdict,
		Status:     r.Status,
		BestVP:     r.Best.PoP,
		BestRTTMs:  round(r.Best.RTTMs, 1000),
		Confidence: r.Confidence,
		Notes:      r.Notes(),
	}
	if r.HasLoc {
		v.Location = &VerdictLocation{Lat: round(r.Location.Lat, 1e4), Lon: round(r.Location.Lon, 1e4), RadiusKm: math.Round(r.Location.RadiusKm)}
	}
	for _, c := range r.Candidates {
		v.Candidates = append(v.Candidates, placement.Candidate{PoP: c.PoP, RTTMs: round(c.RTTMs, 1000)})
	}
	for _, in := range r.Instances {
		v.Instances = append(v.Instances, VerdictInstance{Lat: round(in.Point.Lat, 1e4), Lon: round(in.Point.Lon, 1e4), City: in.City, PoP: in.PoP, VP: in.VP, RadiusKm: math.Round(in.RadiusKm)})
	}
	for _, x := range r.Violations {
		v.Violations = append(v.Violations, VerdictViolation{VP: x.VP, Conflicts: x.Conflicts})
	}
	return v
}

// WriteVerdict writes r's Verdict to w as one JSON line.
func WriteVerdict(w io.Writer, r Result) error {
	b, err := json.Marshal(NewVerdict(r))
	if err != nil {
		return fmt.Errorf("encoding the verdict: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func round(x, scale float64) float64 { return math.Round(x*scale) / scale }
