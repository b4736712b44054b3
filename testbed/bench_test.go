package testbed

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchDelay is the one-way delay every packet of the throughput benchmarks gets.
const benchDelay = time.Millisecond

// BenchmarkRouterThroughputTUN measures packets per second through real namespaces: a UDP sender in one
// namespace floods 64-byte datagrams to a receiver in another through the router with a 1 ms delay; b.N is
// the number of datagrams. It reports pkts/s delivered and the loss (TUN queue overflow under the flood).
//
//	go test -run '^$' -bench RouterThroughput -benchtime 200000x ./testbed
func BenchmarkRouterThroughputTUN(b *testing.B) {
	rp := newRawRouter(b, 2, benchDelay)
	var rx net.PacketConn
	rp.do(b, 1, func() (err error) {
		rx, err = net.ListenPacket("udp4", netip.AddrPortFrom(rp.addrs[1], 0).String())
		return err
	})
	defer rx.Close()
	if err := rx.(*net.UDPConn).SetReadBuffer(8 << 20); err != nil {
		b.Fatal(err)
	}
	var tx net.Conn
	rp.do(b, 0, func() (err error) {
		tx, err = net.Dial("udp4", rx.LocalAddr().String())
		return err
	})
	defer tx.Close()

	var got atomic.Int64
	var last atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := rx.ReadFrom(buf); err != nil {
				return // idle for 200 ms: the flood is over
			}
			got.Add(1)
			last.Store(mono())
		}
	}()
	payload := make([]byte, 64)
	// Keep at most inFlight datagrams between sender and receiver: the sender is faster than the router, and
	// an unbounded flood would only measure the TUN queue's drops.
	const inFlight = 2048
	b.ResetTimer()
	start := mono()
	for i := range b.N {
		for int64(i)-got.Load() > inFlight {
			if mono()-start > int64(30*time.Second) {
				b.Fatalf("stalled: %d of %d delivered", got.Load(), i)
			}
			time.Sleep(20 * time.Microsecond)
		}
		if _, err := tx.Write(payload); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	n := got.Load()
	elapsed := time.Duration(last.Load() - start)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(int64(b.N)-n)/float64(b.N)*100, "%lost")
	st := rp.r.snapshot()
	b.Logf("N=%d delivered %d in %v; router %+v", b.N, n, elapsed, st)
}

// BenchmarkRouterThroughputCore measures the router alone: ports are Unix seqpacket socket pairs (no kernel
// network stack), one sender floods 28-byte IPv4 packets with a 1 ms delay, and b.N packets are forwarded.
//
//	go test -run '^$' -bench RouterThroughputCore ./testbed
func BenchmarkRouterThroughputCore(b *testing.B) {
	sr := newSockRouter(b, 2, nil)
	sr.r.setDelay(0, 1, benchDelay)
	pkt := ipv4(sr.addr(0), sr.addr(1), 1)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		fds := []unix.PollFd{{Fd: int32(sr.peer[1]), Events: unix.POLLIN}}
		for got.Load() < int64(b.N) {
			ts := unix.NsecToTimespec(int64(time.Second))
			if n, err := unix.Ppoll(fds, &ts, nil); err != nil || n == 0 {
				if err == unix.EINTR {
					continue
				}
				return
			}
			for {
				if _, err := unix.Read(sr.peer[1], buf); err != nil {
					break
				}
				got.Add(1)
			}
		}
	}()
	const inFlight = 4096
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for int64(i)-got.Load() > inFlight {
			time.Sleep(20 * time.Microsecond)
		}
		for {
			if _, err := unix.Write(sr.peer[0], pkt); err == nil {
				break
			} else if err != unix.EAGAIN {
				b.Fatal(err)
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	if got.Load() < int64(b.N) {
		b.Fatalf("delivered %d of %d", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pkts/s")
}

// BenchmarkFidelity measures how closely TCP handshakes timed inside the namespaces match the emulated RTT,
// with the whole default testbed up: the 16 pairs of TestFidelity (1 ms to 300 ms) sample at once for about
// fidelityBudget per window, one window per iteration, pooled over b.N windows. These are the precise
// bounds, which a unit test cannot hold on a busy machine (see checkRTT):
//
//   - worst-median-dial-ms: the largest |median TCP connect - emulated RTT| of any pair, the connect timed
//     around Node.DialContext as a prober does (bound: 0.3 ms);
//   - p99-kernel-ms: the 99th percentile of |handshake RTT - emulated RTT| over all handshakes, the RTT the
//     client's kernel measured (TCP_INFO; bound: 1 ms);
//
// and beside them worst-median-kernel-ms, p50-dial-ms, p99-dial-ms and p50-kernel-ms, the CPU time the
// hypervisor stole meanwhile (stolen-ms) and the router's mean lateness against due times since the testbed
// started (router-late-us). Record the figures with the machine's load: they are this machine's.
//
//	go test -run '^$' -bench '^BenchmarkFidelity$' -benchtime 3x ./testbed
func BenchmarkFidelity(b *testing.B) {
	tb := startTestbed(b, DefaultSpec())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listenEverywhere(b, ctx, tb, fidelityPort, false)
	pairs := pickPairs(b, tb)
	w := startWindow()
	for b.Loop() {
		if err := samplePairs(ctx, pairs); err != nil {
			b.Fatal(err)
		}
	}
	load := w.end()
	f := logFidelity(b, tb, pairs, load)
	for _, m := range []struct {
		v    time.Duration
		unit string
	}{
		{f.worstDialMedian, "worst-median-dial-ms"}, {f.worstKernelMedian, "worst-median-kernel-ms"},
		{pct(f.dial, 50), "p50-dial-ms"}, {pct(f.dial, 99), "p99-dial-ms"},
		{pct(f.kernel, 50), "p50-kernel-ms"}, {pct(f.kernel, 99), "p99-kernel-ms"},
		{load.stolen, "stolen-ms"},
	} {
		b.ReportMetric(ms(m.v), m.unit)
	}
	b.ReportMetric(float64(tb.Stats().LateMean.Microseconds()), "router-late-us")
	b.ReportMetric(float64(f.n), "handshakes")
}
