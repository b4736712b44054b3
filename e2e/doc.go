// Package e2e holds Vantage's whole-system tests: the components assembled by package daemon, as `vantage
// probed|scheduler|router` run them, against a real redis-server, on loopback or on the emulated WAN.
package e2e
