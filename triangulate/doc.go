// Package triangulate turns a target's RTT vector into the best PoP, a location and a unicast/anycast verdict.
//
// The engine is pure: no I/O, deterministic, allocation-free per decision in the steady state (an Engine
// keeps its scratch buffers; give each goroutine its own). It is modelled on hashicorp/serf's coordinate
// package (a Config with documented, sourced constants and DefaultConfig; input validation; phantom worlds for
// seeded tests) and on tailscale net/netcheck's home-region choice (hysteresis, deterministic tie-breaks).
//
// # What it computes
//
// Engine.Decide takes an Input (one target's Measurements: vantage point id, location, minimum RTT; optional
// DNS evidence; optional previous choice) and returns a Result:
//
//   - Best: the lowest-RTT vantage point (PoP). RTTs within Config.TieMs are ties, broken towards the previous
//     choice, then the smallest id. The previous choice is kept unless the new best is faster by both
//     Config.SwitchAbsMs and Config.SwitchRel (FlagKeptPrevious). Candidates ranks the top
//     Config.MaxCandidates; Confidence is in [0, 1].
//   - Verdict: unicast, anycast, replicated or unknown (placement.Verdict). Every measurement bounds the target
//     to a disk of radius geo.MaxDistanceKm(RTT) about its vantage point. Disks that miss each other (by more
//     than Config.AnycastMarginKm) cannot see one host: a greedy maximum set of disjoint disks, smallest
//     first, counts the instances (iGreedy). The evidence must survive setting aside the most inconsistent
//     vantage point (Config.MaxOutliers): a single mislocated VP is reported in Violations (FlagSpeedOfLight)
//     instead of making a unicast target anycast. DNS evidence overrides: disjoint A/AAAA answer sets per VP
//     mean replicated, different CHAOS id.server answers mean anycast. Anycast and replicated targets get
//     placement.StatusUnsupportedApplication and are never placed.
//   - Location: for unicast targets, CBG multilateration: the centroid of the disks' intersection and the
//     radius of the region. With a Calibration (FitCalibration on MeshPairs, the PoPs measuring each other)
//     each VP's disk shrinks to its own line, (RTT - b)/m x Config.CalibrationScale + Config.CalibrationSlackKm
//     (by default a line through the origin, b = 0; CBG's bestline on request), never beyond the fibre bound,
//     and the VPs whose listed location contradicts their RTTs (FindMislocated) are never trusted.
//   - Instances: for anycast targets, one per disjoint disk, placed at the catalogue city nearest the VP
//     inside the disk.
//
// Engine.DecideRegion handles placement mode region: with no measurements it ranks the PoPs by the latency
// model from the region's coordinates (FlagEstimated). A Planner chooses which PoPs probe a new target: a
// spread set first (First), then PoPs near the best candidates (Next), within a budget.
//
// # The triangulate command's formats
//
// "vantage triangulate [--pops FILE] [--in FILE] < measurements > verdicts.jsonl" reads targets and writes one
// verdict per target. This is a stable interface (fields may be added, never renamed or removed); the same
// text, with tables, is in FORMAT.md beside this file. --pops names a PoP list (any format
// geo.LoadPoPsFile reads) resolving vp codes given without coordinates, before the embedded Cloudflare
// catalogue; --in names the input file (default "-", stdin).
//
// Input is JSON Lines, one target per line (blank lines are ignored):
//
//	{"target":"198.18.3.7","measurements":[{"vp":"FRA","lat":50.03,"lon":8.56,"rtt_ms":1.8},{"vp":"LHR","rtt_ms":9.7}]}
//
// "target" is any non-empty string; "measurements" is a non-empty array. In a measurement, "vp" and "rtt_ms"
// (ms, >= 0, finite, <= 5000) are required; "lat" and "lon" (decimal degrees, both or neither) are optional
// when "vp" is an IATA code of --pops or of the embedded catalogue (case-insensitive). A duplicate "vp"
// within a target keeps its smallest RTT. Optional target fields: "previous" (the vp chosen last time, for
// hysteresis) and "dns", an array of {"vp":..., "answers":["192.0.2.1",...], "chaos":"..."}: disjoint
// answer sets make the target replicated, different CHAOS id.server answers anycast. Unknown fields are
// errors.
//
// Input may instead be CSV, recognised by a header line (first non-blank line, not a JSON object) naming a
// target column. It must name target, vp and rtt_ms and may name lat and lon, in any order; empty lat/lon
// cells mean "look the code up". Rows are grouped by target, in order of first appearance.
//
// Output is JSON Lines, one line per target, in input order (wrapped here):
//
//	{"target":"198.18.3.7","verdict":"unicast","status":"SUCCESS","best_vp":"FRA","best_rtt_ms":1.8,
//	 "location":{"lat":50.0,"lon":8.5,"radius_km":230},"confidence":0.93,
//	 "candidates":[{"pop":"FRA","rtt_ms":1.8},{"pop":"LHR","rtt_ms":9.7}]}
//
// "verdict" is unicast, anycast, replicated or unknown; "status" is SUCCESS for unicast,
// UNSUPPORTED_APPLICATION for anycast and replicated (never placed), absent for unknown. "best_vp" and
// "best_rtt_ms" are the chosen vantage point and its RTT. "location" ({"lat","lon","radius_km"}: centre and
// radius of the feasible region) is present for unicast targets, and for unknown ones when the region could
// be bounded. "instances" is present for anycast targets found by latency: an array of {"lat","lon","city",
// "pop","vp","radius_km"}. "confidence" is in [0, 1]; "candidates" ranks up to 8 vantage points
// ({"pop","rtt_ms"}); "violations" lists vantage points set aside for breaking the speed-of-light bound
// ({"vp","conflicts"}); "notes" explains flags in words. Numbers are rounded: RTTs to 0.001 ms, coordinates
// to 0.0001 degree, radii to 1 km.
//
// A JSONL line (or CSV row) that cannot be parsed or holds an invalid measurement is reported on stderr as
// "vantage triangulate: line N: reason" and skipped; the run goes on (a bad CSV row drops only that row).
// The exit status is 0 when every line was good, 1 when any line was bad, 2 for bad flags or an unreadable
// --pops file.
//
// In Go the format is read by a Decoder (NewDecoder, Decoder.Next; DecodeTarget for one JSONL line; a
// Locator such as PoPLocator resolves vp codes) and written by WriteVerdict (NewVerdict builds the Verdict
// type of an output line); the command only opens the files.
package triangulate
