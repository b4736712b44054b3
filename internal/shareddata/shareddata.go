// Package shareddata locates the project's shared data sets (../shared/data beside the checkout) for tests,
// benchmarks and the bench harness.
package shareddata

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// EnvVar overrides the search: when set, it is the shared data directory.
const EnvVar = "VANTAGE_SHARED_DATA"

// ErrNotFound is returned when no shared/data directory is found.
var ErrNotFound = errors.New("shareddata: no shared/data directory found above the working directory (set " + EnvVar + ")")

// Dir returns the shared data directory: $VANTAGE_SHARED_DATA, else the first shared/data found walking up
// from the working directory (a checkout's tests run in package directories below it).
func Dir() (string, error) {
	if d := os.Getenv(EnvVar); d != "" {
		if _, err := os.Stat(filepath.Join(d, "README.md")); err != nil {
			return "", fmt.Errorf("shareddata: %s=%q: %w", EnvVar, d, err)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("shareddata: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "shared", "data")
		if _, err := os.Stat(filepath.Join(cand, "README.md")); err == nil {
			return cand, nil
		}
		if filepath.Dir(d) == d {
			return "", ErrNotFound
		}
	}
}

// Path returns the path of elems inside the shared data directory, failing tb when the directory or the file
// is missing: the data ships beside every checkout, so its absence is an error, not a reason to skip.
func Path(tb testing.TB, elems ...string) string {
	tb.Helper()
	d, err := Dir()
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(append([]string{d}, elems...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("shareddata: %v", err)
	}
	return p
}
