package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/scheduler"
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

// triVerdict is one output line. The formats are in package triangulate (wire.go, FORMAT.md).
type triVerdict = triangulate.Verdict

func runTriangulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("triangulate", "< measurements.jsonl|csv > verdicts.jsonl", stderr)
	popsFile := fs.String("pops", "", "PoP list resolving vp codes given without lat/lon (geo.LoadPoPsFile formats: Cloudflare/CloudFront JSON, CSV); codes not in it fall back to the embedded Cloudflare catalogue")
	in := fs.String("in", "-", "input file, JSONL or CSV (detected by its first line); - for stdin")
	geoipFile := fs.String("geoip", "", "GeoIP2/GeoLite2/DB-IP City .mmdb: an IP target's prior location, noted when far outside the measured region (never the verdict)")
	meshFile := fs.String("mesh", "", "calibrate the disks from a mesh of vantage points measuring each other, JSON Lines {\"src\",\"dst\",\"rtt_ms\"} (triangulate/FORMAT.md), as the fleet calibrates from its PoP mesh")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: triangulate: unexpected argument %q", errUsage, fs.Arg(0))
	}
	var pops []geo.PoP
	if *popsFile != "" {
		list, err := geo.LoadPoPsFile(*popsFile)
		if err != nil {
			return fmt.Errorf("%w: triangulate: --pops: %w", errUsage, err)
		}
		pops = list
	}
	var prior func(string) (triangulate.Prior, bool)
	if *geoipFile != "" {
		g, err := geo.OpenGeoIP(*geoipFile, "")
		if err != nil {
			return fmt.Errorf("%w: triangulate: --geoip: %w", errUsage, err)
		}
		defer g.Close()
		prior = scheduler.GeoIPPrior(g) // the fleet's lookup: an IP target's City record
	}
	var cal *triangulate.Calibration
	if *meshFile != "" {
		c, err := loadMesh(*meshFile, triangulate.PoPLocator(pops), stderr)
		if err != nil {
			return err
		}
		cal = c
	}
	cfg := triangulate.ProductionConfig(cal)
	cfg.Cities = append(pops, geo.PoPs()...)
	engine, err := triangulate.NewEngine(cfg)
	if err != nil {
		return fmt.Errorf("triangulate: %w", err)
	}

	var r io.Reader = triangulateStdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("triangulate: --in: %w", err)
		}
		defer f.Close()
		r = f
	}
	out := bufio.NewWriter(stdout)
	bad := 0
	badLine := func(line int, err error) {
		bad++
		fmt.Fprintf(stderr, "vantage triangulate: line %d: %v\n", line, err)
	}
	err = judgeAll(ctx, triangulate.NewDecoder(r, engine.Config(), triangulate.PoPLocator(pops)), engine, prior, out, badLine)
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("triangulate: writing output: %w", ferr)
	}
	if err != nil {
		return err
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "vantage triangulate: %d bad input line(s) skipped\n", bad)
		return exitError{code: 1}
	}
	return nil
}

// loadMesh reads a mesh file and fits its calibration with triangulate.MeshCalibration, as the scheduler does
// with the fleet's mesh; the suspects (mislocated vantage points) are reported on stderr.
func loadMesh(path string, loc triangulate.Locator, stderr io.Writer) (*triangulate.Calibration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: triangulate: --mesh: %w", errUsage, err)
	}
	defer f.Close()
	pairs, err := triangulate.ReadMesh(f, loc)
	if err != nil {
		return nil, fmt.Errorf("%w: triangulate: --mesh %s: %w", errUsage, path, err)
	}
	cal, err := triangulate.MeshCalibration(pairs, triangulate.DefaultCalibrationConfig())
	if err != nil {
		return nil, fmt.Errorf("%w: triangulate: --mesh %s: %w", errUsage, path, err)
	}
	fmt.Fprintf(stderr, "vantage triangulate: mesh %s: %d pairs, %d vantage points calibrated\n", path, len(pairs), len(cal.PerVP))
	for _, s := range cal.Suspects {
		fmt.Fprintf(stderr, "vantage triangulate: mesh: %s is mislocated (%d pairs faster than light in fibre over its listed distance, worst by %.0f km): never trusted for location or anycast\n",
			s.VP, s.Violations, s.WorstKm)
	}
	return cal, nil
}

// judgeAll decides every target dec reads and writes its verdict to out; a bad line goes to badLine. prior,
// if not nil, gives a target its prior location by name. It returns nil at the end of the input, else the
// error that stopped it.
func judgeAll(ctx context.Context, dec *triangulate.Decoder, engine *triangulate.Engine, prior func(string) (triangulate.Prior, bool),
	out io.Writer, badLine func(int, error)) error {
	for {
		target, line, err := dec.Next(ctx)
		var le *triangulate.LineError
		var he *triangulate.HeaderError
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, &le):
			badLine(le.Line, le.Err)
			continue
		case errors.As(err, &he):
			return fmt.Errorf("%w: %w", errUsage, err)
		case err != nil:
			return err
		}
		if prior != nil && target.Prior == nil {
			if p, ok := prior(target.Target); ok {
				target.Prior = &p
			}
		}
		res, err := engine.Decide(target)
		if err == nil {
			err = triangulate.WriteVerdict(out, res)
		}
		if err != nil {
			badLine(line, err)
		}
	}
}
