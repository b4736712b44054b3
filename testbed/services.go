package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Service tunables.
const (
	// httpReadHeaderTimeout bounds a request's headers on the hosts' HTTP servers.
	httpReadHeaderTimeout = 10 * time.Second
	// dnsStaticTTL is the TTL of node and anycast names; dnsGeoTTL that of geo-DNS answers, short as a real
	// geo-DNS service's are so that failover shows.
	dnsStaticTTL = 300
	dnsGeoTTL    = 5
	// serviceStopTimeout bounds the graceful shutdown of the services at Close.
	serviceStopTimeout = 2 * time.Second
)

// Headers of the hosts' HTTP responses, naming the instance that answered (for anycast and geo-DNS checks).
const (
	HeaderNode = "X-Vantage-Node" // the node's name, e.g. "edge-syd"
	HeaderCity = "X-Vantage-City" // its city, e.g. "Sydney"
)

// services are the servers running inside the namespaces.
type services struct {
	log     *slog.Logger
	wg      sync.WaitGroup
	closers []func(ctx context.Context) error
}

// startServices starts every node's TCP, HTTP and DNS servers. On error it returns what it started, for
// close.
func startServices(ctx context.Context, tb *Testbed) (*services, error) {
	s := &services{log: tb.log}
	for i, n := range tb.nodes {
		spec := tb.plan.nodes[i].services
		for _, port := range spec.TCP {
			ln, err := n.Listen(ctx, "tcp4", ":"+strconv.Itoa(port))
			if err != nil {
				return s, err
			}
			s.closers = append(s.closers, func(context.Context) error { return ln.Close() })
			s.wg.Go(func() { acceptAndClose(ln) })
		}
		for _, port := range spec.HTTP {
			ln, err := n.Listen(ctx, "tcp4", ":"+strconv.Itoa(port))
			if err != nil {
				return s, err
			}
			srv := &http.Server{Handler: identityHandler(n), ReadHeaderTimeout: httpReadHeaderTimeout}
			s.closers = append(s.closers, srv.Shutdown)
			s.wg.Go(func() {
				if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
					s.log.Error("testbed: http server", "node", n.Name, "port", port, "err", err)
				}
			})
		}
		if spec.DNS {
			if err := s.startDNS(ctx, tb, n); err != nil {
				return s, err
			}
		}
	}
	return s, nil
}

// acceptAndClose accepts connections and closes them at once: a TCP CONNECT probe only needs the handshake.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// identityHandler answers every request with 200 and the node's name and city, in headers and body.
func identityHandler(n *Node) http.Handler {
	body := n.Name + " " + n.City + "\n"
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(HeaderNode, n.Name)
		w.Header().Set(HeaderCity, n.City)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write([]byte(body))
	})
}

// startDNS runs the testbed's DNS server on port 53 (UDP and TCP) of node n.
func (s *services) startDNS(ctx context.Context, tb *Testbed, n *Node) error {
	h := &dnsHandler{tb: tb}
	pc, err := n.ListenPacket(ctx, "udp4", ":53")
	if err != nil {
		return err
	}
	ln, err := n.Listen(ctx, "tcp4", ":53")
	if err != nil {
		pc.Close()
		return err
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.closers = append(s.closers, srv.ShutdownContext)
		s.wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Error("testbed: dns server", "node", n.Name, "err", err)
			}
		})
		select {
		case <-started:
		case <-ctx.Done():
			return fmt.Errorf("testbed: dns server on %s: %w", n.Name, ctx.Err())
		}
	}
	return nil
}

// close stops every service and waits for their goroutines.
func (s *services) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), serviceStopTimeout)
	defer cancel()
	var errs []error
	for _, c := range s.closers {
		if err := c(ctx); err != nil {
			errs = append(errs, fmt.Errorf("testbed: stop service: %w", err))
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// dnsHandler answers A queries for "<node>.<zone>" and "<anycast>.<zone>" with their addresses, and for each
// geo-DNS name with the replica nearest the asking node.
type dnsHandler struct{ tb *Testbed }

func (h *dnsHandler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	defer func() { _ = w.WriteMsg(m) }()
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	var from netip.Addr
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		from = ap.Addr().Unmap()
	}
	addr, ttl, ok := h.lookup(name, from)
	switch {
	case !ok && !dns.IsSubDomain(h.tb.plan.zone, name): // a name of the real Internet: never answered
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
	case !ok:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   addr.AsSlice(),
		})
	}
}

// lookup resolves a canonical name as seen by the node at address from.
func (h *dnsHandler) lookup(name string, from netip.Addr) (netip.Addr, uint32, bool) {
	tb := h.tb
	for _, g := range tb.plan.geodns {
		if g.name == name {
			n := tb.nearest(tb.NodeByAddr(from), g.hosts)
			if n == nil {
				return netip.Addr{}, 0, false
			}
			return n.addr, dnsGeoTTL, true
		}
	}
	if i, ok := tb.plan.aliases[name]; ok {
		return tb.nodes[i].addr, dnsStaticTTL, true
	}
	if i, ok := tb.plan.anyAliases[name]; ok {
		return tb.any[tb.plan.anycast[i].name], dnsStaticTTL, true
	}
	if !dns.IsSubDomain(tb.plan.zone, name) || name == tb.plan.zone {
		return netip.Addr{}, 0, false
	}
	label := strings.TrimSuffix(name, "."+tb.plan.zone)
	if a, ok := tb.Resolve(label); ok {
		return a, dnsStaticTTL, true
	}
	return netip.Addr{}, 0, false
}

// nearest returns the live node among candidates with the lowest one-way delay from node from (the first
// live one when from is not a node), or nil when all are down.
func (tb *Testbed) nearest(from *Node, candidates []int) *Node {
	var best *Node
	var bestD time.Duration
	for _, i := range candidates {
		if tb.r.down[i].Load() {
			continue
		}
		var d time.Duration
		if from != nil && from.idx != i {
			d = tb.r.getDelay(from.idx, i)
		}
		if best == nil || d < bestD {
			best, bestD = tb.nodes[i], d
		}
	}
	return best
}

// GeoDNS returns the replica the DNS server answers name with when node from asks: the emulated truth for
// replicated targets. The error names an unknown name or node, or says that every replica is down.
func (tb *Testbed) GeoDNS(name, from string) (*Node, error) {
	fn, err := tb.node(from)
	if err != nil {
		return nil, err
	}
	cn := dns.CanonicalName(name)
	if !dns.IsFqdn(name) {
		cn = dns.CanonicalName(name + "." + tb.plan.zone)
	}
	for _, g := range tb.plan.geodns {
		if g.name == cn {
			if n := tb.nearest(fn, g.hosts); n != nil {
				return n, nil
			}
			return nil, fmt.Errorf("testbed %s: geo-DNS %q: every replica is down", tb.Name(), name)
		}
	}
	return nil, fmt.Errorf("testbed %s: no geo-DNS name %q", tb.Name(), name)
}

// AnycastInstance returns the instance of the anycast address called name that the router delivers packets
// from node from to now: the live instance with the lowest delay. The error names an unknown name or node, or
// says that every instance is down.
func (tb *Testbed) AnycastInstance(name, from string) (*Node, error) {
	fn, err := tb.node(from)
	if err != nil {
		return nil, err
	}
	for _, a := range tb.plan.anycast {
		if a.name == name {
			if i := tb.r.resolve(fn.idx, addrU32(tb.any[name])); i >= 0 {
				return tb.nodes[i], nil
			}
			return nil, fmt.Errorf("testbed %s: anycast %q: every instance is down", tb.Name(), name)
		}
	}
	return nil, fmt.Errorf("testbed %s: no anycast address %q", tb.Name(), name)
}
