package shareddata

import (
	"path/filepath"
	"testing"
)

func TestDirFindsTheWonderProxyMatrix(t *testing.T) {
	p := Path(t, "wonderproxy-pings-2020", "servers-2020-07-19.csv")
	if filepath.Base(p) != "servers-2020-07-19.csv" {
		t.Fatalf("Path = %q", p)
	}
}

func TestEnvOverrideMustExist(t *testing.T) {
	t.Setenv(EnvVar, t.TempDir())
	if _, err := Dir(); err == nil {
		t.Fatal("Dir accepted a directory without README.md")
	}
}
