package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fleet tunables.
const (
	// DownAfterIntervals is how many heartbeat intervals without a heartbeat mark a daemon (and a PoP whose
	// daemons are all silent) down.
	DownAfterIntervals = 3
	// HeartbeatForget is how long a silent daemon stays listed: its heartbeat hash expires this long after the
	// PoP's last heartbeat, and Fleet drops (and deletes) single daemons silent for longer.
	HeartbeatForget = 24 * time.Hour
)

// Heartbeat is one probe daemon's periodic sign of life, written with PutHeartbeat.
type Heartbeat struct {
	PoP       string   `json:"pop"`
	DaemonID  string   `json:"daemon"`
	Addr      string   `json:"addr,omitempty"`       // the daemon's API address, host:port
	Version   string   `json:"version,omitempty"`    // the daemon's build version
	SourceIPs []string `json:"source_ips,omitempty"` // the addresses its probes leave from
	// MeshAddr is where the daemon answers the other PoPs' mesh probes (host:port, TCP); empty: it does not.
	MeshAddr string    `json:"mesh_addr,omitempty"`
	At       time.Time `json:"at"` // when it was sent; zero: PutHeartbeat's clock
	// Interval is the daemon's heartbeat interval, as passed to PutHeartbeat.
	Interval time.Duration `json:"interval_ns"`
}

// Up reports whether h is newer than DownAfterIntervals intervals at now.
func (h Heartbeat) Up(now time.Time) bool {
	return h.Interval > 0 && now.Sub(h.At) < DownAfterIntervals*h.Interval
}

// PoPState is one PoP as Fleet reports it.
type PoPState struct {
	PoP string
	// Up: some daemon's heartbeat is newer than DownAfterIntervals of its intervals.
	Up bool
	// Drained: an operator drained the PoP (SetDrained); it may be up, but should get no new work or traffic.
	Drained bool
	// LastSeen is the newest heartbeat's time (zero when none is known).
	LastSeen time.Time
	// Daemons are the PoP's known daemons, sorted by DaemonID.
	Daemons []Heartbeat
}

// PutHeartbeat records h for h.PoP and h.DaemonID; interval is how often the daemon sends one (it must be
// positive). A PoP whose daemons are all silent for DownAfterIntervals intervals is down.
func (s *Store) PutHeartbeat(ctx context.Context, h Heartbeat, interval time.Duration) error {
	if err := validName("heartbeat PoP", h.PoP); err != nil {
		return err
	}
	if err := validName("heartbeat daemon id", h.DaemonID); err != nil {
		return err
	}
	if interval <= 0 {
		return fmt.Errorf("storage: heartbeat of %s/%s: interval %v: must be positive", h.PoP, h.DaemonID, interval)
	}
	if h.At.IsZero() {
		h.At = s.o.Now()
	}
	h.At = h.At.UTC()
	h.Interval = interval
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("storage: heartbeat of %s/%s: %w", h.PoP, h.DaemonID, err)
	}
	key := KeyHeartbeats(h.PoP)
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, h.DaemonID, b)
		p.PExpire(ctx, key, HeartbeatForget)
		p.SAdd(ctx, KeyFleetPoPs, h.PoP)
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: heartbeat of %s/%s: %w", h.PoP, h.DaemonID, err)
	}
	return nil
}

// SetDrained sets or clears pop's drain flag.
func (s *Store) SetDrained(ctx context.Context, pop string, drained bool) error {
	if err := validName("PoP", pop); err != nil {
		return err
	}
	var err error
	if drained {
		err = s.c.SAdd(ctx, KeyFleetDrained, pop).Err()
	} else {
		err = s.c.SRem(ctx, KeyFleetDrained, pop).Err()
	}
	if err != nil {
		return fmt.Errorf("storage: set PoP %s drained=%v: %w", pop, drained, err)
	}
	return nil
}

// Fleet returns every known PoP (with a heartbeat or a drain flag), sorted by PoP. Daemons silent for longer
// than HeartbeatForget are dropped and deleted.
func (s *Store) Fleet(ctx context.Context) ([]PoPState, error) {
	var pops, drained *redis.StringSliceCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		pops = p.SMembers(ctx, KeyFleetPoPs)
		drained = p.SMembers(ctx, KeyFleetDrained)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: fleet: %w", err)
	}
	states := map[string]*PoPState{}
	for _, p := range pops.Val() {
		states[p] = &PoPState{PoP: p}
	}
	for _, p := range drained.Val() {
		if states[p] == nil {
			states[p] = &PoPState{PoP: p}
		}
		states[p].Drained = true
	}
	names := slices.Sorted(maps.Keys(states))
	hbs := make([]*redis.MapStringStringCmd, len(names))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			hbs[i] = p.HGetAll(ctx, KeyHeartbeats(n))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: fleet heartbeats: %w", err)
	}
	now := s.o.Now()
	out := make([]PoPState, 0, len(names))
	for i, n := range names {
		st := states[n]
		for id, raw := range hbs[i].Val() {
			var h Heartbeat
			if err := json.Unmarshal([]byte(raw), &h); err != nil {
				s.log.Warn("storage: corrupt heartbeat", "pop", n, "daemon", id, "err", err)
				continue
			}
			if now.Sub(h.At) > HeartbeatForget {
				s.c.HDel(ctx, KeyHeartbeats(n), id) // best effort; the hash's TTL catches the rest
				continue
			}
			st.Daemons = append(st.Daemons, h)
			if h.At.After(st.LastSeen) {
				st.LastSeen = h.At
			}
			st.Up = st.Up || h.Up(now)
		}
		sort.Slice(st.Daemons, func(a, b int) bool { return st.Daemons[a].DaemonID < st.Daemons[b].DaemonID })
		out = append(out, *st)
	}
	return out, nil
}
