package scheduler

import (
	"unique"

	"github.com/vantage-edge/vantage/placement"
)

// packedTarget is a Target as the scheduler holds it, one per target for the process's life: the two strings
// particular to a target (its app and its target) inline, the four that many targets share (mode, account,
// endpoint, source) interned (a unique.Handle is 8 bytes and the process keeps one copy of each distinct
// value). 64 bytes where a Target takes 96, and no copy of "host" or of an account's name per target: at a
// million targets, tens of MB (bench/FLEET.md, the scale run).
type packedTarget struct {
	app, target                     string
	mode, account, endpoint, source unique.Handle[string]
}

// packTarget returns t packed. Two packed targets are equal (==) exactly when their Targets are.
func packTarget(t Target) packedTarget {
	return packedTarget{
		app: t.App, target: t.Target,
		mode: intern(string(t.Mode)), account: intern(t.Account), endpoint: intern(t.Endpoint), source: intern(t.Source),
	}
}

// unpack returns the Target.
func (p packedTarget) unpack() Target {
	return Target{
		App: p.app, Target: p.target,
		Mode: placement.Mode(interned(p.mode)), Account: interned(p.account), Endpoint: interned(p.endpoint), Source: interned(p.source),
	}
}

// intern returns s's handle; the zero handle for "".
func intern(s string) unique.Handle[string] {
	if s == "" {
		return unique.Handle[string]{}
	}
	return unique.Make(s)
}

// interned returns the string of a handle made by intern.
func interned(h unique.Handle[string]) string {
	if h == (unique.Handle[string]{}) {
		return ""
	}
	return h.Value()
}

// sourceName returns the target's Source.
func (p packedTarget) sourceName() string { return interned(p.source) }
