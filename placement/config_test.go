package placement

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vantage-edge/vantage/geo"
)

// parseFile parses a testdata file by its extension, with the default parser.
func parseFile(t *testing.T, path string) (Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".toml") {
		return ParseWranglerTOML(path, data)
	}
	return ParseWranglerJSONC(path, data)
}

func TestParseValidConfigs(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Config
	}{
		{"smart.toml", Config{App: "shop-frontend", Mode: ModeSmart}},
		{"smart.jsonc", Config{App: "shop-frontend", Mode: ModeSmart}},
		{"smart-hint.toml", Config{App: "shop-frontend", Mode: ModeSmart, Hint: "wnam"}},
		{"smart-hint.jsonc", Config{App: "shop-frontend", Mode: ModeSmart, Hint: "wnam"}},
		{"region.toml", Config{App: "orders-api", Mode: ModeRegion, Region: "aws:us-east-1"}},
		{"region.jsonc", Config{App: "orders-api", Mode: ModeRegion, Region: "aws:us-east-1"}},
		{"host.toml", Config{App: "billing", Mode: ModeHost, Host: "db.example.com:5432"}},
		{"host.jsonc", Config{App: "billing", Mode: ModeHost, Host: "db.example.com:5432"}},
		{"hostname.toml", Config{App: "catalog", Mode: ModeHostname, Hostname: "api.example.com"}},
		{"hostname.json", Config{App: "catalog", Mode: ModeHostname, Hostname: "api.example.com"}},
		{"targeted.toml", Config{App: "search", Mode: ModeHostname, Hostname: "search.example.com"}},
		{"off.toml", Config{App: "static-site", Mode: ModeNone}},
		{"none.toml", Config{App: "no-placement", Mode: ModeNone}},
		{"legacy.toml", Config{App: "legacy-app", Mode: ModeSmart, Legacy: true}},
		{"legacy.jsonc", Config{App: "legacy-app", Mode: ModeSmart, Legacy: true}},
		{"account.toml", Config{App: "billing", Mode: ModeHost, Host: "db.example.com:5432", AccountID: "023e105f4ecef8ad9ca31a8372d0c353"}},
		{"account.jsonc", Config{App: "billing", Mode: ModeHost, Host: "db.example.com:5432", AccountID: "023e105f4ecef8ad9ca31a8372d0c353"}},
		// What wrangler accepts, Vantage loads: null is no placement, an empty hint is none, unknown keys,
		// a hint the platform's analysis would not use and a target beside mode "off" are warnings.
		{"null.jsonc", Config{App: "shop"}},
		{"hint-empty.toml", Config{App: "shop"}},
		{"unknown-key.toml", Config{App: "shop", Mode: ModeSmart, Warnings: []string{
			`testdata/valid/unknown-key.toml:5:1: placement.region_hint: "wnam": unknown key, ignored (want mode, region, host, hostname or hint)`}}},
		{"hint-odd.jsonc", Config{App: "shop", Mode: ModeSmart, Warnings: []string{
			`testdata/valid/hint-odd.jsonc:2:50: placement.hint: "west us": invalid hint: ' ': want printable ASCII without spaces; Vantage does not use hints, and drops this one`}}},
		{"off-region.toml", Config{App: "shop", AccountID: "0123456789abcdef0123456789abcdef", Warnings: []string{
			`testdata/valid/off-region.toml:6:1: placement.region: "aws:us-east-1": ignored: mode is "off", so nothing is placed`}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "valid", tc.file)
			got, err := parseFile(t, path)
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			tc.want.Source = path
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if err := DefaultParser().Validate(got); err != nil {
				t.Errorf("parsed config does not validate: %v", err)
			}
		})
	}
}

// TestParseValidValues runs each option through both formats, with the forms the parser accepts and the
// normalised value it returns.
func TestParseValidValues(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		want             Config
	}{
		{"smart", "mode", "smart", Config{Mode: ModeSmart}},
		{"off", "mode", "off", Config{Mode: ModeNone}},
		{"aws", "region", "aws:us-east-1", Config{Mode: ModeRegion, Region: "aws:us-east-1"}},
		{"gcp", "region", "gcp:europe-west1", Config{Mode: ModeRegion, Region: "gcp:europe-west1"}},
		{"azure", "region", "azure:westeurope", Config{Mode: ModeRegion, Region: "azure:westeurope"}},
		{"region_upper_case", "region", "AWS:US-EAST-1", Config{Mode: ModeRegion, Region: "aws:us-east-1"}},
		{"host_docs_example", "host", "my_database_host.com:5432", Config{Mode: ModeHost, Host: "my_database_host.com:5432"}},
		{"host_upper_case", "host", "DB.Example.com:5432", Config{Mode: ModeHost, Host: "db.example.com:5432"}},
		{"host_port_1", "host", "db.example.com:1", Config{Mode: ModeHost, Host: "db.example.com:1"}},
		{"host_port_65535", "host", "db.example.com:65535", Config{Mode: ModeHost, Host: "db.example.com:65535"}},
		{"host_port_leading_zero", "host", "db.example.com:05432", Config{Mode: ModeHost, Host: "db.example.com:5432"}},
		{"host_trailing_dot", "host", "db.example.com.:5432", Config{Mode: ModeHost, Host: "db.example.com:5432"}},
		{"host_single_label", "host", "db:5432", Config{Mode: ModeHost, Host: "db:5432"}},
		{"host_ipv4", "host", "1.1.1.1:443", Config{Mode: ModeHost, Host: "1.1.1.1:443"}},
		{"host_ipv6", "host", "[2606:4700:0::1111]:443", Config{Mode: ModeHost, Host: "[2606:4700::1111]:443"}},
		{"host_ipv4_in_brackets", "host", "[1.1.1.1]:443", Config{Mode: ModeHost, Host: "1.1.1.1:443"}},
		{"host_ipv4_mapped", "host", "[::ffff:1.1.1.1]:443", Config{Mode: ModeHost, Host: "[::ffff:1.1.1.1]:443"}},
		{"hostname_docs_example", "hostname", "my_api_server.com", Config{Mode: ModeHostname, Hostname: "my_api_server.com"}},
		{"hostname_ipv4", "hostname", "8.8.8.8", Config{Mode: ModeHostname, Hostname: "8.8.8.8"}},
		{"hostname_ipv6", "hostname", "2001:4860:4860::8888", Config{Mode: ModeHostname, Hostname: "2001:4860:4860::8888"}},
		{"hostname_ipv6_brackets", "hostname", "[2001:4860:4860::8888]", Config{Mode: ModeHostname, Hostname: "2001:4860:4860::8888"}},
		{"hostname_punycode", "hostname", "xn--bcher-kva.example", Config{Mode: ModeHostname, Hostname: "xn--bcher-kva.example"}},
		{"hostname_digit_labels", "hostname", "123.example.com", Config{Mode: ModeHostname, Hostname: "123.example.com"}},
		{"hostname_label_63", "hostname", strings.Repeat("a", 63) + ".example", Config{Mode: ModeHostname, Hostname: strings.Repeat("a", 63) + ".example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tomlSrc := "name = \"app\"\n[placement]\n" + tc.key + " = " + quote(tc.value) + "\n"
			jsonSrc := "{\"name\": \"app\", \"placement\": {" + quote(tc.key) + ": " + quote(tc.value) + "}}"
			for file, parse := range map[string]func(string, []byte) (Config, error){
				"wrangler.toml":  func(n string, _ []byte) (Config, error) { return ParseWranglerTOML(n, []byte(tomlSrc)) },
				"wrangler.jsonc": func(n string, _ []byte) (Config, error) { return ParseWranglerJSONC(n, []byte(jsonSrc)) },
			} {
				got, err := parse(file, nil)
				if err != nil {
					t.Fatalf("%s: unexpected error: %v", file, err)
				}
				want := tc.want
				want.App, want.Source = "app", file
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: got %+v, want %+v", file, got, want)
				}
			}
		})
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// TestParseInvalidConfigs is the catalogue of bad configs, each in a file of testdata/invalid, with the exact
// error text (one line per problem) and the sentinels errors.Is must find.
func TestParseInvalidConfigs(t *testing.T) {
	covered := map[string]bool{}
	t.Cleanup(func() {
		files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no testdata/invalid files: %v", err)
		}
		for _, f := range files {
			if !covered[filepath.Base(f)] {
				t.Errorf("%s has no case in the table", f)
			}
		}
	})
	for _, tc := range []struct {
		file string
		is   []error
		want string
	}{
		{"account-bad.toml", []error{ErrBadAccount}, `testdata/invalid/account-bad.toml:2:1: account_id: "acme corp": invalid account id: character ' ' at offset 4: want letters, digits, '-' and '_'`},
		{"account-duplicate.jsonc", []error{ErrDuplicate}, `testdata/invalid/account-duplicate.jsonc:4:3: account_id: "other": duplicate key: first given on line 3`},
		{"account-type.jsonc", []error{ErrType}, `testdata/invalid/account-type.jsonc:3:3: account_id: 12345: want a string, got number`},
		{"bad-name.toml", []error{ErrBadName}, `testdata/invalid/bad-name.toml:1:1: name: "My Worker": character 'M' at offset 0: want lower-case letters, digits, '-' and '_'`},
		{"conflict-region-host.toml", []error{ErrConflict}, `testdata/invalid/conflict-region-host.toml:5:1: placement.host: "db.example.com:5432": set together with placement.region: region, host and hostname are exclusive`},
		{"conflict-smart-hostname.toml", []error{ErrConflict}, `testdata/invalid/conflict-smart-hostname.toml:5:1: placement.hostname: "api.example.com": set together with mode "smart": a hostname is a placement of its own, drop mode or write mode = "targeted"`},
		{"conflict-three.toml", []error{ErrConflict}, `testdata/invalid/conflict-three.toml:5:1: placement.host: "db.example.com:5432": set together with placement.hostname: region, host and hostname are exclusive
testdata/invalid/conflict-three.toml:6:1: placement.region: "aws:us-east-1": set together with placement.hostname: region, host and hostname are exclusive`},
		{"conflict.jsonc", []error{ErrConflict}, `testdata/invalid/conflict.jsonc:5:5: placement.region: "aws:us-east-1": set together with mode "smart": a region is a placement of its own, drop mode or write mode = "targeted"`},
		{"dotted.toml", []error{ErrBadHost, ErrDenied}, `testdata/invalid/dotted.toml:2:1: placement.host: "127.0.0.1:8080": address 127.0.0.1: denied by policy (rule loopback, 127.0.0.0/8)`},
		{"duplicate-name.jsonc", []error{ErrDuplicate}, `testdata/invalid/duplicate-name.jsonc:3:3: name: "b": duplicate key: first given on line 2`},
		{"duplicate.jsonc", []error{ErrDuplicate}, `testdata/invalid/duplicate.jsonc:5:5: placement.host: "db2.example.com:5432": duplicate key: first given on line 4`},
		{"host-bad-name.toml", []error{ErrBadHost}, `testdata/invalid/host-bad-name.toml:4:1: placement.host: "db_1..example.com:5432": empty label (two dots, or a leading dot)`},
		{"host-denied.jsonc", []error{ErrBadHost, ErrDenied}, `testdata/invalid/host-denied.jsonc:4:2: placement.host: "192.168.1.10:5432": address 192.168.1.10: denied by policy (rule rfc1918, 192.168.0.0/16)`},
		{"host-denied.toml", []error{ErrBadHost, ErrDenied}, `testdata/invalid/host-denied.toml:7:1: placement.host: "10.0.0.5:5432": address 10.0.0.5: denied by policy (rule rfc1918, 10.0.0.0/8)`},
		{"host-empty-string.toml", []error{ErrBadHost}, `testdata/invalid/host-empty-string.toml:4:1: placement.host: "": empty: want host:port, e.g. "db.example.com:5432"`},
		{"host-empty.toml", []error{ErrBadHost}, `testdata/invalid/host-empty.toml:4:1: placement.host: ":5432": empty host before the port`},
		{"host-ipv4-mapped-denied.toml", []error{ErrBadHost, ErrDenied}, `testdata/invalid/host-ipv4-mapped-denied.toml:4:1: placement.host: "[::ffff:10.0.0.5]:5432": address 10.0.0.5: denied by policy (rule rfc1918, 10.0.0.0/8)`},
		{"host-ipv6-denied.toml", []error{ErrBadHost, ErrDenied}, `testdata/invalid/host-ipv6-denied.toml:4:1: placement.host: "[fd00::1]:443": address fd00::1: denied by policy (rule ula, fc00::/7)`},
		{"host-ipv6-no-brackets.toml", []error{ErrBadHost}, `testdata/invalid/host-ipv6-no-brackets.toml:4:1: placement.host: "2001:db8::1:5432": missing port, or an IPv6 address without brackets: want [address]:port`},
		{"host-no-port.toml", []error{ErrBadHost}, `testdata/invalid/host-no-port.toml:4:1: placement.host: "db.example.com": missing port: want host:port, e.g. "db.example.com:5432"`},
		{"host-port-name.toml", []error{ErrBadHost}, `testdata/invalid/host-port-name.toml:4:1: placement.host: "db.example.com:postgres": port "postgres" is not a number`},
		{"host-port-range.toml", []error{ErrBadHost}, `testdata/invalid/host-port-range.toml:4:1: placement.host: "db.example.com:70000": port 70000 out of range 1-65535`},
		{"host-port-zero.toml", []error{ErrBadHost}, `testdata/invalid/host-port-zero.toml:4:1: placement.host: "db.example.com:0": port 0 out of range 1-65535`},
		{"host-url.toml", []error{ErrBadHost}, `testdata/invalid/host-url.toml:4:1: placement.host: "tcp://db.example.com:5432": a URL: want host:port without the scheme "tcp://"`},
		{"hostname-chars.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-chars.toml:4:1: placement.hostname: "api!.example.com": character '!': want letters, digits, '-', '_' and dots`},
		{"hostname-dash.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-dash.toml:4:1: placement.hostname: "-api.example.com": label "-api" starts or ends with '-'`},
		{"hostname-denied-v6.toml", []error{ErrBadHostname, ErrDenied}, `testdata/invalid/hostname-denied-v6.toml:4:1: placement.hostname: "::1": address ::1: denied by policy (rule loopback, ::1/128)`},
		{"hostname-denied.toml", []error{ErrBadHostname, ErrDenied}, `testdata/invalid/hostname-denied.toml:4:1: placement.hostname: "169.254.169.254": address 169.254.169.254: denied by policy (rule link-local, 169.254.0.0/16)`},
		{"hostname-hex.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-hex.toml:4:1: placement.hostname: "0x7f000001": numeric last label "0x7f000001": looks like an IP address, write the address in dotted-quad form`},
		{"hostname-long-label.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-long-label.toml:4:1: placement.hostname: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com": label "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is 64 bytes, more than 63`},
		{"hostname-numeric.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-numeric.toml:4:1: placement.hostname: "10.1": numeric last label "1": looks like an IP address, write the address in dotted-quad form`},
		{"hostname-path.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-path.toml:4:1: placement.hostname: "api.example.com/v1/health": has a path or query "/v1/health": want the bare hostname`},
		{"hostname-port.jsonc", []error{ErrBadHostname}, `testdata/invalid/hostname-port.jsonc:3:18: placement.hostname: "api.example.com:443": has a port: want the bare hostname (host = "api.example.com:443" is the TCP form)`},
		{"hostname-port.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-port.toml:4:1: placement.hostname: "api.example.com:8443": has a port: want the bare hostname (host = "api.example.com:8443" is the TCP form)`},
		{"hostname-scheme.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-scheme.toml:4:1: placement.hostname: "https://api.example.com": a URL: want the bare hostname without the scheme "https://"`},
		{"hostname-space.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-space.toml:4:1: placement.hostname: "api .example.com": character ' ': want letters, digits, '-', '_' and dots`},
		{"hostname-unicode.toml", []error{ErrBadHostname}, `testdata/invalid/hostname-unicode.toml:4:1: placement.hostname: "bücher.example": non-ASCII name: write it in its xn-- (punycode) form`},
		{"inline.toml", []error{ErrConflict}, `testdata/invalid/inline.toml:2:31: placement.region: "aws:us-east-1": set together with mode "smart": a region is a placement of its own, drop mode or write mode = "targeted"`},
		{"key-case.jsonc", []error{ErrNoMode}, `testdata/invalid/key-case.jsonc:3:3: placement.mode: placement mode missing: want mode = "smart", "targeted" or "off", or one of region, host or hostname (unknown keys ignored: Mode; keys are lower-case)`},
		{"key-case.toml", []error{ErrNoMode}, `testdata/invalid/key-case.toml:3:1: placement.mode: placement mode missing: want mode = "smart", "targeted" or "off", or one of region, host or hostname (unknown keys ignored: Host; keys are lower-case)`},
		{"empty-table.toml", []error{ErrNoMode}, `testdata/invalid/empty-table.toml:3:1: placement.mode: placement mode missing: want mode = "smart", "targeted" or "off", or one of region, host or hostname`},
		{"hint-no-mode.toml", []error{ErrNoMode}, `testdata/invalid/hint-no-mode.toml:3:1: placement.mode: placement mode missing: a hint goes with mode = "smart"`},
		{"hint-off.toml", []error{ErrConflict}, `testdata/invalid/hint-off.toml:5:1: placement.hint: "wnam": a hint goes with mode "smart" only, not with mode "off"`},
		{"duplicate-mode.jsonc", []error{ErrDuplicate}, `testdata/invalid/duplicate-mode.jsonc:3:34: placement.mode: "off": duplicate key: first given on line 3`},
		{"legacy-and-placement.jsonc", []error{ErrConflict}, `testdata/invalid/legacy-and-placement.jsonc:4:29: unsafe.metadata.placement: set together with placement: write the placement once, in [placement]`},
		{"legacy-and-placement.toml", []error{ErrConflict}, `testdata/invalid/legacy-and-placement.toml:6:1: unsafe.metadata.placement: set together with placement: write the placement once, in [placement]`},
		{"legacy-bad-mode.toml", []error{ErrUnknownMode}, `testdata/invalid/legacy-bad-mode.toml:4:1: unsafe.metadata.placement.mode: "fast": unknown placement mode (want "smart", "targeted" or "off")`},
		{"many.toml", []error{ErrBadName, ErrUnknownMode, ErrBadHost, ErrBadHostname, ErrConflict}, `testdata/invalid/many.toml:1:1: name: "-shop": starts or ends with '-'
testdata/invalid/many.toml:4:1: placement.mode: "fast": unknown placement mode (want "smart", "targeted" or "off")
testdata/invalid/many.toml:5:1: placement.host: "db.example.com:99999": port 99999 out of range 1-65535
testdata/invalid/many.toml:6:1: placement.hostname: "https://api.example.com": a URL: want the bare hostname without the scheme "https://"
testdata/invalid/many.toml:6:1: placement.hostname: "https://api.example.com": set together with placement.host: region, host and hostname are exclusive`},
		{"missing-name.jsonc", []error{ErrBadName}, `testdata/invalid/missing-name.jsonc: name: missing: every application needs a name`},
		{"missing-name.toml", []error{ErrBadName}, `testdata/invalid/missing-name.toml: name: missing: every application needs a name`},
		{"mode-case.toml", []error{ErrUnknownMode}, `testdata/invalid/mode-case.toml:4:1: placement.mode: "Smart": unknown placement mode (want "smart", "targeted" or "off")`},
		{"mode-empty.toml", []error{ErrUnknownMode}, `testdata/invalid/mode-empty.toml:4:1: placement.mode: "": unknown placement mode (want "smart", "targeted" or "off")`},
		{"name-non-ascii.jsonc", []error{ErrBadName}, `testdata/invalid/name-non-ascii.jsonc:2:3: name: "café": non-ASCII character at offset 3: want lower-case letters, digits, '-' and '_'`},
		{"name-type.toml", []error{ErrType}, `testdata/invalid/name-type.toml:1:1: name: 42: want a string, got an integer`},
		{"not-object.jsonc", []error{ErrType}, `testdata/invalid/not-object.jsonc:3:3: placement: "smart": want an object, got a string`},
		{"placement-array.toml", []error{ErrType}, `testdata/invalid/placement-array.toml:3:1: placement: want a table, got an array of tables`},
		{"placement-not-table.toml", []error{ErrType}, `testdata/invalid/placement-not-table.toml:2:1: placement: "smart": want a table, got a string`},
		// The providers and suggestions come from geo's catalogue: checked in part, below.
		{"region-provider.toml", []error{ErrBadRegion, geo.ErrUnknownRegion}, ``},
		{"region-syntax.toml", []error{ErrBadRegion, geo.ErrRegionSyntax}, `testdata/invalid/region-syntax.toml:4:1: placement.region: "us-east-1": want provider:region, e.g. "aws:us-east-1", "gcp:europe-west1", "azure:westeurope"`},
		{"region-too-long.toml", []error{ErrBadRegion}, `testdata/invalid/region-too-long.toml:4:1: placement.region: "aws:us-east-1-this-is-far-too-long-for-any-region-id-in-any-catalogue": 69 bytes, too long for a region ID (at most 64)`},
		{"region-unknown.toml", []error{ErrBadRegion, geo.ErrUnknownRegion}, `testdata/invalid/region-unknown.toml:4:1: placement.region: "aws:us-east1": not in the region catalogue; did you mean "aws:us-east-1"?`},
		{"syntax-duplicate.toml", []error{ErrSyntax}, `testdata/invalid/syntax-duplicate.toml:5:1: toml: Key 'placement.mode' has already been defined.`},
		{"syntax.jsonc", []error{ErrSyntax}, `testdata/invalid/syntax.jsonc:3:3: jsonc: invalid character '"' after object value (expecting ',' or '}')`},
		{"syntax.toml", []error{ErrSyntax}, `testdata/invalid/syntax.toml:4:8: toml: expected value but found "smart" instead`},
		{"targeted-without-hint.toml", []error{ErrNoTarget}, `testdata/invalid/targeted-without-hint.toml:4:1: placement.mode: "targeted": placement target missing: mode "targeted" needs one of region, host or hostname`},
		{"top-string.jsonc", []error{ErrType}, `testdata/invalid/top-string.jsonc:2:1: want an object at the top level, got a string`},
		{"top-array.jsonc", []error{ErrType}, `testdata/invalid/top-array.jsonc:1:1: want an object at the top level, got an array`},
		{"hint-targeted.toml", []error{ErrConflict}, `testdata/invalid/hint-targeted.toml:5:1: placement.hint: "wnam": set together with placement.region: a hint goes with mode "smart", a region, host or hostname with mode "targeted"`},
		{"unknown-mode.jsonc", []error{ErrUnknownMode}, `testdata/invalid/unknown-mode.jsonc:5:5: placement.mode: "fast": unknown placement mode (want "smart", "targeted" or "off")`},
		{"unknown-mode.toml", []error{ErrUnknownMode}, `testdata/invalid/unknown-mode.toml:4:1: placement.mode: "fast": unknown placement mode (want "smart", "targeted" or "off")`},
		{"unterminated.jsonc", []error{ErrSyntax}, `testdata/invalid/unterminated.jsonc:3:3: jsonc: parsing comment: unexpected EOF`},
		{"wrong-type-mode.toml", []error{ErrType}, `testdata/invalid/wrong-type-mode.toml:4:1: placement.mode: true: want a string, got a boolean`},
		{"wrong-type.jsonc", []error{ErrType}, `testdata/invalid/wrong-type.jsonc:3:18: placement.host: 5432: want a string, got number`},
		{"wrong-type.toml", []error{ErrType}, `testdata/invalid/wrong-type.toml:4:1: placement.host: 5432: want a string, got an integer`},
	} {
		covered[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "invalid", tc.file)
			got, err := parseFile(t, path)
			if err == nil {
				t.Fatalf("no error; parsed %+v", got)
			}
			if !reflect.DeepEqual(got, Config{}) {
				t.Errorf("config on error = %+v, want zero", got)
			}
			if tc.want == "" {
				if !strings.HasPrefix(err.Error(), path+":4:1: placement.region: \"amazn:us-east-1\": unknown provider \"amazn\" (want one of aws, ") ||
					!strings.Contains(err.Error(), `did you mean "aws:us-east-1"`) {
					t.Errorf("error:\n%v", err)
				}
			} else if err.Error() != tc.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, tc.want)
			}
			for _, s := range tc.is {
				if !errors.Is(err, s) {
					t.Errorf("errors.Is(err, %v) = false", s)
				}
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != path {
				t.Errorf("errors.As(*ConfigError) = %+v, want File %q", ce, path)
			}
		})
	}
}

func TestConfigErrorFields(t *testing.T) {
	_, err := LoadFile(filepath.Join("testdata", "invalid", "host-denied.toml"))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("not a *ConfigError: %v", err)
	}
	want := ConfigError{File: filepath.Join("testdata", "invalid", "host-denied.toml"), Line: 7, Col: 1,
		Field: "placement.host", Value: "10.0.0.5:5432"}
	if ce.File != want.File || ce.Line != want.Line || ce.Col != want.Col || ce.Field != want.Field || ce.Value != want.Value {
		t.Errorf("got %+v, want %+v", *ce, want)
	}

	for _, tc := range []struct {
		name string
		err  ConfigError
		want string
	}{
		{"everything", ConfigError{File: "w.toml", Line: 3, Col: 5, Field: "placement.mode", Value: "x", Err: ErrUnknownMode},
			`w.toml:3:5: placement.mode: "x": unknown placement mode`},
		{"no_column", ConfigError{File: "w.toml", Line: 3, Field: "name", Value: int64(4), Err: ErrType},
			`w.toml:3: name: 4: wrong type`},
		{"no_position", ConfigError{File: "w.toml", Field: "name", Err: ErrBadName},
			`w.toml: name: invalid application name`},
		{"table_value_not_shown", ConfigError{File: "w.jsonc", Line: 1, Col: 1, Field: "placement", Value: map[string]any{}, Err: ErrType},
			`w.jsonc:1:1: placement: wrong type`},
		{"float_and_bool", ConfigError{File: "w.jsonc", Field: "placement.host", Value: 1.5, Err: ErrType},
			`w.jsonc: placement.host: 1.5: wrong type`},
		{"file_level", ConfigError{File: "w.toml", Line: 2, Col: 1, Err: ErrSyntax},
			`w.toml:2:1: syntax error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestParserAllowListLiftsTheDeny(t *testing.T) {
	src := []byte("name = \"local\"\n[placement]\nhost = \"127.0.0.1:8080\"\n")
	if _, err := ParseWranglerTOML("w.toml", src); !errors.Is(err, ErrDenied) {
		t.Fatalf("default parser: err = %v, want ErrDenied", err)
	}
	p := Parser{Policy: DefaultPolicy(netip.MustParsePrefix("127.0.0.0/8"))}
	c, err := p.ParseTOML("w.toml", src)
	if err != nil {
		t.Fatalf("allow-listed: %v", err)
	}
	if c.Host != "127.0.0.1:8080" || c.Mode != ModeHost {
		t.Errorf("got %+v", c)
	}
	if err := p.Validate(c); err != nil {
		t.Errorf("Validate with the same policy: %v", err)
	}
	if err := DefaultParser().Validate(c); !errors.Is(err, ErrDenied) {
		t.Errorf("Validate with the default policy: err = %v, want ErrDenied", err)
	}
}

func TestParseJSONCLeavesInputAlone(t *testing.T) {
	src := []byte("{\n  // comment\n  \"name\": \"app\",\n  \"placement\": { \"mode\": \"smart\", },\n}\n")
	orig := bytes.Clone(src)
	if _, err := ParseWranglerJSONC("w.jsonc", src); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, orig) {
		t.Errorf("input changed:\n%s", src)
	}
}
