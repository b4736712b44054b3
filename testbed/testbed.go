package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vantage-edge/vantage/geo"
)

// RTTModel gives the modelled round-trip time in milliseconds between two coordinates; geo.DefaultModel()
// is the one used unless Options.Model replaces it.
type RTTModel interface {
	RTTMs(a, b geo.Point) float64
}

// Options tune Start. The zero value is the default.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	Model  RTTModel     // default geo.DefaultModel()
	// NoRealtime keeps the router's thread at normal priority instead of SCHED_FIFO 1 (see router.go).
	NoRealtime bool
	// Nice, when not 0, is set as the nice value of every thread of the calling process (-20 to 19; the
	// router's thread runs at real-time priority regardless). The router shares the process's garbage
	// collector, whose stop-the-world pauses wait for the slowest thread: on a loaded machine a negative
	// value keeps them short. `vantage testbed up` and the package's tests use -10.
	Nice int
	// KeepStale skips the sweep of dead testbeds' leftovers that Start does first.
	KeepStale bool
}

// gomaxprocsMu serialises the testbeds' changes of GOMAXPROCS (one more P per running router).
var gomaxprocsMu sync.Mutex

// createWorkers bounds how many namespaces are created at once.
const createWorkers = 4

// Testbed is a running emulated WAN. Its methods are safe for concurrent use.
type Testbed struct {
	log    *slog.Logger
	lease  *lease
	plan   *plan
	nodes  []*Node
	byName map[string]*Node
	byAddr map[netip.Addr]*Node
	any    map[string]netip.Addr // anycast name -> address
	fds    []int
	r      *router
	svc    *services

	closeOnce sync.Once
	closeErr  error
}

// Node is one namespace of the testbed: a PoP, a host or an anycast instance.
type Node struct {
	Name    string    // "FRA" for a PoP, the spec's name for a host, "<anycast>-<instance>" for an instance
	Kind    NodeKind  // KindPoP, KindHost or KindAnycast
	NS      string    // network namespace name ("vt<id>-<lower-case name>"), for `ip netns exec`
	City    string    // the city (or "lat,lon") it is in
	Point   geo.Point // its coordinates, from geo's catalogues
	Anycast string    // for an anycast instance, the anycast address's name

	tb   *Testbed
	idx  int
	addr netip.Addr

	poolMu sync.Mutex
	pool   map[int][]int // socket type -> sockets made in the namespace ahead of DialContext
}

// Addr returns the node's own (unicast) address.
func (n *Node) Addr() netip.Addr { return n.addr }

// String returns the node's name.
func (n *Node) String() string { return n.Name }

// Start builds the testbed of spec: it allocates a testbed id and subnet, creates a namespace with a TUN per
// node, starts the router with every pair's delay (half of Model's RTT) and the services. It sweeps dead
// testbeds' leftovers first. Close it when done; on error nothing is left behind.
func Start(ctx context.Context, spec *Spec, opts Options) (*Testbed, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Model == nil {
		opts.Model = geo.DefaultModel()
	}
	log := opts.Logger
	p, err := spec.resolve()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("testbed: start: needs root (network namespaces, /dev/net/tun)")
	}
	if opts.Nice != 0 {
		if err := setProcessNice(opts.Nice); err != nil {
			log.Warn("testbed: nice", "err", err)
		}
	}
	if !opts.KeepStale {
		if _, err := Down(ctx, "", false, log); err != nil {
			log.Warn("testbed: sweeping stale testbeds", "err", err)
		}
	}
	l, err := allocate(log)
	if err != nil {
		return nil, err
	}
	nAddrs := len(p.nodes) + len(p.anycast)
	if nAddrs+2 > 1<<(32-SubnetBits) {
		l.release()
		return nil, fmt.Errorf("testbed: start: %d nodes and anycast addresses do not fit a /%d", nAddrs, SubnetBits)
	}
	tb := &Testbed{
		log:    log.With("testbed", l.name()),
		lease:  l,
		plan:   p,
		byName: map[string]*Node{},
		byAddr: map[netip.Addr]*Node{},
		any:    map[string]netip.Addr{},
	}
	for i, pn := range p.nodes {
		n := &Node{
			Name: pn.name, Kind: pn.kind, NS: l.nsPrefix() + strings.ToLower(pn.name), City: pn.city,
			Point: pn.point, tb: tb, idx: i, addr: l.addr(i),
		}
		if pn.anycast >= 0 {
			n.Anycast = p.anycast[pn.anycast].name
		}
		tb.nodes = append(tb.nodes, n)
		tb.byName[n.Name] = n
		tb.byAddr[n.addr] = n
	}
	for j, a := range p.anycast {
		tb.any[a.name] = l.addr(len(p.nodes) + j)
	}
	st := State{ID: l.id, Name: l.name(), Spec: p.name, PID: os.Getpid(), Prefix: l.prefix, Started: time.Now().UTC()}
	for _, n := range tb.nodes {
		st.Nodes = append(st.Nodes, NodeState{Name: n.Name, NS: n.NS, Addr: n.addr})
	}
	if err := l.writeState(st); err != nil {
		l.release()
		return nil, err
	}
	if err := tb.build(ctx, opts); err != nil {
		return nil, errors.Join(err, tb.Close())
	}
	tb.log.Info("testbed: up", "prefix", l.prefix, "nodes", len(tb.nodes), "anycast", len(p.anycast))
	return tb, nil
}

// build creates the namespaces, the router and the services.
func (tb *Testbed) build(ctx context.Context, opts Options) error {
	p := tb.plan
	tb.fds = make([]int, len(tb.nodes))
	for i := range tb.fds {
		tb.fds[i] = -1
	}
	errs := make([]error, len(tb.nodes))
	sem := make(chan struct{}, createWorkers)
	var wg sync.WaitGroup
	for i, n := range tb.nodes {
		if err := ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("testbed: start: %w", err)
			break
		}
		setup := nsSetup{name: n.NS, addrs: []netip.Addr{n.addr}, icmp: p.nodes[i].services.ICMP == nil || *p.nodes[i].services.ICMP}
		if n.Anycast != "" {
			setup.addrs = append(setup.addrs, tb.any[n.Anycast])
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			tb.fds[i], errs[i] = createNS(setup)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	targets := map[netip.Addr]target{}
	for _, n := range tb.nodes {
		targets[n.addr] = target{node: n.idx}
	}
	for _, a := range p.anycast {
		targets[tb.any[a.name]] = target{node: -1, anycast: a.instances}
	}
	r, err := newRouter(tb.log, tb.lease.prefix, tb.fds, targets)
	if err != nil {
		return err
	}
	r.realtime = !opts.NoRealtime
	for _, a := range tb.nodes {
		for _, b := range tb.nodes {
			if a != b {
				r.setDelay(a.idx, b.idx, oneWay(opts.Model.RTTMs(a.Point, b.Point)))
			}
		}
	}
	tb.r = r
	// The router's goroutine keeps an OS thread and, whenever it is not asleep long enough for the runtime
	// to take it back, a P: one more P keeps it from waiting for one (and the rest of the process from
	// running on one P) on a loaded machine. Measured under 90-99% CPU pressure: the kernel-measured
	// handshake error's p99 was 0.1-1.2 ms with the extra P, 11-70 ms without.
	gomaxprocsMu.Lock()
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	gomaxprocsMu.Unlock()
	r.start()
	svc, err := startServices(ctx, tb)
	tb.svc = svc
	return err
}

// oneWay returns half an RTT given in milliseconds, rounded to the nanosecond.
func oneWay(rttMs float64) time.Duration {
	if math.IsNaN(rttMs) || rttMs < 0 {
		return 0
	}
	return time.Duration(math.Round(rttMs * 1e6 / 2))
}

// Close stops the services and the router and removes every namespace (and with them the TUNs and routes),
// the state file and the allocation. It is idempotent.
func (tb *Testbed) Close() error {
	tb.closeOnce.Do(func() {
		var errs []error
		if tb.svc != nil {
			errs = append(errs, tb.svc.close())
		}
		if tb.r != nil {
			errs = append(errs, tb.r.stop())
			gomaxprocsMu.Lock()
			if n := runtime.GOMAXPROCS(0); n > 1 {
				runtime.GOMAXPROCS(n - 1) // give back the P build added
			}
			gomaxprocsMu.Unlock()
		}
		// Closing a TUN unregisters its device, which waits for RCU grace periods: in parallel, 40 take the
		// time of a few.
		var wg sync.WaitGroup
		delErrs := make([]error, len(tb.nodes))
		for i, n := range tb.nodes {
			n.closePool()
			wg.Go(func() {
				if i < len(tb.fds) && tb.fds[i] >= 0 {
					unix.Close(tb.fds[i])
				}
				delErrs[i] = deleteNS(n.NS)
			})
		}
		wg.Wait()
		errs = append(errs, delErrs...)
		errs = append(errs, tb.lease.release())
		tb.closeErr = errors.Join(errs...)
		tb.log.Info("testbed: down", "err", tb.closeErr)
	})
	return tb.closeErr
}

// Name returns the testbed's name, "vt<id>": the prefix of its namespaces and its key for `vantage testbed`.
func (tb *Testbed) Name() string { return tb.lease.name() }

// Prefix returns the testbed's subnet of WANPrefix; every address of the testbed is in it.
func (tb *Testbed) Prefix() netip.Prefix { return tb.lease.prefix }

// Node returns the node called name (a PoP's IATA code in upper case, a host's name, "<anycast>-<instance>"),
// or nil.
func (tb *Testbed) Node(name string) *Node { return tb.byName[name] }

// NodeByAddr returns the node whose own address is a, or nil.
func (tb *Testbed) NodeByAddr(a netip.Addr) *Node { return tb.byAddr[a] }

// Nodes returns every node: PoPs in spec order, then hosts, then anycast instances.
func (tb *Testbed) Nodes() []*Node { return append([]*Node(nil), tb.nodes...) }

// AnycastAddr returns the address of the anycast target called name.
func (tb *Testbed) AnycastAddr(name string) (netip.Addr, bool) {
	a, ok := tb.any[name]
	return a, ok
}

// Anycast is one anycast address of the testbed.
type Anycast struct {
	Name      string
	Addr      netip.Addr
	Instances []*Node // the nodes serving it, in spec order
}

// AnycastTargets returns the anycast addresses in spec order.
func (tb *Testbed) AnycastTargets() []Anycast {
	out := make([]Anycast, 0, len(tb.plan.anycast))
	for _, a := range tb.plan.anycast {
		ac := Anycast{Name: a.name, Addr: tb.any[a.name]}
		for _, i := range a.instances {
			ac.Instances = append(ac.Instances, tb.nodes[i])
		}
		out = append(out, ac)
	}
	return out
}

// DNSServer returns the address of the testbed's DNS server (port 53, UDP and TCP), if the spec has one.
func (tb *Testbed) DNSServer() (netip.AddrPort, bool) {
	if tb.plan.dnsNode < 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(tb.nodes[tb.plan.dnsNode].addr, 53), true
}

// Zone returns the DNS zone of the node names, e.g. "vantage.test.".
func (tb *Testbed) Zone() string { return tb.plan.zone }

// node returns the node called name or an error naming it.
func (tb *Testbed) node(name string) (*Node, error) {
	if n := tb.byName[name]; n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("testbed %s: no node %q", tb.Name(), name)
}

// SetDown takes a node down (the router drops every packet from and to it, an anycast address stops choosing
// it, geo-DNS stops answering with it) or brings it back up.
func (tb *Testbed) SetDown(name string, down bool) error {
	n, err := tb.node(name)
	if err != nil {
		return err
	}
	tb.r.setDown(n.idx, down)
	tb.log.Info("testbed: node state", "node", name, "down", down)
	return nil
}

// IsDown reports whether the node called name is down.
func (tb *Testbed) IsDown(name string) bool {
	n := tb.byName[name]
	return n != nil && tb.r.down[n.idx].Load()
}

// SetDelay sets the one-way delay between nodes a and b, both directions (the RTT is twice oneWay). Packets
// already queued keep their delay; a pair's packets never overtake each other.
func (tb *Testbed) SetDelay(a, b string, oneWay time.Duration) error {
	na, nb, err := tb.pair(a, b)
	if err != nil {
		return err
	}
	if oneWay < 0 {
		return fmt.Errorf("testbed %s: delay %s-%s: %v is negative", tb.Name(), a, b, oneWay)
	}
	tb.r.setDelay(na.idx, nb.idx, oneWay)
	tb.r.setDelay(nb.idx, na.idx, oneWay)
	return nil
}

// SetJitter adds to every packet between a and b (both directions) a uniform random delay in
// [-jitter, +jitter], keeping the pair's order.
func (tb *Testbed) SetJitter(a, b string, jitter time.Duration) error {
	na, nb, err := tb.pair(a, b)
	if err != nil {
		return err
	}
	if jitter < 0 {
		return fmt.Errorf("testbed %s: jitter %s-%s: %v is negative", tb.Name(), a, b, jitter)
	}
	tb.r.setJitter(na.idx, nb.idx, jitter)
	tb.r.setJitter(nb.idx, na.idx, jitter)
	return nil
}

// SetLoss sets the probability in [0, 1] that a packet between a and b (each direction) is dropped.
func (tb *Testbed) SetLoss(a, b string, p float64) error {
	na, nb, err := tb.pair(a, b)
	if err != nil {
		return err
	}
	if p < 0 || p > 1 || math.IsNaN(p) {
		return fmt.Errorf("testbed %s: loss %s-%s: %v is outside [0, 1]", tb.Name(), a, b, p)
	}
	tb.r.setLoss(na.idx, nb.idx, p)
	tb.r.setLoss(nb.idx, na.idx, p)
	return nil
}

func (tb *Testbed) pair(a, b string) (*Node, *Node, error) {
	na, err := tb.node(a)
	if err != nil {
		return nil, nil, err
	}
	nb, err := tb.node(b)
	if err != nil {
		return nil, nil, err
	}
	if na == nb {
		return nil, nil, fmt.Errorf("testbed %s: %s to itself is loopback, not a WAN link", tb.Name(), a)
	}
	return na, nb, nil
}

// RTT returns the emulated RTT between nodes a and b: the sum of the two one-way delays now set.
func (tb *Testbed) RTT(a, b string) (time.Duration, error) {
	na, nb, err := tb.pair(a, b)
	if err != nil {
		return 0, err
	}
	return tb.r.getDelay(na.idx, nb.idx) + tb.r.getDelay(nb.idx, na.idx), nil
}

// Matrix is the emulated truth: the RTT between every pair of nodes, in Names order.
type Matrix struct {
	Names []string
	RTT   [][]time.Duration // RTT[i][j] between Names[i] and Names[j]; 0 on the diagonal
}

// RTTMatrix returns the RTTs the testbed emulates now (changed by SetDelay), for benchmarks to score
// measurements against.
func (tb *Testbed) RTTMatrix() Matrix {
	m := Matrix{Names: make([]string, len(tb.nodes)), RTT: make([][]time.Duration, len(tb.nodes))}
	for i, a := range tb.nodes {
		m.Names[i] = a.Name
		m.RTT[i] = make([]time.Duration, len(tb.nodes))
		for j, b := range tb.nodes {
			if i != j {
				m.RTT[i][j] = tb.r.getDelay(a.idx, b.idx) + tb.r.getDelay(b.idx, a.idx)
			}
		}
	}
	return m
}

// Stats returns the router's counters.
func (tb *Testbed) Stats() Stats { return tb.r.snapshot() }

// nsPath returns the path of the node's namespace.
func (n *Node) nsPath() string { return filepath.Join(netnsDir, n.NS) }
