package router_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/vantage-edge/vantage/router"
	"github.com/vantage-edge/vantage/storage"
)

// Example wires a router to Redis and serves the HTTP front of PoP EWR. (Not run: it needs a Redis.)
func Example() {
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Options{Addrs: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	cfg := router.DefaultConfig()
	cfg.PoPs = []string{"EWR"}
	r, err := router.New(st, cfg)
	if err != nil {
		log.Fatal(err)
	}
	go r.Run(ctx) // loads the snapshot, follows changes and the fleet until ctx is done

	// Route is the whole decision, in memory: ~100 ns, no allocation.
	res := r.Route("api.example.com", "EWR", "8c3a1f2e4b5d6a7f-EWR", router.KindFetch)
	fmt.Println(res.ExecPoP, res.Header, res.Reason, res.Routed) // e.g. LHR remote-LHR remote true

	workers, err := router.ParseWorkers("EWR=http://127.0.0.1:9001,LHR=http://10.1.0.1:9001")
	if err != nil {
		log.Fatal(err)
	}
	front, err := router.NewFront(r, router.FrontConfig{Ingress: "EWR", Workers: workers})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", front))
}

func ExampleParseWorkers() {
	ws, err := router.ParseWorkers("# one per PoP\nEWR=http://127.0.0.1:9001\nLHR=http://127.0.0.1:9002 # London")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ws["EWR"], ws["LHR"])
	// Output: http://127.0.0.1:9001 http://127.0.0.1:9002
}
