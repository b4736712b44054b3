package storage_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/storage"
)

// A Store on the embedded server: the scheduler stores a decision, the router reads it back.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "vantage-example-")
	defer os.RemoveAll(dir)
	s, err := storage.OpenEmbedded(ctx, dir, storage.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	d := placement.Decision{
		App: "shop", Mode: placement.ModeHost, Target: "db.example.com:5432", BestPoP: "LHR",
		Candidates: []placement.Candidate{{PoP: "LHR", RTTMs: 1.8}, {PoP: "AMS", RTTMs: 7.9}},
		Verdict:    placement.VerdictUnicast, Status: placement.StatusSuccess, ComputedAt: time.Now(),
	}
	changed, _ := s.PutDecision(ctx, d)
	fmt.Println("changed:", changed)
	changed, _ = s.PutDecision(ctx, d) // the same placement again
	fmt.Println("changed:", changed)

	got, ok, _ := s.Decision(ctx, "shop")
	fmt.Println(ok, got.BestPoP, got.Version, got.Status)
	// Output:
	// changed: true
	// changed: false
	// true LHR 1 SUCCESS
}
