package placement_test

import (
	"errors"
	"fmt"

	"github.com/vantage-edge/vantage/placement"
)

func ExampleParseWranglerTOML() {
	wranglerTOML := []byte(`
name = "billing"
main = "src/index.ts"
compatibility_date = "2026-01-22"

[placement]
host = "db.example.com:5432"
`)
	c, err := placement.ParseWranglerTOML("wrangler.toml", wranglerTOML)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.App, c.Mode, c.Target(), c.ProbeKind())
	// Output: billing host db.example.com:5432 tcp
}

func ExampleParseWranglerTOML_error() {
	wranglerTOML := []byte(`name = "billing"

[placement]
mode = "smart"
host = "10.0.0.5:5432"
`)
	_, err := placement.ParseWranglerTOML("wrangler.toml", wranglerTOML)
	fmt.Println(err)
	var ce *placement.ConfigError
	if errors.As(err, &ce) {
		fmt.Println(ce.Line, ce.Field, errors.Is(err, placement.ErrDenied), errors.Is(err, placement.ErrConflict))
	}
	// Output:
	// wrangler.toml:5:1: placement.host: "10.0.0.5:5432": address 10.0.0.5: denied by policy (rule rfc1918, 10.0.0.0/8)
	// wrangler.toml:5:1: placement.host: "10.0.0.5:5432": set together with mode "smart": a host is a placement of its own, drop mode or write mode = "targeted"
	// 5 placement.host true true
}

func ExampleParseWranglerJSONC() {
	wranglerJSONC := []byte(`{
  "name": "orders-api",
  // run next to the database in AWS
  "placement": { "region": "aws:us-east-1", },
}`)
	c, err := placement.ParseWranglerJSONC("wrangler.jsonc", wranglerJSONC)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.App, c.Mode, c.Target())
	// Output: orders-api region aws:us-east-1
}
