package probed

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/vantage-edge/vantage/prober"
	"github.com/vantage-edge/vantage/storage"
)

// AdHocKeyPrefix marks the result key of an ad-hoc probe's jobs: "adhoc:<id>". Their results go to the
// ad-hoc probe's record (storage.AppendAdHocResult) instead of the target's latest results.
const AdHocKeyPrefix = "adhoc:"

// jobStore is the part of *storage.Store a daemon uses.
type jobStore interface {
	ReadJobs(ctx context.Context, pop, consumer string, count int, block time.Duration) ([]storage.Job, error)
	ReclaimJobs(ctx context.Context, pop, consumer string, minIdle time.Duration, count int) ([]storage.Job, error)
	AckJob(ctx context.Context, pop, id string) error
	PutResult(ctx context.Context, r storage.Result) (bool, error)
	PutResultBatch(ctx context.Context, pop string, rs []storage.BatchResult) (int, error)
	AppendAdHocResult(ctx context.Context, id string, r storage.Result) error
	PutMeshRTT(ctx context.Context, m storage.MeshRTT) (bool, error)
	PutHeartbeat(ctx context.Context, h storage.Heartbeat, interval time.Duration) error
	PruneConsumers(ctx context.Context, pop string, idle time.Duration) ([]string, error)
}

// StoreQueue is the Queue of one PoP on a storage.Store.
type StoreQueue struct {
	DB        jobStore
	PoP       string
	DaemonID  string
	Addr      string       // the daemon's /metrics address, advertised in heartbeats
	Version   string       // build version, advertised in heartbeats
	SourceIPs []netip.Addr // advertised in heartbeats
	MeshAddr  string       // where this daemon answers mesh probes (ServeMesh), advertised in heartbeats
	// AllDetail stores the prober's full result (samples, phases, DNS answers) as Detail with every result;
	// by default only ad-hoc probes' results carry it: the scheduler reads the summary fields, and every
	// poll of a target's latest results decodes whatever is stored.
	AllDetail bool
}

var (
	_ Queue      = (*StoreQueue)(nil)
	_ BatchQueue = (*StoreQueue)(nil)
)

func (q *StoreQueue) convert(js []storage.Job) []Job {
	out := make([]Job, 0, len(js))
	for _, j := range js {
		t := prober.Target{Kind: j.Kind, Addr: j.Target, Count: j.Count, Timeout: time.Duration(j.TimeoutMs) * time.Millisecond}
		if len(j.Params) > 0 {
			var p jobParams
			if json.Unmarshal(j.Params, &p) == nil {
				t.HTTP, t.DNS = p.HTTP, p.DNS
			}
		}
		key := j.Key
		if key == "" {
			key = j.Target
		}
		entry := j.Entry
		if entry == "" {
			entry = j.ID
		}
		out = append(out, Job{ID: j.ID, StreamID: entry, Index: j.Index, Parts: j.Parts, Reply: j.Reply,
			Round: j.Round, Target: t, Key: key, Deadline: j.Deadline})
	}
	return out
}

// jobParams are the kind-specific options a job may carry in storage.Job.Params.
type jobParams struct {
	HTTP prober.HTTPOptions `json:"http"`
	DNS  prober.DNSOptions  `json:"dns"`
}

// Read implements Queue.
func (q *StoreQueue) Read(ctx context.Context, max int, block time.Duration) ([]Job, error) {
	js, err := q.DB.ReadJobs(ctx, q.PoP, q.DaemonID, max, block)
	return q.convert(js), err
}

// PruneConsumers implements ConsumerPruner: it deletes the PoP's consumers idle for idle with no job pending.
func (q *StoreQueue) PruneConsumers(ctx context.Context, idle time.Duration) ([]string, error) {
	return q.DB.PruneConsumers(ctx, q.PoP, idle)
}

// Reclaim implements Queue.
func (q *StoreQueue) Reclaim(ctx context.Context, minIdle time.Duration, max int) ([]Job, error) {
	js, err := q.DB.ReclaimJobs(ctx, q.PoP, q.DaemonID, minIdle, max)
	return q.convert(js), err
}

// StoreBatch implements BatchQueue: the results of ad-hoc and mesh probes go their own way (one call each),
// all others, with the acknowledgements, in one storage.PutResultBatch call.
func (q *StoreQueue) StoreBatch(ctx context.Context, ds []Done) error {
	brs := make([]storage.BatchResult, 0, len(ds))
	for _, dn := range ds {
		br := storage.BatchResult{Reply: dn.Job.Reply}
		if dn.Ack {
			br.Ack = dn.Job.StreamID
		}
		if dn.Result != nil {
			special := strings.HasPrefix(dn.Job.Key, MeshKeyPrefix) || strings.HasPrefix(dn.Job.Key, AdHocKeyPrefix)
			if special {
				if err := q.Store(ctx, dn.Job, *dn.Result); err != nil {
					return err
				}
			} else {
				sr, err := q.result(dn.Job, *dn.Result)
				if err != nil {
					return err
				}
				br.Result = &sr
			}
		}
		if br.Result != nil || br.Ack != "" {
			brs = append(brs, br)
		}
	}
	_, err := q.DB.PutResultBatch(ctx, q.PoP, brs)
	return err
}

// result is r as stored for j.
func (q *StoreQueue) result(j Job, r prober.Result) (storage.Result, error) {
	_, adhoc := strings.CutPrefix(j.Key, AdHocKeyPrefix)
	var detail json.RawMessage
	if adhoc || q.AllDetail {
		var err error
		if detail, err = json.Marshal(r); err != nil {
			return storage.Result{}, err
		}
	}
	if r.Simulated && detail == nil {
		detail = simulatedDetail // the mark that this is no measurement travels with the result
	}
	sr := storage.Result{
		Target: j.Key, PoP: q.PoP, Kind: r.Kind,
		MinMs: r.Min.Ms(), MedianMs: r.Median.Ms(), Samples: len(r.Samples), Loss: r.Loss,
		Class: string(r.Class), Error: r.Error, At: r.Start, JobID: j.ID, Round: j.Round, Detail: detail,
		JobDeadline: j.Deadline,
	}
	if r.DNS != nil {
		sr.DNS, _ = json.Marshal(r.DNS)
	}
	for _, a := range r.Resolved {
		sr.Resolved = append(sr.Resolved, a.String())
	}
	return sr, nil
}

// Store implements Queue: the summary fields for the engine, and the prober's full result as Detail for
// ad-hoc probes (all results with AllDetail).
func (q *StoreQueue) Store(ctx context.Context, j Job, r prober.Result) error {
	if dst, ok := strings.CutPrefix(j.Key, MeshKeyPrefix); ok {
		return q.storeMesh(ctx, dst, r)
	}
	id, adhoc := strings.CutPrefix(j.Key, AdHocKeyPrefix)
	sr, err := q.result(j, r)
	if err != nil {
		return err
	}
	if adhoc {
		err := q.DB.AppendAdHocResult(ctx, id, sr)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // the ad-hoc probe expired: nobody waits for this result
		}
		return err
	}
	_, err = q.DB.PutResult(ctx, sr)
	return err
}

// storeMesh stores a mesh probe's minimum RTT as the pair (this PoP, dst). A failed probe stores nothing: the
// pair keeps its last measurement, which the scheduler stops using once it is older than its maximum age.
func (q *StoreQueue) storeMesh(ctx context.Context, dst string, r prober.Result) error {
	if !r.Success || len(r.Samples) == 0 {
		return nil
	}
	_, err := q.DB.PutMeshRTT(ctx, storage.MeshRTT{Src: q.PoP, Dst: dst, RTTMs: r.Min.Ms(), Samples: len(r.Samples), At: r.Start})
	return err
}

// simulatedDetail is the Detail of a simulated result (prober.Result.Simulated) stored without its full detail.
var simulatedDetail = json.RawMessage(`{"simulated":true}`)

// Ack implements Queue.
func (q *StoreQueue) Ack(ctx context.Context, j Job) error {
	return q.DB.AckJob(ctx, q.PoP, j.StreamID)
}

// Heartbeat implements Queue.
func (q *StoreQueue) Heartbeat(ctx context.Context, interval time.Duration) error {
	ips := make([]string, len(q.SourceIPs))
	for i, a := range q.SourceIPs {
		ips[i] = a.String()
	}
	return q.DB.PutHeartbeat(ctx, storage.Heartbeat{PoP: q.PoP, DaemonID: q.DaemonID, Addr: q.Addr,
		Version: q.Version, SourceIPs: ips, MeshAddr: q.MeshAddr}, interval)
}
