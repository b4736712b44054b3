package storage

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyMesh is the hash of the PoP mesh: "<src>><dst>" -> "<at Unix ms>|<MeshRTT JSON>", the latest measurement
// of each ordered pair of PoPs.
const KeyMesh = "vantage:{mesh}:rtt"

// MeshRTT is one PoP's latest measurement of another PoP's mesh port (the probe daemon's TCP listener
// advertised as Heartbeat.MeshAddr), written with PutMeshRTT.
type MeshRTT struct {
	Src     string    `json:"src"`     // the measuring PoP
	Dst     string    `json:"dst"`     // the PoP measured
	RTTMs   float64   `json:"rtt_ms"`  // the smallest TCP connect RTT of the probe's samples, ms
	Samples int       `json:"samples"` // answered samples
	At      time.Time `json:"at"`      // when the probe ran; zero: PutMeshRTT's clock
}

// meshField is a pair's field in KeyMesh.
func meshField(src, dst string) string { return src + ">" + dst }

// putMeshScript replaces a pair's measurement unless the stored one is newer (a re-delivered job's late result).
// KEYS[1] the mesh hash; ARGV[1] field, ARGV[2] at (Unix ms), ARGV[3] JSON. Returns 1 when stored.
var putMeshScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local at = tonumber(string.match(cur, '^(-?%d+)|'))
  if at and at > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return 1
`)

// PutMeshRTT stores m as the latest measurement of the pair (m.Src, m.Dst) unless a newer one is stored, and
// reports whether it did. The RTT must be finite and >= 0.
func (s *Store) PutMeshRTT(ctx context.Context, m MeshRTT) (bool, error) {
	for _, n := range [][2]string{{"mesh src PoP", m.Src}, {"mesh dst PoP", m.Dst}} {
		if err := validName(n[0], n[1]); err != nil {
			return false, err
		}
		if strings.Contains(n[1], ">") {
			return false, fmt.Errorf("storage: %s %q: contains '>'", n[0], n[1])
		}
	}
	if m.Src == m.Dst {
		return false, fmt.Errorf("storage: mesh pair %s>%s: a PoP does not measure itself", m.Src, m.Dst)
	}
	if math.IsNaN(m.RTTMs) || math.IsInf(m.RTTMs, 0) || m.RTTMs < 0 {
		return false, fmt.Errorf("storage: mesh pair %s>%s: rtt_ms %v: want a finite number >= 0", m.Src, m.Dst, m.RTTMs)
	}
	if m.At.IsZero() {
		m.At = s.o.Now()
	}
	m.At = m.At.UTC()
	b, err := json.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("storage: mesh pair %s>%s: %w", m.Src, m.Dst, err)
	}
	n, err := putMeshScript.Run(ctx, s.c, []string{KeyMesh}, meshField(m.Src, m.Dst), m.At.UnixMilli(), b).Int()
	if err != nil {
		return false, fmt.Errorf("storage: mesh pair %s>%s: %w", m.Src, m.Dst, err)
	}
	return n == 1, nil
}

// MeshRTTs returns the mesh's measurements no older than maxAge (maxAge <= 0: all), sorted by Src then Dst.
// Older ones are deleted (a PoP that left the fleet, a pair no longer measured); a value that does not decode
// is skipped and counted (vantage_storage_corrupt_values_total{kind="mesh"}).
func (s *Store) MeshRTTs(ctx context.Context, maxAge time.Duration) ([]MeshRTT, error) {
	all, err := s.c.HGetAll(ctx, KeyMesh).Result()
	if err != nil {
		return nil, fmt.Errorf("storage: mesh: %w", err)
	}
	now := s.o.Now()
	out := make([]MeshRTT, 0, len(all))
	var stale []string
	for field, v := range all {
		var m MeshRTT
		_, raw, ok := strings.Cut(v, "|")
		if !ok || json.Unmarshal([]byte(raw), &m) != nil {
			s.skipCorrupt("mesh", KeyMesh+" "+field, v, errCorrupt)
			continue
		}
		if maxAge > 0 && now.Sub(m.At) > maxAge {
			stale = append(stale, field)
			continue
		}
		out = append(out, m)
	}
	if len(stale) > 0 {
		s.c.HDel(ctx, KeyMesh, stale...) // best effort: the next read drops them again
	}
	slices.SortFunc(out, func(a, b MeshRTT) int { return cmp.Or(cmp.Compare(a.Src, b.Src), cmp.Compare(a.Dst, b.Dst)) })
	return out, nil
}
