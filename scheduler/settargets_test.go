package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/placement"
)

// TestStaleListingDoesNotUndoTheAPI checks setTargets against registrations and deletions made through the API
// (AddTarget, RemoveTarget) while SyncAPIApps was reading the registry: a listing read before them neither
// removes nor reverts a just-registered application, nor adds back a just-deleted one; a listing read after
// them is the truth again; the same for a listing of only the apps a notification named.
func TestStaleListingDoesNotUndoTheAPI(t *testing.T) {
	host := func(app, addr string) Target { return Target{App: app, Mode: placement.ModeHost, Target: addr} }
	for _, tc := range []struct {
		name   string
		before []Target           // the API source's targets before the listing is read
		api    func(s *Scheduler) // what the API does while the listing is read
		stale  []Target           // the listing, read before the API's change
		want   string             // targets after the stale listing
		fresh  []Target           // a listing read after the API's change
		wantOK string             // targets after it
	}{
		{
			name:   "registered while reading",
			before: []Target{host("a", "10.0.0.1:1")},
			api:    func(s *Scheduler) { s.AddTarget(SourceAPI, host("b", "10.0.0.2:1")) },
			stale:  []Target{host("a", "10.0.0.1:1")},
			want:   "a=10.0.0.1:1 b=10.0.0.2:1",
			fresh:  []Target{host("a", "10.0.0.1:1")}, // b was deleted in the registry by then
			wantOK: "a=10.0.0.1:1",
		},
		{
			name:   "changed while reading",
			before: []Target{host("a", "10.0.0.1:1")},
			api:    func(s *Scheduler) { s.AddTarget(SourceAPI, host("a", "10.0.0.9:1")) },
			stale:  []Target{host("a", "10.0.0.1:1")},
			want:   "a=10.0.0.9:1",
			fresh:  []Target{host("a", "10.0.0.1:1")}, // changed back in the registry by then
			wantOK: "a=10.0.0.1:1",
		},
		{
			name:   "deleted while reading",
			before: []Target{host("a", "10.0.0.1:1"), host("b", "10.0.0.2:1")},
			api:    func(s *Scheduler) { s.RemoveTarget(SourceAPI, "b") },
			stale:  []Target{host("a", "10.0.0.1:1"), host("b", "10.0.0.2:1")},
			want:   "a=10.0.0.1:1",
			fresh:  []Target{host("a", "10.0.0.1:1"), host("b", "10.0.0.2:1")}, // registered again by then
			wantOK: "a=10.0.0.1:1 b=10.0.0.2:1",
		},
	} {
		// Whole listings (setTargets), listings of the apps a notification named (updateTargets: a and b), and
		// whole listings a page (one target) at a time (SyncAPIApps' full read).
		for _, mode := range []string{"whole", "partial", "paged"} {
			list := func(s *Scheduler, ts []Target, readAfter int64) {
				switch mode {
				case "whole":
					s.setTargets(SourceAPI, ts, readAfter)
				case "partial":
					found := map[string]Target{}
					for _, t := range ts {
						found[t.App] = t
					}
					s.updateTargets(SourceAPI, []string{"a", "b"}, found, readAfter)
				case "paged":
					l := s.beginListing(SourceAPI, readAfter)
					for _, t := range ts {
						s.listPage(l, []Target{t})
					}
					s.endListing(l)
				}
			}
			t.Run(fmt.Sprintf("%s/%s", tc.name, mode), func(t *testing.T) {
				s := newScheduler(Config{Logger: quietLogger()}, nil, nil)
				list(s, tc.before, s.adds.Load())
				readAfter := s.adds.Load() // SyncAPIApps starts reading the registry
				tc.api(s)
				list(s, tc.stale, readAfter)
				if got := targetList(s); got != tc.want {
					t.Errorf("after the stale listing: %s, want %s", got, tc.want)
				}
				list(s, tc.fresh, s.adds.Load())
				if got := targetList(s); got != tc.wantOK {
					t.Errorf("after a listing read later: %s, want %s", got, tc.wantOK)
				}
				if len(s.removedAt) != 0 {
					t.Errorf("removals kept after a listing read later: %v", s.removedAt)
				}
			})
		}
	}
}

// TestPagedListing: a listing applied a page at a time (SyncAPIApps' full read, which never holds the
// registry) behaves as a whole one when the API changes targets between its pages, leaves other sources'
// targets alone when their listings interleave with it, and removes nothing when it is abandoned (a failed
// read).
func TestPagedListing(t *testing.T) {
	host := func(app, addr string) Target { return Target{App: app, Mode: placement.ModeHost, Target: addr} }
	s := newScheduler(Config{Logger: quietLogger()}, nil, nil)
	s.setTargets(SourceAPI, []Target{host("a", "10.0.0.1:1"), host("b", "10.0.0.2:1"), host("c", "10.0.0.3:1")}, s.adds.Load())
	s.SetTargets("dir:/etc/vantage", []Target{host("d", "10.0.0.4:1")})

	readAfter := s.adds.Load()
	l := s.beginListing(SourceAPI, readAfter)
	s.listPage(l, []Target{host("a", "10.0.0.1:1")})
	// Between pages: the API registers e, changes c and removes b; a listing of another source runs whole.
	s.AddTarget(SourceAPI, host("e", "10.0.0.5:1"))
	s.AddTarget(SourceAPI, host("c", "10.0.0.9:1"))
	s.RemoveTarget(SourceAPI, "b")
	dl := s.beginListing("dir:/etc/vantage", s.adds.Load())
	s.listPage(dl, []Target{host("d", "10.0.0.4:2")})
	s.endListing(dl)
	// The rest of the stale listing: b and c as they were when it was read; f is new in the registry.
	s.listPage(l, []Target{host("b", "10.0.0.2:1"), host("c", "10.0.0.3:1"), host("f", "10.0.0.6:1")})
	s.endListing(l)
	if got, want := targetList(s), "a=10.0.0.1:1 c=10.0.0.9:1 d=10.0.0.4:2 e=10.0.0.5:1 f=10.0.0.6:1"; got != want {
		t.Errorf("after the paged listing: %s, want %s", got, want)
	}

	// An abandoned listing (the read failed after a page) adds and changes what it read, removes nothing.
	l = s.beginListing(SourceAPI, s.adds.Load())
	s.listPage(l, []Target{host("a", "10.0.0.1:7"), host("g", "10.0.0.7:1")})
	if got, want := targetList(s), "a=10.0.0.1:7 c=10.0.0.9:1 d=10.0.0.4:2 e=10.0.0.5:1 f=10.0.0.6:1 g=10.0.0.7:1"; got != want {
		t.Errorf("after an abandoned listing: %s, want %s", got, want)
	}
	// The next listing speaks for all: what it does not name goes (d is another source's).
	l = s.beginListing(SourceAPI, s.adds.Load())
	s.listPage(l, []Target{host("a", "10.0.0.1:7")})
	s.listPage(l, []Target{host("g", "10.0.0.7:1")})
	s.endListing(l)
	if got, want := targetList(s), "a=10.0.0.1:7 d=10.0.0.4:2 g=10.0.0.7:1"; got != want {
		t.Errorf("after a full listing: %s, want %s", got, want)
	}
}

func targetList(s *Scheduler) string {
	var out []string
	for _, tg := range s.Targets() {
		out = append(out, tg.App+"="+tg.ProbeAddr())
	}
	return strings.Join(out, " ")
}
