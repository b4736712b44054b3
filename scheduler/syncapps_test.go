package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/internal/syncbuf"
	"github.com/vantage-edge/vantage/internal/testwait"
	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
	"github.com/vantage-edge/vantage/storage/redistest"
)

// TestSyncAPIAppsReadsWhatChanged checks a standby scheduler following the registry on a real redis-server:
// it reads the whole registry once at start, then only the apps a notification names (a bulk registration, a
// change, a deletion), never the registry again for them.
func TestSyncAPIAppsReadsWhatChanged(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	host := func(i int) storage.App {
		return storage.App{Name: fmt.Sprintf("app-%05d", i), Mode: placement.ModeHost, Target: fmt.Sprintf("h%d.example:5432", i)}
	}
	var apps []storage.App
	for i := range 2500 {
		apps = append(apps, host(i))
	}
	if err := writer.PutApps(ctx, apps); err != nil {
		t.Fatal(err)
	}

	// The reader's warnings tell a resubscription (a Redis connection lost on a busy machine), after which a
	// full read is the rule, not a fault.
	var storeLog syncbuf.Buffer
	reader, err := storage.Open(ctx, storage.Options{Addrs: []string{srv.Addr()}, Logger: slog.New(slog.NewTextHandler(&storeLog, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	cmds := &redistest.Commands{}
	reader.Client().AddHook(cmds)
	s, err := New(Config{Name: "standby", Logger: quietLogger()}, StoreBackend{reader}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.SyncAPIApps(ctx, StoreBackend{reader}, RegionEndpoints{}, time.Hour) }()
	defer func() { cancel(); <-done }()
	count := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.targets) }
	testwait.Eventually(t, 30*time.Second, "the standby holds the 2,500 registered apps", func() bool { return count() == 2500 })
	scans := cmds.Count("hscan")
	if scans < 3 {
		t.Fatalf("the first full read used %d HSCANs, want at least 3 (1,000 per page)", scans)
	}

	// A bulk registration of 1,200 more (two notifications), a change, a deletion.
	var more []storage.App
	for i := 2500; i < 3700; i++ {
		more = append(more, host(i))
	}
	if err := writer.PutApps(ctx, more); err != nil {
		t.Fatal(err)
	}
	changed := host(7)
	changed.Target = "moved.example:5432"
	if err := writer.PutApp(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.DeleteApp(ctx, host(8).Name); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 30*time.Second, "the standby follows the bulk registration, the change and the deletion", func() bool {
		st, ok := s.Target(changed.Name)
		_, gone := s.Target(host(8).Name)
		return count() == 3699 && ok && st.Target.Target == changed.Target && !gone
	})
	if got := cmds.Count("hscan"); got != scans {
		if n := reader.Metrics().Resubscriptions(storage.ChannelApps); n > 0 {
			t.Logf("the watch resubscribed %d times (a full read follows, as it must): HSCANs not checked\n%s", n, storeLog.String())
		} else {
			t.Errorf("the standby read the whole registry again (%d HSCANs, %d after the first read) for named changes", got, scans)
		}
	}
	if cmds.Count("hmget") == 0 {
		t.Error("no HMGET: the changed apps were not read by name")
	}
}
