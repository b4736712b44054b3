package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
)

func init() {
	register(command{
		name:    "app",
		summary: "list, show, register or delete the applications of a scheduler's API (the token's account's)",
		run:     runApp,
	})
}

// appTimeout bounds one `vantage app` command's calls to the scheduler.
const appTimeout = 30 * time.Second

// runApp is `vantage app list|get|apply|delete`: the ops team's view of the scheduler's API, with the
// scheduler, token and CA found as `vantage probe --fleet` finds them.
func runApp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("app", "list|get NAME|apply -f FILE|delete NAME", stderr)
	fs.Usage = func() {
		appUsage(stderr)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	f := &fleetProbeFlags{
		scheduler: envStringVar(fs, "scheduler", envScheduler, defaultScheduler, "the scheduler's API `URL`"),
		token:     envStringVar(fs, "token", envToken, "", "bearer `token` for the scheduler's API (one of its --tokens)"),
		ca:        envStringVar(fs, "scheduler-ca", envSchedulerCA, "", "PEM `file` of the CAs an https:// scheduler's certificate is checked against (empty: the system's, or $SSL_CERT_FILE)"),
	}
	fs.DurationVar(&f.timeout, "timeout", appTimeout, "give up after this long")
	fs.BoolVar(&f.json, "json", false, "list, get: print the API's answers as JSON")
	var file, env, deploy string
	fs.StringVar(&file, "f", "", "apply: the wrangler config (`file`: .toml, .json or .jsonc) to register")
	fs.StringVar(&env, "env", "", "apply: the wrangler environment to register (as wrangler's --env; empty: the top level)")
	fs.StringVar(&deploy, "deploy", "", "apply: the deploy `version` (empty: the scheduler makes one up)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) == 0 {
		return fmt.Errorf("%w: app: want a subcommand: list, get, apply or delete", errUsage)
	}
	sub, pos := pos[0], pos[1:]
	// The flags each subcommand takes beside --scheduler, --token, --scheduler-ca and --timeout.
	own := map[string][]string{"list": {"json"}, "get": {"json"}, "apply": {"f", "env", "deploy"}, "delete": nil}
	takes, ok := own[sub]
	if !ok {
		return fmt.Errorf("%w: app: unknown subcommand %q (want list, get, apply or delete)", errUsage, sub)
	}
	var stray error
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "scheduler", "token", "scheduler-ca", "timeout":
		default:
			if !slices.Contains(takes, fl.Name) && stray == nil {
				stray = fmt.Errorf("%w: app %s: flag -%s is not one of app %s's", errUsage, sub, fl.Name, sub)
			}
		}
	})
	if stray != nil {
		return stray
	}
	switch {
	case (sub == "get" || sub == "delete") && len(pos) != 1:
		return fmt.Errorf("%w: app %s: want NAME, got %d arguments", errUsage, sub, len(pos))
	case (sub == "list" || sub == "apply") && len(pos) != 0:
		return fmt.Errorf("%w: app %s: unexpected arguments %q", errUsage, sub, pos)
	case sub == "apply" && file == "":
		return fmt.Errorf("%w: app apply: -f FILE is required", errUsage)
	}
	token := f.token.get()
	if token == "" {
		return fmt.Errorf("app %s: no token: set $%s or --token", sub, envToken)
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c := appClient{client: client, base: strings.TrimRight(f.scheduler.get(), "/"), token: token, sub: sub}
	switch sub {
	case "list":
		return c.list(ctx, stdout, f.json)
	case "get":
		return c.get(ctx, stdout, pos[0], f.json)
	case "apply":
		return c.apply(ctx, stdout, stderr, file, env, deploy)
	default:
		return c.delete(ctx, stdout, pos[0])
	}
}

func appUsage(w io.Writer) {
	fmt.Fprint(w, `usage: vantage app <subcommand> [flags]

  list [--json]                          the token's applications: mode, target, status, best PoP
  get NAME [--json]                      one application: placement, status, reason, Vantage's detail
  apply -f FILE [--env NAME] [--deploy VERSION]
                                         register or update the application of a wrangler config
  delete NAME                            delete an application registered through the API

Every subcommand takes --scheduler URL (default $VANTAGE_SCHEDULER, else http://127.0.0.1:8080),
--token (default $VANTAGE_TOKEN), --scheduler-ca FILE (default $VANTAGE_SCHEDULER_CA) and --timeout;
flags may come before or after the subcommand and its arguments.
`)
}

// appClient calls the scheduler's API for one `vantage app` subcommand.
type appClient struct {
	client      *http.Client
	base, token string
	sub         string // "list", "get" ... for messages
}

// call is fleetCall with the subcommand's name in its errors.
func (c appClient) call(ctx context.Context, method, path string, body, out any) error {
	err := fleetCall(ctx, c.client, method, c.base+path, c.token, body, out)
	if err != nil {
		return errors.New("app " + c.sub + ": " + strings.TrimPrefix(err.Error(), "probe --fleet: "))
	}
	return nil
}

// appView is one application as `vantage app list` and `get` show it: its registration and its status.
type appView struct {
	scheduler.Target
	Status scheduler.ServiceStatus `json:"status"`
}

// apps returns the token's applications (GET /v1/apps).
func (c appClient) apps(ctx context.Context) ([]scheduler.Target, error) {
	var ts []scheduler.Target
	err := c.call(ctx, http.MethodGet, "/v1/apps", nil, &ts)
	return ts, err
}

// status returns the status API's answer for t.
func (c appClient) status(ctx context.Context, t scheduler.Target) (scheduler.ServiceStatus, error) {
	// An operator's application without an account answers under any account.
	acct := cmp.Or(t.Account, "-")
	var st scheduler.ServiceStatus
	err := c.call(ctx, http.MethodGet, "/client/v4/accounts/"+url.PathEscape(acct)+"/workers/services/"+url.PathEscape(t.App), nil, &st)
	return st, err
}

func (c appClient) list(ctx context.Context, stdout io.Writer, asJSON bool) error {
	ts, err := c.apps(ctx)
	if err != nil {
		return err
	}
	views := make([]appView, 0, len(ts))
	for _, t := range ts {
		st, err := c.status(ctx, t)
		if err != nil {
			return err
		}
		views = append(views, appView{Target: t, Status: st})
	}
	if asJSON {
		return writeIndentedJSON(stdout, views)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tMODE\tTARGET\tSTATUS\tBEST POP")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.App, v.Mode, dash(v.Target.Target), statusText(v.Status.PlacementStatus), dash(v.Status.Vantage.BestPoP))
	}
	return tw.Flush()
}

func (c appClient) get(ctx context.Context, stdout io.Writer, name string, asJSON bool) error {
	ts, err := c.apps(ctx)
	if err != nil {
		return err
	}
	var (
		t     scheduler.Target
		found bool
	)
	for _, x := range ts {
		if x.App == name {
			t, found = x, true
			break
		}
	}
	if !found {
		return fmt.Errorf("app get: %q: no such application among the token's", name)
	}
	st, err := c.status(ctx, t)
	if err != nil {
		return err
	}
	v := appView{Target: t, Status: st}
	if asJSON {
		return writeIndentedJSON(stdout, v)
	}
	d := st.Vantage
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "app:\t%s\n", t.App)
	fmt.Fprintf(tw, "account:\t%s\n", dash(t.Account))
	fmt.Fprintf(tw, "source:\t%s\n", dash(t.Source))
	fmt.Fprintf(tw, "mode:\t%s\n", t.Mode)
	fmt.Fprintf(tw, "target:\t%s\n", dash(t.Target))
	if d.Endpoint != "" {
		fmt.Fprintf(tw, "endpoint:\t%s\n", d.Endpoint)
	}
	fmt.Fprintf(tw, "status:\t%s\n", statusText(st.PlacementStatus))
	if d.Reason != "" {
		fmt.Fprintf(tw, "reason:\t%s\n", d.Reason)
	}
	fmt.Fprintf(tw, "best PoP:\t%s\n", dash(d.BestPoP))
	if d.Verdict != "" {
		fmt.Fprintf(tw, "verdict:\t%s\n", d.Verdict)
	}
	if d.Confidence != 0 || d.Verdict != "" {
		conf := fmt.Sprintf("%.2f", d.Confidence)
		if d.Estimated {
			conf += " (estimated from the latency model)"
		}
		fmt.Fprintf(tw, "confidence:\t%s\n", conf)
	}
	if d.Deploy != "" {
		fmt.Fprintf(tw, "deploy:\t%s\n", d.Deploy)
	}
	if !d.LastChecked.IsZero() {
		fmt.Fprintf(tw, "last checked:\t%s\n", d.LastChecked.UTC().Format(time.RFC3339))
	}
	if !d.NextRecheck.IsZero() {
		fmt.Fprintf(tw, "next recheck:\t%s\n", d.NextRecheck.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Candidates) > 0 {
		fmt.Fprintln(stdout, "\ncandidates:")
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  RANK\tPOP\tRTT ms")
		for i, cd := range d.Candidates {
			fmt.Fprintf(tw, "  %d\t%s\t%.3f\n", i+1, cd.PoP, cd.RTTMs)
		}
		return tw.Flush()
	}
	return nil
}

// apply reads the wrangler config in file for env as wrangler would, and registers the resolved application
// (POST /v1/apps?deploy=): the API reads no environment, so the config is resolved here and sent as a minimal
// wrangler.json of the environment's name, account_id and placement. The scheduler validates it again with its
// own policy (this side judges no address: the scheduler's allow-list is not known here).
func (c appClient) apply(ctx context.Context, stdout, stderr io.Writer, file, env, deploy string) error {
	cfg, err := placement.Parser{Env: env}.LoadFile(file)
	if err != nil {
		return fmt.Errorf("app apply: %w", err)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "vantage: warning: %s\n", w)
	}
	q := url.Values{}
	if deploy != "" {
		q.Set("deploy", deploy)
	}
	path := "/v1/apps"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var reg scheduler.Registration
	if err := c.call(ctx, http.MethodPost, path, resolvedConfig(cfg), &reg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "registered %s: mode %s", reg.App, reg.Mode)
	if reg.Target.Target != "" {
		fmt.Fprintf(stdout, ", target %s", reg.Target.Target)
	}
	if reg.Account != "" {
		fmt.Fprintf(stdout, ", account %s", reg.Account)
	}
	fmt.Fprintf(stdout, ", deploy %s", reg.Deploy)
	if reg.DeployGenerated {
		fmt.Fprint(stdout, " (generated)")
	}
	fmt.Fprintln(stdout)
	return nil
}

// resolvedConfig is cfg as a wrangler.json the API reads: name, account_id and placement only.
func resolvedConfig(cfg placement.Config) map[string]any {
	m := map[string]any{"name": cfg.App}
	if cfg.AccountID != "" {
		m["account_id"] = cfg.AccountID
	}
	switch cfg.Mode {
	case placement.ModeSmart:
		m["placement"] = map[string]string{"mode": "smart"}
	case placement.ModeRegion:
		m["placement"] = map[string]string{"region": cfg.Region}
	case placement.ModeHost:
		m["placement"] = map[string]string{"host": cfg.Host}
	case placement.ModeHostname:
		m["placement"] = map[string]string{"hostname": cfg.Hostname}
	}
	// ModeNone sends no placement: the API answers that there is nothing to place.
	return m
}

func (c appClient) delete(ctx context.Context, stdout io.Writer, name string) error {
	var out json.RawMessage
	if err := c.call(ctx, http.MethodDelete, "/v1/apps/"+url.PathEscape(name), nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s\n", name)
	return nil
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// statusText is a placement status, or "pending" before the first analysis.
func statusText(s placement.Status) string {
	if s == placement.StatusNone {
		return "pending"
	}
	return string(s)
}

func dash(s string) string { return cmp.Or(s, "-") }
