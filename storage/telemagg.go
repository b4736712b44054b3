package storage

// Aggregated telemetry schema (rows for doc.go's table, same columns):
//
//	vantage:{tel:<app>}:agg:<start>   hash    one window of app's requests (start: Unix s,    1 h after  worker    smart runner
//	                                          a multiple of TelemetryAggWindow): per cell     its last   hosts,
//	                                          c|<deploy>|<ingress>|<exec>|<routed>|<reason>|  write      scheduler
//	                                          n (requests), s (sum of durations, µs), l                  API
//	                                          (latest start, Unix ms, max), d<i> and o<i>
//	                                          (loghist buckets of durations and of durations
//	                                          outside subrequests); per back end
//	                                          h|<deploy>|<exec>|<host>| n, w (waitUntil), s
//	                                          (µs), m (smallest, µs, min)
//
// AddTelemetryWindows runs one Lua script per application and window (HINCRBY of every count, sum and bucket,
// compare-and-set of the minima and maxima, PEXPIRE) in one pipeline, then per application one ZADD GT of
// KeyTelemetryApps and one HINCRBY of KeyTelemetryFresh by its requests. TelemetryWindows reads the windows
// of a time range with one HGETALL each, in one pipeline. The cost no longer grows with requests but with the
// distinct cells per window: see BenchmarkTelemetryIngest.

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/internal/loghist"
)

// Aggregated telemetry tunables.
const (
	// TelemetryAggWindow is the length of one aggregation window: the analysis sees its window to this
	// granularity, and a worker host writes at most one script call per application and window it flushes.
	TelemetryAggWindow = 10 * time.Second
	// TelemetryAggTTL is how long a window lives after its last write: the 15-minute analysis window plus a
	// margin for late reports and slow runners. An analysis window longer than this sees less than it asks for.
	TelemetryAggTTL = time.Hour
	// DefaultTelemetrySampleRate is the fraction of request records AddTelemetry also keeps on the
	// application's stream, for debugging (Options.TelemetrySampleRate).
	DefaultTelemetrySampleRate = 0.01
	// MaxReasonLen caps a router reason kept as an aggregation dimension; longer or odd ones become "other".
	MaxReasonLen = 32

	aggSep = "|"
)

// KeyTelemetryWindow returns the hash of app's aggregated telemetry in the window starting at start.
func KeyTelemetryWindow(app string, start time.Time) string {
	return "vantage:{tel:" + app + "}:agg:" + strconv.FormatInt(WindowStart(start).Unix(), 10)
}

// WindowStart returns the start of the aggregation window holding t.
func WindowStart(t time.Time) time.Time { return t.Truncate(TelemetryAggWindow).UTC() }

// TelemetryCell aggregates the requests of one application in one window that share a deploy version, ingress
// PoP, execution PoP, routed flag and router reason.
type TelemetryCell struct {
	Deploy  string `json:"deploy,omitempty"`
	Ingress string `json:"ingress"`
	Exec    string `json:"exec"`
	Routed  bool   `json:"routed,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Count is the number of requests; SumMs the sum of their durations in ms.
	Count int64   `json:"count"`
	SumMs float64 `json:"sum_ms"`
	// Last is the latest start among the requests.
	Last time.Time `json:"last"`
	// Durations counts the requests' durations (ms) in loghist buckets; Outside counts their durations minus
	// their subrequests outside waitUntil, floored at 0 (the time spent in the worker itself). Both hold Count.
	Durations loghist.Histogram `json:"durations"`
	Outside   loghist.Histogram `json:"outside"`
}

// TelemetryHost aggregates the subrequests of one application in one window from one execution PoP to one back
// end, for one deploy version.
type TelemetryHost struct {
	Deploy string `json:"deploy,omitempty"`
	Exec   string `json:"exec"`
	Host   string `json:"host"`
	// Count is the number of subrequests outside waitUntil; SumMs and MinMs the sum and the smallest of their
	// durations in ms (MinMs is meaningless when Count is 0). WaitUntil counts those in waitUntil.
	Count     int64   `json:"count"`
	SumMs     float64 `json:"sum_ms"`
	MinMs     float64 `json:"min_ms"`
	WaitUntil int64   `json:"wait_until,omitempty"`
}

// TelemetryWindow is the aggregated telemetry of one application over one window of TelemetryAggWindow.
type TelemetryWindow struct {
	App   string          `json:"app"`
	Start time.Time       `json:"start"` // truncated to the window by the writer
	Cells []TelemetryCell `json:"cells"`
	Hosts []TelemetryHost `json:"hosts,omitempty"`
}

// Requests returns the window's request count.
func (w *TelemetryWindow) Requests() int64 {
	var n int64
	for _, c := range w.Cells {
		n += c.Count
	}
	return n
}

// Validate checks a window before it is stored, naming the bad field and its value.
func (w *TelemetryWindow) Validate() error {
	if err := validName("telemetry app", w.App); err != nil {
		return err
	}
	if w.Start.IsZero() {
		return fmt.Errorf("storage: telemetry window of %s: start is zero", w.App)
	}
	for i, c := range w.Cells {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("storage: telemetry window of %s at %v: cell %d: %s", w.App, w.Start, i, fmt.Sprintf(format, args...))
		}
		for _, f := range []struct{ name, v string }{{"ingress", c.Ingress}, {"exec", c.Exec}} {
			if err := validName("PoP", f.v); err != nil {
				return bad("%s: %v", f.name, err)
			}
		}
		for _, f := range []struct{ name, v string }{{"ingress", c.Ingress}, {"exec", c.Exec}, {"deploy", c.Deploy}, {"reason", c.Reason}} {
			if strings.Contains(f.v, aggSep) {
				return bad("%s %q contains %q", f.name, f.v, aggSep)
			}
		}
		if c.Count < 1 || !(c.SumMs >= 0) || math.IsInf(c.SumMs, 0) || c.Last.IsZero() {
			return bad("count %d, sum_ms %v, last %v: want count >= 1, a finite sum >= 0 and a last time", c.Count, c.SumMs, c.Last)
		}
		for _, h := range []struct {
			name string
			h    loghist.Histogram
		}{{"durations", c.Durations}, {"outside", c.Outside}} {
			if err := h.h.Validate(); err != nil {
				return bad("%s: %v", h.name, err)
			}
			if n := h.h.Count(); n != c.Count {
				return bad("%s hold %d requests, count is %d", h.name, n, c.Count)
			}
		}
	}
	for i, h := range w.Hosts {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("storage: telemetry window of %s at %v: host %d (%q): %s", w.App, w.Start, i, h.Host, fmt.Sprintf(format, args...))
		}
		if err := validName("PoP", h.Exec); err != nil {
			return bad("exec: %v", err)
		}
		if h.Host == "" || strings.Contains(h.Host, aggSep) || strings.Contains(h.Exec, aggSep) || strings.Contains(h.Deploy, aggSep) {
			return bad("empty, or a field contains %q", aggSep)
		}
		if h.Count < 0 || h.WaitUntil < 0 || h.Count+h.WaitUntil == 0 {
			return bad("count %d, wait_until %d: want >= 0, not both 0", h.Count, h.WaitUntil)
		}
		if !(h.SumMs >= 0) || math.IsInf(h.SumMs, 0) || !(h.MinMs >= 0) || math.IsInf(h.MinMs, 0) {
			return bad("sum_ms %v, min_ms %v: want finite numbers >= 0", h.SumMs, h.MinMs)
		}
	}
	return nil
}

// TelemetryAggregator folds request records into windows, in memory: a worker host adds every request and
// flushes the windows (AddTelemetryWindows) every few seconds. It is safe for concurrent use.
type TelemetryAggregator struct {
	mu      sync.Mutex
	windows map[aggWindowKey]*aggWindow
	n       int64
	groups  int // cells and back-end groups open since the last Drain
}

type aggWindowKey struct {
	app   string
	start int64
}

type aggCellKey struct {
	deploy, ingress, exec, reason string
	routed                        bool
}

type aggHostKey struct{ deploy, exec, host string }

type aggWindow struct {
	cells map[aggCellKey]*TelemetryCell
	hosts map[aggHostKey]*TelemetryHost
}

// NewTelemetryAggregator returns an empty aggregator.
func NewTelemetryAggregator() *TelemetryAggregator {
	return &TelemetryAggregator{windows: map[aggWindowKey]*aggWindow{}}
}

// Add folds one valid record (see Telemetry.Validate) into its window.
func (a *TelemetryAggregator) Add(t *Telemetry) { a.AddCapped(t, 0) }

// AddCapped folds one valid record into its window like Add, unless that would open more than maxGroups cells
// and back-end groups (TelemetryCell, TelemetryHost) in all since the last Drain: then it adds nothing and
// returns false. maxGroups <= 0: no cap. The groups are what the aggregator holds in memory, and what a flush
// writes.
func (a *TelemetryAggregator) AddCapped(t *Telemetry, maxGroups int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	wk := aggWindowKey{t.App, WindowStart(t.At).Unix()}
	w := a.windows[wk]
	ck := aggCellKey{t.Deploy, t.Ingress, t.Exec, ReasonClass(t.Reason), t.Routed}
	if maxGroups > 0 {
		if n := w.newGroups(ck, t); n > 0 && a.groups+n > maxGroups {
			return false
		}
	}
	a.n++
	if w == nil {
		w = &aggWindow{cells: map[aggCellKey]*TelemetryCell{}, hosts: map[aggHostKey]*TelemetryHost{}}
		a.windows[wk] = w
	}
	c := w.cells[ck]
	if c == nil {
		c = &TelemetryCell{Deploy: ck.deploy, Ingress: ck.ingress, Exec: ck.exec, Routed: ck.routed, Reason: ck.reason,
			Durations: loghist.Histogram{}, Outside: loghist.Histogram{}}
		w.cells[ck] = c
		a.groups++
	}
	inSub := 0.0
	for _, s := range t.Subrequests {
		hk := aggHostKey{t.Deploy, t.Exec, s.Host}
		h := w.hosts[hk]
		if h == nil {
			h = &TelemetryHost{Deploy: t.Deploy, Exec: t.Exec, Host: s.Host, MinMs: math.Inf(1)}
			w.hosts[hk] = h
			a.groups++
		}
		if s.WaitUntil {
			h.WaitUntil++
			continue
		}
		h.Count++
		h.SumMs += s.DurationMs
		h.MinMs = min(h.MinMs, s.DurationMs)
		inSub += s.DurationMs
	}
	c.Count++
	c.SumMs += t.DurationMs
	if t.At.After(c.Last) {
		c.Last = t.At
	}
	c.Durations.Add(t.DurationMs)
	c.Outside.Add(max(t.DurationMs-inSub, 0))
	return true
}

// newGroups returns how many groups adding t (whose cell is ck) would open in w (nil: a window not open yet).
func (w *aggWindow) newGroups(ck aggCellKey, t *Telemetry) int {
	n := 0
	if w == nil || w.cells[ck] == nil {
		n++
	}
	for i, s := range t.Subrequests {
		if w != nil && w.hosts[aggHostKey{t.Deploy, t.Exec, s.Host}] != nil {
			continue
		}
		if !slices.ContainsFunc(t.Subrequests[:i], func(p Subrequest) bool { return p.Host == s.Host }) {
			n++
		}
	}
	return n
}

// Groups returns the cells and back-end groups open since the last Drain.
func (a *TelemetryAggregator) Groups() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.groups
}

// Requests returns the number of records added since the last Drain.
func (a *TelemetryAggregator) Requests() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// Drain returns the windows folded so far, sorted by application and start, and empties the aggregator.
func (a *TelemetryAggregator) Drain() []TelemetryWindow {
	a.mu.Lock()
	ws := a.windows
	a.windows, a.n, a.groups = map[aggWindowKey]*aggWindow{}, 0, 0
	a.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(ws), func(x, y aggWindowKey) int {
		if c := strings.Compare(x.app, y.app); c != 0 {
			return c
		}
		return int(x.start - y.start)
	})
	out := make([]TelemetryWindow, 0, len(keys))
	for _, k := range keys {
		w := TelemetryWindow{App: k.app, Start: time.Unix(k.start, 0).UTC()}
		for _, c := range ws[k].cells {
			w.Cells = append(w.Cells, *c)
		}
		for _, h := range ws[k].hosts {
			if h.Count == 0 {
				h.MinMs = 0
			}
			w.Hosts = append(w.Hosts, *h)
		}
		sortWindow(&w)
		out = append(out, w)
	}
	return out
}

// FoldTelemetry returns recs (valid records) folded into windows.
func FoldTelemetry(recs []Telemetry) []TelemetryWindow {
	a := NewTelemetryAggregator()
	for i := range recs {
		a.Add(&recs[i])
	}
	return a.Drain()
}

// ReasonClass returns the router reason as an aggregation dimension: itself when it is a short word of
// [a-z0-9_-], else "other", so that reasons cannot blow up the cells of a window.
func ReasonClass(r string) string {
	if len(r) > MaxReasonLen {
		return "other"
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "other"
		}
	}
	return r
}

func sortWindow(w *TelemetryWindow) {
	slices.SortFunc(w.Cells, func(x, y TelemetryCell) int {
		return strings.Compare(cellPrefix(&x), cellPrefix(&y))
	})
	slices.SortFunc(w.Hosts, func(x, y TelemetryHost) int {
		return strings.Compare(hostPrefix(&x), hostPrefix(&y))
	})
}

func cellPrefix(c *TelemetryCell) string {
	r := "0"
	if c.Routed {
		r = "1"
	}
	return strings.Join([]string{"c", c.Deploy, c.Ingress, c.Exec, r, c.Reason, ""}, aggSep)
}

func hostPrefix(h *TelemetryHost) string {
	return strings.Join([]string{"h", h.Deploy, h.Exec, h.Host, ""}, aggSep)
}

func us(ms float64) int64 { return int64(math.Round(ms * 1000)) }

// mergeWindowScript merges one window: ARGV[1] is the TTL in ms, then three sections, each a count followed by
// that many field/value pairs: HINCRBY, keep the smaller (minima), keep the larger (maxima).
var mergeWindowScript = redis.NewScript(`
local k = KEYS[1]
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HINCRBY', k, ARGV[i], ARGV[i+1]); i = i + 2 end
for pass = 1, 2 do
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    local v = tonumber(redis.call('HGET', k, ARGV[i]))
    local x = tonumber(ARGV[i+1])
    if v == nil or (pass == 1 and x < v) or (pass == 2 and x > v) then redis.call('HSET', k, ARGV[i], ARGV[i+1]) end
    i = i + 2
  end
end
redis.call('PEXPIRE', k, ARGV[1])
return 1
`)

// AddTelemetryWindows merges windows into Redis (one script call per application and window), and per
// application raises its latest-report score and its fresh-request counter by its requests. An invalid window
// fails the whole batch before anything is written.
func (s *Store) AddTelemetryWindows(ctx context.Context, ws []TelemetryWindow) error {
	if len(ws) == 0 {
		return nil
	}
	type merged struct {
		incr, mins, maxs []any
	}
	byKey := map[string]*merged{}
	var keys []string
	latest := map[string]int64{}
	count := map[string]int64{}
	for i := range ws {
		w := &ws[i]
		if err := w.Validate(); err != nil {
			return err
		}
		k := KeyTelemetryWindow(w.App, w.Start)
		m := byKey[k]
		if m == nil {
			m = &merged{}
			byKey[k] = m
			keys = append(keys, k)
		}
		for j := range w.Cells {
			c := &w.Cells[j]
			c.Reason = ReasonClass(c.Reason)
			p := cellPrefix(c)
			m.incr = append(m.incr, p+"n", c.Count, p+"s", us(c.SumMs))
			for b, n := range c.Durations {
				if n > 0 {
					m.incr = append(m.incr, p+"d"+strconv.Itoa(b), n)
				}
			}
			for b, n := range c.Outside {
				if n > 0 {
					m.incr = append(m.incr, p+"o"+strconv.Itoa(b), n)
				}
			}
			m.maxs = append(m.maxs, p+"l", c.Last.UnixMilli())
			count[w.App] += c.Count
			latest[w.App] = max(latest[w.App], c.Last.UnixMilli())
		}
		for j := range w.Hosts {
			h := &w.Hosts[j]
			p := hostPrefix(h)
			if h.Count > 0 {
				m.incr = append(m.incr, p+"n", h.Count, p+"s", us(h.SumMs))
				m.mins = append(m.mins, p+"m", us(h.MinMs))
			}
			if h.WaitUntil > 0 {
				m.incr = append(m.incr, p+"w", h.WaitUntil)
			}
		}
	}
	ttl := TelemetryAggTTL.Milliseconds()
	keyArgs := make([][]string, len(keys))
	args := make([][]any, len(keys))
	for i, k := range keys {
		m := byKey[k]
		a := make([]any, 0, 4+len(m.incr)+len(m.mins)+len(m.maxs))
		a = append(a, ttl, len(m.incr)/2)
		a = append(a, m.incr...)
		a = append(a, len(m.mins)/2)
		a = append(a, m.mins...)
		a = append(a, len(m.maxs)/2)
		a = append(a, m.maxs...)
		keyArgs[i], args[i] = []string{k}, a
	}
	cmds, err := s.evalMany(ctx, mergeWindowScript, keyArgs, args)
	if err != nil {
		return fmt.Errorf("storage: add %d telemetry windows (first app %s): %w", len(ws), ws[0].App, err)
	}
	for i, c := range cmds {
		if c.Err() != nil {
			return fmt.Errorf("storage: add telemetry window %s: %w", keys[i], c.Err())
		}
	}
	pipe := s.c.Pipeline()
	for _, app := range slices.Sorted(maps.Keys(latest)) {
		pipe.ZAddGT(ctx, KeyTelemetryApps, redis.Z{Score: float64(latest[app]), Member: app})
		if count[app] > 0 {
			pipe.HIncrBy(ctx, KeyTelemetryFresh, app, count[app])
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("storage: add %d telemetry windows (first app %s): %w", len(ws), ws[0].App, err)
	}
	return nil
}

// TelemetryWindows returns app's windows that overlap [since, until], oldest first, skipping empty ones.
// Fields that do not parse are skipped and counted in the returned skipped number.
func (s *Store) TelemetryWindows(ctx context.Context, app string, since, until time.Time) (ws []TelemetryWindow, skipped int, err error) {
	if err := validName("telemetry app", app); err != nil {
		return nil, 0, err
	}
	var starts []time.Time
	for t := WindowStart(since); !t.After(until); t = t.Add(TelemetryAggWindow) {
		starts = append(starts, t)
	}
	cmds := make([]*redis.MapStringStringCmd, len(starts))
	for len(starts) > 0 {
		n := min(len(starts), pipelineChunk)
		if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, t := range starts[:n] {
				cmds[i] = p.HGetAll(ctx, KeyTelemetryWindow(app, t))
			}
			return nil
		}); err != nil {
			return nil, skipped, fmt.Errorf("storage: telemetry windows of %s: %w", app, err)
		}
		for i, t := range starts[:n] {
			if len(cmds[i].Val()) == 0 {
				continue
			}
			w, bad := decodeWindow(app, t, cmds[i].Val())
			skipped += bad
			if len(w.Cells) > 0 || len(w.Hosts) > 0 {
				ws = append(ws, w)
			}
		}
		starts = starts[n:]
	}
	return ws, skipped, nil
}

// decodeWindow parses a window hash; it returns the number of fields it could not parse.
func decodeWindow(app string, start time.Time, m map[string]string) (TelemetryWindow, int) {
	w := TelemetryWindow{App: app, Start: start}
	cells := map[string]*TelemetryCell{}
	hosts := map[string]*TelemetryHost{}
	bad := 0
	for f, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		cut := strings.LastIndex(f, aggSep)
		if err != nil || cut < 0 || cut == len(f)-1 {
			bad++
			continue
		}
		prefix, field := f[:cut+1], f[cut+1:]
		parts := strings.Split(prefix, aggSep)
		switch {
		case parts[0] == "c" && len(parts) == 7:
			c := cells[prefix]
			if c == nil {
				c = &TelemetryCell{Deploy: parts[1], Ingress: parts[2], Exec: parts[3], Routed: parts[4] == "1", Reason: parts[5],
					Durations: loghist.Histogram{}, Outside: loghist.Histogram{}}
				cells[prefix] = c
			}
			switch {
			case field == "n":
				c.Count = n
			case field == "s":
				c.SumMs = float64(n) / 1000
			case field == "l":
				c.Last = time.UnixMilli(n).UTC()
			case field[0] == 'd' || field[0] == 'o':
				b, err := strconv.Atoi(field[1:])
				if err != nil || b < 0 || b > loghist.MaxIndex {
					bad++
					continue
				}
				if field[0] == 'd' {
					c.Durations[b] = n
				} else {
					c.Outside[b] = n
				}
			default:
				bad++
			}
		case parts[0] == "h" && len(parts) == 5:
			h := hosts[prefix]
			if h == nil {
				h = &TelemetryHost{Deploy: parts[1], Exec: parts[2], Host: parts[3]}
				hosts[prefix] = h
			}
			switch field {
			case "n":
				h.Count = n
			case "s":
				h.SumMs = float64(n) / 1000
			case "m":
				h.MinMs = float64(n) / 1000
			case "w":
				h.WaitUntil = n
			default:
				bad++
			}
		default:
			bad++
		}
	}
	for _, c := range cells {
		if c.Count > 0 {
			w.Cells = append(w.Cells, *c)
		}
	}
	for _, h := range hosts {
		w.Hosts = append(w.Hosts, *h)
	}
	sortWindow(&w)
	return w, bad
}

// sampled returns the records of recs to keep on their streams at rate (0: none, 1: all).
func sampled(recs []Telemetry, rate float64) []Telemetry {
	if rate >= 1 {
		return recs
	}
	var out []Telemetry
	for i := range recs {
		if rate > 0 && rand.Float64() < rate {
			out = append(out, recs[i])
		}
	}
	return out
}

// TelemetryBatch is one delivery of telemetry (the body of POST /v1/telemetry): request records, aggregated
// windows, or both. Records are folded into windows when stored.
type TelemetryBatch struct {
	Records []Telemetry       `json:"records,omitempty"`
	Windows []TelemetryWindow `json:"windows,omitempty"`
	// Samples are request records already counted in Windows: a worker host that aggregates its requests
	// itself sends a sample of them for debugging. They are kept on their streams as they are, neither folded
	// into windows nor sampled again.
	Samples []Telemetry `json:"samples,omitempty"`
}

// Validate checks every record and window, naming the first bad one.
func (b *TelemetryBatch) Validate() error {
	for i := range b.Records {
		if err := b.Records[i].Validate(); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	for i := range b.Windows {
		if err := b.Windows[i].Validate(); err != nil {
			return fmt.Errorf("window %d: %w", i, err)
		}
	}
	for i := range b.Samples {
		if err := b.Samples[i].Validate(); err != nil {
			return fmt.Errorf("sample %d: %w", i, err)
		}
	}
	return nil
}

// Apps returns the applications of the batch with their units (records, windows and samples: one each),
// sorted.
func (b *TelemetryBatch) Apps() (apps []string, units map[string]int) {
	units = map[string]int{}
	for i := range b.Records {
		units[b.Records[i].App]++
	}
	for i := range b.Samples {
		units[b.Samples[i].App]++
	}
	for i := range b.Windows {
		units[b.Windows[i].App]++
	}
	return slices.Sorted(maps.Keys(units)), units
}

// AddTelemetryBatch stores a batch: its records and windows merged into the windows (AddTelemetryWindows), a
// sample of its records and all its samples on their streams (AddTelemetrySample). An invalid batch writes
// nothing.
func (s *Store) AddTelemetryBatch(ctx context.Context, b TelemetryBatch) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("storage: telemetry batch: %w", err)
	}
	if err := s.AddTelemetryWindows(ctx, append(FoldTelemetry(b.Records), b.Windows...)); err != nil {
		return err
	}
	return s.AddTelemetrySample(ctx, slices.Concat(sampled(b.Records, s.o.TelemetrySampleRate), b.Samples))
}
