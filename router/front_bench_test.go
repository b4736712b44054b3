package router

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// rawWorker is a loopback worker that answers every request with a fixed 200 "ok" on a kept-alive
// connection, allocating nothing per request, so that the benchmark below counts the front's allocations.
func rawWorker(b *testing.B) *url.URL {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
	addr := rawServer(b, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 16<<10)
		for {
			// A request of the front has no body here: its head ends at an empty line.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
	return &url.URL{Scheme: "http", Host: addr}
}

// rawServer accepts loopback connections until the test ends and serves each in a goroutine of its own with
// handle, closing it after; it returns the listener's address.
func rawServer(tb testing.TB, handle func(c net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// nopResponse is a reusable http.ResponseWriter that discards the body.
type nopResponse struct {
	h    http.Header
	code int
}

func (w *nopResponse) Header() http.Header         { return w.h }
func (w *nopResponse) WriteHeader(code int)        { w.code = code }
func (w *nopResponse) Write(p []byte) (int, error) { return len(p), nil }

// benchFront returns a front whose benchmarked application is routed to LHR, both PoPs' worker a rawWorker.
func benchFront(b *testing.B) *Front {
	r := newTestRouter(b, noSource{}, nil)
	install(b, r, dec("api.example.com", "LHR", "LHR:10", "EWR:40"))
	u := rawWorker(b)
	front, err := NewFront(r, FrontConfig{Ingress: "EWR", Workers: map[string]*url.URL{"EWR": u, "LHR": u}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(front.CloseIdleConnections)
	return front
}

// BenchmarkFrontServeHTTP measures the front's own work per request (Route, the HTTP/1.1 path to a worker on
// a loopback connection, the response headers) with -benchmem: allocations here are the front's, not the
// net/http server's (which are measured by bench/'s wrk rounds). "routed" sends a request id (as the edge
// does), "no-id" makes the front generate one.
func BenchmarkFrontServeHTTP(b *testing.B) {
	front := benchFront(b)
	for _, c := range []struct{ name, id string }{{"routed", "8c3a1f2e4b5d6a7f-EWR"}, {"no-id", ""}} {
		b.Run(c.name, func(b *testing.B) {
			raw := "GET /x HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
			if c.id != "" {
				raw += "Cf-Ray: " + c.id + "\r\n"
			}
			base, err := http.ReadRequest(bufio.NewReader(bytes.NewReader([]byte(raw + "\r\n"))))
			if err != nil {
				b.Fatal(err)
			}
			base.RemoteAddr = "127.0.0.1:40000"
			w := &nopResponse{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				req := *base // the server makes a new Request per request too; its header map is the front's to change
				if c.id == "" {
					req.Header = http.Header{"User-Agent": base.Header["User-Agent"], "Accept": base.Header["Accept"]}
				}
				clear(w.h)
				front.ServeHTTP(w, &req)
				if w.code != 200 {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// BenchmarkFrontServeFastHTTP is BenchmarkFrontServeHTTP on the fasthttp path (ServeFastHTTP): the request
// and its context are reused as the fasthttp server reuses them, so allocations here are the front's.
func BenchmarkFrontServeFastHTTP(b *testing.B) {
	front := benchFront(b)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	for _, c := range []struct{ name, id string }{{"routed", "8c3a1f2e4b5d6a7f-EWR"}, {"no-id", ""}} {
		b.Run(c.name, func(b *testing.B) {
			raw := "GET /x HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
			if c.id != "" {
				raw += "Cf-Ray: " + c.id + "\r\n"
			}
			raw += "\r\n"
			var ctx fasthttp.RequestCtx
			ctx.Init(&fasthttp.Request{}, remote, nil) // the client's address; the request is read into ctx below
			br, bw := bufio.NewReader(nil), bufio.NewWriter(io.Discard)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				br.Reset(strings.NewReader(raw))
				if err := ctx.Request.Read(br); err != nil {
					b.Fatal(err)
				}
				front.ServeFastHTTP(&ctx)
				if code := ctx.Response.StatusCode(); code != 200 {
					b.Fatalf("status %d", code)
				}
				if err := ctx.Response.Write(bw); err != nil { // as the server: the streamed body read to its end
					b.Fatal(err)
				}
				bw.Flush()
			}
		})
	}
}
