package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Allocation of testbeds. Each running testbed holds an exclusive flock(2) on StateDir/<id>.lock for its
// whole life: the kernel drops the lock when the process dies, however it dies, so a lock that can be taken
// marks a dead testbed whose namespaces may be swept. Lock files are never deleted (deleting a lock file races
// with a process about to lock it); they are empty and live on tmpfs.
const (
	// StateDir holds the lock and state file of every testbed on the machine.
	StateDir = "/run/vantage-testbed"
	// MaxTestbeds is how many testbeds can run at once: WANPrefix (/15) split into subnets of SubnetBits.
	MaxTestbeds = 1 << (SubnetBits - 15)
	// SubnetBits is the prefix length of one testbed's subnet: a /22 is 1022 node and anycast addresses.
	SubnetBits = 22
	// downWait is how long Down waits for a live testbed to stop after SIGTERM before removing its
	// namespaces anyway.
	downWait = 10 * time.Second
)

// nsNameRE matches the namespaces of testbed id: "vt<id>-<node>".
var nsNameRE = regexp.MustCompile(`^vt([0-9]+)-`)

// lease is one allocated testbed id with its subnet, held until release.
type lease struct {
	id     int
	prefix netip.Prefix
	lock   *os.File
	log    *slog.Logger
}

// allocate takes the first free testbed id (removing the leftovers of a dead testbed that had it).
func allocate(log *slog.Logger) (*lease, error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed: state directory: %w", err)
	}
	// Take the first free id after the one allocated last (by any process), not the lowest: an id freed a
	// moment ago is then not reused at once, so a check that a closed testbed left nothing behind does not
	// see a new testbed of the same name.
	start := lastAllocated() + 1
	for i := range MaxTestbeds {
		id := (start + i) % MaxTestbeds
		f, ok, err := tryLock(id)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		l := &lease{id: id, prefix: subnet(id), lock: f, log: log}
		recordAllocated(id)
		if err := removeLeftovers(id, log); err != nil {
			f.Close()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("testbed: all %d testbeds of %v are in use (see %s)", MaxTestbeds, WANPrefix, StateDir)
}

// lastFile records the id allocated last, for round-robin allocation.
const lastFile = "last"

// lastAllocated returns the id recorded in lastFile, or -1 when there is none.
func lastAllocated() int {
	b, err := os.ReadFile(filepath.Join(StateDir, lastFile))
	if err != nil {
		return -1
	}
	id, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || id < 0 || id >= MaxTestbeds {
		return -1
	}
	return id
}

// recordAllocated records id as the one allocated last; a failure only costs the round-robin order.
func recordAllocated(id int) {
	_ = os.WriteFile(filepath.Join(StateDir, lastFile), []byte(strconv.Itoa(id)+"\n"), 0o644)
}

// tryLock opens and locks id's lock file without waiting; ok is false when a live testbed holds it.
func tryLock(id int) (*os.File, bool, error) {
	p := filepath.Join(StateDir, strconv.Itoa(id)+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("testbed: lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("testbed: lock %s: %w", p, err)
	}
	return f, true, nil
}

// subnet returns testbed id's share of WANPrefix.
func subnet(id int) netip.Prefix {
	base := addrU32(WANPrefix.Addr()) + uint32(id)<<(32-SubnetBits)
	return netip.PrefixFrom(u32Addr(base), SubnetBits)
}

func u32Addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Name returns the testbed's name, "vt<id>", also the prefix of its namespaces.
func (l *lease) name() string { return "vt" + strconv.Itoa(l.id) }

// nsPrefix returns the prefix of the testbed's namespace names.
func (l *lease) nsPrefix() string { return l.name() + "-" }

// addr returns the i-th address of the subnet (i from 0; the subnet's first address is never used).
func (l *lease) addr(i int) netip.Addr { return u32Addr(addrU32(l.prefix.Addr()) + 1 + uint32(i)) }

// statePath returns the path of testbed id's state file.
func statePath(id int) string { return filepath.Join(StateDir, strconv.Itoa(id)+".json") }

// writeState records the running testbed for `vantage testbed exec` and `down`.
func (l *lease) writeState(s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("testbed: state: %w", err)
	}
	tmp := statePath(l.id) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("testbed: state: %w", err)
	}
	if err := os.Rename(tmp, statePath(l.id)); err != nil {
		return fmt.Errorf("testbed: state: %w", err)
	}
	return nil
}

// release removes whatever is left of the testbed and gives the id back.
func (l *lease) release() error {
	err := removeLeftovers(l.id, l.log)
	l.lock.Close() // drops the flock
	return err
}

// removeLeftovers deletes testbed id's namespaces and state file. The caller holds id's lock.
func removeLeftovers(id int, log *slog.Logger) error {
	names, err := listNS("vt" + strconv.Itoa(id) + "-")
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if err := deleteNS(n); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Debug("testbed: removed namespace", "ns", n)
	}
	for _, p := range []string{statePath(id), statePath(id) + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("testbed: %w", err))
		}
	}
	return errors.Join(errs...)
}

// State is what a running testbed records in StateDir/<id>.json.
type State struct {
	ID      int          `json:"id"`
	Name    string       `json:"name"` // "vt<id>", the namespaces' prefix without the dash
	Spec    string       `json:"spec"` // the spec's name
	PID     int          `json:"pid"`  // the process running the router
	Prefix  netip.Prefix `json:"prefix"`
	Started time.Time    `json:"started"`
	Nodes   []NodeState  `json:"nodes"`
	Live    bool         `json:"-"` // set by States: the owner still holds the lock
}

// NodeState is one node in a State.
type NodeState struct {
	Name string     `json:"name"`
	NS   string     `json:"ns"`
	Addr netip.Addr `json:"addr"`
}

// States returns the testbeds known on this machine (live or dead with leftovers), by id.
func States() ([]State, error) {
	ids := map[int]bool{}
	ents, err := os.ReadDir(StateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	for _, e := range ents {
		var id int
		if _, err := fmt.Sscanf(e.Name(), "%d.json", &id); err == nil && filepath.Ext(e.Name()) == ".json" {
			ids[id] = true
		}
	}
	nss, err := listNS("vt")
	if err != nil {
		return nil, err
	}
	for _, n := range nss {
		if m := nsNameRE.FindStringSubmatch(n); m != nil {
			id, _ := strconv.Atoi(m[1])
			ids[id] = true
		}
	}
	var out []State
	for id := range ids {
		s := State{ID: id, Name: "vt" + strconv.Itoa(id)}
		if b, err := os.ReadFile(statePath(id)); err == nil {
			if err := json.Unmarshal(b, &s); err != nil {
				return nil, fmt.Errorf("testbed: state %s: %w", statePath(id), err)
			}
		}
		f, free, err := tryLock(id)
		if err != nil {
			return nil, err
		}
		if free {
			f.Close()
		}
		s.Live = !free
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b State) int { return a.ID - b.ID })
	return out, nil
}

// Down removes the testbeds whose Name ("vt3"), id ("3") or spec name is sel, or all of them when sel is
// empty. A dead testbed's leftovers (namespaces, state file) are removed at once. A live one is left alone
// unless stopLive: then its process gets SIGTERM (its own teardown runs) and whatever is left after it exits,
// or after 10 s, is removed. It returns the names of the testbeds it removed: none is not an error (down is
// idempotent; another process's sweep may have been first).
func Down(ctx context.Context, sel string, stopLive bool, log *slog.Logger) ([]string, error) {
	states, err := States()
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, s := range states {
		if sel != "" && sel != s.Name && sel != strconv.Itoa(s.ID) && sel != s.Spec {
			continue
		}
		if s.Live && !stopLive {
			continue
		}
		if s.Live && s.PID > 0 && s.PID != os.Getpid() {
			log.Info("testbed: stopping live testbed", "testbed", s.Name, "pid", s.PID)
			if err := syscall.Kill(s.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("testbed %s: signal pid %d: %w", s.Name, s.PID, err))
			}
		}
		var f *os.File
		if s.Live {
			if f, err = waitLock(ctx, s.ID, downWait); err != nil {
				errs = append(errs, fmt.Errorf("testbed %s: %w", s.Name, err))
			}
		} else {
			// Dead when listed: its lock is free unless a testbed started since took the id (and swept
			// these leftovers itself); that one is live, and left alone.
			var ok bool
			if f, ok, err = tryLock(s.ID); err != nil {
				errs = append(errs, err)
				continue
			} else if !ok {
				continue
			}
		}
		if err := removeLeftovers(s.ID, log); err != nil {
			errs = append(errs, err)
		} else {
			done = append(done, s.Name)
		}
		if f != nil {
			f.Close()
		}
	}
	return done, errors.Join(errs...)
}

// waitLock takes id's lock, waiting up to wait for its holder to exit; on timeout it returns (nil, error) and
// the caller removes the leftovers anyway.
func waitLock(ctx context.Context, id int, wait time.Duration) (*os.File, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		f, ok, err := tryLock(id)
		if err != nil || ok {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("still held after %v: %w", wait, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FindNode returns the namespace state of node in the live testbed sel (name, id or spec name), or in the
// only live testbed when sel is empty.
func FindNode(sel, node string) (State, NodeState, error) {
	states, err := States()
	if err != nil {
		return State{}, NodeState{}, err
	}
	var live []State
	for _, s := range states {
		if s.Live && (sel == "" || sel == s.Name || sel == strconv.Itoa(s.ID) || sel == s.Spec) {
			live = append(live, s)
		}
	}
	switch {
	case len(live) == 0 && sel == "":
		return State{}, NodeState{}, errors.New("testbed: no testbed is running")
	case len(live) == 0:
		return State{}, NodeState{}, fmt.Errorf("testbed: no running testbed %q", sel)
	case len(live) > 1:
		names := make([]string, len(live))
		for i, s := range live {
			names[i] = s.Name
		}
		return State{}, NodeState{}, fmt.Errorf("testbed: %d testbeds are running (%v): name one", len(live), names)
	}
	for _, n := range live[0].Nodes {
		if n.Name == node {
			return live[0], n, nil
		}
	}
	return live[0], NodeState{}, fmt.Errorf("testbed %s: no node %q", live[0].Name, node)
}
