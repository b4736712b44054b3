package smartrun_test

import (
	"testing"

	"github.com/vantage-edge/vantage/placement"
	"github.com/vantage-edge/vantage/scheduler/smartrun"
	"github.com/vantage-edge/vantage/storage"
)

// TestDefaultTargetKey checks that smart reads the fleet's results where the scheduler stores them: the
// storage.TargetKey of the probe kind of the host's placement mode.
func TestDefaultTargetKey(t *testing.T) {
	tests := []struct {
		host string
		kind placement.ProbeKind
	}{
		{"db.example.com:5432", placement.ProbeTCP},
		{"198.18.0.7:5432", placement.ProbeTCP},
		{"[2001:db8::1]:443", placement.ProbeTCP},
		{"api.example.com", placement.ProbeHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got, want := smartrun.DefaultTargetKey(tt.host), storage.TargetKey(tt.kind, tt.host); got != want {
				t.Errorf("DefaultTargetKey(%q) = %q, want storage.TargetKey %q", tt.host, got, want)
			}
		})
	}
}
