// Package geo holds Vantage's geography: PoP and cloud-region catalogues, great-circle distances, the
// speed-of-light-in-fibre bound, a measured latency model and GeoIP priors.
//
// # Catalogues
//
// PoPs (340 Cloudflare PoPs by IATA code) and Regions (267 regions of 14 cloud providers, looked up as
// "aws:us-east-1", "gcp:us-east4", "azure:westeurope") are embedded from geo/data/, derived from the shared
// data sets by geo/internal/gen (go generate ./geo); attributions are in geo/NOTICE and each file's header.
// LoadPoPsFile reads other PoP lists (the CloudFront edge locations, CSV or JSON).
//
// # Distances and the fibre bound
//
// DistanceKm is the haversine great-circle distance on a sphere of radius 6371.0088 km (within 0.5 % of the
// WGS 84 ellipsoid). Light in fibre covers 2/3 c, so a reply after rttMs came from at most
// MaxDistanceKm(rttMs) = rttMs/2 x 2/3 c ≈ 99.93 km per ms of RTT; MinRTTMs is the inverse.
//
// # Latency model
//
// LatencyModel.RTTMs models the minimum RTT between any two coordinates from the WonderProxy 2020
// server-to-server pings (geo/data/wonderproxy-rtt.csv: 244 cities, 29,610 pairs, the min RTT of a pair
// being the smaller of its two directions' min). The table is cleaned by rules, not by hand
// ((*WonderProxy).Clean, reported in the file's header): ids 292-295 have no coordinates and are dropped;
// Panama (98) and Guatemala (99) lie more than 200 km from every airport of their own country but each fits
// the other's, so their coordinates are exchanged; La Ceiba (220, 64 of 245 pairs faster than light in
// fibre) and then Belfast (204, 12 of 244: its RTTs are those of a server in south-east England) break the
// fibre bound on more than 2 % of their pairs and are dropped; 8 further pairs that break it are dropped.
//
// Fallback: FallbackRTTMs(d) = 0.5 ms + PathInflation x MinRTTMs(d). PathInflation (1.97 on the embedded
// table) is the median, over pairs farther apart than 500 km (short pairs are dominated by last-mile
// delays), of (min RTT - 0.5 ms) / MinRTTMs(distance).
//
// Model: each endpoint is attached to its 6 nearest measured cities with modified Shepard weights
// ((r-d)/(r d))², r the distance of the 7th, so weights vanish continuously as a city leaves the set and
// dominate at a city's own position. Every measured pair of cities (i, j) contributes the log ratio of its
// min RTT to the fallback of its own distance; the weighted mean ratio is applied to the fallback of the
// endpoints' own distance. Two endpoints near the same city get that city's ratio 1 (plain fallback of
// their distance), so a point 10 km from FRA is 0.7 ms from FRA. Far from the measurements the ratio fades
// into the plain fallback: fully trusted within 500 km of a measured city, ignored beyond 2500 km. The
// result is never below 0.5 ms + MinRTTMs(distance) and is exactly symmetric and deterministic. A
// precomputed 2° grid lists the candidate nearest cities per cell (about 10), so a call costs 0.6-1 µs
// and building the model 80-130 ms (`go test -run XXX -bench . -count=5 ./geo/` on the shared 2-core
// machine under load 11: BenchmarkRTTMs 620 ns/op, 0 allocs; all 57,630 PoP pairs 58 ms;
// BenchmarkNewLatencyModel 78 ms/op best of 5).
//
// Error against held-out measurements (TestHeldOutError: 5 folds, each holding out every 5th city of the
// table, building the model from the others and comparing with every measured pair that involves a
// held-out city; 53,395 pair predictions):
//
//	                    |error| median   p90    relative median   p90
//	model                       8.3 ms  43.6 ms        7.6 %     31.8 %
//	fibre fallback             23.2 ms  75.4 ms       20.5 %     46.8 %
//	model, < 500 km             3.3 ms  14.8 ms       28.5 %     79.5 %
//	model, 500-2000 km          5.4 ms  20.0 ms       15.9 %     49.7 %
//	model, 2000-6000 km         7.2 ms  34.5 ms        9.0 %     30.8 %
//	model, >= 6000 km          10.3 ms  51.2 ms        5.9 %     22.9 %
//	fallback, < 500 km          5.5 ms  19.9 ms       47.6 %     78.5 %
//	fallback, 500-2000 km       9.5 ms  35.7 ms       29.3 %     61.3 %
//	fallback, 2000-6000 km     14.8 ms  76.3 ms       20.0 %     51.4 %
//	fallback, >= 6000 km       30.8 ms  83.1 ms       18.6 %     38.7 %
//
// Per fold the median relative error is 7.0-8.4 % (fallback 20.1-21.1 %). Against an independent set,
// cloudping.co's P50 between 21 AWS regions (TestModelAgainstAWSRegions; a median on a private backbone,
// not a minimum), the model's median relative error is 9.3 % (p90 43.6 %; it is 10.8 ms above the P50 in
// the median), the fallback's 23.0 %. The largest errors come from routing the distance cannot see: a city
// whose traffic detours (Shenzhen and Hong Kong behave very differently though 30 km apart; a Cloudflare
// PoP at an airport between them gets the mean), and pairs below 500 km where last-mile delays dominate.
//
// # GeoIP
//
// OpenGeoIP reads a user-supplied MaxMind City database (and optionally an ASN one) with
// github.com/oschwald/geoip2-golang/v2. Its answer is a prior for a target's location, never the verdict.
package geo

//go:generate go run ./internal/gen -out data
