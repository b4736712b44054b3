package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// pruneConsumersScript deletes the consumers of a job group that have no pending entries and were idle at least
// ARGV[2] ms; KEYS[1] the stream, ARGV[1] the group. The check and the deletion run in one script, so a consumer
// that reads a job in between cannot lose it (XGROUP DELCONSUMER drops a consumer's pending entries). Returns
// the names deleted.
var pruneConsumersScript = redis.NewScript(`
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return {} end
local idle, deleted = tonumber(ARGV[2]), {}
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local i = tonumber(f['idle'])
  if tonumber(f['pending']) == 0 and i and i >= 0 and i >= idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    table.insert(deleted, f['name'])
  end
end
return deleted
`)

// PruneConsumers deletes the consumers of pop's job group idle for at least idle with no job pending: daemons
// that stopped (every daemon start is a new consumer), which would otherwise stay in the group for ever. A
// deleted consumer that is in fact alive is re-created by its next read (Redis before 7.2 counts idle time from
// the last job delivered, and creates a consumer when a job is delivered to it: a live daemon without jobs for
// idle is deleted, and comes back with its next job; it had none pending to lose). It returns the names deleted; a PoP
// whose group does not exist yet has none. A server that does not report idle times (miniredis reports -1)
// prunes nothing.
func (s *Store) PruneConsumers(ctx context.Context, pop string, idle time.Duration) ([]string, error) {
	if err := validName("job PoP", pop); err != nil {
		return nil, err
	}
	names, err := pruneConsumersScript.Run(ctx, s.c, []string{KeyJobs(pop)}, JobGroup, max(idle.Milliseconds(), 0)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("storage: prune consumers of %s: %w", pop, err)
	}
	return names, nil
}
