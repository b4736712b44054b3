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
	"github.com/vantage-edge/vantage/placement"
)

// minICMPInterval is the interval between echo requests when Config.Interval is negative (none): pro-bing
// needs a positive one.
const minICMPInterval = time.Millisecond

// icmpProber sends ICMP echo requests with github.com/prometheus-community/pro-bing: a raw socket when running
// as root (or when Config.ICMPPrivileged says so), an unprivileged ICMP datagram socket otherwise (Linux
// allows it to the groups in net.ipv4.ping_group_range). Samples are pro-bing's RTTs, send to reply.
type icmpProber struct{ e *Engine }

func (p *icmpProber) Probe(ctx context.Context, t Target) Result {
	e := p.e
	r := Result{Kind: placement.ProbeICMP, Target: t.Addr}
	host := strings.TrimSuffix(strings.TrimPrefix(t.Addr, "["), "]")
	if err := e.prepare(ctx, &r, host); err != nil {
		r.finish(err)
		return r
	}
	ip, src := r.IP, r.Source
	privileged := os.Geteuid() == 0
	if e.cfg.ICMPPrivileged != nil {
		privileged = *e.cfg.ICMPPrivileged
	}
	n := e.count(t)
	interval := e.cfg.Interval
	if interval <= 0 {
		interval = minICMPInterval
	}
	pinger := probing.New(ip.String())
	pinger.SetIPAddr(&net.IPAddr{IP: ip.AsSlice()})
	pinger.SetPrivileged(privileged)
	pinger.SetLogger(probing.NoopLogger{})
	pinger.Count = n
	pinger.Interval = interval
	pinger.Timeout = time.Duration(n-1)*interval + e.timeout(t)
	pinger.RecordRtts = true
	pinger.RecordTTLs = true // the reply's hop limit, for blackbox_exporter's probe_icmp_reply_hop_limit
	if src.IsValid() {
		pinger.Source = src.String()
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
	mu.Lock()
	defer mu.Unlock()
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

// ErrICMPNotPermitted is wrapped when no ICMP socket can be opened: neither raw (root or CAP_NET_RAW) nor
// unprivileged (net.ipv4.ping_group_range) is allowed.
var ErrICMPNotPermitted = errors.New("ICMP sockets not permitted")

// icmpSocketError explains a permission error from opening the ICMP socket.
func icmpSocketError(err error, privileged bool) error {
	if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
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
