package geo_test

import (
	"errors"
	"fmt"

	"github.com/vantage-edge/vantage/geo"
)

func ExampleDistanceKm() {
	fra, _ := geo.LookupPoP("FRA")
	syd, _ := geo.LookupPoP("SYD")
	d := geo.DistanceKm(fra.Point, syd.Point)
	fmt.Printf("FRA-SYD %.0f km, at least %.0f ms RTT in fibre\n", d, geo.MinRTTMs(d))
	// Output: FRA-SYD 16499 km, at least 165 ms RTT in fibre
}

func ExampleMaxDistanceKm() {
	// A target answering in 4 ms is within ~400 km of the vantage point.
	fmt.Printf("%.0f km\n", geo.MaxDistanceKm(4))
	// Output: 400 km
}

func ExampleLookupRegion() {
	r, err := geo.LookupRegion("azure:westeurope")
	fmt.Println(r.City, r.CC, r.Lat, r.Lon, err)

	_, err = geo.LookupRegion("aws:us-east1")
	fmt.Println(err, errors.Is(err, geo.ErrUnknownRegion))
	// Output:
	// Amsterdam NL 52.3667 4.9 <nil>
	// geo: region "aws:us-east1" is not in the catalogue; did you mean "aws:us-east-1"? true
}

func ExampleLatencyModel_RTTMs() {
	m := geo.DefaultModel()
	fra, _ := geo.LookupPoP("FRA")
	lhr, _ := geo.LookupPoP("LHR")
	fmt.Printf("FRA-LHR %.0f ms (fibre bound %.1f ms, path inflation %.1f)\n",
		m.RTTMs(fra.Point, lhr.Point), geo.MinRTTMs(geo.DistanceKm(fra.Point, lhr.Point)), geo.PathInflation())
	// Output: FRA-LHR 14 ms (fibre bound 6.5 ms, path inflation 2.0)
}

func ExampleOpenGeoIP() {
	g, err := geo.OpenGeoIP("/nonexistent/GeoLite2-City.mmdb", "")
	fmt.Println(g == nil, err)
	// Output: true geo: geoip: City database /nonexistent/GeoLite2-City.mmdb: open /nonexistent/GeoLite2-City.mmdb: no such file or directory
}
