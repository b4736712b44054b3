// Package testbed emulates a wide-area network on one machine: every PoP and host is a network namespace
// with a TUN interface, and a userspace router forwards IP packets between them after each pair's one-way
// delay (half the modelled RTT between their coordinates), with optional jitter, loss and outages.
package testbed
