package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vantage-edge/vantage/internal/tlsfiles"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
)

// fleetProbePoll is how often `vantage probe --fleet` asks the scheduler for progress.
const fleetProbePoll = 250 * time.Millisecond

// runFleetProbe is `vantage probe --fleet <kind> <target>`: an ad-hoc probe through a running fleet's
// scheduler (POST /v1/probes, then GET /v1/probes/{id}), with a progress bar across PoPs on stderr and the
// ranked table and the engine's verdict on stdout. args are probe's arguments, --fleet included; flags may
// come before or after the positional arguments.
func runFleetProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe --fleet", "<tcp|http|icmp|dns> <target>", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: vantage probe --fleet [flags] <tcp|http|icmp|dns> TARGET\n")
		fleetProbeUsage(stderr)
	}
	f := addFleetProbeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	url, token := f.scheduler.get(), f.token.get()
	pos := fs.Args()
	if len(pos) != 2 {
		return fmt.Errorf("%w: probe --fleet: want <kind> <target>, got %d arguments", errUsage, len(pos))
	}
	kind, err := placement.ParseProbeKind(pos[0])
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	req := scheduler.ProbeRequest{Target: pos[1], Kind: kind, Count: f.count}
	if !strings.EqualFold(f.pops, "all") {
		req.PoPs = strings.Split(f.pops, ",")
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	base := strings.TrimRight(url, "/")
	var rec scheduler.AdHocRecord
	if err := fleetCall(ctx, client, http.MethodPost, base+"/v1/probes", token, req, &rec); err != nil {
		return err
	}
	var st scheduler.AdHocStatus
	for {
		st = scheduler.AdHocStatus{}
		if err := fleetCall(ctx, client, http.MethodGet, base+"/v1/probes/"+rec.ID, token, nil, &st); err != nil {
			return err
		}
		progress(stderr, len(st.Results), len(rec.PoPs))
		if st.Done {
			break
		}
		t := time.NewTimer(fleetProbePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			fmt.Fprintln(stderr)
			return fmt.Errorf("probe --fleet %s: %w (%d of %d PoPs answered)", rec.ID, ctx.Err(), len(st.Results), len(rec.PoPs))
		case <-t.C:
		}
	}
	fmt.Fprintln(stderr)
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printFleetTable(stdout, st)
	return nil
}

// Where `vantage probe --fleet` finds its scheduler and its token when the flags are not given.
const (
	envScheduler     = "VANTAGE_SCHEDULER"
	envToken         = "VANTAGE_TOKEN"
	envSchedulerCA   = "VANTAGE_SCHEDULER_CA"
	defaultScheduler = "http://127.0.0.1:8080"
)

// fleetProbeFlags are the flags of `vantage probe --fleet`.
type fleetProbeFlags struct {
	scheduler, token, ca *envFlag
	pops                 string
	count                int
	json                 bool
	timeout              time.Duration
}

// addFleetProbeFlags registers the flags of `vantage probe --fleet` on fs (runProbe's help shows them too).
func addFleetProbeFlags(fs *flag.FlagSet) *fleetProbeFlags {
	f := &fleetProbeFlags{}
	fs.Bool("fleet", false, "probe from every PoP of a running fleet, through its scheduler's API")
	f.scheduler = envStringVar(fs, "scheduler", envScheduler, defaultScheduler, "the scheduler's API `URL`")
	f.token = envStringVar(fs, "token", envToken, "", "bearer `token` for the scheduler's API (one of its --tokens)")
	f.ca = envStringVar(fs, "scheduler-ca", envSchedulerCA, "", "PEM `file` of the CAs an https:// scheduler's certificate is checked against (empty: the system's, or $SSL_CERT_FILE)")
	fs.StringVar(&f.pops, "pops", "all", `PoP codes, comma-separated, or "all" (every PoP that is up)`)
	fs.IntVar(&f.count, "count", 0, "samples per PoP (0: the scheduler's default)")
	fs.BoolVar(&f.json, "json", false, "print the scheduler's final answer as JSON")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up after this long")
	return f
}

// client returns the HTTP client of the scheduler's API, trusting --scheduler-ca when given.
func (f *fleetProbeFlags) client() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ca := f.ca.get(); ca != "" {
		cfg, err := tlsfiles.Client{CA: ca}.Config(nil)
		if err != nil {
			return nil, fmt.Errorf("%w: --scheduler-ca: %w", errUsage, err)
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: tr}, nil
}

// progress draws "[#####     ] 5/10 PoPs" over itself.
func progress(w io.Writer, done, total int) {
	const width = 30
	n := 0
	if total > 0 {
		n = done * width / total
	}
	fmt.Fprintf(w, "\r[%s%s] %d/%d PoPs", strings.Repeat("#", n), strings.Repeat(" ", width-n), done, total)
}

func printFleetTable(w io.Writer, st scheduler.AdHocStatus) {
	type row struct {
		pop                   string
		min, median, loss     float64
		ok                    bool
		class, errText, state string
	}
	var rows []row
	for pop, r := range st.Results {
		ok := r.Class == "" && r.Samples > 0
		rows = append(rows, row{pop: pop, min: r.MinMs, median: r.MedianMs, loss: r.Loss, ok: ok, class: r.Class, errText: r.Error})
	}
	for _, p := range st.Pending {
		rows = append(rows, row{pop: p, state: "no answer"})
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.ok != b.ok {
			return a.ok
		}
		if a.ok && a.min != b.min {
			return a.min < b.min
		}
		return a.pop < b.pop
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tPOP\tMIN ms\tMEDIAN ms\tLOSS\tSTATUS")
	for i, r := range rows {
		switch {
		case r.ok:
			fmt.Fprintf(tw, "%d\t%s\t%.3f\t%.3f\t%.0f%%\tok\n", i+1, r.pop, r.min, r.median, 100*r.loss)
		case r.state != "":
			fmt.Fprintf(tw, "-\t%s\t-\t-\t-\t%s\n", r.pop, r.state)
		default:
			fmt.Fprintf(tw, "-\t%s\t-\t-\t%.0f%%\t%s: %s\n", r.pop, 100*r.loss, r.class, r.errText)
		}
	}
	tw.Flush()
	if v := st.Verdict; v != nil {
		fmt.Fprintf(w, "\nverdict: %s", v.Verdict)
		if v.BestPoP != "" {
			fmt.Fprintf(w, ", best PoP %s", v.BestPoP)
		}
		fmt.Fprintf(w, ", confidence %.2f", v.Confidence)
		if v.Location != nil {
			fmt.Fprintf(w, ", located near %.2f,%.2f (±%.0f km)", v.Location.Lat, v.Location.Lon, v.RadiusKm)
		}
		fmt.Fprintln(w)
		for _, n := range v.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
}

// fleetCall sends a JSON request to the scheduler and decodes the envelope's result into out.
func fleetCall(ctx context.Context, client *http.Client, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("probe --fleet: --scheduler %q: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe --fleet: %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("probe --fleet: %s %s: %w", method, url, err)
	}
	var env struct {
		Success bool                 `json:"success"`
		Errors  []scheduler.APIError `json:"errors"`
		Result  json.RawMessage      `json:"result"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("probe --fleet: %s %s: status %d, not a Vantage answer: %.200q", method, url, resp.StatusCode, raw)
	}
	if !env.Success {
		msgs := make([]string, len(env.Errors))
		for i, e := range env.Errors {
			msgs[i] = e.Message
		}
		err := fmt.Errorf("probe --fleet: %s %s: %s: %s", method, url, resp.Status, strings.Join(msgs, "; "))
		if resp.StatusCode == http.StatusTooManyRequests {
			err = fmt.Errorf("%w (retry after %s s)", err, resp.Header.Get("Retry-After"))
		}
		return err
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return fmt.Errorf("probe --fleet: %s %s: result: %w", method, url, err)
	}
	return nil
}
