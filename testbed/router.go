package testbed

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Router tunables. The delay scheduler sleeps in ppoll(2) with a nanosecond timeout on a thread whose timer
// slack is 1 ns, wakes a learnt margin before the earliest packet is due and spins the rest of the way: the
// kernel's wake-up latency on a busy 2-core machine is tens of microseconds, the spin costs at most that much
// CPU per wake-up, and a packet then leaves within a few microseconds of its due time.
const (
	// routerWakeEarlyMin and routerWakeEarlyMax bound how long before a packet's due time the router asks
	// to be woken: twice the running mean of the kernel's wake-up lateness plus the minimum, spun away if
	// the wake-up is punctual. On the development VM (Firecracker) lateness is 25 µs at p10, 38 µs at the
	// median, 86 µs at p90 and 106 µs at p99.
	routerWakeEarlyMin = 20 * time.Microsecond
	routerWakeEarlyMax = 250 * time.Microsecond
	// routerHopAllowance is subtracted from every emulated one-way delay: the time a packet spends outside the
	// delay queue on one hop (sender's kernel to the TUN queue to the router's read; the router's write into
	// the receiving kernel, which processes the packet inside that write). Measured on the development VM
	// (2 vCPUs shared with builds, CPU pressure 50-99%) with 50 µs: the client kernel's own handshake RTT
	// (TCP_INFO) was 0.08-0.10 ms under the emulated RTT at the median, a Go dial timed around
	// Node.DialContext 0.00-0.09 ms over it; 30 µs centres the two.
	routerHopAllowance = 30 * time.Microsecond
	// routerReadBatch bounds the packets read from one port per loop turn, so one flooding node cannot
	// starve the others or the delivery of due packets.
	routerReadBatch = 64
	// routerMaxQueued bounds the packets held in the delay queue (300 ms at 100k packets/s is 30k); beyond
	// it packets are dropped and counted, like a router's full buffer.
	routerMaxQueued = 1 << 16
	// routerBufSize is the size of one packet buffer: the TUN MTU plus headroom.
	routerBufSize = 2048
)

// Stats counts what the router did with the packets it read. Every packet read lands in exactly one of
// Forwarded and the Dropped fields (or is still queued).
type Stats struct {
	Read             uint64 // packets read from any port
	Forwarded        uint64 // packets written to their destination port
	DroppedOutside   uint64 // source or destination outside the testbed's prefix (nothing leaves it)
	DroppedMalformed uint64 // not IPv4, or shorter than an IPv4 header
	DroppedNoRoute   uint64 // destination inside the prefix but not a node or an anycast address with a live instance
	DroppedDown      uint64 // the sending or receiving node is down
	DroppedLoss      uint64 // dropped by the emulated loss of the pair
	DroppedQueueFull uint64 // the delay queue was full
	WriteErrors      uint64 // the destination port refused the write
	// LateMax and LateMean describe how late packets left against their due time (send time + delay).
	LateMax, LateMean time.Duration
	// Spin is the CPU time spent spinning over the last stretch before due times (the cost of precision).
	Spin time.Duration
}

// A target is what an address in the testbed resolves to: a node, or an anycast group of nodes.
type target struct {
	node    int   // node index, or -1
	anycast []int // instance node indices for an anycast address
}

// router forwards IPv4 packets between ports (one per node: a TUN file descriptor, or in unit tests one end
// of a socket pair) after each pair's one-way delay. All forwarding happens on one locked OS thread that
// sleeps in ppoll(2); the control methods (setDelay, setLoss, setDown) are safe for concurrent use and
// affect packets read afterwards.
type router struct {
	log    *slog.Logger
	prefix netip.Prefix
	base   uint32 // first address of prefix as an integer
	n      int    // nodes
	ports  []int  // fd per node
	addrs  []target

	delay  []atomic.Int64  // n*n one-way delay in ns, [src*n+dst]
	jitter []atomic.Int64  // n*n, ns: each packet gets an extra uniform delay in [-jitter, +jitter]
	loss   []atomic.Uint32 // n*n, probability scaled to 1<<32-1
	down   []atomic.Bool   // per node

	stats struct {
		read, fwd, outside, malformed, noroute, down, loss, full, werr atomic.Uint64
		lateMax, lateSum, spin                                         atomic.Int64
	}

	allowance time.Duration // routerHopAllowance; set before start
	realtime  bool          // run the loop's thread at SCHED_FIFO priority 1; set before start

	wakeFD   int // eventfd that interrupts ppoll for stop
	stopping atomic.Bool
	done     chan struct{}
	runErr   error
	stopOnce sync.Once
}

// newRouter returns a router over ports (fd per node index) for the addresses in prefix; addrs maps each
// address to its target. Delays start at 0; the caller sets them before start.
func newRouter(log *slog.Logger, prefix netip.Prefix, ports []int, addrs map[netip.Addr]target) (*router, error) {
	if !prefix.Addr().Is4() || prefix.Bits() < 8 {
		return nil, fmt.Errorf("testbed: router prefix %v: want an IPv4 prefix of /8 or longer", prefix)
	}
	prefix = prefix.Masked()
	n := len(ports)
	r := &router{
		log:    log,
		prefix: prefix,
		base:   addrU32(prefix.Addr()),
		n:      n,
		ports:  ports,
		addrs:  make([]target, 1<<(32-prefix.Bits())),
		delay:  make([]atomic.Int64, n*n),
		jitter: make([]atomic.Int64, n*n),
		loss:   make([]atomic.Uint32, n*n),
		down:   make([]atomic.Bool, n),
		done:   make(chan struct{}),

		allowance: routerHopAllowance,
		realtime:  true,
	}
	for i := range r.addrs {
		r.addrs[i].node = -1
	}
	for a, t := range addrs {
		if !prefix.Contains(a) {
			return nil, fmt.Errorf("testbed: router address %v is outside the prefix %v", a, prefix)
		}
		if t.node >= n {
			return nil, fmt.Errorf("testbed: router address %v: node %d of %d", a, t.node, n)
		}
		r.addrs[addrU32(a)-r.base] = t
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("testbed: router eventfd: %w", err)
	}
	r.wakeFD = fd
	return r, nil
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// setDelay sets the one-way delay from node a to node b.
func (r *router) setDelay(a, b int, d time.Duration) { r.delay[a*r.n+b].Store(int64(d)) }

// getDelay returns the one-way delay from node a to node b.
func (r *router) getDelay(a, b int) time.Duration { return time.Duration(r.delay[a*r.n+b].Load()) }

// setJitter sets the jitter from node a to node b.
func (r *router) setJitter(a, b int, d time.Duration) { r.jitter[a*r.n+b].Store(int64(d)) }

// setLoss sets the probability in [0, 1] that a packet from node a to node b is dropped.
func (r *router) setLoss(a, b int, p float64) {
	r.loss[a*r.n+b].Store(uint32(min(max(p, 0), 1) * float64(^uint32(0))))
}

// setDown takes node i down (its packets are dropped both ways, anycast skips it) or back up.
func (r *router) setDown(i int, down bool) { r.down[i].Store(down) }

// stats returns a snapshot of the counters.
func (r *router) snapshot() Stats {
	s := &r.stats
	st := Stats{
		Read: s.read.Load(), Forwarded: s.fwd.Load(), DroppedOutside: s.outside.Load(),
		DroppedMalformed: s.malformed.Load(), DroppedNoRoute: s.noroute.Load(), DroppedDown: s.down.Load(),
		DroppedLoss: s.loss.Load(), DroppedQueueFull: s.full.Load(), WriteErrors: s.werr.Load(),
		LateMax: time.Duration(s.lateMax.Load()), Spin: time.Duration(s.spin.Load()),
	}
	if st.Forwarded > 0 {
		st.LateMean = time.Duration(s.lateSum.Load() / int64(st.Forwarded))
	}
	return st
}

// resolve returns the node a packet from src to dst goes to, or a negative drop reason.
func (r *router) resolve(src int, dst uint32) int {
	t := &r.addrs[dst-r.base]
	if t.node >= 0 {
		return t.node
	}
	best, bestD := -1, int64(0)
	for _, i := range t.anycast {
		if r.down[i].Load() {
			continue
		}
		if d := r.delay[src*r.n+i].Load(); best < 0 || d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

// packet is one queued packet.
type packet struct {
	due  int64 // monotonic ns
	seq  uint64
	src  int
	dst  int
	buf  []byte
	size int
}

// pktHeap is a min-heap of packets by (due, seq): with a constant delay per pair, packets of a pair leave in
// the order they came.
type pktHeap []*packet

func (h pktHeap) less(i, j int) bool {
	return h[i].due < h[j].due || (h[i].due == h[j].due && h[i].seq < h[j].seq)
}

func (h *pktHeap) push(p *packet) {
	*h = append(*h, p)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *pktHeap) pop() *packet {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = nil
	s = s[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if l+1 < len(s) && s.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

var monoStart = time.Now()

// mono returns monotonic nanoseconds.
func mono() int64 { return int64(time.Since(monoStart)) }

// start runs the forwarding loop on its own locked OS thread until stop.
func (r *router) start() {
	go func() {
		defer close(r.done)
		// The thread's timer slack and priority are changed: it is never handed back to the runtime.
		runtime.LockOSThread()
		r.runErr = r.loop()
		if r.runErr != nil {
			r.log.Error("testbed: router stopped", "err", r.runErr)
		}
	}()
}

// stop ends the loop, waits for it and closes the router's eventfd (not the ports: their owner closes them).
func (r *router) stop() error {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		var one = [8]byte{1}
		_, _ = unix.Write(r.wakeFD, one[:])
		<-r.done
		unix.Close(r.wakeFD)
	})
	return r.runErr
}

func (r *router) loop() error {
	// 1 ns timer slack: ppoll's timeout is then honoured to the microsecond instead of the default 50 µs.
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		r.log.Warn("testbed: router timer slack", "err", err)
	}
	// Best effort: a higher priority shortens wake-up latency while other processes compile.
	_ = unix.Setpriority(unix.PRIO_PROCESS, 0, -10)
	if r.realtime {
		// SCHED_FIFO at the lowest real-time priority: the router wakes on time while other processes
		// compile (on the development VM it cut the mean lateness from ~90 µs to ~12 µs and the worst from
		// ~8 ms to ~0.5 ms under load). The loop sleeps in ppoll and spins at most routerWakeEarlyMax per
		// wake-up, and the kernel's real-time throttling leaves others 5% of a CPU even under a flood.
		attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}
		if err := unix.SchedSetAttr(0, attr, 0); err != nil {
			r.log.Warn("testbed: router real-time priority unavailable", "err", err)
		}
	}

	fds := make([]unix.PollFd, r.n+1)
	for i, fd := range r.ports {
		fds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	fds[r.n] = unix.PollFd{Fd: int32(r.wakeFD), Events: unix.POLLIN}

	var (
		q        pktHeap
		free     []*packet
		seq      uint64
		lastDue  = make([]int64, r.n*r.n)
		rng      = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x7e57bed))
		ts       unix.Timespec
		overEWMA int64
		spinFrom int64
		wakeEar  = int64(routerWakeEarlyMin)
		allow    = int64(r.allowance)
	)
	get := func() *packet {
		if k := len(free); k > 0 {
			p := free[k-1]
			free = free[:k-1]
			return p
		}
		return &packet{buf: make([]byte, routerBufSize)}
	}
	spinning := false
	for {
		// Deliver what is due.
		now := mono()
		for len(q) > 0 && q[0].due <= now {
			p := q.pop()
			r.deliver(p, now)
			free = append(free, p)
			now = mono()
		}
		// Sleep until wakeEar before the head's due time; within wakeEar of it, spin: poll the ports
		// without sleeping, so that packets arriving meanwhile are read (and timestamped) at once.
		timeout := (*unix.Timespec)(nil)
		var want int64
		if len(q) > 0 {
			d := max(q[0].due-now-wakeEar, 0)
			ts = unix.NsecToTimespec(d)
			timeout = &ts
			want = now + d
		}
		if spinning {
			r.stats.spin.Add(now - spinFrom)
		}
		spinning = timeout != nil && want == now
		spinFrom = now
		slept := mono()
		nready, err := unix.Ppoll(fds, timeout, nil)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("testbed: router ppoll: %w", err)
		}
		// A packet that woke the router from a sleep arrived one wake-up latency before it is read: the
		// latency learnt from timed wake-ups (the same path through the scheduler) is taken off its
		// arrival time, bounded by how long the router slept.
		backdate := int64(0)
		if nready > 0 && !spinning {
			backdate = min(overEWMA, mono()-slept)
		}
		if nready == 0 && timeout != nil && !spinning {
			// Learn how late the kernel wakes us from a timed-out sleep and wake that much earlier,
			// plus a margin, next time.
			over := min(mono()-want, int64(routerWakeEarlyMax))
			overEWMA += (max(over, 0) - overEWMA) / 16
			wakeEar = min(2*overEWMA+int64(routerWakeEarlyMin), int64(routerWakeEarlyMax))
		}
		if r.stopping.Load() {
			return nil
		}
		for i := 0; i < r.n; i++ {
			if fds[i].Revents == 0 {
				continue
			}
			if fds[i].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && fds[i].Revents&unix.POLLIN == 0 {
				// A port went away (its node is being torn down): stop polling it.
				fds[i].Fd = -1
				continue
			}
			for k := 0; k < routerReadBatch; k++ {
				p := get()
				nr, err := unix.Read(r.ports[i], p.buf)
				if err != nil || nr <= 0 {
					free = append(free, p)
					break
				}
				now := mono() - backdate
				r.stats.read.Add(1)
				dst := r.classify(i, p.buf[:nr])
				if dst < 0 {
					free = append(free, p)
					continue
				}
				pair := i*r.n + dst
				if l := r.loss[pair].Load(); l != 0 && rng.Uint32() < l {
					r.stats.loss.Add(1)
					free = append(free, p)
					continue
				}
				if len(q) >= routerMaxQueued {
					r.stats.full.Add(1)
					free = append(free, p)
					continue
				}
				d := r.delay[pair].Load()
				if j := r.jitter[pair].Load(); j > 0 {
					d += rng.Int64N(2*j+1) - j
				}
				d = max(d-allow, 0)
				due := max(now+d, lastDue[pair]) // FIFO per pair even with jitter or a shortened delay
				lastDue[pair] = due
				seq++
				p.due, p.seq, p.src, p.dst, p.size = due, seq, i, dst, nr
				q.push(p)
			}
		}
	}
}

// classify checks a packet read from node src and returns its destination node, or -1 after counting the
// drop.
func (r *router) classify(src int, b []byte) int {
	if len(b) < 20 || b[0]>>4 != 4 {
		r.stats.malformed.Add(1)
		return -1
	}
	s := uint32(b[12])<<24 | uint32(b[13])<<16 | uint32(b[14])<<8 | uint32(b[15])
	d := uint32(b[16])<<24 | uint32(b[17])<<16 | uint32(b[18])<<8 | uint32(b[19])
	size := uint32(len(r.addrs))
	if s-r.base >= size || d-r.base >= size {
		r.stats.outside.Add(1)
		return -1
	}
	if r.down[src].Load() {
		r.stats.down.Add(1)
		return -1
	}
	dst := r.resolve(src, d)
	if dst < 0 {
		r.stats.noroute.Add(1)
		return -1
	}
	return dst
}

// deliver writes p to its destination unless the destination went down while it was queued.
func (r *router) deliver(p *packet, now int64) {
	if r.down[p.dst].Load() || r.down[p.src].Load() {
		r.stats.down.Add(1)
		return
	}
	r.stats.fwd.Add(1) // before the write: a reader that got the packet sees it counted
	if _, err := unix.Write(r.ports[p.dst], p.buf[:p.size]); err != nil {
		r.stats.fwd.Add(^uint64(0))
		r.stats.werr.Add(1)
		return
	}
	late := now - p.due
	r.stats.lateSum.Add(late)
	if late > r.stats.lateMax.Load() {
		r.stats.lateMax.Store(late)
	}
}
