package redistest

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Commands counts the commands a go-redis client sends, by lower-case name (each command of a pipeline counts;
// a script call counts once, not the commands it runs). Add it with client.AddHook.
type Commands struct {
	mu    sync.Mutex
	n     map[string]int64
	total int64
}

// DialHook implements redis.Hook.
func (c *Commands) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *Commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.add(cmd); return next(ctx, cmd) }
}

// ProcessPipelineHook implements redis.Hook.
func (c *Commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *Commands) add(cmd redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[strings.ToLower(cmd.Name())]++
	c.total++
}

// Count returns how many commands named name (any case) were sent.
func (c *Commands) Count(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[strings.ToLower(name)]
}

// Total returns how many commands were sent.
func (c *Commands) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
