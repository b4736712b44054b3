package proxysync

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultNginxReload is the command that makes nginx reload its configuration when Nginx.PIDFile is not set.
var DefaultNginxReload = []string{"nginx", "-s", "reload"}

// Nginx keeps an nginx include file of http-level blocks, regenerated on every change, and makes nginx reload
// it (SIGHUP to the master process named by PIDFile, or ReloadCommand). The file defines:
//
//	$vantage_ingress        the ingress PoP (geo with only a default)
//	$vantage_baseline       1 for request ids in the baseline (split_clients on $vantage_request_id), else 0
//	$vantage_route_pop      per application ($vantage_app): the execution PoP when routed away, else ""
//	$vantage_route_reason   per application: remote or failover, else ""
//
// deploy/nginx/vantage.conf defines $vantage_app and $vantage_request_id and turns these into the upstream and
// the headers.
type Nginx struct {
	// MapFile is the include file's path.
	MapFile string
	// PIDFile, when set, names the file holding nginx's master pid: reloads send it SIGHUP.
	PIDFile string
	// ReloadCommand reloads nginx when PIDFile is empty (default DefaultNginxReload).
	ReloadCommand []string
	// ReloadTimeout bounds the wait, after a SIGHUP (PIDFile), for nginx's workers of the new configuration
	// (default DefaultNginxReloadTimeout): none by then fails the Apply, and the table is applied again later.
	// With ReloadCommand, Apply returns once the command did.
	ReloadTimeout time.Duration

	applied []byte // the content nginx reloaded successfully last
}

// Name returns "nginx".
func (n *Nginx) Name() string { return "nginx" }

// nginxFile returns the include file for t.
func nginxFile(t *Table) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by vantage router (router/proxysync): do not edit, it is rewritten on every change.\n")
	fmt.Fprintf(&b, "geo $vantage_ingress {\n    default %s;\n}\n", t.Ingress)
	b.WriteString("# The baseline: request ids whose MurmurHash2 falls in the first " + t.BaselinePercent + " of its range.\n")
	b.WriteString("split_clients \"$vantage_request_id\" $vantage_baseline {\n")
	switch t.BaselinePercent {
	case "0.00%":
	case "100.00%":
		b.WriteString("    * 1;\n") // split_clients' 100% part stops one short of the range: Go's rule takes it all
	default:
		fmt.Fprintf(&b, "    %s 1;\n", t.BaselinePercent)
	}
	if t.BaselinePercent != "100.00%" {
		b.WriteString("    * 0;\n")
	}
	b.WriteString("}\n")
	apps := t.Apps()
	for _, v := range []struct {
		name  string
		value func(Route) string
	}{
		{"$vantage_route_pop", func(r Route) string { return r.PoP }},
		{"$vantage_route_reason", func(r Route) string { return r.Reason.String() }},
	} {
		fmt.Fprintf(&b, "map $vantage_app %s {\n    default \"\";\n", v.name)
		for _, app := range apps {
			fmt.Fprintf(&b, "    %s%s %s;\n", nginxKeyEscape(app), app, v.value(t.Routes[app]))
		}
		b.WriteString("}\n")
	}
	return b.Bytes()
}

// Apply rewrites the include file and reloads nginx when the content differs from what nginx last reloaded.
func (n *Nginx) Apply(ctx context.Context, t *Table) error {
	file := nginxFile(t)
	if bytes.Equal(file, n.applied) {
		return nil
	}
	if err := writeAtomic(n.MapFile, file); err != nil {
		return err
	}
	if err := n.reload(ctx); err != nil {
		return err
	}
	n.applied = file
	return nil
}

// reload makes nginx re-read its configuration.
func (n *Nginx) reload(ctx context.Context) error {
	if n.PIDFile != "" {
		pid, err := n.masterPID()
		if err != nil {
			return err
		}
		before, procErr := childPIDs(pid)
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("nginx: reload (SIGHUP to %d from %s): %w", pid, n.PIDFile, err)
		}
		if procErr != nil {
			return nil // no /proc to watch the reload in: applied once signalled
		}
		return n.awaitWorkers(ctx, pid, before)
	}
	argv := n.ReloadCommand
	if len(argv) == 0 {
		argv = DefaultNginxReload
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = reloadWaitDelay // a child of the command that keeps its output open must not hold Apply past ctx
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx: reload %q: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// masterPID returns the pid in PIDFile: nginx's master process.
func (n *Nginx) masterPID() (int, error) {
	b, err := os.ReadFile(n.PIDFile)
	if err != nil {
		return 0, fmt.Errorf("nginx: reading the pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("nginx: pid file %s: %q is not a pid", n.PIDFile, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// reloadWaitDelay is how long a canceled reload command's output is waited for after it is killed.
const reloadWaitDelay = 2 * time.Second

// DefaultNginxReloadTimeout bounds the wait for nginx's new workers after a reload (Nginx.ReloadTimeout).
const DefaultNginxReloadTimeout = 10 * time.Second

// awaitWorkers waits until nginx's master (pid) has a child that was not among before: nginx started the
// workers of the configuration it re-read, which serve new connections from then on (the old workers finish
// the requests they have and exit). nginx answers SIGHUP with nothing: a configuration it refuses (an error in
// nginx's log) keeps the old workers, and without this wait the table would count as applied while nginx
// served the previous one. A test that sent requests as soon as the file was written got the old workers'
// answers (TestSameAnswers).
func (n *Nginx) awaitWorkers(ctx context.Context, pid int, before map[int]bool) error {
	timeout := cmp.Or(n.ReloadTimeout, DefaultNginxReloadTimeout)
	deadline := time.Now().Add(timeout)
	for {
		now, err := childPIDs(pid)
		if err != nil {
			return fmt.Errorf("nginx: watching the reload of %d: %w", pid, err)
		}
		for c := range now {
			if !before[c] {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx: reload (SIGHUP to %d from %s): no new worker within %v: nginx kept its previous configuration (is the new one valid? nginx's error log says)",
				pid, n.PIDFile, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nginx: waiting for the reload of %d: %w", pid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// childPIDs returns the processes whose parent is pid, from /proc.
func childPIDs(pid int) (map[int]bool, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses, the last ')' ends it.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 {
			if pp, err := strconv.Atoi(f[1]); err == nil && pp == pid {
				out[c] = true
			}
		}
	}
	return out, nil
}

// EnsureFile writes an empty table to the include file when it does not exist, so that nginx can start
// before the router has loaded its first snapshot; an existing file (the last table written) is left alone.
func (n *Nginx) EnsureFile(ingress string) error {
	if _, err := os.Stat(n.MapFile); err == nil {
		return nil
	}
	return writeAtomic(n.MapFile, nginxFile(&Table{Ingress: ingress, BaselinePercent: "0.00%"}))
}

// nginxKeyEscape returns the prefix a map key needs: "\\" for the names of map's special parameters.
func nginxKeyEscape(app string) string {
	switch app {
	case "default", "hostnames", "include", "volatile":
		return "\\"
	}
	return ""
}
