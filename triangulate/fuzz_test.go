package triangulate

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/placement"
)

// FuzzDecide feeds the engine arbitrary vectors (decoded from bytes: lat, lon, RTT per VP) and checks it never
// panics and always answers within its contract.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{}, "")
	f.Add(make([]byte, 24*3), "V0")
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\xf0\x7f0123456789abcdef0123456789abcdef"), "V1")
	f.Fuzz(func(t *testing.T, data []byte, prev string) {
		var ms []Measurement
		for i := 0; len(data) >= 24 && i < 64; i++ {
			lat := math.Float64frombits(binary.LittleEndian.Uint64(data))
			lon := math.Float64frombits(binary.LittleEndian.Uint64(data[8:]))
			rtt := math.Float64frombits(binary.LittleEndian.Uint64(data[16:]))
			data = data[24:]
			// Fold finite values into range half of the time, so valid vectors are common too.
			if i%2 == 0 && !math.IsNaN(lat+lon+rtt) && !math.IsInf(lat+lon+rtt, 0) {
				lat, lon, rtt = math.Mod(lat, 90), math.Mod(lon, 180), math.Mod(math.Abs(rtt), 400)
			}
			ms = append(ms, Measurement{VP: string(rune('A' + i%8)), Point: geo.Point{Lat: lat, Lon: lon}, RTTMs: rtt})
		}
		e := newEngine(t, nil)
		r, err := e.Decide(Input{Measurements: ms, Previous: prev})
		if err != nil {
			return
		}
		if r.Confidence < 0 || r.Confidence > 1 || math.IsNaN(r.Confidence) {
			t.Fatalf("confidence %v", r.Confidence)
		}
		if r.Best.PoP == "" || len(r.Candidates) == 0 {
			t.Fatalf("no best PoP: %+v", r)
		}
		if r.HasLoc && (!r.Location.Point.Valid() || math.IsNaN(r.Location.RadiusKm)) {
			t.Fatalf("location %+v", r.Location)
		}
		if r.Verdict == placement.VerdictAnycast && len(r.Instances) < 2 {
			t.Fatalf("anycast with %d instances", len(r.Instances))
		}
	})
}
