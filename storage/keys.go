package storage

import (
	"fmt"
	"hash/fnv"

	"github.com/vantage-edge/vantage/placement"
)

// Keys and channels of schema version 1. Every key starts with "vantage:" and carries a hash tag ({...}) so
// that the keys one operation touches together live in one Redis Cluster slot. The package documentation
// describes each key's type, fields, TTL, writers and readers.
const (
	// KeySchema holds the schema version (a decimal string).
	KeySchema = "vantage:{meta}:schema"
	// KeyEpoch holds a random token naming Redis's current data set (Store.Epoch): it changes when Redis
	// loses its data.
	KeyEpoch = "vantage:{meta}:epoch"
	// DecisionBuckets is the number of hashes decisions are sharded over (fixed by the schema version).
	DecisionBuckets = 64
	// ChannelDecisions carries the name of every application whose decision changed.
	ChannelDecisions = "vantage:decisions"
	// KeyFleetPoPs is the set of PoPs that ever sent a heartbeat.
	KeyFleetPoPs = "vantage:{fleet}:pops"
	// KeyFleetDrained is the set of drained PoPs.
	KeyFleetDrained = "vantage:{fleet}:drained"
	// KeyApps is the hash of registered applications.
	KeyApps = "vantage:{apps}:apps"
	// ChannelApps carries the name of every application registered, changed or deleted: one name per message,
	// or (PutApps) up to 1,000 names separated by spaces, which a name never contains; "" asks for a full read.
	ChannelApps = "vantage:apps"
	// JobGroup is the consumer group of every PoP's job stream.
	JobGroup = "probers"
)

// DecisionBucket returns the bucket (0..DecisionBuckets-1) holding app's decision: FNV-1a of the name.
func DecisionBucket(app string) int {
	h := fnv.New32a()
	h.Write([]byte(app))
	return int(h.Sum32() % DecisionBuckets)
}

// bucketKeys returns the key of every decision bucket for one kind of hash ("decisions", "fences"), built
// once: the keys of one bucket share its hash slot, {d:NN}.
func bucketKeys(kind string) (k [DecisionBuckets]string) {
	for i := range k {
		k[i] = fmt.Sprintf("vantage:{d:%02d}:%s", i, kind)
	}
	return k
}

var (
	decisionKeys = bucketKeys("decisions")
	fenceKeys    = bucketKeys("fences")
)

// KeyDecisions returns the hash holding the decisions of bucket (0..DecisionBuckets-1).
func KeyDecisions(bucket int) string { return decisionKeys[bucket] }

// KeyDecisionFences returns the hash of the fences ("<token>:<lease>", Fence) the decisions of a bucket were last
// written under (same hash slot as the bucket).
func KeyDecisionFences(bucket int) string { return fenceKeys[bucket] }

// KeyDecisionHistory returns the capped list of app's recent decisions, newest first (same hash slot as its
// decision's bucket, so one script writes both).
func KeyDecisionHistory(app string) string {
	return fmt.Sprintf("vantage:{d:%02d}:dhistory:%s", DecisionBucket(app), app)
}

// KeyHeartbeats returns the hash of pop's daemon heartbeats.
func KeyHeartbeats(pop string) string { return "vantage:{fleet}:hb:" + pop }

// KeyJobs returns pop's job stream.
func KeyJobs(pop string) string { return "vantage:{pop:" + pop + "}:jobs" }

// KeyDeadJobs returns the list of pop's jobs that exhausted their attempts.
func KeyDeadJobs(pop string) string { return "vantage:{pop:" + pop + "}:dead" }

// TargetKey returns the name a target's results are stored under (Result.Target, Job.Key, and the target of
// KeyLatest and KeyHistory): kind and address, e.g. "tcp:db.example.com:5432", so two applications with the
// same back end share their measurements.
func TargetKey(kind placement.ProbeKind, addr string) string { return string(kind) + ":" + addr }

// KeyLatest returns the hash of target's latest result per PoP.
func KeyLatest(target string) string { return "vantage:{t:" + target + "}:latest" }

// KeyHistory returns the capped list of target's results, newest first.
func KeyHistory(target string) string { return "vantage:{t:" + target + "}:history" }

// KeyRecent returns the hash of target's recent results by PoP: field PoP, value up to Options.RecentLen
// entries "<at Unix ms>:<min RTT ms>" (or "<at Unix ms>:-" for a failed probe), newest first, separated by
// ';'. A decision takes each PoP's minimum over a window of them (Store.RecentResults).
func KeyRecent(target string) string { return "vantage:{t:" + target + "}:recent" }

// keyDone returns the dedup marker of one job's result (same slot as the target's other keys).
func keyDone(target, pop, jobID string) string {
	return "vantage:{t:" + target + "}:done:" + pop + ":" + jobID
}

// KeyAdHoc returns the hash of ad-hoc probe id.
func KeyAdHoc(id string) string { return "vantage:{adhoc:" + id + "}" }

// KeyLease returns the lease name's key (holder name, with a TTL).
func KeyLease(name string) string { return "vantage:{lease:" + name + "}" }

// KeyLeaseFence returns the counter of lease name's fencing tokens.
func KeyLeaseFence(name string) string { return "vantage:{lease:" + name + "}:fence" }
