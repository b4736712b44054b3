package storage

import (
	"hash/fnv"
	"sync"
)

// corruptKinds are the kinds of values a scan skips when they do not decode (the metric's label values).
var corruptKinds = []string{"decision", "app", "mesh"}

// maxCorruptRemembered bounds the corrupt values a Store remembers having logged: past it, new ones are still
// skipped and counted but logged at debug level, so a Redis full of garbage cannot grow the set or flood the log.
const maxCorruptRemembered = 4096

// corruptSeen remembers the corrupt values a Store has reported, so that each is logged and counted once, not
// on every scan (routers scan every 30 s).
type corruptSeen struct {
	mu   sync.Mutex
	seen map[uint64]struct{}
}

// skipCorrupt reports a value of kind stored at where (a key, and the field when known) that did not decode:
// logged and counted the first time this Store sees it; the scan goes on without it.
func (s *Store) skipCorrupt(kind, where, value string, err error) {
	h := fnv.New64a()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(where))
	h.Write([]byte{0})
	h.Write([]byte(value))
	id := h.Sum64()
	c := &s.corrupt
	c.mu.Lock()
	_, seen := c.seen[id]
	full := len(c.seen) >= maxCorruptRemembered
	if !seen && !full {
		if c.seen == nil {
			c.seen = map[uint64]struct{}{}
		}
		c.seen[id] = struct{}{}
	}
	c.mu.Unlock()
	if seen {
		return
	}
	if s.metrics != nil {
		s.metrics.corrupt.WithLabelValues(kind).Inc()
	}
	log := s.log.Warn
	if full {
		log = s.log.Debug
	}
	log("storage: undecodable value skipped", "kind", kind, "at", where, "value", truncate(value, 64), "err", err)
}

// truncate returns at most n bytes of v, for logs.
func truncate(v string, n int) string {
	if len(v) <= n {
		return v
	}
	return v[:n] + "..."
}
