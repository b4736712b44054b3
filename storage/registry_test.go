package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-edge/vantage/placement"
)

func init() {
	areas = append(areas, area{"apps", testApps}, area{"adhoc", testAdHoc}, area{"lease", testLease}, area{"epoch", testEpoch})
}

func testApps(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{Now: func() time.Time { return t0 }})
	ctx := testCtx(t)
	r := newRecorder()
	wctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { defer close(done); s.WatchApps(wctx, r.fn) }()
	t.Cleanup(func() { cancel(); <-done })
	r.waitFor(t, Resync, 10*time.Second)

	apps := []App{
		{Name: "shop", Mode: placement.ModeHost, Target: "db.shop.example:5432", Account: "acc1", DeployVersion: "v3",
			Config: json.RawMessage(`{"mode":"host"}`)},
		{Name: "api", Mode: placement.ModeHostname, Target: "api.example.com", Account: "acc1"},
		{Name: "edge", Mode: placement.ModeSmart, Account: "acc2"},
	}
	for _, a := range apps {
		if err := s.PutApp(ctx, a); err != nil {
			t.Fatalf("PutApp(%s): %v", a.Name, err)
		}
		r.waitFor(t, a.Name, 10*time.Second)
	}
	// An entry that does not decode (or names another app) is skipped, not fatal.
	for field, v := range map[string]string{"garbage": "{not json", "alias": `{"name":"shop","mode":"host"}`} {
		if err := s.Client().HSet(ctx, KeyApps, field, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Client().HDel(ctx, KeyApps, "garbage", "alias").Err(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list {
		names = append(names, a.Name)
	}
	if want := []string{"api", "edge", "shop"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Apps = %q; want %q", names, want)
	}
	want := apps[0]
	want.UpdatedAt = t0
	if got, ok, err := s.App(ctx, "shop"); err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("App(shop) = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	// Redeploy: replaced.
	want.DeployVersion = "v4"
	if err := s.PutApp(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.App(ctx, "shop"); got.DeployVersion != "v4" {
		t.Errorf("after redeploy DeployVersion = %q", got.DeployVersion)
	}
	if existed, err := s.DeleteApp(ctx, "api"); err != nil || !existed {
		t.Errorf("DeleteApp(api) = %v, %v; want true", existed, err)
	}
	r.waitFor(t, "api", 10*time.Second)
	if existed, err := s.DeleteApp(ctx, "api"); err != nil || existed {
		t.Errorf("second DeleteApp(api) = %v, %v; want false", existed, err)
	}
	if _, ok, err := s.App(ctx, "api"); ok || err != nil {
		t.Errorf("App(api) after delete = %v, %v", ok, err)
	}
	if err := s.PutApp(ctx, App{Name: "bad", Mode: "nearest"}); err == nil {
		t.Error("PutApp with an unknown mode succeeded")
	}
	// Many apps: listing goes through several HSCAN rounds.
	for i := range 2500 {
		if err := s.PutApp(ctx, App{Name: fmt.Sprintf("bulk-%04d", i), Mode: placement.ModeSmart}); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := s.Apps(ctx); err != nil || len(list) != 2502 {
		t.Errorf("Apps after 2500 more = %d, %v; want 2502", len(list), err)
	}
}

func testAdHoc(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{Now: func() time.Time { return t0 }})
	ctx := testCtx(t)
	req := json.RawMessage(`{"target":"db.example.com:5432","kind":"tcp"}`)
	if err := s.PutAdHocProbe(ctx, AdHocProbe{ID: "p1", Request: req}, time.Hour); err != nil {
		t.Fatal(err)
	}
	rs := []Result{
		{Target: "db.example.com:5432", PoP: "LHR", Kind: placement.ProbeTCP, MinMs: 10, Samples: 3, JobID: "1-0"},
		{Target: "db.example.com:5432", PoP: "FRA", Kind: placement.ProbeTCP, MinMs: 20, Samples: 3, JobID: "1-0"},
		{Target: "db.example.com:5432", PoP: "FRA", Kind: placement.ProbeICMP, MinMs: 19, Samples: 3, JobID: "2-0"},
		{Target: "db.example.com:5432", PoP: "LHR", Kind: placement.ProbeTCP, MinMs: 11, Samples: 3, JobID: "3-0"}, // replaces
	}
	for _, r := range rs {
		if err := s.AppendAdHocResult(ctx, "p1", r); err != nil {
			t.Fatalf("AppendAdHocResult(%s): %v", r.PoP, err)
		}
	}
	got, ok, err := s.AdHocProbe(ctx, "p1")
	if err != nil || !ok {
		t.Fatalf("AdHocProbe = %v, %v", ok, err)
	}
	var view []string
	for _, r := range got.Results {
		view = append(view, fmt.Sprintf("%s/%s/%g", r.PoP, r.Kind, r.MinMs))
	}
	if want := []string{"FRA/icmp/19", "FRA/tcp/20", "LHR/tcp/11"}; !reflect.DeepEqual(view, want) {
		t.Errorf("results = %q; want %q", view, want)
	}
	if got.Done || string(got.Request) != string(req) || !got.CreatedAt.Equal(t0) {
		t.Errorf("probe = %+v", got)
	}
	// Finishing keeps the results.
	got.Done, got.Verdict = true, json.RawMessage(`{"verdict":"unicast","best_pop":"LHR"}`)
	if err := s.PutAdHocProbe(ctx, got, time.Hour); err != nil {
		t.Fatal(err)
	}
	fin, _, err := s.AdHocProbe(ctx, "p1")
	if err != nil || !fin.Done || !fin.DoneAt.Equal(t0) || string(fin.Verdict) != string(got.Verdict) || len(fin.Results) != 3 {
		t.Errorf("finished probe = %+v, %v", fin, err)
	}
	if _, ok, err := s.AdHocProbe(ctx, "nope"); ok || err != nil {
		t.Errorf("AdHocProbe(nope) = %v, %v", ok, err)
	}
	if err := s.AppendAdHocResult(ctx, "nope", rs[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("AppendAdHocResult(nope) = %v; want ErrNotFound", err)
	}
	// The record expires with its TTL.
	if err := s.PutAdHocProbe(ctx, AdHocProbe{ID: "short"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.AdHocProbe(ctx, "short"); !ok {
		t.Fatal("short-lived probe missing right after Put")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := s.AdHocProbe(ctx, "short")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("probe with a 1 s TTL still there after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.AppendAdHocResult(ctx, "short", rs[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("AppendAdHocResult to an expired probe = %v; want ErrNotFound", err)
	}
}

func testLease(t *testing.T, open func(*testing.T, Options) *Store) {
	s := open(t, Options{})
	ctx := testCtx(t)
	const ttl = time.Minute
	// wantTok names tokens: "" none (0); "+x" a new token, larger than every one before, remembered as x;
	// "x" the token remembered as x. Tokens are the fence counter raised to the server's clock in µs, so
	// their values are not known in advance, only their order.
	type step struct {
		name    string
		do      func() (int64, bool, error)
		wantTok string
		wantOK  bool
	}
	acquire := func(h string, ttl time.Duration) func() (int64, bool, error) {
		return func() (int64, bool, error) { return s.AcquireLease(ctx, "sched", h, ttl) }
	}
	renew := func(h string) func() (int64, bool, error) {
		return func() (int64, bool, error) { ok, err := s.RenewLease(ctx, "sched", h, ttl); return 0, ok, err }
	}
	release := func(h string) func() (int64, bool, error) {
		return func() (int64, bool, error) { return 0, true, s.ReleaseLease(ctx, "sched", h) }
	}
	waitExpiry := func() (int64, bool, error) {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, held, err := s.LeaseInfo(ctx, "sched"); err != nil || !held {
				return 0, true, err
			}
		}
		return 0, false, nil
	}
	flushAll := func() (int64, bool, error) { flush(t, s); return 0, true, nil }
	steps := []step{
		{"a_acquires", acquire("a", ttl), "+a1", true},
		{"b_refused_sees_a_token", acquire("b", ttl), "a1", false},
		{"a_reacquires_same_token", acquire("a", ttl), "a1", true},
		{"a_renews", renew("a"), "", true},
		{"b_cannot_renew", renew("b"), "", false},
		{"b_release_is_noop", release("b"), "", true},
		{"b_still_refused", acquire("b", ttl), "a1", false},
		{"a_releases", release("a"), "", true},
		{"a_cannot_renew_released", renew("a"), "", false},
		{"b_acquires_next_token", acquire("b", 300*time.Millisecond), "+b1", true},
		{"b_lease_expires", waitExpiry, "", true},
		{"b_renew_after_expiry_fails", renew("b"), "", false},
		{"a_acquires_after_expiry", acquire("a", ttl), "+a2", true},
		{"redis_loses_its_data", flushAll, "", true},
		{"a_cannot_renew_after_the_loss", renew("a"), "", false},
		{"b_acquires_above_every_earlier_token", acquire("b", ttl), "+b2", true},
	}
	toks := map[string]int64{}
	var last int64
	for _, st := range steps {
		tok, ok, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var want int64
		switch name, isNew := strings.CutPrefix(st.wantTok, "+"); {
		case st.wantTok == "":
		case isNew:
			if tok <= last {
				t.Errorf("%s: token %d, want a new one above %d", st.name, tok, last)
			}
			toks[name], last, want = tok, tok, tok
		default:
			want = toks[name]
		}
		if tok != want || ok != st.wantOK {
			t.Errorf("%s: token, ok = %d, %v; want %d, %v", st.name, tok, ok, want, st.wantOK)
		}
	}
	if l, held, err := s.LeaseInfo(ctx, "sched"); err != nil || !held || l.Holder != "b" || l.Token != toks["b2"] || l.TTL <= 0 || l.TTL > ttl {
		t.Errorf("LeaseInfo = %+v, %v, %v; want b with token %d", l, held, err, toks["b2"])
	}
	// Contenders racing for a free lease: exactly one wins, and its token is the next one.
	const n = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins []int64
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, ok, err := s.AcquireLease(ctx, "race", fmt.Sprintf("h%d", i), ttl)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins = append(wins, tok)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 || wins[0] < 1 {
		t.Errorf("racing AcquireLease winners' tokens = %v; want exactly one", wins)
	}
	if _, _, err := s.AcquireLease(ctx, "sched", "", ttl); err == nil {
		t.Error("AcquireLease with an empty holder succeeded")
	}
	if _, _, err := s.AcquireLease(ctx, "sched", "a", 0); err == nil {
		t.Error("AcquireLease with a zero TTL succeeded")
	}
}

func testEpoch(t *testing.T, open func(*testing.T, Options) *Store) {
	a, b := open(t, Options{}), open(t, Options{})
	ctx := testCtx(t)
	e1, err := a.Epoch(ctx)
	if err != nil || e1 == "" {
		t.Fatalf("Epoch = %q, %v", e1, err)
	}
	if e, err := b.Epoch(ctx); e != e1 || err != nil {
		t.Errorf("second store's Epoch = %q, %v; want %q (one data set, one epoch)", e, err, e1)
	}
	flush(t, a)
	e2, err := b.Epoch(ctx)
	if err != nil || e2 == e1 || e2 == "" {
		t.Errorf("Epoch after FLUSHALL = %q, %v; want a new epoch, not %q", e2, err, e1)
	}
	if e, err := a.Epoch(ctx); e != e2 || err != nil {
		t.Errorf("the other store's Epoch after FLUSHALL = %q, %v; want %q", e, err, e2)
	}
	if v, err := a.Client().Get(ctx, KeySchema).Result(); v != fmt.Sprint(SchemaVersion) || err != nil {
		t.Errorf("schema key after Epoch on an emptied Redis = %q, %v; want %d written back", v, err, SchemaVersion)
	}
	if err := a.Client().Set(ctx, KeySchema, SchemaVersion+1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Epoch(ctx); !errors.Is(err, ErrSchema) {
		t.Errorf("Epoch with schema version %d stored = %v; want ErrSchema", SchemaVersion+1, err)
	}
	if err := a.Client().Set(ctx, KeySchema, SchemaVersion, 0).Err(); err != nil { // for the next area
		t.Fatal(err)
	}
}
