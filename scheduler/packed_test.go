package scheduler

import (
	"testing"
	"unsafe"

	"github.com/vantage-edge/vantage/placement"
)

// TestPackedTarget: a packed target unpacks to the Target it was made from, and two packed targets are equal
// exactly when their Targets are (the scheduler's "changed" test).
func TestPackedTarget(t *testing.T) {
	targets := []Target{
		{},
		{App: "shop", Mode: placement.ModeHost, Target: "db.example.com:5432", Source: "api"},
		{App: "shop", Mode: placement.ModeHost, Target: "db.example.com:5432", Source: "api", Account: "acme"},
		{App: "shop", Mode: placement.ModeHostname, Target: "db.example.com:5432", Source: "api"},
		{App: "shop", Mode: placement.ModeHost, Target: "db.example.com:5433", Source: "api"},
		{App: "shop", Mode: placement.ModeHost, Target: "db.example.com:5432", Source: "dir:/etc/vantage/apps"},
		{App: "eu", Mode: placement.ModeRegion, Target: "aws:eu-central-1", Endpoint: "dynamodb.eu-central-1.amazonaws.com:443", Source: "api"},
		{App: "eu", Mode: placement.ModeRegion, Target: "aws:eu-central-1", Source: "api"},
		{App: "odd", Mode: "not-a-mode", Target: "x", Account: "a b", Endpoint: "e", Source: "s"},
	}
	for i, a := range targets {
		p := packTarget(a)
		if got := p.unpack(); got != a {
			t.Errorf("packTarget(%+v).unpack() = %+v", a, got)
		}
		if p.sourceName() != a.Source {
			t.Errorf("packTarget(%+v).sourceName() = %q", a, p.sourceName())
		}
		for j, b := range targets {
			if eq := p == packTarget(b); eq != (i == j) {
				t.Errorf("packTarget(%+v) == packTarget(%+v): %v", a, b, eq)
			}
		}
	}
}

// TestTargetStateSize keeps a held target's state in the 160-byte size class: it is most of the scheduler's
// memory per target (issue 19's goal of 1 KiB per target, measured by the scale run in bench/FLEET.md).
func TestTargetStateSize(t *testing.T) {
	if n := unsafe.Sizeof(targetState{}); n > 160 {
		t.Errorf("targetState is %d bytes, want at most 160", n)
	}
	if n := unsafe.Sizeof(packedTarget{}); n != 64 {
		t.Errorf("packedTarget is %d bytes, want 64", n)
	}
}
