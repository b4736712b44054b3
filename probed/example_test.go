package probed_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/vantage-edge/vantage/probed"
	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
)

// The probe daemon of PoP FRA: jobs from FRA's stream, results to Redis, a clean drain on SIGTERM.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	eng, err := prober.New(prober.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	q := &probed.StoreQueue{DB: st, PoP: "FRA", DaemonID: "fra-1"}
	d, err := probed.New(probed.Config{PoP: "FRA", DaemonID: "fra-1"}, q, eng, nil)
	if err != nil {
		log.Fatal(err)
	}
	d.Run(ctx) // returns after the drain
}
