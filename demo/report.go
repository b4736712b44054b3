package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/demo/worker"
	"github.com/vantage-edge/vantage/internal/stats"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/router"
)

// printer writes the report; progress lines overwrite each other on a terminal and are plain lines elsewhere.
type printer struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	inLine   bool   // a progress line is on screen (tty)
	lastProg string // last progress printed (not tty: printed once)
}

func newPrinter(w io.Writer) *printer {
	p := &printer{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *printer) linef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// progress shows s: in place on a terminal, as a line otherwise.
func (p *printer) progress(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tty {
		if s != p.lastProg {
			fmt.Fprintln(p.w, s)
			p.lastProg = s
		}
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s", s)
	p.inLine = true
}

// endProgress keeps the last progress line and moves below it.
func (p *printer) endProgress() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inLine {
		fmt.Fprintln(p.w)
		p.inLine = false
	}
}

func (p *printer) clearLocked() {
	if p.inLine {
		fmt.Fprint(p.w, "\r\033[K")
		p.inLine = false
	}
}

// The decision table's columns; values never contain spaces, so a line splits into fields.
const rowFormat = "%-9s %-14s %-22s %-24s %-5s %-9s %-10s %-5s %s"

func header() string {
	return fmt.Sprintf(rowFormat, "MODE", "APP", "TARGET", "STATUS", "BEST", "RTT", "VERDICT", "CONF", "WHAT")
}

// row formats one decision.
func row(s Scenario, zone string, d placement.Decision) string {
	status, best, rtt, verdict := string(d.Status), "-", "-", string(d.Verdict)
	if status == "" {
		status = "(none)"
	}
	if verdict == "" {
		verdict = "-"
	}
	if d.BestPoP != "" {
		best = d.BestPoP
		for _, c := range d.Candidates {
			if c.PoP == d.BestPoP {
				rtt = fmt.Sprintf("%.1fms", c.RTTMs)
				if d.Estimated {
					rtt += "~"
				}
			}
		}
	}
	about := strings.ReplaceAll(s.About, "{zone}", zone)
	switch {
	case d.Mode == placement.ModeSmart:
		// A smart decision's candidates carry the estimated mean request duration at each PoP, not an RTT.
		for _, c := range d.Candidates {
			if c.PoP == d.BestPoP {
				about += fmt.Sprintf("; est. %.0f ms per request at %s", c.RTTMs, c.PoP)
			}
		}
		rtt = "-"
	case d.Estimated:
		about += " (best PoP from the latency model: ~)"
	}
	return fmt.Sprintf(rowFormat, d.Mode, d.App, s.target(zone), status, best, rtt, verdict, fmt.Sprintf("%.2f", d.Confidence), about)
}

// timing is one user request's outcome.
type timing struct {
	ms        float64
	placement string // the cf-placement header
	exec      string // the PoP that ran it
}

// sydney times the Sydney user's requests entering at the SYD router front: the application without
// placement, in host mode (frankfurt-db) and in smart mode, once the router has the decisions.
func (e *env) sydney(ctx context.Context, deadline time.Time) error {
	for {
		res := e.rt.Route("frankfurt-db", Ingress, "demo-check", router.KindFetch)
		if res.Routed || res.Reason == router.ReasonBaseline {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: the router does not route frankfurt-db away from %s (%s, %s)", Ingress, res.Header, res.Reason)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	// The smart decision was stored before: give the router's notification-driven reload a moment to see it.
	for end := time.Now().Add(routerCatchUp); time.Now().Before(end); {
		if e.rt.Route(SmartApp, Ingress, "demo-check", router.KindFetch).Reason != router.ReasonNoDecision {
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	syd := e.tb.Node(Ingress)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: syd.DialContext, DisableKeepAlives: true}}
	dbAddr := fmt.Sprintf("db.%s:%d", e.zone, DBPort)
	e.out.linef("\nA user in Sydney calls an application making %d sequential queries to %s (in Frankfurt);\n"+
		"the request enters at %s's router front (%s), and the user times it:", e.cfg.Queries, dbAddr, Ingress, e.frontAddr)
	modes := []struct{ label, app string }{{"without placement", UnplacedApp}, {"with placement", "frankfurt-db"}, {"with smart placement", SmartApp}}
	var med [3]float64
	for i, m := range modes {
		var ts []timing
		for n := range e.cfg.Requests {
			t, err := e.userRequest(ctx, client, m.app, fmt.Sprintf("demo-%s-%d", m.app, n))
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
		samples := make([]float64, len(ts))
		for j, t := range ts {
			samples[j] = t.ms
		}
		med[i] = stats.Median(samples)
		var list []string
		for _, s := range samples {
			list = append(list, fmt.Sprintf("%.0f", s))
		}
		e.out.linef("  %-20s app %-22s cf-placement: %-11s ran at %s  median %6.0f ms  (%d requests: %s ms)",
			m.label, m.app, ts[0].placement, ts[0].exec, med[i], len(ts), strings.Join(list, ", "))
	}
	for i, what := range []string{"", "smart "} {
		placed := med[i+1]
		if placed > 0 && placed < med[0] {
			e.out.linef("  => with %splacement the Sydney user waits %.1fx less: %.0f ms saved per request", what, med[0]/placed, med[0]-placed)
		} else {
			e.out.linef("  => %splacement did not help this request (%.0f ms against %.0f ms)", what, placed, med[0])
		}
	}
	return nil
}

// routerCatchUp bounds the wait for the router to load a decision already stored (it reloads 250 ms after a
// change notification).
const routerCatchUp = 5 * time.Second

// userRequest makes one request from the Sydney user (inside the SYD namespace) to the front.
func (e *env) userRequest(ctx context.Context, c *http.Client, app, id string) (timing, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.frontAddr.String()+"/", nil)
	if err != nil {
		return timing{}, err
	}
	req.Host = app
	req.Header.Set(router.DefaultRequestIDHeader, id)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return timing{}, fmt.Errorf("demo: user request to %s: %w", app, err)
	}
	defer resp.Body.Close()
	var res worker.Result
	derr := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&res)
	el := time.Since(start)
	if resp.StatusCode != http.StatusOK || derr != nil {
		return timing{}, fmt.Errorf("demo: user request to %s: %s (%v)", app, resp.Status, derr)
	}
	return timing{ms: float64(el.Microseconds()) / 1000, placement: resp.Header.Get(router.HeaderPlacement), exec: res.Exec}, nil
}

// whereNext prints the URLs and commands to look further.
func (e *env) whereNext() {
	e.out.linef("\nWhere to look next:")
	e.out.linef("  status page     %s/#token=%s", e.apiURL, e.token)
	e.out.linef("  metrics         %s/metrics (scheduler)   %s/metrics (router)", e.apiURL, e.routerURL)
	e.out.linef("                  curl -s -H 'Authorization: Bearer %s' %s/metrics   (the scheduler's needs the operator's token)", e.token, e.apiURL)
	e.out.linef("  decision API    curl -s -H 'Authorization: Bearer %s' %s/client/v4/accounts/demo/workers/services/frankfurt-db", e.token, e.apiURL)
	e.out.linef("  probe ad hoc    VANTAGE_TOKEN=%s vantage probe --fleet --scheduler %s tcp db.%s:%d", e.token, e.apiURL, e.zone, DBPort)
	e.out.linef("                  curl -s -H 'Authorization: Bearer %s' -d '{\"kind\":\"http\",\"target\":\"www.%s\",\"pops\":\"all\"}' %s/v1/probes",
		e.token, e.zone, e.apiURL)
	e.out.linef("  as the user     vantage testbed exec %s -- curl -si -H 'Host: frankfurt-db' http://%s/", Ingress, e.frontAddr)
	if em := e.st.Embedded(); em != nil {
		e.out.linef("  the fleet       vantage pop list --redis %s", em.Addr())
	} else {
		e.out.linef("  the fleet       vantage pop list --redis %s", strings.Join(e.cfg.Redis, ","))
	}
}
