// Package storage keeps Vantage's fleet, probe jobs, results, decisions and leases in Redis.
//
// # Connecting
//
// Open takes Options: one address (a single node), several with MasterName (Sentinel) or several without
// (Cluster seed nodes, or one with Options.Cluster); "unix:/path" dials a unix socket; Username/Password (AUTH or an ACL user) and TLS apply
// to all. Dial, read and write timeouts default to 2 s, so callers get errors, not hangs, while Redis is down;
// go-redis reconnects by itself. With no address, Open starts an embedded miniredis (StartEmbedded) on
// 127.0.0.1 and a unix socket, for the demo and single-process runs.
//
// # Schema (version 1)
//
// Every key starts with "vantage:" and has a hash tag, {...}, so that every multi-key operation (MULTI, Lua)
// touches one Redis Cluster slot. Writers and readers are the Vantage components: probed (the probe daemon),
// the scheduler and the router.
//
//	key                               type    contents                                      TTL       writer    readers
//	vantage:{meta}:schema             string  SchemaVersion ("1")                           none      Open      Open
//	vantage:{meta}:epoch              string  random token naming the data set: a new one   none      Epoch     scheduler
//	                                          means Redis lost its data (Store.Epoch)
//	vantage:{d:NN}:decisions          hash    app -> "<version>|<fingerprint>|<payload>"    none      scheduler router, scheduler
//	                                          (NN = 00..63 = FNV-1a(app) % 64; payload:
//	                                          see DECISIONS.md)
//	vantage:{d:NN}:fences             hash    app -> "<token>:<lease>" of the last fenced   none      scheduler scheduler
//	                                          write (PutDecisionFenced, Fence: refused only
//	                                          under an older token of the same lease; a bare
//	                                          "<token>" from older versions is compared as a
//	                                          token of any lease, then replaced)
//	vantage:{d:NN}:dhistory:<app>     list    app's recent decisions, newest first:         none      scheduler API, status page
//	                                          "<computed-at Unix ms>|<version>|<changed 0/1>|
//	                                          <DecisionRecord JSON>", capped (LTRIM) at
//	                                          Options.DecisionHistoryLen (default 100); written
//	                                          by PutDecision's script when the decision changed
//	                                          or the newest entry is DecisionHistoryEvery (1 h)
//	                                          old; deleted with the decision
//	vantage:decisions                 channel app name on every decision change or delete   -         scheduler router
//	vantage:{fleet}:pops              set     PoPs that ever sent a heartbeat               none      probed    scheduler, router
//	vantage:{fleet}:hb:<PoP>          hash    daemon id -> Heartbeat JSON {pop, daemon,     24 h (*)  probed    scheduler, router
//	                                          addr, version, source_ips, mesh_addr, at,
//	                                          interval_ns}
//	vantage:{mesh}:rtt                hash    "<src PoP>><dst PoP>" -> "<at Unix ms>|<MeshRTT   none (+)  probed    scheduler
//	                                          JSON {src, dst, rtt_ms, samples, at}>": the
//	                                          latest mesh measurement of each ordered pair
//	vantage:{fleet}:drained           set     drained PoPs                                  none      operator  scheduler, router
//	vantage:{pop:<PoP>}:jobs          stream  entries {job: Job JSON} (one probe: ad-hoc,   MAXLEN ~  scheduler probed
//	                                          mesh, older schedulers) or {batch: {"v":1,    100 000
//	                                          "reply": results stream, "probes": [Job JSON,
//	                                          ...]}} (a recheck tick's probes for the PoP,
//	                                          <= MaxBatchProbes 256 and MaxBatchBytes 64 KiB;
//	                                          probe i's job id is "<entry id>.<i>");
//	                                          consumer group "probers"; an entry is acked
//	                                          and deleted once all its probes are stored
//	vantage:{notes:<scheduler>}:results
//	                                  stream  entries {r: JSON array of Result (no detail)}: MAXLEN ~  probed    scheduler
//	                                          the results of a batch, announced by the      10 000;
//	                                          script that stores them; one per scheduler    10 min
//	                                          instance (name and a random part)             after last
//	                                                                                        write
//	vantage:{pop:<PoP>}:dead          list    Job JSON of jobs past MaxJobAttempts          1000 long probed    operator
//	vantage:{t:<target>}:latest       hash    PoP -> "<at Unix ms>|<Result JSON>"           none      probed    scheduler
//	vantage:{t:<target>}:history      list    Result JSON, newest first                     256 long  probed    scheduler, API
//	vantage:{t:<target>}:recent       hash    PoP -> "<at ms>:<min ms>;..." (":-": failed), 8 per PoP probed    scheduler
//	                                          newest first by time (the decision's window)
//	vantage:{t:<target>}:done:<PoP>:<job id>
//	                                  string  "1": the job's result is stored (dedup)       (++)      probed    probed
//	vantage:{x:<app>}:explain         string  Explanation JSON {app, computed_at, verdict,   decision  scheduler API, status
//	                                          best_pop, notes, set_aside, calibration,      TTL                 page
//	                                          window, chaos, instances} (explain.go)
//	vantage:{apps}:apps               hash    app name -> App JSON {name, mode, target,     none      scheduler scheduler, API
//	                                          account, deploy_version, updated_at, config}
//	vantage:apps                      channel app name on every register/change/delete;     -         scheduler scheduler
//	                                          PutApps: up to 1,000 names, space-separated
//	vantage:{adhoc:<id>}              hash    "meta" -> AdHocProbe JSON {id, request,       24 h (**) scheduler scheduler
//	                                          created_at, done, done_at, verdict};                    probed
//	                                          "r:<PoP>:<kind>" -> Result JSON
//	vantage:{lease:<name>}            string  "<fencing token>:<holder>"                    lease TTL scheduler scheduler
//	vantage:{lease:<name>}:fence      string  fencing token counter (INCR per acquisition)  none      scheduler scheduler
//	vantage:{lease:<group>}:members   zset    scheduler (lease holder) -> expiry, Unix ms    2 × lease scheduler scheduler
//	                                          of the server's clock (HeartbeatMember)       TTL
//	vantage:{lease:<group>}:shards    string  shard count of the group's targets            none      scheduler scheduler
//	                                          (AgreeShards: the first to start stores it)
//	vantage:{quota:<kind>:<name>}     hash    token bucket {tokens, last (Unix ms)} of a    until     scheduler scheduler
//	                                          quota kind ("adhoc") for a token name         full
//	vantage:{tel:<app>}:requests      stream  entries {r: Telemetry JSON}, a 1 % sample of  MAXLEN ~  worker    debugging
//	                                          requests (Options.TelemetrySampleRate)        100 000;  hosts
//	                                          {app, deploy, ingress, exec, routed, reason,  24 h
//	                                          at, duration_ms, sub: [{host, duration_ms,    (***)
//	                                          wait_until}]}
//	vantage:{tel:<app>}:agg:<start>   hash    one 10 s window of app's requests (start:     1 h after worker    smart runner
//	                                          Unix s); per cell c|<deploy>|<ingress>|<exec>|  last      hosts,
//	                                          <routed 0/1>|<reason>|: n, s (sum µs), l        write     scheduler
//	                                          (latest start ms), d<i>, o<i> (loghist buckets)           API
//	                                          of durations, time outside subrequests); per
//	                                          back end h|<deploy>|<exec>|<host>|: n, s, m
//	                                          (min µs), w (waitUntil count)
//	vantage:{tel}:apps                zset    app -> Unix ms of its latest report           none      worker    smart runner
//	                                                                                                  hosts
//	vantage:{tel:<app>}:unsupported   string  deploy version found slower when placed:      30 d      smart     smart runner
//	                                          UNSUPPORTED_APPLICATION until the next one              runner
//
// (+) MeshRTTs deletes the pairs older than the age it is asked for (the scheduler: three mesh intervals);
// (*) renewed by every heartbeat; (**) renewed by every PutAdHocProbe; (***) renewed by every batch;
// (++) DedupAfterDeadline (10 min) past the job's deadline, at most Options.ResultDedupTTL (24 h), which a job
// without a deadline gets.
//
// <target> is TargetKey(kind, address): the probe kind and the address probed, e.g. "tcp:db.example.com:5432".
//
// Decisions are meant to be read by routers in any language: DECISIONS.md specifies their keys and bytes,
// versioned by a codec byte, and reader/python/vantage_decisions.py is a second reader that CI checks against
// this package (TestPythonReaderDecodesEveryField).
//
// Decisions: PutDecision runs one Lua script on the bucket: it compares the stored fingerprint (FNV-1a of mode,
// target, best PoP, verdict, status and the candidates' order) with the new one; when it differs it stores the
// decision with version+1 and PUBLISHes the app on vantage:decisions, otherwise it stores it under the same
// version without publishing. ScanDecisions reads the 64 buckets with pipelined HVALS (4 buckets per round
// trip) from 4 goroutines that also decode a compact binary payload carrying the app name (0.5 µs per decision
// against 16 µs for JSON, see BenchmarkDecodeDecision), and calls fn from the caller's goroutine. HVALS costs
// Redis less than half the CPU of HSCAN (0.42 s against 1.0 s per 1,000,000 decisions) and blocks it for about
// 7 ms per bucket at that size.
//
// Measured: 1,000,000 decisions (five candidates each) in a real redis-server 7.0 are scanned in 2.2 s on the
// shared 2-core test machine under load average 12 (`go test -run '^$' -bench ScanDecisions1M -benchtime 3x
// ./storage/`, 2026-11-23); a scan costs redis-server 0.42 s of CPU and the client 0.61 s, so an unloaded
// machine does it in about 1 s. The 1,000,000 decisions take 238 MB of Redis memory.
//
// A decision carries its expiry (ExpiresAt: the scheduler's DecisionTTL, a few recheck intervals); routers treat an
// expired decision as none. ScanDecisions and Apps skip a value that does not decode, logging and counting it
// once per Store (vantage_storage_corrupt_values_total{kind}), so that one corrupt value does not hide the others.
//
// Jobs: EnqueueJob XADDs (MAXLEN ~); ReadJobs XREADGROUPs (creating the group at "0" on NOGROUP, so jobs
// enqueued before the first read are delivered); AckJob XACKs and XDELs in one MULTI; ReclaimJobs XAUTOCLAIMs
// jobs idle for minIdle (a daemon died mid-job) and reads their delivery counts with XPENDING; a job delivered
// more than MaxJobAttempts times goes to the dead-letter list. Delivery is at least once. PruneConsumers
// (Lua: XINFO CONSUMERS, then XGROUP DELCONSUMER of each consumer idle long with nothing pending) removes the
// consumers of daemons that stopped.
//
// Results: PutResult runs one Lua script on the target's slot: SET NX PX the done key (when it exists already,
// the job's result was stored: nothing changes), then replace the PoP's latest result unless the stored one is
// newer, LPUSH the history and LTRIM it to HistoryLen, and insert "<at ms>:<min ms>" (":-" for a failure) into
// the PoP's field of the recent hash (KeyRecent), newest first by time, cut to RecentLen entries: a decision
// takes each PoP's minimum RTT over a window of these, so one noisy round does not move a placement.
//
// Batches (batch.go, decbatch.go): a scheduler sends the probes of every recheck in flight once per tick
// (scheduler.Config.BatchTick, 50 ms) as one batch entry per PoP (EnqueueJobBatches: one pipeline of XADDs).
// ReadJobs and ReclaimJobs return a batch's probes as Jobs sharing the entry (Job.Entry, Index, Parts); a
// malformed probe (unknown field, bad kind, empty target) is logged and left out, naming the field and value,
// and the others run; a malformed entry is dropped whole. A daemon stores its finished probes with
// PutResultBatch: one script doing each result's PutResult work (same keys, same dedup per PoP and job id, so a
// re-delivered batch stores only what was not stored), one XADD per results stream named by the probes' reply
// (their compact results: the scheduler's rounds are woken by one blocking XREAD per tick instead of polling
// each target's latest results), and XACK+XDEL of the entries whose every probe is then stored. The scheduler
// reads its rechecks' previous decisions and recent results with RecheckInputs (one script) and writes their
// decisions and explanations with PutDecisionBatch (one script running PutDecisionFenced's per app: fenced per
// app, ErrFenced per app; a fenced-off app's explanation is not written). On a Redis Cluster, whose scripts
// touch one slot, PutResultBatch, RecheckInputs and PutDecisionBatch fall back to one call per item. A daemon
// older than job batches cannot read a batch entry and drops it as corrupt: upgrade the daemons before the
// schedulers, or run the schedulers with batching off (Config.BatchTick < 0) until every daemon is upgraded.
//
// Mesh (mesh.go): every PoP measures every other PoP's mesh port (Heartbeat.MeshAddr) with a TCP probe job
// whose Job.Key is "mesh:<dst PoP>"; the daemon stores the result with PutMeshRTT (one Lua script: HSET unless
// the stored pair is newer) instead of PutResult. The scheduler reads the whole hash (MeshRTTs) to fit its
// calibration and serves it as GET /v1/mesh.
//
// Telemetry (telemetry.go, telemagg.go): requests are aggregated per application and TelemetryAggWindow (10 s)
// window in vantage:{tel:<app>}:agg:<start> hashes (per deploy x ingress x exec PoP x routed x reason: count, sum,
// latest start, loghist buckets of durations and of time outside subrequests; per deploy x exec PoP x back end:
// count, sum, minimum, waitUntil count), expiring TelemetryAggTTL (1 h: the 15-minute analysis window plus a
// margin) after their last write. AddTelemetryWindows runs one Lua script per application and window (HINCRBY
// per field, compare-and-set minima and maxima, PEXPIRE) and, per application, one ZADD GT and one HINCRBY of
// the fresh counter; AddTelemetry folds records into windows and keeps a sample (Options.TelemetrySampleRate,
// 1 %) on the application's stream for debugging (one XADD each); AddTelemetryBatch stores a worker host's own
// windows and its samples (TelemetryBatch.Samples, kept as they are). TelemetryWindows reads a time range with one
// HGETALL per window; TelemetrySince reads the sampled stream with XRANGE.
//
// Leases: AcquireLease (Lua) takes a free lease with SET NX PX, numbering it with INCR of the fence counter
// raised to the server's clock in µs, so tokens grow with every acquisition, even across a loss of the data; RenewLease and ReleaseLease compare the holder and PEXPIRE or DEL in
// Lua. The schedulers of a fleet split the targets into shards, each a lease "<group>-shard-NNN" of its own
// (its own slot); HeartbeatMember (Lua: ZREMRANGEBYSCORE of the expired, ZADD, ZRANGE) counts them for their
// fair share, and AgreeShards (SET NX, GET) makes them split alike. Ad-hoc probes: AppendAdHocResult adds a result only while the record exists (Lua EXISTS + HSET).
//
// Quotas: TakeQuota runs one Lua script on the bucket's hash: refill at the rate since the stored clock (never
// moving it backwards), take one token or return the wait; every scheduler on the Redis shares the bucket.
//
// Fleet: a daemon's heartbeat is up while it is newer than DownAfterIntervals (3) of its own intervals; a PoP
// is up when one of its daemons is.
//
// A schema change that old binaries cannot read bumps SchemaVersion. Open sets vantage:{meta}:schema when it is
// absent and refuses, with an error wrapping ErrSchema, a Redis holding another version:
//
//	storage: incompatible schema version: redis holds schema version 2 at vantage:{meta}:schema but this
//	binary knows only up to 1; upgrade vantage
package storage
