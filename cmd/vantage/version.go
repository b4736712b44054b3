package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is this binary's version, as daemons report it (probed's heartbeat) and `vantage version` prints
// it. A release sets it at build time with -ldflags "-X main.version=v1.2.3"; otherwise init fills it from the
// build's own information: the module version `go build` stamps from the VCS (a tag, or a pseudo-version
// with the commit's time and revision, "+dirty" when the tree was modified), else "devel-<revision>", else
// "devel".
var version = ""

func init() {
	bi, ok := debug.ReadBuildInfo()
	version = describeBuild(bi, ok, version).version
	register(command{name: "version", summary: "print the version, the VCS revision it was built from and the Go version", run: runVersion})
}

// buildDescription is what a binary knows about its own build.
type buildDescription struct {
	version  string // see the version variable
	revision string // the VCS commit, "" when the build has none
	time     string // the commit's time (RFC 3339), "" when unknown
	modified bool   // the working tree had changes the commit does not hold
	goVer    string // the Go toolchain that built the binary
}

// noVCS is the version of a build without module or VCS information.
const noVCS = "devel"

// describeBuild reads bi (ok as debug.ReadBuildInfo returns it); override, when not empty, is the version
// set with -ldflags -X.
func describeBuild(bi *debug.BuildInfo, ok bool, override string) buildDescription {
	d := buildDescription{goVer: runtime.Version()}
	if ok && bi != nil {
		d.goVer = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				d.revision = s.Value
			case "vcs.time":
				d.time = s.Value
			case "vcs.modified":
				d.modified = s.Value == "true"
			}
		}
	}
	switch {
	case override != "":
		d.version = override
	case ok && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)":
		d.version = bi.Main.Version
	case d.revision != "":
		d.version = noVCS + "-" + d.revision[:min(12, len(d.revision))]
		if d.modified {
			d.version += "-dirty"
		}
	default:
		d.version = noVCS
	}
	return d
}

// String is the line `vantage version` prints.
func (d buildDescription) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vantage %s (", d.version)
	if d.revision != "" {
		fmt.Fprintf(&b, "revision %s", d.revision)
		if d.time != "" {
			fmt.Fprintf(&b, ", committed %s", d.time)
		}
		if d.modified {
			b.WriteString(", modified")
		}
	} else {
		b.WriteString("no VCS information: go run, go test, -buildvcs=false, or built outside a git clone, a worktree included")
	}
	fmt.Fprintf(&b, "; %s %s/%s)", d.goVer, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: version takes no arguments, got %q", errUsage, fs.Args())
	}
	bi, ok := debug.ReadBuildInfo()
	d := describeBuild(bi, ok, "")
	d.version = version // the -X override, or describeBuild's own answer at init
	fmt.Fprintln(stdout, d)
	return nil
}
