package testbed_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/vantage-edge/vantage/testbed"
)

// Start the shipped topology, connect from Frankfurt to the database and compare with the emulated RTT.
// Needs root.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tb, err := testbed.Start(ctx, testbed.DefaultSpec(), testbed.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer tb.Close()
	t0 := time.Now()
	conn, err := tb.Node("FRA").DialContext(ctx, "tcp", "db:5432")
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
	rtt, _ := tb.RTT("FRA", "db")
	fmt.Printf("TCP connect %v, emulated RTT %v\n", time.Since(t0), rtt)
}

// Take an anycast instance down and see the next nearest take over.
func ExampleTestbed_SetDown() {
	ctx := context.Background()
	tb, err := testbed.Start(ctx, testbed.DefaultSpec(), testbed.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer tb.Close()
	before, _ := tb.AnycastInstance("edge", "SYD")
	tb.SetDown(before.Name, true)
	after, _ := tb.AnycastInstance("edge", "SYD")
	fmt.Println(before.Name, "->", after.Name)
}
