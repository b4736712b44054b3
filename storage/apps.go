package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vantage-edge/vantage/placement"
)

// appsScanCount is the COUNT hint of the HSCANs Apps lists the registry with.
const appsScanCount = 1000

// App is a registered application: what the scheduler places and rechecks.
type App struct {
	Name    string         `json:"name"`
	Mode    placement.Mode `json:"mode"`
	Target  string         `json:"target,omitempty"`  // host:port, hostname, or provider:region, per Mode
	Account string         `json:"account,omitempty"` // the owning account
	// DeployVersion is the application's current deploy, as Vantage was told it (the API's deploy version, or
	// a config file's content hash); a new one ends UNSUPPORTED_APPLICATION and starts a fresh smart analysis.
	DeployVersion string `json:"deploy_version,omitempty"`
	// DeployedAt is when Vantage was told of DeployVersion: telemetry from before it belongs to earlier deploys.
	DeployedAt time.Time `json:"deployed_at,omitzero"`
	// DeployGenerated reports that Vantage made DeployVersion up (no version was given, or it is a config
	// file's hash), so the workers' telemetry does not carry it: the deploy's records are those reported since
	// DeployedAt.
	DeployGenerated bool `json:"deploy_generated,omitempty"`
	// Source is who registered the application: "api" (also when empty) or "dir:<path>" for a config dir's
	// smart application, which the directory's loader adds, changes and removes.
	Source    string    `json:"source,omitempty"`
	UpdatedAt time.Time `json:"updated_at"` // set by PutApp when zero
	// Config is the application's parsed placement configuration, opaque here.
	Config json.RawMessage `json:"config,omitempty"`
}

// PutApp registers or replaces app and publishes its name on ChannelApps.
func (s *Store) PutApp(ctx context.Context, app App) error {
	if err := validName("app name", app.Name); err != nil {
		return err
	}
	if !app.Mode.Valid() {
		return fmt.Errorf("storage: app %q: mode %q: want one of smart, region, host, hostname or none", app.Name, app.Mode)
	}
	if app.UpdatedAt.IsZero() {
		app.UpdatedAt = s.o.Now()
	}
	app.UpdatedAt = app.UpdatedAt.UTC()
	b, err := json.Marshal(app)
	if err != nil {
		return fmt.Errorf("storage: put app %q: %w", app.Name, err)
	}
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, KeyApps, app.Name, b)
		p.Publish(ctx, ChannelApps, app.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: put app %q: %w", app.Name, err)
	}
	return nil
}

// putAppsChunk is how many applications PutApps writes per HSET: a command of ~0.3 MiB, short enough not to
// hold Redis for long.
const putAppsChunk = 1000

// PutApps registers or replaces many applications at once, one HSET per putAppsChunk in one transaction, and
// publishes their names on ChannelApps, one message per chunk (the names separated by spaces, which a name
// never contains; WatchApps splits them): a watcher reads the applications it is told of, not the registry.
// Either every application is written or, on an error, none is.
func (s *Store) PutApps(ctx context.Context, apps []App) error {
	if len(apps) == 0 {
		return nil
	}
	now := s.o.Now().UTC()
	fields := make([]any, 0, 2*len(apps))
	for _, app := range apps {
		if err := validName("app name", app.Name); err != nil {
			return err
		}
		if !app.Mode.Valid() {
			return fmt.Errorf("storage: app %q: mode %q: want one of smart, region, host, hostname or none", app.Name, app.Mode)
		}
		if app.UpdatedAt.IsZero() {
			app.UpdatedAt = now
		}
		app.UpdatedAt = app.UpdatedAt.UTC()
		b, err := json.Marshal(app)
		if err != nil {
			return fmt.Errorf("storage: put app %q: %w", app.Name, err)
		}
		fields = append(fields, app.Name, b)
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		var names strings.Builder
		for i := 0; i < len(fields); i += 2 * putAppsChunk {
			chunk := fields[i:min(i+2*putAppsChunk, len(fields))]
			p.HSet(ctx, KeyApps, chunk...)
			names.Reset()
			for j := 0; j < len(chunk); j += 2 {
				if j > 0 {
					names.WriteByte(' ')
				}
				names.WriteString(chunk[j].(string))
			}
			p.Publish(ctx, ChannelApps, names.String())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: put %d apps (%s...): %w", len(apps), apps[0].Name, err)
	}
	return nil
}

// AppsNamed returns the registered applications among names (absent ones are not in the map), reading them
// with one HMGET per putAppsChunk names in one pipeline. An entry that does not decode is skipped, as Apps does.
func (s *Store) AppsNamed(ctx context.Context, names []string) (map[string]App, error) {
	out := make(map[string]App, len(names))
	if len(names) == 0 {
		return out, nil
	}
	var cmds []*redis.SliceCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < len(names); i += putAppsChunk {
			cmds = append(cmds, p.HMGet(ctx, KeyApps, names[i:min(i+putAppsChunk, len(names))]...))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: get %d apps (%s...): %w", len(names), names[0], err)
	}
	for ci, cmd := range cmds {
		for j, v := range cmd.Val() {
			str, ok := v.(string)
			if !ok {
				continue // absent
			}
			name := names[ci*putAppsChunk+j]
			a, err := decodeApp(name, str)
			if err != nil {
				s.skipCorrupt("app", KeyApps+" "+name, str, err)
				continue
			}
			out[name] = a
		}
	}
	return out, nil
}

// DeleteApp removes app name (and publishes it on ChannelApps when it existed); it reports whether it existed.
// The application's decision is separate: delete it with DeleteDecision.
func (s *Store) DeleteApp(ctx context.Context, name string) (bool, error) {
	if err := validName("app name", name); err != nil {
		return false, err
	}
	n, err := deleteFieldScript.Run(ctx, s.c, []string{KeyApps}, name, ChannelApps).Int()
	if err != nil {
		return false, fmt.Errorf("storage: delete app %q: %w", name, err)
	}
	return n == 1, nil
}

// App returns the registered application name and whether it exists.
func (s *Store) App(ctx context.Context, name string) (App, bool, error) {
	if err := validName("app name", name); err != nil {
		return App{}, false, err
	}
	v, err := s.c.HGet(ctx, KeyApps, name).Result()
	if errors.Is(err, redis.Nil) {
		return App{}, false, nil
	}
	if err != nil {
		return App{}, false, fmt.Errorf("storage: get app %q: %w", name, err)
	}
	a, err := decodeApp(name, v)
	if err != nil {
		return App{}, false, err
	}
	return a, true, nil
}

// Apps returns every registered application, sorted by name. An entry that does not decode is skipped (logged
// and counted once per Store): one corrupt entry must not hide the others.
func (s *Store) Apps(ctx context.Context) ([]App, error) {
	var out []App
	if err := s.ScanApps(ctx, func(a App) error { out = append(out, a); return nil }); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	// HSCAN may return an entry twice when the hash is resized during the scan.
	dedup := out[:0]
	for i, a := range out {
		if i == 0 || a.Name != out[i-1].Name {
			dedup = append(dedup, a)
		}
	}
	return dedup, nil
}

// ScanApps calls fn with every registered application, page by page (HSCAN), in no order and without holding
// the registry in memory: what a reader of a large registry that keeps only a part of each application uses.
// An application may be passed twice (HSCAN does when the hash is resized meanwhile); an entry that does not
// decode is skipped, as Apps does. An error from fn stops the scan and is returned.
func (s *Store) ScanApps(ctx context.Context, fn func(App) error) error {
	var cursor uint64
	for {
		kv, next, err := s.c.HScan(ctx, KeyApps, cursor, "", appsScanCount).Result()
		if err != nil {
			return fmt.Errorf("storage: list apps: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			a, err := decodeApp(kv[i], kv[i+1])
			if err != nil {
				s.skipCorrupt("app", KeyApps+" "+kv[i], kv[i+1], err)
				continue
			}
			if a.Name != kv[i] {
				s.skipCorrupt("app", KeyApps+" "+kv[i], kv[i+1], fmt.Errorf("%w: holds app %q", errCorrupt, a.Name))
				continue
			}
			if err := fn(a); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// WatchApps calls fn with the name of every application registered, changed or deleted, until ctx is done, like
// WatchDecisions (fn(Resync) after each subscription). A message naming several applications (PutApps) is
// passed one name at a time.
func (s *Store) WatchApps(ctx context.Context, fn func(name string)) error {
	return s.watch(ctx, ChannelApps, func(payload string) {
		if payload == Resync {
			fn(Resync)
			return
		}
		for name := range strings.FieldsSeq(payload) {
			fn(name)
		}
	})
}
