package scheduler_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler"
	"github.com/vantage-edge/vantage/storage"
)

// A scheduler on a Redis shared with the fleet's probe daemons: it places the wrangler configs of a directory
// and those registered through its API, and serves the status API. Run several: one leads at a time.
func Example() {
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	b := scheduler.StoreBackend{Store: st}
	regions := scheduler.RegionEndpoints{Overrides: map[string]string{"aws:eu-central-1": "198.18.0.9:443"}}
	s, err := scheduler.New(scheduler.Config{RecheckInterval: 5 * time.Minute, Regions: regions}, b, scheduler.NewMetrics(nil))
	if err != nil {
		log.Fatal(err)
	}
	parser := placement.DefaultParser()
	go s.WatchDir(ctx, "/etc/vantage/apps", parser, regions, time.Minute)
	go s.SyncAPIApps(ctx, b, regions, scheduler.DefaultAppsReload)
	api := &scheduler.API{Sched: s, Decisions: b, Apps: b, Parser: parser, Regions: regions,
		Auth:  scheduler.NewAuth(map[string]string{"a-long-random-token": "ops"}, scheduler.Quota{}, nil),
		AdHoc: &scheduler.AdHoc{Backend: b}}
	go http.ListenAndServe("127.0.0.1:8080", api.Handler())
	s.Run(ctx) // until ctx is done
}
