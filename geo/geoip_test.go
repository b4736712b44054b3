package geo

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/internal/shareddata"
)

func openTestGeoIP(t *testing.T, city, asn string) *GeoIP {
	t.Helper()
	asnPath := ""
	if asn != "" {
		asnPath = shareddata.Path(t, "maxmind-test-mmdb", asn)
	}
	g, err := OpenGeoIP(shareddata.Path(t, "maxmind-test-mmdb", city), asnPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	})
	return g
}

func TestGeoIPLookup(t *testing.T) {
	g := openTestGeoIP(t, "GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb")
	// Expected values from the databases' source JSON (shared/data/maxmind-test-mmdb/*.source.json).
	tests := []struct {
		name string
		ip   string
		want IPInfo
	}{
		{"London", "81.2.69.142", IPInfo{City: "London", Country: "United Kingdom", CC: "GB", Continent: "EU",
			Point: Point{51.5142, -0.0931}, HasLocation: true, AccuracyKm: 10}},
		{"IPv4-mapped London", "::ffff:81.2.69.142", IPInfo{City: "London", Country: "United Kingdom", CC: "GB", Continent: "EU",
			Point: Point{51.5142, -0.0931}, HasLocation: true, AccuracyKm: 10}},
		{"Milton", "216.160.83.56", IPInfo{City: "Milton", Country: "United States", CC: "US", Continent: "NA",
			Point: Point{47.2513, -122.3149}, HasLocation: true, AccuracyKm: 22, ASN: 209}},
		{"city and ASN", "214.78.120.1", IPInfo{City: "San Diego", Country: "United States", CC: "US", Continent: "NA",
			Point: Point{32.7405, -117.0935}, HasLocation: true, AccuracyKm: 100, ASN: 721, ASOrg: "DoD Network Information Center"}},
		{"ASN only", "1.128.0.1", IPInfo{ASN: 1221, ASOrg: "Telstra Pty Ltd"}},
		{"ASN only AT&T", "12.81.92.1", IPInfo{ASN: 7018, ASOrg: "AT&T Services"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := g.Lookup(netip.MustParseAddr(tt.ip))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Network.Contains(got.IP) || got.IP != netip.MustParseAddr(tt.ip).Unmap() {
				t.Fatalf("IP %v, Network %v", got.IP, got.Network)
			}
			got.IP, got.Network = netip.Addr{}, netip.Prefix{}
			if got != tt.want {
				t.Fatalf("Lookup(%s) =\n %+v\nwant\n %+v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestGeoIPCountryOnly(t *testing.T) {
	g := openTestGeoIP(t, "GeoIP2-City-Test.mmdb", "")
	got, err := g.Lookup(netip.MustParseAddr("2001:218::1"))
	if err != nil {
		t.Fatal(err)
	}
	if got.CC != "JP" || got.City != "" || got.ASN != 0 {
		t.Fatalf("Lookup(2001:218::1) = %+v, want JP without city", got)
	}
}

func TestGeoIPNotFound(t *testing.T) {
	g := openTestGeoIP(t, "GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb")
	for _, ip := range []string{"1.1.1.1", "198.18.0.1", "::1"} {
		_, err := g.Lookup(netip.MustParseAddr(ip))
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), ip) {
			t.Errorf("Lookup(%s) err = %v, want ErrNotFound naming the address", ip, err)
		}
	}
	if _, err := g.Lookup(netip.Addr{}); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup(zero Addr) err = %v, want an invalid-address error", err)
	}
}

func TestOpenGeoIPErrors(t *testing.T) {
	dir := t.TempDir()
	city := shareddata.Path(t, "maxmind-test-mmdb", "GeoIP2-City-Test.mmdb")
	asn := shareddata.Path(t, "maxmind-test-mmdb", "GeoLite2-ASN-Test.mmdb")
	raw, err := os.ReadFile(city)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage.mmdb", []byte(strings.Repeat("not a maxmind database\n", 100)))
	empty := write("empty.mmdb", nil)
	truncated := write("truncated.mmdb", raw[:len(raw)/2])
	missing := filepath.Join(dir, "missing.mmdb")
	tests := []struct {
		name, city, asn, wantPath string
	}{
		{"missing city", missing, "", missing},
		{"garbage city", garbage, "", garbage},
		{"empty city", empty, "", empty},
		{"truncated city (no metadata)", truncated, "", truncated},
		{"ASN database as city", asn, "", asn},
		{"City database as ASN", city, city, city},
		{"missing ASN", city, missing, missing},
		{"garbage ASN", city, garbage, garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := OpenGeoIP(tt.city, tt.asn)
			if err == nil {
				g.Close()
				t.Fatal("OpenGeoIP succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantPath) || !strings.HasPrefix(err.Error(), "geo: geoip: ") {
				t.Fatalf("err = %v, want it to name %s", err, tt.wantPath)
			}
			t.Log(err)
		})
	}
}

// TestGeoIPCorruptRecords scrambles parts of a City database but keeps its metadata: a broken search tree
// is caught when opening, broken records when looking up; both are errors naming the file, never a crash.
func TestGeoIPCorruptRecords(t *testing.T) {
	orig, err := os.ReadFile(shareddata.Path(t, "maxmind-test-mmdb", "GeoIP2-City-Test.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	meta := strings.LastIndex(string(orig), "\xab\xcd\xefMaxMind.com")
	if meta < 0 {
		t.Fatal("no metadata marker")
	}
	const treeBytes = 1547 * 28 / 4 // node_count x record size 28 bits x 2 records / 8
	tests := []struct {
		name      string
		from, to  int
		openFails bool
	}{
		{"search tree", 0, treeBytes, true},
		{"data section", treeBytes + 16, meta, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := slices.Clone(orig)
			for i := tt.from; i < tt.to; i++ {
				raw[i] = byte(i*7 + 3)
			}
			path := filepath.Join(t.TempDir(), "corrupt.mmdb")
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			g, err := OpenGeoIP(path, "")
			if tt.openFails {
				if err == nil || !strings.Contains(err.Error(), path) {
					g.Close()
					t.Fatalf("OpenGeoIP err = %v, want an error naming %s", err, path)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("OpenGeoIP: %v", err)
			}
			defer g.Close()
			fails := 0
			for _, ip := range []string{"81.2.69.142", "216.160.83.56", "2001:218::1", "89.160.20.112"} {
				_, err := g.Lookup(netip.MustParseAddr(ip))
				t.Logf("Lookup(%s): %v", ip, err)
				if err != nil && !errors.Is(err, ErrNotFound) {
					fails++
					if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "corrupt") {
						t.Errorf("Lookup(%s) err = %v, want it to name the database", ip, err)
					}
				}
			}
			if fails == 0 {
				t.Fatal("every lookup in a scrambled database succeeded")
			}
		})
	}
}
