package main

import (
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// The garbage collector policy of the router and the scheduler (--gc-percent, --memory-limit). The router's live heap is small (the
// snapshot table holds no pointers) while every request allocates a little, so at Go's default GOGC=100 the
// collector runs often under load. A higher GC percent lets the heap grow further between collections (20%
// less CPU per million-decision reload; per request, within this machine's noise: bench/ROUTER.md); the memory
// limit bounds what that can cost, chiefly during a snapshot reload (~700 MB allocated per million decisions),
// where the collector works harder as the heap nears it instead of letting it grow to 5x the live heap.
const (
	// DefaultRouterGCPercent is --gc-percent's default for `vantage router`.
	DefaultRouterGCPercent = 400
	// DefaultRouterMemoryLimit is --memory-limit's default: above the peak of a 1,000,000-decision reload at
	// GOGC=400, so that it bounds the heap without making the collector run all the time.
	DefaultRouterMemoryLimit = "1GiB"
)

// DefaultSchedulerGCPercent is --gc-percent's default for `vantage scheduler`. The scheduler's live heap is
// mostly its targets' state (~400 bytes each, idle between rechecks) and it allocates little per recheck, so a
// collection is cheap in CPU and the heap's headroom is what costs: at Go's default, 100, a million targets held
// ~1.2 GB resident for ~0.45 GB live; at 50 the heap stays within 1.5x the live one for a few % of a core
// more (bench/FLEET.md, "Scale run").
const DefaultSchedulerGCPercent = 50

// gcFlags are the GC policy flags of a command.
type gcFlags struct {
	percent *int
	limit   *string
}

// addGCFlags registers --gc-percent and --memory-limit on fs with the given defaults.
func addGCFlags(fs *flag.FlagSet, percent int, limit string) *gcFlags {
	return &gcFlags{
		percent: fs.Int("gc-percent", percent, "garbage collector target percentage (as GOGC; -1: off, then --memory-limit alone triggers "+
			"collections); the GOGC environment variable wins when this flag is not given"),
		limit: fs.String("memory-limit", limit, "soft limit of the Go heap and runtime (as GOMEMLIMIT: bytes or a size like 512MiB, 2GiB; "+
			"0 or none: no limit); the GOMEMLIMIT environment variable wins when this flag is not given"),
	}
}

// gcPolicy is what to apply: set* false leaves the runtime's value (from the environment) alone.
type gcPolicy struct {
	setPercent, setLimit bool
	percent              int
	limit                int64 // bytes; math.MaxInt64: none
}

// resolve decides the policy: a flag given on the command line wins, then GOGC / GOMEMLIMIT from getenv, then
// the flag's default.
func (g *gcFlags) resolve(fs *flag.FlagSet, getenv func(string) string) (gcPolicy, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var p gcPolicy
	if given["gc-percent"] || getenv("GOGC") == "" {
		if *g.percent < -1 {
			return p, fmt.Errorf("--gc-percent %d: want -1 (off) or a percentage >= 0", *g.percent)
		}
		p.setPercent, p.percent = true, *g.percent
	}
	if given["memory-limit"] || getenv("GOMEMLIMIT") == "" {
		n, err := parseBytes(*g.limit)
		if err != nil {
			return p, fmt.Errorf("--memory-limit: %w", err)
		}
		p.setLimit, p.limit = true, n
	}
	if p.setPercent && p.percent < 0 && p.setLimit && p.limit == math.MaxInt64 {
		return p, fmt.Errorf("--gc-percent -1 needs a --memory-limit: without both the heap grows without bound")
	}
	return p, nil
}

// apply sets the policy in the runtime and logs the values in effect.
func (p gcPolicy) apply(log *slog.Logger) {
	if p.setPercent {
		debug.SetGCPercent(p.percent)
	}
	if p.setLimit {
		debug.SetMemoryLimit(p.limit)
	}
	pct := debug.SetGCPercent(-1) // read the value in effect
	debug.SetGCPercent(pct)
	limit := debug.SetMemoryLimit(-1)
	limitS := "none"
	if limit != math.MaxInt64 {
		limitS = strconv.FormatInt(limit, 10)
	}
	log.Info("gc policy", "gc_percent", pct, "memory_limit_bytes", limitS,
		"from_env", strings.TrimSpace(fmt.Sprintf("%s %s", envIf(!p.setPercent, "GOGC"), envIf(!p.setLimit, "GOMEMLIMIT"))))
}

func envIf(ok bool, name string) string {
	if ok {
		return name + "=" + os.Getenv(name)
	}
	return ""
}

// parseBytes parses a size: bytes, or a number with a suffix B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB,
// GB, TB (powers of 1000); "0" and "none" mean no limit (math.MaxInt64).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || strings.EqualFold(s, "none") {
		return math.MaxInt64, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: want bytes or a number with KiB, MiB, GiB, TiB (or KB, MB, GB, TB); 0 or none for no limit", s)
	}
	return int64(f * mult), nil
}
