package storage

import (
	"testing"

	"github.com/vantage-edge/vantage/placement"
)

// TestTargetKey pins the names results are stored under (the schema in doc.go): changing them loses every
// stored result on upgrade.
func TestTargetKey(t *testing.T) {
	tests := []struct {
		kind              placement.ProbeKind
		addr, want, wantK string
	}{
		{placement.ProbeTCP, "db.example.com:5432", "tcp:db.example.com:5432", "vantage:{t:tcp:db.example.com:5432}:latest"},
		{placement.ProbeHTTP, "api.example.com", "http:api.example.com", "vantage:{t:http:api.example.com}:latest"},
		{placement.ProbeTCP, "[2001:db8::1]:443", "tcp:[2001:db8::1]:443", "vantage:{t:tcp:[2001:db8::1]:443}:latest"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := TargetKey(tt.kind, tt.addr)
			if got != tt.want {
				t.Errorf("TargetKey(%q, %q) = %q, want %q", tt.kind, tt.addr, got, tt.want)
			}
			if k := KeyLatest(got); k != tt.wantK {
				t.Errorf("KeyLatest(%q) = %q, want %q", got, k, tt.wantK)
			}
		})
	}
}
