package triangulate_test

import (
	"fmt"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/triangulate"
)

func Example() {
	e, err := triangulate.NewEngine(triangulate.DefaultConfig())
	if err != nil {
		panic(err)
	}
	at := func(code string) geo.Point { p, _ := geo.LookupPoP(code); return p.Point }
	r, err := e.Decide(triangulate.Input{
		Target: "198.18.3.7",
		Measurements: []triangulate.Measurement{
			{VP: "FRA", Point: at("FRA"), RTTMs: 1.8},
			{VP: "AMS", Point: at("AMS"), RTTMs: 8.9},
			{VP: "LHR", Point: at("LHR"), RTTMs: 15.2},
			{VP: "IAD", Point: at("IAD"), RTTMs: 92.4},
		},
		Previous: "AMS", // chosen last time: FRA is better by more than both margins, so it switches
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Verdict, r.Status, r.Best.PoP, r.Best.RTTMs)
	fmt.Printf("within %.0f km of %.1f,%.1f\n", r.Location.RadiusKm, r.Location.Lat, r.Location.Lon)
	// Output:
	// unicast SUCCESS FRA 1.8
	// within 230 km of 50.0,8.5
}
