package scheduler

import "testing"

// TestWorkerPoolBounded checks the pool keeps at most its capacity of idle workers and reuses them.
func TestWorkerPoolBounded(t *testing.T) {
	made := 0
	p := newWorkerPool(2, func() *workers { made++; return &workers{gen: int64(made)} })
	var held []*workers
	for range 5 {
		held = append(held, p.Get())
	}
	for _, w := range held {
		p.Put(w)
	}
	if n := len(p.free); n != 2 {
		t.Fatalf("%d idle workers kept after 5 were returned, want the capacity, 2", n)
	}
	a, b, c := p.Get(), p.Get(), p.Get()
	if made != 6 || a.gen > 5 || b.gen > 5 || c.gen != 6 {
		t.Errorf("got workers %d, %d, %d after %d were made: want two reused, then a new one", a.gen, b.gen, c.gen, made)
	}
}
