package prober_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/prober"
)

// A TCP CONNECT probe of a loopback listener. Loopback is denied by default, so the example allows it.
func Example() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	cfg := prober.DefaultConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	e, err := prober.New(cfg)
	if err != nil {
		panic(err)
	}
	r := e.Probe(context.Background(), prober.Target{Kind: placement.ProbeTCP, Addr: ln.Addr().String()})
	fmt.Println(r.Kind, r.Success, r.Sent, r.Received, r.IP)

	r = e.Probe(context.Background(), prober.Target{Kind: placement.ProbeTCP, Addr: "10.1.2.3:5432"})
	fmt.Println(r.Class, r.Error)
	// Output:
	// tcp true 3 3 127.0.0.1
	// policy prober: target "10.1.2.3": address 10.1.2.3: denied by policy (rule rfc1918, 10.0.0.0/8)
}
