// Package policytest holds the addresses the deny policy is tested on, shared by placement's table test of the
// policy and the prober's test that probes each refused one.
package policytest

// Case is one address and what the default policy (no allow-list) says of it.
type Case struct {
	Name   string // test name
	Addr   string // the address, as a literal
	Rule   string // the rule named in the refusal; "" when the address is allowed
	Embeds string // for a refusal of an embedded IPv4 address: "a.b.c.d, FORM PREFIX"
}

// Cases are the addresses the deny policy is tested on: every IPv6 form that embeds an IPv4 address, with
// a denied IPv4 address inside and with a public one, every special-purpose range the issue found open, and a
// few global addresses that must pass. Checked here; probed (as literals and through a name, by every probe
// kind, in a namespace with only loopback) by the prober's tests.
var Cases = []Case{
	// NAT64, well-known prefix (RFC 6052) and local-use (RFC 8215).
	{"nat64_metadata", "64:ff9b::a9fe:a9fe", "link-local", "169.254.169.254, NAT64 64:ff9b::/96"},
	{"nat64_loopback", "64:ff9b::127.0.0.1", "loopback", "127.0.0.1, NAT64 64:ff9b::/96"},
	{"nat64_public", "64:ff9b::808:808", "nat64", ""},
	{"nat64_local_metadata", "64:ff9b:1::a9fe:a9fe", "link-local", "169.254.169.254, NAT64 local-use 64:ff9b:1::/48"},
	{"nat64_local_rfc1918", "64:ff9b:1::10.1.2.3", "rfc1918", "10.1.2.3, NAT64 local-use 64:ff9b:1::/48"},
	// SIIT (RFC 7915), IPv4-compatible (RFC 4291), IPv4-mapped.
	{"siit_metadata", "::ffff:0:a9fe:a9fe", "link-local", "169.254.169.254, SIIT ::ffff:0:0:0/96"},
	{"siit_rfc1918", "::ffff:0:10.0.0.1", "rfc1918", "10.0.0.1, SIIT ::ffff:0:0:0/96"},
	{"siit_public", "::ffff:0:8.8.8.8", "siit", ""},
	{"compatible_loopback", "::127.0.0.1", "loopback", "127.0.0.1, IPv4-compatible ::/96"},
	{"compatible_metadata", "::169.254.169.254", "link-local", "169.254.169.254, IPv4-compatible ::/96"},
	{"compatible_public", "::8.8.8.8", "ipv4-compatible", ""},
	{"mapped_rfc1918", "::ffff:10.0.0.1", "rfc1918", ""}, // judged as the IPv4 address itself
	{"mapped_metadata", "::ffff:169.254.169.254", "link-local", ""},
	// 6to4 (RFC 3056): 2002:AABB:CCDD::/48.
	{"6to4_metadata", "2002:a9fe:a9fe::1", "link-local", "169.254.169.254, 6to4 2002::/16"},
	{"6to4_rfc1918", "2002:a00:1::1", "rfc1918", "10.0.0.1, 6to4 2002::/16"},
	{"6to4_public", "2002:808:808::1", "6to4", ""},
	// Teredo (RFC 4380): 2001:0:SERVER:flags:port:^CLIENT.
	{"teredo_server_metadata", "2001:0:a9fe:a9fe::f7f7:f7f7", "link-local", "169.254.169.254, Teredo server 2001::/32"},
	{"teredo_client_rfc1918", "2001:0:808:808::f5ff:fffe", "rfc1918", "10.0.0.1, Teredo client 2001::/32"},
	{"teredo_client_loopback", "2001:0:808:808:8000:ffff:80ff:fffe", "loopback", "127.0.0.1, Teredo client 2001::/32"},
	{"teredo_public", "2001:0:808:808::f7f7:f7f7", "teredo", ""},
	// Special-purpose ranges outside 2000::/3, inside it, and in IPv4.
	{"site_local", "fec0::1", "site-local", ""},
	{"discard_only", "100::1", "discard-only", ""},
	{"ula", "fd00::1", "ula", ""},
	{"link_local_v6", "fe80::1", "link-local", ""},
	{"link_local_v6_zone", "fe80::1%eth0", "link-local", ""},
	{"multicast_v6", "ff02::1", "multicast", ""},
	{"loopback_v6", "::1", "loopback", ""},
	{"unspecified_v6", "::", "unspecified", ""},
	{"below_2000", "1000::1", "not-global-unicast", ""},
	{"above_3fff", "4000::1", "not-global-unicast", ""},
	{"top_half", "8000::1", "not-global-unicast", ""},
	{"documentation_v6", "2001:db8::1", "documentation", ""},
	{"documentation_v6_3fff", "3fff::1", "documentation", ""},
	{"benchmarking_v6", "2001:2::1", "ietf-protocol", ""},
	{"srv6_sid", "5f00::1", "srv6-sid", ""},
	{"reserved_240", "240.0.0.1", "reserved", ""},
	{"broadcast", "255.255.255.255", "broadcast", ""},
	{"this_network", "0.1.2.3", "this-network", ""},
	{"loopback", "127.0.0.1", "loopback", ""},
	{"rfc1918_10", "10.1.2.3", "rfc1918", ""},
	{"rfc1918_172", "172.31.255.1", "rfc1918", ""},
	{"rfc1918_192", "192.168.1.1", "rfc1918", ""},
	{"cgnat", "100.64.0.1", "cgnat", ""},
	{"metadata", "169.254.169.254", "link-local", ""},
	{"multicast", "224.0.0.251", "multicast", ""},
	{"ietf_protocol", "192.0.0.8", "ietf-protocol", ""},
	{"documentation_1", "192.0.2.1", "documentation", ""},
	{"documentation_2", "198.51.100.1", "documentation", ""},
	{"documentation_3", "203.0.113.1", "documentation", ""},
	{"benchmarking_emulated_wan", "198.18.0.1", "benchmarking", ""},
	{"6to4_relay", "192.88.99.1", "6to4-relay", ""},
	// Global addresses: allowed (checked only, never probed).
	{"global_v4", "1.1.1.1", "", ""},
	{"global_v4_google", "8.8.8.8", "", ""},
	{"global_v6", "2606:4700::1111", "", ""},
	{"global_v6_google", "2001:4860:4860::8888", "", ""},
	{"global_mapped", "::ffff:1.1.1.1", "", ""},
	{"next_to_rfc1918", "172.32.0.1", "", ""},
	{"next_to_cgnat", "100.128.0.1", "", ""},
}

// Refused returns the cases the default policy refuses.
func Refused() []Case {
	var out []Case
	for _, c := range Cases {
		if c.Rule != "" {
			out = append(out, c)
		}
	}
	return out
}
