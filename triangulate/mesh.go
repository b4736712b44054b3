package triangulate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/vantage-edge/vantage/geo"
)

// This file is the PoP mesh's way to a Calibration: the fleet's PoPs measuring each other (the scheduler
// reads them from Redis) or a mesh given to "vantage triangulate --mesh" as JSON Lines (FORMAT.md) both end
// in MeshCalibration, so that the CLI calibrates exactly as the fleet does.

// MaxMeshLineBytes bounds one line of a mesh file: a pair is about 100 bytes.
const MaxMeshLineBytes = 64 << 10

// MaxMeshRTTMs is the largest mesh RTT accepted, as Config.MaxRTTMs bounds a target's: above it the value is a
// unit or clock bug, not a network.
const MaxMeshRTTMs = 5000

// MeshRTT is one measured pair of a mesh: Src measured Dst at RTTMs (a minimum RTT, ms); the points are the
// listed locations of the two sites.
type MeshRTT struct {
	Src, Dst           string
	SrcPoint, DstPoint geo.Point
	RTTMs              float64
}

// ErrMesh is wrapped by every error about a mesh's content.
var ErrMesh = errors.New("triangulate: invalid mesh")

// MeshCalibration fits the calibration of a mesh (FitCalibration on MeshPairs): each site's line from its
// RTTs to the others, and the sites whose listed location contradicts their RTTs as Suspects. A pair
// measured more than once keeps its smallest RTT. It refuses, wrapping ErrMesh and naming the pair, an empty
// code, a pair of a site with itself, an RTT that is NaN, infinite, negative or above MaxMeshRTTMs, a location
// out of range and a site listed at two locations.
func MeshCalibration(rtts []MeshRTT, cc CalibrationConfig) (*Calibration, error) {
	sites := map[string]geo.Point{}
	best := map[[2]string]float64{}
	site := func(i int, code string, p geo.Point) error {
		if !p.Valid() {
			return fmt.Errorf("%w: pair %d (%s-%s): %s at %v: latitude or longitude out of range", ErrMesh, i, rtts[i].Src, rtts[i].Dst, code, p)
		}
		if q, ok := sites[code]; ok && q != p {
			return fmt.Errorf("%w: pair %d (%s-%s): %s at %v, but at %v in an earlier pair", ErrMesh, i, rtts[i].Src, rtts[i].Dst, code, p, q)
		}
		sites[code] = p
		return nil
	}
	for i, m := range rtts {
		switch {
		case m.Src == "" || m.Dst == "":
			return nil, fmt.Errorf("%w: pair %d: empty site code (src %q, dst %q)", ErrMesh, i, m.Src, m.Dst)
		case m.Src == m.Dst:
			return nil, fmt.Errorf("%w: pair %d: %s measured itself", ErrMesh, i, m.Src)
		}
		if err := checkMeshRTT(m.RTTMs); err != nil {
			return nil, fmt.Errorf("%w: pair %d (%s-%s): rtt_ms %v: %w", ErrMesh, i, m.Src, m.Dst, m.RTTMs, err)
		}
		if err := site(i, m.Src, m.SrcPoint); err != nil {
			return nil, err
		}
		if err := site(i, m.Dst, m.DstPoint); err != nil {
			return nil, err
		}
		k := [2]string{m.Src, m.Dst}
		if v, ok := best[k]; !ok || m.RTTMs < v {
			best[k] = m.RTTMs
		}
	}
	list := make([]geo.PoP, 0, len(sites))
	for _, code := range slices.Sorted(maps.Keys(sites)) {
		list = append(list, geo.PoP{Code: code, Point: sites[code]})
	}
	pairs := MeshPairs(list, func(src, dst string) (float64, bool) {
		v, ok := best[[2]string{src, dst}]
		return v, ok
	})
	return FitCalibration(pairs, cc)
}

// checkMeshRTT says what is wrong with a mesh RTT, or nil.
func checkMeshRTT(v float64) error {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return errors.New("not a finite number")
	case v < 0:
		return errors.New("negative")
	case v > MaxMeshRTTMs:
		return fmt.Errorf("above %d ms", MaxMeshRTTMs)
	}
	return nil
}

// WireMeshPair is one line of a mesh file: Src measured Dst at RTTMs. Each site's lat and lon are both given
// or both left out (look the code up).
type WireMeshPair struct {
	Src    string   `json:"src"`
	SrcLat *float64 `json:"src_lat,omitempty"`
	SrcLon *float64 `json:"src_lon,omitempty"`
	Dst    string   `json:"dst"`
	DstLat *float64 `json:"dst_lat,omitempty"`
	DstLon *float64 `json:"dst_lon,omitempty"`
	RTTMs  *float64 `json:"rtt_ms"`
}

// DecodeMeshPair parses one mesh line (one JSON object, unknown fields refused), resolving a site given
// without coordinates with loc. Errors name the field.
func DecodeMeshPair(line []byte, loc Locator) (MeshRTT, error) {
	var w WireMeshPair
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return MeshRTT{}, fmt.Errorf("%q: %s is not a %s", te.Field, te.Value, te.Type)
		}
		return MeshRTT{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return MeshRTT{}, errors.New("invalid JSON: more than one value on the line")
	}
	m := MeshRTT{Src: strings.TrimSpace(w.Src), Dst: strings.TrimSpace(w.Dst)}
	switch {
	case m.Src == "":
		return m, errors.New(`"src" is missing or empty`)
	case m.Dst == "":
		return m, errors.New(`"dst" is missing or empty`)
	case m.Src == m.Dst:
		return m, fmt.Errorf(`"dst": %q is "src": a site does not measure itself`, w.Dst)
	case w.RTTMs == nil:
		return m, errors.New(`"rtt_ms" is missing`)
	}
	if err := checkMeshRTT(*w.RTTMs); err != nil {
		return m, fmt.Errorf(`"rtt_ms": %v: %w`, *w.RTTMs, err)
	}
	m.RTTMs = *w.RTTMs
	var err error
	if m.SrcPoint, err = meshSite(loc, "src", w.Src, w.SrcLat, w.SrcLon); err != nil {
		return m, err
	}
	if m.DstPoint, err = meshSite(loc, "dst", w.Dst, w.DstLat, w.DstLon); err != nil {
		return m, err
	}
	return m, nil
}

// meshSite returns a site's coordinates: given (and in range), else from loc; field is "src" or "dst".
func meshSite(loc Locator, field, code string, lat, lon *float64) (geo.Point, error) {
	switch {
	case lat != nil && lon != nil:
		p := geo.Point{Lat: *lat, Lon: *lon}
		if !p.Valid() {
			return p, fmt.Errorf(`"%s_lat", "%s_lon": %v, %v: out of range (latitude -90..90, longitude -180..180)`, field, field, *lat, *lon)
		}
		return p, nil
	case lat != nil:
		return geo.Point{}, fmt.Errorf(`"%s_lat" without "%s_lon": give both or neither`, field, field)
	case lon != nil:
		return geo.Point{}, fmt.Errorf(`"%s_lon" without "%s_lat": give both or neither`, field, field)
	}
	if loc != nil {
		if p, ok := loc(code); ok {
			return p, nil
		}
	}
	return geo.Point{}, fmt.Errorf(`"%s": %q: no %s_lat/%s_lon and not a known PoP code (embedded catalogue or --pops)`, field, code, field, field)
}

// ReadMesh reads a mesh as JSON Lines (one WireMeshPair per line, blank lines ignored), resolving sites given
// without coordinates with loc. It stops at the first bad line with a *LineError naming the line and the
// field; a site listed at two locations is such an error too.
func ReadMesh(r io.Reader, loc Locator) ([]MeshRTT, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxMeshLineBytes)
	var out []MeshRTT
	seen := map[string]geo.Point{}
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		m, err := DecodeMeshPair(text, loc)
		if err == nil {
			err = sameSite(seen, "src", m.Src, m.SrcPoint)
		}
		if err == nil {
			err = sameSite(seen, "dst", m.Dst, m.DstPoint)
		}
		if err != nil {
			return nil, &LineError{Line: line, Err: fmt.Errorf("%w: %w", ErrMesh, err)}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{Line: line + 1, Err: fmt.Errorf("%w: longer than %d bytes", ErrMesh, MaxMeshLineBytes)}
		}
		return nil, fmt.Errorf("triangulate: reading the mesh: %w", err)
	}
	return out, nil
}

func sameSite(seen map[string]geo.Point, field, code string, p geo.Point) error {
	if q, ok := seen[code]; ok && q != p {
		return fmt.Errorf(`"%s": %s at %v, but at %v on an earlier line`, field, code, p, q)
	}
	seen[code] = p
	return nil
}
