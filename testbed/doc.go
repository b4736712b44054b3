// Package testbed emulates a wide-area network on one machine: every PoP and host is a network namespace
// with a TUN interface, and a userspace router forwards IP packets between them after each pair's one-way
// delay (half the modelled RTT between their coordinates), with optional jitter, loss and outages.
//
// # Topology
//
// A Spec (YAML with unknown fields rejected, or JSON; DefaultSpec is testdata/default.yaml) lists PoPs by
// IATA code (geo.LookupPoP), target hosts at a PoP's city, a cloud region ("aws:eu-central-1",
// geo.LookupRegion) or coordinates, with services (TCP listeners, HTTP servers naming the node in
// HeaderNode/HeaderCity, the testbed's DNS server; ICMP echo on unless turned off), anycast addresses served
// from several instances, and geo-DNS names answered per asker. The delay of a pair is
// geo.DefaultModel().RTTMs(a, b)/2 (Options.Model replaces the model).
//
// # Addresses and containment
//
// Everything is in WANPrefix (198.18.0.0/15). A testbed takes one /22 of it (SubnetBits), allocated under
// StateDir with a flock that its process holds for its life, and names its namespaces "vt<id>-<node>". A
// namespace has one route, WANPrefix via its TUN, and no other; the TUN exists only inside the namespace.
// The router drops (and counts, Stats.DroppedOutside) every packet whose source or destination is outside
// the testbed's subnet, so nothing reaches another testbed or leaves WANPrefix.
//
// # Using it
//
//	tb, err := testbed.Start(ctx, testbed.DefaultSpec(), testbed.Options{})
//	defer tb.Close()
//	conn, err := tb.Node("FRA").DialContext(ctx, "tcp", "db:5432") // from Frankfurt's namespace
//	rtt, _ := tb.RTT("FRA", "db")                                   // the emulated truth
//	tb.SetDown("db", true)                                          // an outage
//
// Node.Do runs a function on a thread inside a node's namespace: sockets it creates stay there and work from
// any goroutine. Node.Command runs a program there (`ip netns exec`). Unix domain sockets with a path are
// reached from any namespace (they live in the file system, not in the network namespace), so a process in
// a node talks to a control plane on the host through e.g. /run/vantage/redis.sock; abstract Unix sockets
// (names starting with '@') are per network namespace and are not shared.
//
// # Timing
//
// The router runs on one OS thread at SCHED_FIFO priority 1 with 1 ns timer slack: it sleeps in ppoll(2)
// until a learnt wake-up latency before the next due time, then polls without sleeping until the packet is
// due. It shares the Go process with its caller, so Start raises GOMAXPROCS by one for it (Close gives it
// back), and on a loaded machine Options.Nice (the tests and
// `vantage testbed up` use -10) keeps the rest of the process, whose scheduling the router's goroutine needs,
// from starving. Close (or `vantage testbed down`, or the sweep that Start does) removes everything, even
// after a crash.
package testbed
