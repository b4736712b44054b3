package prober

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

// UserAgent is sent with every HTTP probe.
const UserAgent = "vantage-prober/1"

// httpProber measures HTTP HEAD (or HTTPOptions.Method). A first request opens the connection and is timed
// phase by phase (resolve, connect, TLS, processing, transfer) as blackbox_exporter does; then Count further
// requests go over the same kept-alive connection, and each sample is the time from the request written to
// the first response byte: the layer-7 round trip, comparable to a TCP CONNECT RTT plus the server's HEAD
// handling time. HTTPOptions.Single makes the first request the only one, and its sample.
//
// The name is resolved and policy-checked once; the transport's DialContext dials that checked IP (no second
// resolution, no DNS rebinding) while the URL keeps the name for the Host header and SNI. Redirects are not
// followed unless asked; a followed redirect to another host is resolved and checked the same way. HTTP/1.1
// only, so the keep-alive connection is one TCP connection.
type httpProber struct{ e *Engine }

// acceptStatus reports whether an HTTP status counts as success: one of valid, or when valid is empty 2xx,
// and 3xx since redirects are answers.
func acceptStatus(code int, valid []int) bool {
	if len(valid) > 0 {
		return slices.Contains(valid, code)
	}
	return code >= 200 && code < 400
}

func (p *httpProber) Probe(ctx context.Context, t Target) Result {
	e := p.e
	r := Result{Kind: placement.ProbeHTTP, Target: t.Addr, HTTP: &HTTPResult{}}
	u, err := parseHTTPTarget(t.Addr)
	if err != nil {
		r.finish(err)
		return r
	}
	host := u.Hostname()
	resolveStart := e.clock.Now()
	ip, all, err := e.resolveAll(ctx, host)
	r.IP, r.Resolved = ip, all
	if err != nil {
		r.finish(err)
		return r
	}
	r.HTTP.Phases.Resolve = Duration(e.clock.Now().Sub(resolveStart))
	r.Resolve = r.HTTP.Phases.Resolve
	src, err := e.source(ip)
	if err != nil {
		r.finish(err)
		return r
	}
	r.Source = src
	tlsCfg, err := tlsConfig(t.HTTP)
	if err != nil {
		r.finish(err)
		return r
	}
	if u.Scheme == "https" {
		if _, err := netip.ParseAddr(host); err != nil || tlsCfg.ServerName != "" {
			r.HTTP.ServerName = cmp.Or(tlsCfg.ServerName, host) // no SNI is sent for an IP literal
		}
	}
	if err := e.limits.wait(ctx, ip); err != nil {
		r.finish(fmt.Errorf("prober: http %s: waiting for the rate limit: %w", t.Addr, err))
		return r
	}
	timeout := e.timeout(t)
	// The transport may dial in its own goroutine, which can outlive a timed-out request: guard what it writes.
	var dialMu sync.Mutex
	var connectStart, connectDone time.Time
	var local netip.Addr
	tr := &http.Transport{
		Proxy: nil, // never through a proxy: the probe measures the path to the target itself
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			dip := ip
			h, ps, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if h != host { // a followed redirect to another host: resolve and check it too
				if dip, err = e.resolve(ctx, h); err != nil {
					return nil, err
				}
			}
			port, err := strconv.ParseUint(ps, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("prober: http port %q: %w", ps, err)
			}
			s, err := e.source(dip)
			if err != nil {
				return nil, err
			}
			t0 := e.clock.Now()
			c, err := e.dial(ctx, "tcp", netip.AddrPortFrom(dip, uint16(port)), s, timeout)
			t1 := e.clock.Now()
			if err != nil {
				return nil, err
			}
			dialMu.Lock()
			defer dialMu.Unlock()
			if connectStart.IsZero() {
				connectStart, connectDone = t0, t1
			}
			if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
				local = la.AddrPort().Addr().Unmap()
			}
			return c, nil
		},
		TLSClientConfig:       tlsCfg,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		DisableCompression:    true,
		MaxIdleConnsPerHost:   1,
		ResponseHeaderTimeout: timeout,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(_ *http.Request, via []*http.Request) error {
		if !t.HTTP.FollowRedirects {
			return http.ErrUseLastResponse
		}
		if len(via) > MaxRedirects {
			return fmt.Errorf("prober: http %s: more than %d redirects", t.Addr, MaxRedirects)
		}
		r.HTTP.Redirects = max(r.HTTP.Redirects, len(via)) // via grows per request: count once
		return nil
	}}

	var firstErr error
	n := e.count(t)
	if t.HTTP.Single {
		n, r.Sent = 0, 1
	}
	for i := 0; i <= n; i++ { // request 0 opens the connection; 1..n are the timed samples
		if i > 1 {
			if err := e.pause(ctx); err != nil {
				firstErr = cmpErr(firstErr, err)
				break
			}
		}
		if i > 0 {
			r.Sent++
		}
		ht, ans, err := p.head(ctx, client, u, t.HTTP, timeout)
		if err != nil {
			err = fmt.Errorf("prober: http %s %s (%v): %w", method(t.HTTP), u, ip, err)
			if i == 0 {
				r.finish(err) // no connection, no samples
				return r
			}
			firstErr = cmpErr(firstErr, err)
			continue
		}
		r.HTTP.Status, r.HTTP.Location, r.HTTP.Proto = ans.status, ans.location, ans.proto
		r.HTTP.ContentLength, r.HTTP.BodyBytes, r.HTTP.TLS = ans.contentLength, ans.bodyBytes, ans.tls
		if ans.tls != nil {
			r.HTTP.TLSVersion = tls.VersionName(ans.tls.Version)
		}
		if i == 0 {
			ph := &r.HTTP.Phases
			dialMu.Lock()
			ph.Connect = Duration(connectDone.Sub(connectStart))
			if local.IsValid() {
				r.Source = local
			}
			dialMu.Unlock()
			if !ht.tlsStart.IsZero() {
				ph.TLS = Duration(ht.tlsDone.Sub(ht.tlsStart))
			}
			ph.Processing = Duration(ht.firstByte.Sub(ht.wrote))
			ph.Transfer = Duration(ht.end.Sub(ht.firstByte))
			ph.FirstByte = Duration(ht.firstByte.Sub(ht.start))
			if t.HTTP.Single {
				r.Samples = append(r.Samples, ph.Processing)
			}
			continue
		}
		r.Samples = append(r.Samples, Duration(ht.firstByte.Sub(ht.wrote)))
		if ht.reused {
			r.HTTP.Reused++
		}
	}
	if len(r.Samples) > 0 {
		firstErr = nil
	}
	if firstErr == nil && r.HTTP.Status != 0 && !acceptStatus(r.HTTP.Status, t.HTTP.ValidStatus) {
		firstErr = fmt.Errorf("prober: http %s %s: status %d: %w", method(t.HTTP), u, r.HTTP.Status, ErrHTTPStatus)
	}
	r.finish(firstErr)
	return r
}

// headTimes are the clock readings of one HEAD request, from httptrace hooks.
type headTimes struct {
	start, tlsStart, tlsDone, wrote, firstByte, end time.Time
	reused                                          bool
}

// method returns o's request method, HEAD by default.
func method(o HTTPOptions) string { return cmp.Or(strings.ToUpper(o.Method), http.MethodHead) }

// answer is what one request's response said.
type answer struct {
	status                   int
	location, proto          string
	contentLength, bodyBytes int64
	tls                      *tls.ConnectionState
}

// head sends one request (HEAD unless o.Method says otherwise) and reads its answer, body included.
func (p *httpProber) head(ctx context.Context, client *http.Client, u *url.URL, o HTTPOptions, timeout time.Duration) (headTimes, answer, error) {
	clk := p.e.clock
	var ht headTimes
	trace := &httptrace.ClientTrace{
		GotConn:              func(i httptrace.GotConnInfo) { ht.reused = i.Reused },
		TLSHandshakeStart:    func() { ht.tlsStart = clk.Now() },
		TLSHandshakeDone:     func(tls.ConnectionState, error) { ht.tlsDone = clk.Now() },
		WroteRequest:         func(httptrace.WroteRequestInfo) { ht.wrote = clk.Now() },
		GotFirstResponseByte: func() { ht.firstByte = clk.Now() },
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method(o), u.String(), nil)
	if err != nil {
		return ht, answer{}, err
	}
	req.Header.Set("User-Agent", UserAgent)
	for k, v := range o.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	if o.Host != "" {
		req.Host = o.Host
	}
	ht.start = clk.Now()
	resp, err := client.Do(req)
	if err != nil {
		return ht, answer{}, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ht.end = clk.Now()
	if ht.firstByte.IsZero() {
		ht.firstByte = ht.end
	}
	return ht, answer{status: resp.StatusCode, location: resp.Header.Get("Location"), proto: resp.Proto,
		contentLength: resp.ContentLength, bodyBytes: n, tls: resp.TLS}, err
}

// parseHTTPTarget accepts a URL or a bare host[:port] (taken as http://host[:port]/).
func parseHTTPTarget(s string) (*url.URL, error) {
	raw := s
	if !strings.Contains(s, "://") {
		raw = "http://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("prober: http target %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("prober: http target %q: scheme %q: want http or https", s, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("prober: http target %q: no host", s)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// tlsConfig builds the TLS client config of an http probe: SNI override (ServerName, else Host), CA file,
// skip-verify.
func tlsConfig(o HTTPOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify}
	if o.Host != "" {
		h := o.Host
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		cfg.ServerName = h
	}
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("prober: http CA file %q: %w", o.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("prober: http CA file %q: %w", o.CAFile, errNoPEM)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

var errNoPEM = errors.New("no PEM certificate in it")
