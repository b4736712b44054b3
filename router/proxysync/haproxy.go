package proxysync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// HAProxy keeps a HAProxy map file: written to disk on every change (what HAProxy loads when it starts or
// reloads) and, when Socket is set, updated live through the runtime API (`add map`, `set map`, `del map`; a
// whole table at once with `prepare map` and `commit map`). The file holds the reserved keys KeyIngress and
// KeyBaseline and one line per routed application: "api.example.com LHR/remote". deploy/haproxy shows the
// configuration that reads it.
type HAProxy struct {
	// MapFile is the map file's path, exactly as the HAProxy configuration names it: the runtime API
	// identifies the map by it.
	MapFile string
	// Socket is the runtime API's address (a stats socket at "level admin"): a Unix socket path, or host:port.
	// Empty: the file only.
	Socket string

	written []byte            // the file's content as last written
	live    map[string]string // what the runtime holds after the last successful update; nil: unknown
}

// Name returns "haproxy".
func (h *HAProxy) Name() string { return "haproxy" }

// entries returns t as map entries, the reserved keys included.
func haproxyEntries(t *Table) map[string]string {
	m := make(map[string]string, len(t.Routes)+2)
	m[KeyIngress] = t.Ingress
	m[KeyBaseline] = strconv.FormatUint(t.BaselineThreshold, 10)
	for app, r := range t.Routes {
		m[app] = r.Value()
	}
	return m
}

// haproxyFile returns the map file for t.
func haproxyFile(t *Table) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by vantage router (router/proxysync): do not edit, it is rewritten on every change.\n")
	fmt.Fprintf(&b, "# %s: the ingress PoP; %s: request ids whose MurmurHash2 is below this run locally (%s).\n", KeyIngress, KeyBaseline, t.BaselinePercent)
	fmt.Fprintf(&b, "# Then: application (host) -> execution PoP/reason, for the applications routed away from the ingress.\n")
	fmt.Fprintf(&b, "%s %s\n%s %d\n", KeyIngress, t.Ingress, KeyBaseline, t.BaselineThreshold)
	for _, app := range t.Apps() {
		fmt.Fprintf(&b, "%s %s\n", app, t.Routes[app].Value())
	}
	return b.Bytes()
}

// Apply writes the map file when it changed, then brings the runtime's map to t: by difference when the
// runtime's content is known, else whole (prepare, add, commit).
func (h *HAProxy) Apply(ctx context.Context, t *Table) error {
	if file := haproxyFile(t); !bytes.Equal(file, h.written) {
		if err := writeAtomic(h.MapFile, file); err != nil {
			return err
		}
		h.written = file
	}
	if h.Socket == "" {
		return nil
	}
	want := haproxyEntries(t)
	var err error
	if h.live == nil {
		err = h.replace(ctx, want)
	} else {
		err = h.update(ctx, want)
	}
	if err != nil {
		h.live = nil // a batch may have half-applied: replace the whole map next time
		return err
	}
	h.live = want
	return nil
}

// update sends the difference between the runtime's map and want.
func (h *HAProxy) update(ctx context.Context, want map[string]string) error {
	var cmds []string
	for k, v := range want {
		switch old, ok := h.live[k]; {
		case !ok:
			cmds = append(cmds, fmt.Sprintf("add map %s %s %s", h.MapFile, k, v))
		case old != v:
			cmds = append(cmds, fmt.Sprintf("set map %s %s %s", h.MapFile, k, v))
		}
	}
	for k := range h.live {
		if _, ok := want[k]; !ok {
			cmds = append(cmds, fmt.Sprintf("del map %s %s", h.MapFile, k))
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	_, err := h.batch(ctx, cmds)
	return err
}

// replace swaps the runtime's map for want atomically: a new version is prepared, filled and committed.
func (h *HAProxy) replace(ctx context.Context, want map[string]string) error {
	out, err := h.batch(ctx, []string{"prepare map " + h.MapFile})
	if err != nil {
		return err
	}
	_, v, ok := strings.Cut(out, "New version created: ")
	ver, err := strconv.Atoi(strings.TrimSpace(v))
	if !ok || err != nil {
		return fmt.Errorf("haproxy: prepare map %s: unexpected answer %.200q", h.MapFile, out)
	}
	cmds := make([]string, 0, len(want)+1)
	for k, v := range want {
		cmds = append(cmds, fmt.Sprintf("add map @%d %s %s %s", ver, h.MapFile, k, v))
	}
	cmds = append(cmds, fmt.Sprintf("commit map @%d %s", ver, h.MapFile))
	_, err = h.batch(ctx, cmds)
	return err
}

// socketTimeout bounds a runtime API exchange when ctx has no earlier deadline.
const socketTimeout = 30 * time.Second

// batch sends cmds in one interactive ("prompt") session and returns what HAProxy printed without its prompts.
// The map commands print nothing when they succeed: any other output of a batch of them is an error, returned
// with its first lines. A one-command batch returns the command's output (e.g. prepare map's version).
func (h *HAProxy) batch(ctx context.Context, cmds []string) (string, error) {
	network, addr := "unix", h.Socket
	if !strings.Contains(addr, "/") && strings.Contains(addr, ":") {
		network = "tcp"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return "", fmt.Errorf("haproxy: runtime API %s: %w", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(socketTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	// Read while writing: a long batch's output must not fill the socket and stall HAProxy's reading.
	type result struct {
		out []byte
		err error
	}
	read := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(conn)
		read <- result{b, err}
	}()
	w := bufio.NewWriter(conn)
	w.WriteString("prompt\n")
	for _, c := range cmds {
		w.WriteString(c)
		w.WriteByte('\n')
	}
	w.WriteString("quit\n")
	werr := w.Flush()
	res := <-read
	if err := errors.Join(werr, res.err); err != nil {
		return "", fmt.Errorf("haproxy: runtime API %s: %w", addr, err)
	}
	var lines []string
	for _, l := range strings.Split(string(res.out), "\n") {
		for strings.HasPrefix(l, ">") {
			l = strings.TrimPrefix(strings.TrimPrefix(l, ">"), " ")
		}
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	out := strings.Join(lines, "\n")
	if len(cmds) > 1 && out != "" {
		if len(lines) > 5 {
			lines = append(lines[:5], "…")
		}
		return "", fmt.Errorf("haproxy: runtime API %s: %d commands answered: %s", addr, len(cmds), strings.Join(lines, "; "))
	}
	return out, nil
}

// EnsureFile writes an empty table (no route, no baseline) to the map file when it does not exist, so that
// HAProxy can start before the router has loaded its first snapshot; an existing file (the last table written)
// is left alone.
func (h *HAProxy) EnsureFile(ingress string) error {
	if _, err := os.Stat(h.MapFile); err == nil {
		return nil
	}
	return writeAtomic(h.MapFile, haproxyFile(&Table{Ingress: ingress, BaselinePercent: "0.00%"}))
}
