package geo

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vantage-edge/vantage/internal/shareddata"
)

var sharedWP = struct {
	once sync.Once
	wp   *WonderProxy
	err  error
}{}

// loadWP loads the WonderProxy data set once per test binary.
func loadWP(tb testing.TB) *WonderProxy {
	tb.Helper()
	dir := filepath.Dir(shareddata.Path(tb, "wonderproxy-pings-2020", WPServersFile))
	sharedWP.once.Do(func() { sharedWP.wp, sharedWP.err = LoadWonderProxy(dir) })
	if sharedWP.err != nil {
		tb.Fatal(sharedWP.err)
	}
	return sharedWP.wp
}

func TestLoadWonderProxy(t *testing.T) {
	wp := loadWP(t)
	if len(wp.Servers) != 246 {
		t.Fatalf("%d servers, want 246", len(wp.Servers))
	}
	if !slices.Equal(wp.Unlocated, []int{292, 293, 294, 295}) {
		t.Fatalf("Unlocated = %v, want [292 293 294 295]", wp.Unlocated)
	}
	if wp.Pairs() != 59887 {
		t.Fatalf("Pairs() = %d, want 59887 directed pairs between located servers", wp.Pairs())
	}
	s, ok := wp.Server(1)
	if !ok || s.Title != "Melbourne" || s.Country != "Australia" || s.Continent != 4 || s.Point != (Point{-37.7833, 144.9667}) {
		t.Fatalf("Server(1) = %+v, %v", s, ok)
	}
	// First data row of the ping file: 0,1,288.454,288.722,289.537,0.653.
	if v, ok := wp.MinRTT(0, 1); !ok || v != 288.454 {
		t.Fatalf("MinRTT(0, 1) = %v, %v, want 288.454", v, ok)
	}
	if p, ok := wp.Ping(0, 1); !ok || p.Avg != 288.722 || p.Mdev != 0.653 {
		t.Fatalf("Ping(0, 1) = %+v, %v", p, ok)
	}
	for _, tt := range []struct {
		name     string
		src, dst int
	}{{"self pair", 0, 0}, {"unlocated server", 0, 292}, {"unknown server", 0, 100000}} {
		if _, ok := wp.MinRTT(tt.src, tt.dst); ok {
			t.Errorf("%s: MinRTT(%d, %d) reported a measurement", tt.name, tt.src, tt.dst)
		}
	}
}

func TestLoadWonderProxyErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadWonderProxy(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, WPServersFile)) {
		t.Fatalf("missing files: err = %v", err)
	}
	servers := `"id","name","title","location","state","country","state_abbv","continent","latitude","longitude"` + "\n" +
		`"1","A","A","A","","X","","1","10","10"` + "\n"
	os.WriteFile(filepath.Join(dir, WPServersFile), []byte(servers), 0o644)
	os.WriteFile(filepath.Join(dir, WPPingsFile), []byte("source,destination,min,avg,max,mdev\n1,2,x,1,1,1\n"), 0o644)
	if _, err := LoadWonderProxy(dir); err == nil || !strings.Contains(err.Error(), WPPingsFile+":2") {
		t.Fatalf("bad number: err = %v", err)
	}
}
