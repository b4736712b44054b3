package storage

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

func init() {
	areas = append(areas, area{"apps_bulk", testAppsBulk})
}

// testAppsBulk: PutApps writes every application of several HSET chunks and notifies each one's name (one
// message per chunk, split by WatchApps), and writes none when one of them is invalid; AppsNamed reads some
// back at once.
func testAppsBulk(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{Now: func() time.Time { return t0 }})
	ctx := testCtx(t)
	r := newRecorder()
	wctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { defer close(done); s.WatchApps(wctx, r.fn) }()
	t.Cleanup(func() { cancel(); <-done })
	r.waitFor(t, Resync, 10*time.Second)

	n := 2*putAppsChunk + 17
	apps := make([]App, n)
	for i := range apps {
		apps[i] = App{Name: fmt.Sprintf("bulk-%05d", i), Mode: placement.ModeHost, Target: fmt.Sprintf("h%d.example:5432", i), Account: "acc1"}
	}
	if err := s.PutApps(ctx, apps); err != nil {
		t.Fatal(err)
	}
	for _, a := range apps {
		r.waitFor(t, a.Name, 10*time.Second)
	}
	r.mu.Lock()
	left := slices.Clone(r.got)
	r.mu.Unlock()
	if len(left) != 0 {
		t.Errorf("notifications beyond the batch's names: %q", left)
	}
	got, err := s.Apps(ctx)
	if err != nil || len(got) != n {
		t.Fatalf("Apps: %d apps, %v; want %d", len(got), err, n)
	}
	if a := got[n-1]; a.Name != apps[n-1].Name || a.Target != apps[n-1].Target || !a.UpdatedAt.Equal(t0) {
		t.Errorf("last app %+v, want %+v updated at %v", a, apps[n-1], t0)
	}
	named, err := s.AppsNamed(ctx, []string{apps[0].Name, "absent", apps[n-1].Name})
	if err != nil || len(named) != 2 || named[apps[n-1].Name].Target != apps[n-1].Target {
		t.Errorf("AppsNamed: %v %v, want the first and the last app", named, err)
	}
	bad := []App{{Name: "fine", Mode: placement.ModeHost, Target: "f.example:1"}, {Name: "no-mode", Mode: "nonsense"}}
	if err := s.PutApps(ctx, bad); err == nil {
		t.Fatal("PutApps with an invalid mode: no error")
	}
	if _, ok, _ := s.App(ctx, "fine"); ok {
		t.Error("PutApps wrote part of a refused batch")
	}
}
