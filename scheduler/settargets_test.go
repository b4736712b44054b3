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
		// Whole listings (setTargets), and listings of the apps a notification named (updateTargets: a and b).
		for _, partial := range []bool{false, true} {
			list := func(s *Scheduler, ts []Target, readAfter int64) {
				if !partial {
					s.setTargets(SourceAPI, ts, readAfter)
					return
				}
				found := map[string]Target{}
				for _, t := range ts {
					found[t.App] = t
				}
				s.updateTargets(SourceAPI, []string{"a", "b"}, found, readAfter)
			}
			t.Run(fmt.Sprintf("%s/partial=%v", tc.name, partial), func(t *testing.T) {
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

func targetList(s *Scheduler) string {
	var out []string
	for _, tg := range s.Targets() {
		out = append(out, tg.App+"="+tg.ProbeAddr())
	}
	return strings.Join(out, " ")
}
