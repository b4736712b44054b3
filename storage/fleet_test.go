package storage

import (
	"reflect"
	"sync"
	"testing"
	"time"
)

func init() { areas = append(areas, area{"fleet", testFleet}) }

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func testFleet(t *testing.T, open func(*testing.T, Options) *Store) {
	clock := &fakeClock{now: t0}
	s := open(t, Options{Now: clock.Now})
	ctx := testCtx(t)
	const iv = 10 * time.Second
	hb := func(pop, id string, at time.Time) Heartbeat {
		return Heartbeat{PoP: pop, DaemonID: id, Addr: "198.18.0.1:9100", Version: "v1",
			SourceIPs: []string{"198.18.0.1", "2001:db8::1"}, At: at}
	}
	type popView struct {
		PoP      string
		Up       bool
		Drained  bool
		LastSeen time.Time
		Daemons  []string
	}
	view := func(states []PoPState) []popView {
		var out []popView
		for _, st := range states {
			v := popView{PoP: st.PoP, Up: st.Up, Drained: st.Drained, LastSeen: st.LastSeen}
			for _, d := range st.Daemons {
				v.Daemons = append(v.Daemons, d.DaemonID)
			}
			out = append(out, v)
		}
		return out
	}
	// Steps run in order against the same store.
	steps := []struct {
		name string
		now  time.Time
		do   func() error
		want []popView
	}{
		{"empty", t0, func() error { return nil }, nil},
		{"one_daemon", t0, func() error { return s.PutHeartbeat(ctx, hb("LHR", "lhr-1", t0), iv) },
			[]popView{{"LHR", true, false, t0, []string{"lhr-1"}}}},
		{"second_pop_and_daemon", t0.Add(5 * time.Second), func() error {
			if err := s.PutHeartbeat(ctx, hb("FRA", "fra-1", t0.Add(5*time.Second)), iv); err != nil {
				return err
			}
			return s.PutHeartbeat(ctx, hb("LHR", "lhr-0", t0.Add(5*time.Second)), iv)
		}, []popView{
			{"FRA", true, false, t0.Add(5 * time.Second), []string{"fra-1"}},
			{"LHR", true, false, t0.Add(5 * time.Second), []string{"lhr-0", "lhr-1"}},
		}},
		{"just_under_3_intervals", t0.Add(34 * time.Second), func() error { return nil }, []popView{
			{"FRA", true, false, t0.Add(5 * time.Second), []string{"fra-1"}},
			{"LHR", true, false, t0.Add(5 * time.Second), []string{"lhr-0", "lhr-1"}},
		}},
		{"but_now_3_intervals_silent", t0.Add(35 * time.Second), func() error { return nil }, []popView{
			{"FRA", false, false, t0.Add(5 * time.Second), []string{"fra-1"}},
			{"LHR", false, false, t0.Add(5 * time.Second), []string{"lhr-0", "lhr-1"}},
		}},
		{"fra_back_and_drained", t0.Add(40 * time.Second), func() error {
			if err := s.PutHeartbeat(ctx, Heartbeat{PoP: "FRA", DaemonID: "fra-1"}, iv); err != nil { // At: clock
				return err
			}
			return s.SetDrained(ctx, "FRA", true)
		}, []popView{
			{"FRA", true, true, t0.Add(40 * time.Second), []string{"fra-1"}},
			{"LHR", false, false, t0.Add(5 * time.Second), []string{"lhr-0", "lhr-1"}},
		}},
		{"drain_unknown_pop", t0.Add(40 * time.Second), func() error { return s.SetDrained(ctx, "NRT", true) }, []popView{
			{"FRA", true, true, t0.Add(40 * time.Second), []string{"fra-1"}},
			{"LHR", false, false, t0.Add(5 * time.Second), []string{"lhr-0", "lhr-1"}},
			{"NRT", false, true, time.Time{}, nil},
		}},
		{"undrain", t0.Add(40 * time.Second), func() error {
			if err := s.SetDrained(ctx, "NRT", false); err != nil {
				return err
			}
			return s.SetDrained(ctx, "FRA", false)
		}, []popView{
			{"FRA", true, false, t0.Add(40 * time.Second), []string{"fra-1"}},
			{"LHR", false, false, t0.Add(5 * time.Second), []string{"lhr-0", "lhr-1"}},
		}},
		{"long_silent_daemons_forgotten", t0.Add(HeartbeatForget + time.Minute), func() error {
			return s.PutHeartbeat(ctx, hb("LHR", "lhr-1", t0.Add(HeartbeatForget+time.Minute)), iv)
		}, []popView{
			{"FRA", false, false, time.Time{}, nil},
			{"LHR", true, false, t0.Add(HeartbeatForget + time.Minute), []string{"lhr-1"}},
		}},
	}
	for _, st := range steps {
		clock.Set(st.now)
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := s.Fleet(ctx)
		if err != nil {
			t.Fatalf("%s: Fleet: %v", st.name, err)
		}
		if v := view(got); !reflect.DeepEqual(v, st.want) {
			t.Errorf("%s: Fleet =\n %+v\nwant\n %+v", st.name, v, st.want)
		}
	}
	// The stored heartbeat carries every field.
	got, _ := s.Fleet(ctx)
	want := hb("LHR", "lhr-1", t0.Add(HeartbeatForget+time.Minute))
	want.Interval = iv
	if len(got) < 2 || len(got[1].Daemons) != 1 || !reflect.DeepEqual(got[1].Daemons[0], want) {
		t.Errorf("stored heartbeat = %+v; want %+v", got, want)
	}

	bad := []struct {
		name string
		h    Heartbeat
		iv   time.Duration
	}{
		{"no_pop", Heartbeat{DaemonID: "x"}, iv},
		{"no_daemon", Heartbeat{PoP: "LHR"}, iv},
		{"zero_interval", Heartbeat{PoP: "LHR", DaemonID: "x"}, 0},
		{"brace_in_pop", Heartbeat{PoP: "L{H}R", DaemonID: "x"}, iv},
	}
	for _, b := range bad {
		if err := s.PutHeartbeat(ctx, b.h, b.iv); err == nil {
			t.Errorf("%s: PutHeartbeat succeeded; want an error", b.name)
		}
	}
}
