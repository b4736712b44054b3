package prober

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	probing "github.com/prometheus-community/pro-bing"
	"golang.org/x/sys/unix"

	"github.com/vantage-edge/vantage/placement"
)

// minICMPInterval is the interval between echo requests when Config.Interval is negative (none): pro-bing
// needs a positive one.
const minICMPInterval = time.Millisecond

// icmpProber sends ICMP echo requests with github.com/prometheus-community/pro-bing: a raw socket when the
// process may open one (CAP_NET_RAW in its effective set: root, or a non-root daemon granted the capability, as
// the systemd unit and the Kubernetes manifest do; or when Config.ICMPPrivileged says so), an unprivileged ICMP
// datagram socket otherwise (Linux allows it to the groups in net.ipv4.ping_group_range). When the raw socket
// was chosen on its own and the kernel refuses it, the probe falls back to a datagram socket. Samples are
// pro-bing's RTTs, send to reply; Result.ICMP.Socket says which socket was used.
type icmpProber struct{ e *Engine }

// ICMP socket kinds, as reported in ICMPResult.Socket.
const (
	ICMPSocketRaw      = "raw"      // SOCK_RAW: needs CAP_NET_RAW
	ICMPSocketDatagram = "datagram" // SOCK_DGRAM IPPROTO_ICMP: needs a group in net.ipv4.ping_group_range
)

// ICMPResult is the ICMP-specific part of a Result.
type ICMPResult struct {
	Socket string `json:"socket"` // ICMPSocketRaw or ICMPSocketDatagram
}

// capNetRaw reports whether the process holds CAP_NET_RAW in its effective capability set (euid 0 counts
// when the capabilities cannot be read).
var capNetRaw = sync.OnceValue(func() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.Geteuid() == 0
	}
	return data[unix.CAP_NET_RAW/32].Effective&(1<<(unix.CAP_NET_RAW%32)) != 0
})

func (p *icmpProber) Probe(ctx context.Context, t Target) Result {
	e := p.e
	r := Result{Kind: placement.ProbeICMP, Target: t.Addr}
	host := strings.TrimSuffix(strings.TrimPrefix(t.Addr, "["), "]")
	if err := e.prepare(ctx, &r, host); err != nil {
		r.finish(err)
		return r
	}
	privileged, forced := capNetRaw(), false
	if e.cfg.ICMPPrivileged != nil {
		privileged, forced = *e.cfg.ICMPPrivileged, true
	}
	st, sendErr, err := p.ping(ctx, &r, t, privileged)
	if err != nil && st.PacketsSent == 0 && privileged && !forced && isPermission(err) {
		// The capability set said yes and the kernel said no (a seccomp or LSM rule): try the other socket.
		e.log.Debug("prober: raw ICMP socket refused; trying a datagram socket", "target", t.Addr, "err", err)
		privileged = false
		st, sendErr, err = p.ping(ctx, &r, t, privileged)
	}
	r.ICMP = &ICMPResult{Socket: ICMPSocketDatagram}
	if privileged {
		r.ICMP.Socket = ICMPSocketRaw
	}
	ip := r.IP
	r.Sent = st.PacketsSent
	for _, rtt := range st.Rtts {
		r.Samples = append(r.Samples, Duration(rtt))
	}
	if n := len(st.TTLs); n > 0 {
		r.ReplyTTL = int(st.TTLs[n-1])
	}
	if err != nil {
		if r.Sent == 0 {
			err = icmpSocketError(err, privileged)
		}
		r.finish(fmt.Errorf("prober: icmp %v: %w", ip, err))
		return r
	}
	if len(r.Samples) == 0 && sendErr != nil {
		r.finish(fmt.Errorf("prober: icmp %v: sending echo request: %w", ip, sendErr))
		return r
	}
	if len(r.Samples) == 0 {
		r.finish(fmt.Errorf("prober: icmp %v: no echo reply to %d requests: %w", ip, r.Sent, ErrTimeout))
		return r
	}
	r.finish(nil)
	return r
}

// ping runs one pro-bing pinger to r.IP from r.Source over a raw (privileged) or datagram socket, and returns
// its statistics, the first send error and its run error.
func (p *icmpProber) ping(ctx context.Context, r *Result, t Target, privileged bool) (*probing.Statistics, error, error) {
	e := p.e
	n := e.count(t)
	interval := e.cfg.Interval
	if interval <= 0 {
		interval = minICMPInterval
	}
	pinger := probing.New(r.IP.String())
	pinger.SetIPAddr(&net.IPAddr{IP: r.IP.AsSlice()})
	pinger.SetPrivileged(privileged)
	pinger.SetLogger(probing.NoopLogger{})
	pinger.Count = n
	pinger.Interval = interval
	pinger.Timeout = time.Duration(n-1)*interval + e.timeout(t)
	pinger.RecordRtts = true
	pinger.RecordTTLs = true // the reply's hop limit, for blackbox_exporter's probe_icmp_reply_hop_limit
	if r.Source.IsValid() {
		pinger.Source = r.Source.String()
	}
	var mu sync.Mutex
	var sendErr error
	pinger.OnSendError = func(_ *probing.Packet, err error) {
		mu.Lock()
		sendErr = cmpErr(sendErr, err)
		mu.Unlock()
	}
	err := e.cfg.Enter(func() error { return pinger.RunWithContext(ctx) })
	st := pinger.Statistics()
	mu.Lock()
	defer mu.Unlock()
	return st, sendErr, err
}

// isPermission reports whether err is the kernel refusing a socket (EPERM, EACCES).
func isPermission(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

// ErrICMPNotPermitted is wrapped when no ICMP socket can be opened: neither raw (root or CAP_NET_RAW) nor
// unprivileged (net.ipv4.ping_group_range) is allowed.
var ErrICMPNotPermitted = errors.New("ICMP sockets not permitted")

// icmpSocketError explains a permission error from opening the ICMP socket.
func icmpSocketError(err error, privileged bool) error {
	if !isPermission(err) {
		return err
	}
	if privileged {
		return fmt.Errorf("%w: a raw ICMP socket needs root or CAP_NET_RAW (%w)", ErrICMPNotPermitted, err)
	}
	rng, rerr := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if rerr != nil {
		rng = []byte("unknown")
	}
	return fmt.Errorf("%w: an unprivileged ICMP socket needs group %d within net.ipv4.ping_group_range (now %q); "+
		"a raw one needs root or CAP_NET_RAW (%w)",
		ErrICMPNotPermitted, os.Getegid(), strings.Join(strings.Fields(string(rng)), " "), err)
}
