package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// A minimal Chrome DevTools Protocol client over a websocket: enough to load a page in headless Chromium,
// collect its console errors, evaluate expressions and take a screenshot.

// chromiumFlags are the flags of every headless run: no sandbox (root), no GPU, nothing fetched from outside
// (no background networking, component updates, sync, QUIC), and a resolver that knows only loopback names.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
	"--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
	"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
	"--hide-scrollbars", "--window-size=1400,1500", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
	"--remote-allow-origins=http://127.0.0.1",
}

// consoleEntry is one console message or log entry of the page.
type consoleEntry struct {
	Level string // "error", "warning", "info", ...
	Text  string
}

// browser is a headless Chromium with one page attached over CDP.
type browser struct {
	t  *testing.T
	ws *websocket.Conn

	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpMessage
	console []consoleEntry
	closed  bool
}

type cdpMessage struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

var devtoolsRE = regexp.MustCompile(`DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)`)

// startChromium starts headless Chromium on about:blank and attaches to its page. Everything is stopped by
// t.Cleanup (the browser's whole process group).
func startChromium(ctx context.Context, t *testing.T, bin string) *browser {
	t.Helper()
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir(), "about:blank")
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	waited := make(chan struct{})
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the browser and its helpers, which we started
		<-waited
	})
	port := make(chan string, 1)
	var logMu sync.Mutex
	var logTail []string
	go func() {
		defer close(waited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if m := devtoolsRE.FindStringSubmatch(line); m != nil && !sent {
				port <- m[2]
				sent = true
			}
			logMu.Lock()
			if logTail = append(logTail, line); len(logTail) > 20 {
				logTail = logTail[1:]
			}
			logMu.Unlock()
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	var p string
	select {
	case p = <-port:
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium did not print its DevTools address within 30 s; its stderr ends with:\n%s", strings.Join(logTail, "\n"))
	}
	wsURL, err := pageTarget(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.Dial(wsURL, "", "http://127.0.0.1")
	if err != nil {
		t.Fatalf("CDP: connecting to %s: %v", wsURL, err)
	}
	ws.MaxPayloadBytes = 64 << 20 // screenshots
	b := &browser{t: t, ws: ws, pending: map[int]chan cdpMessage{}}
	readDone := make(chan struct{})
	go func() { defer close(readDone); b.read() }()
	t.Cleanup(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		ws.Close()
		<-readDone
	})
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if err := b.call(ctx, m, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// pageTarget returns the websocket URL of the browser's first page, from its /json/list endpoint.
func pageTarget(ctx context.Context, port string) (string, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/json/list", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var ts []struct {
				Type string `json:"type"`
				WS   string `json:"webSocketDebuggerUrl"`
			}
			err = json.NewDecoder(resp.Body).Decode(&ts)
			resp.Body.Close()
			for _, tg := range ts {
				if tg.Type == "page" && tg.WS != "" {
					return tg.WS, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("CDP: no page target on port %s (last error: %v)", port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// read dispatches replies to their callers and records console messages, exceptions and log entries.
func (b *browser) read() {
	for {
		var m cdpMessage
		if err := websocket.JSON.Receive(b.ws, &m); err != nil {
			b.mu.Lock()
			for _, ch := range b.pending {
				close(ch)
			}
			b.pending = map[int]chan cdpMessage{}
			b.mu.Unlock()
			return
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		if e, ok := consoleEvent(m); ok {
			b.mu.Lock()
			b.console = append(b.console, e)
			b.mu.Unlock()
		}
	}
}

// consoleEvent turns a console, exception or log event into an entry.
func consoleEvent(m cdpMessage) (consoleEntry, bool) {
	switch m.Method {
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		json.Unmarshal(m.Params, &p)
		var parts []string
		for _, a := range p.Args {
			parts = append(parts, fmt.Sprint(a.Value)+a.Description)
		}
		return consoleEntry{Level: p.Type, Text: strings.Join(parts, " ")}, true
	case "Runtime.exceptionThrown":
		var p struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(m.Params, &p)
		return consoleEntry{Level: "error", Text: "exception: " + p.Details.Text + " " + p.Details.Exception.Description}, true
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Level string `json:"level"`
				Text  string `json:"text"`
				URL   string `json:"url"`
			} `json:"entry"`
		}
		json.Unmarshal(m.Params, &p)
		return consoleEntry{Level: p.Entry.Level, Text: p.Entry.Text + " " + p.Entry.URL}, true
	}
	return consoleEntry{}, false
}

// call sends one command and decodes its result into result (when not nil).
func (b *browser) call(ctx context.Context, method string, params, result any) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("CDP: closed")
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := websocket.JSON.Send(b.ws, msg); err != nil {
		return fmt.Errorf("CDP %s: %w", method, err)
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("CDP %s: %w", method, ctx.Err())
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("CDP %s: connection closed", method)
		}
		if m.Error != nil {
			return fmt.Errorf("CDP %s: %d %s", method, m.Error.Code, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value into v.
func (b *browser) eval(ctx context.Context, expr string, v any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluating %q: %s", expr, r.Exception.Text)
	}
	if len(r.Result.Value) == 0 {
		return fmt.Errorf("evaluating %q: no value", expr)
	}
	return json.Unmarshal(r.Result.Value, v)
}

// waitFor evaluates expr until it yields want or the timeout passes; it returns the last value.
func (b *browser) waitFor(ctx context.Context, expr, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var got string
	for {
		err := b.eval(ctx, expr, &got)
		if err == nil && got == want {
			return got, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return got, fmt.Errorf("waiting for %s == %q: got %q (err %v)", expr, want, got, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// errors returns the console entries of level error.
func (b *browser) consoleErrors() []consoleEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []consoleEntry
	for _, e := range b.console {
		if e.Level == "error" || e.Level == "assert" {
			out = append(out, e)
		}
	}
	return out
}

// screenshot captures the whole page as PNG.
func (b *browser) screenshot(ctx context.Context) ([]byte, error) {
	return b.screenshotClip(ctx, nil)
}

// screenshotClip captures the page's rectangle clip (CDP's Page.Viewport: x, y, width, height in CSS pixels
// of the whole page, and scale) as PNG; nil: the whole page.
func (b *browser) screenshotClip(ctx context.Context, clip map[string]float64) ([]byte, error) {
	var r struct {
		Data []byte `json:"data"` // base64 in JSON: decoded by encoding/json
	}
	params := map[string]any{"format": "png", "captureBeyondViewport": true}
	if clip != nil {
		params["clip"] = clip
	}
	if err := b.call(ctx, "Page.captureScreenshot", params, &r); err != nil {
		return nil, err
	}
	if len(r.Data) < 8 || string(r.Data[1:4]) != "PNG" {
		return nil, errors.New("CDP: the screenshot is not a PNG")
	}
	return r.Data, nil
}

// chromiumBinary returns Debian's chromium, or skips (fails under CI, whose deps.sh installs it).
func chromiumBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (Debian package chromium; .ci/deps.sh installs it)")
	}
	t.Skip("chromium is not installed: apt-get install chromium")
	return ""
}
