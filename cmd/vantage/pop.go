package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vantage-edge/vantage/geo"
	"github.com/vantage-edge/vantage/storage"
)

func init() {
	register(command{name: "pop", summary: "drain, undrain or list the PoPs of the probe fleet", run: runPop})
}

// runPop: vantage pop drain FRA | undrain FRA | list, against the fleet's Redis.
func runPop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pop", "drain|undrain <PoP> | list", stderr)
	rf := addRedisFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return fmt.Errorf("%w: pop: want drain <PoP>, undrain <PoP> or list", errUsage)
	}
	verb := rest[0]
	switch verb {
	case "drain", "undrain":
		if len(rest) != 2 {
			return fmt.Errorf("%w: pop %s: want exactly one PoP code, got %d arguments", errUsage, verb, len(rest)-1)
		}
	case "list":
		if len(rest) != 1 {
			return fmt.Errorf("%w: pop list takes no arguments", errUsage)
		}
	default:
		return fmt.Errorf("%w: pop: unknown action %q (want drain, undrain or list)", errUsage, verb)
	}
	log, err := newLogger(stderr, "text", "warn")
	if err != nil {
		return err
	}
	st, err := rf.open(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if verb == "list" {
		return printFleet(ctx, st, stdout)
	}
	pop := strings.ToUpper(strings.TrimSpace(rest[1]))
	if err := checkKnownPoP(ctx, st, verb, pop); err != nil {
		return err
	}
	if err := st.SetDrained(ctx, pop, verb == "drain"); err != nil {
		return fmt.Errorf("pop %s %s: %w", verb, pop, err)
	}
	fmt.Fprintf(stdout, "%s %sed\n", pop, verb)
	return nil
}

// checkKnownPoP refuses a PoP code that is neither in the fleet Redis knows (a heartbeat or a drain flag) nor
// in the PoP catalogue (geo.LookupPoP): a typo must not be reported "drained" while the PoP it meant keeps
// its traffic. A catalogue PoP may be drained before its daemons first report.
func checkKnownPoP(ctx context.Context, st *storage.Store, verb, pop string) error {
	fleet, err := st.Fleet(ctx)
	if err != nil {
		return fmt.Errorf("pop %s %s: %w", verb, pop, err)
	}
	known := make([]string, 0, len(fleet))
	for _, p := range fleet {
		if strings.EqualFold(p.PoP, pop) {
			return nil
		}
		known = append(known, p.PoP)
	}
	if _, ok := geo.LookupPoP(pop); ok {
		return nil
	}
	inFleet := "the fleet in Redis has no PoP"
	switch {
	case len(known) > maxPoPsNamed:
		inFleet = fmt.Sprintf("not among the %d PoPs of the fleet in Redis ('vantage pop list')", len(known))
	case len(known) > 0:
		inFleet = "the fleet in Redis has " + strings.Join(known, ", ")
	}
	return fmt.Errorf("%w: pop %s: unknown PoP %q: not in the PoP catalogue, and %s", errUsage, verb, pop, inFleet)
}

// maxPoPsNamed bounds the fleet's PoPs listed in an unknown-PoP error.
const maxPoPsNamed = 20

func printFleet(ctx context.Context, st *storage.Store, w io.Writer) error {
	fleet, err := st.Fleet(ctx)
	if err != nil {
		return fmt.Errorf("pop list: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POP\tSTATE\tDAEMONS\tLAST SEEN")
	for _, p := range fleet {
		state := "down"
		if p.Up {
			state = "up"
		}
		if p.Drained {
			state += ",drained"
		}
		seen := "-"
		if !p.LastSeen.IsZero() {
			seen = time.Since(p.LastSeen).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p.PoP, state, len(p.Daemons), seen)
	}
	return tw.Flush()
}
