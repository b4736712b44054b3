package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vantage-edge/vantage/internal/shareddata"
)

// TestGeneratedFilesAreCommitted regenerates geo/data into a temporary directory and compares it byte for
// byte with the committed files.
func TestGeneratedFilesAreCommitted(t *testing.T) {
	data, err := shareddata.Dir()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for name, step := range map[string]func(data, out string) error{
		"pops-cloudflare.csv": pops, "cloud-regions.csv": regions, "wonderproxy-rtt.csv": latency,
	} {
		t.Run(name, func(t *testing.T) {
			if err := step(data, out); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("..", "..", "data", name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("geo/data/%s differs from the generator's output: run go generate ./geo", name)
			}
		})
	}
}

func TestMissingSharedData(t *testing.T) {
	dir := t.TempDir()
	for name, step := range map[string]func(data, out string) error{"pops": pops, "regions": regions, "latency": latency} {
		if err := step(dir, dir); err == nil {
			t.Errorf("%s: no error for an empty data directory", name)
		}
	}
}
