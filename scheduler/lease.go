package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/vantage-edge/vantage/storage"
)

// Leaser is the lease store the scheduler elects its leader with (storage.Store implements it through
// StoreLeaser). Acquire succeeds only when nobody holds the lease (SET NX PX) and returns a fencing token that
// grows with every new holder; Renew extends the lease only while holder and token still hold it.
type Leaser interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (token int64, ok bool, err error)
	RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) (ok bool, err error)
	ReleaseLease(ctx context.Context, name, holder string, token int64) error
}

// Term is one tenure as leader: its context is cancelled as soon as the lease may have been lost, and every
// recheck runs under it, so two schedulers never check the same target in parallel.
type Term struct {
	Ctx   context.Context
	Lease string // name of the lease: a shard's, or the fleet-wide Config.LeaseName
	Token int64  // fencing token of the lease
	Seq   int64  // this process's term counter (tokens restart when Redis loses its data)
	Start time.Time
}

// Fence is what the term's decisions are written under: its lease and token.
func (t *Term) Fence() storage.Fence { return storage.Fence{Lease: t.Lease, Token: t.Token} }

// leadership elects this scheduler with a Leaser and tells the target loops when it leads.
type leadership struct {
	leaser Leaser
	name   string
	holder string
	ttl    time.Duration
	clock  Clock
	log    *slog.Logger
	onTerm func(leading bool, token int64) // metrics and takeover hook; may be nil

	mu      sync.Mutex
	term    *Term
	seq     int64
	cancel  context.CancelFunc
	changed chan struct{} // closed and replaced whenever term changes
}

// newLeadership returns the leadership of lease name for this process. The holder written in the lease is
// name's Config.Name with a random part (leaseHolder): two schedulers started with the same --name (or the
// default hostname-pid in containers that share a host and its pid numbers) are still two holders, so never
// both lead, nor share a fencing token (the store numbers every acquisition by a new holder).
func newLeadership(l Leaser, name, holder string, ttl time.Duration, clock Clock, log *slog.Logger) *leadership {
	return &leadership{leaser: l, name: name, holder: leaseHolder(holder), ttl: ttl, clock: clock, log: log, changed: make(chan struct{})}
}

// leaseHolder returns name with 64 random bits appended, "<name>~<16 hex digits>".
func leaseHolder(name string) string {
	var b [8]byte
	rand.Read(b[:])
	return name + "~" + hex.EncodeToString(b[:])
}

// current returns the current term (nil when not leading) and a channel closed at the next change.
func (l *leadership) current() (*Term, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term, l.changed
}

// wait blocks until this scheduler leads (returning the term) or ctx is done (returning nil).
func (l *leadership) wait(ctx context.Context) *Term {
	for {
		t, ch := l.current()
		if t != nil && t.Ctx.Err() == nil {
			return t
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

func (l *leadership) set(parent context.Context, token int64, now time.Time) {
	l.mu.Lock()
	if l.cancel != nil {
		l.cancel()
		l.cancel = nil
	}
	l.term = nil
	if token != 0 {
		ctx, cancel := context.WithCancel(parent)
		l.seq++
		l.term, l.cancel = &Term{Ctx: ctx, Lease: l.name, Token: token, Seq: l.seq, Start: now}, cancel
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	if l.onTerm != nil {
		l.onTerm(token != 0, token)
	}
}

// run keeps trying to hold the lease until ctx is done, then releases it. A standby tries to acquire it every
// ttl/10; the holder renews it every ttl/3;
// this scheduler stops leading (cancelling the term) when a renewal is refused, or when a tenth of the ttl
// before the lease would expire without a successful renewal (Redis unreachable), so that the lease's expiry
// in Redis always comes after this scheduler stopped.
func (l *leadership) run(ctx context.Context) {
	renewEvery := l.ttl / 3
	var (
		token      int64
		validUntil time.Time
	)
	lose := func(why string) {
		if token != 0 {
			lvl := slog.LevelWarn
			if why == "shutdown" { // released on purpose: not a warning
				lvl = slog.LevelInfo
			}
			l.log.Log(ctx, lvl, "scheduler: lost the lease", "lease", l.name, "token", token, "reason", why)
			token = 0
			l.set(ctx, 0, l.clock.Now())
		}
	}
	defer func() {
		if token != 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			if err := l.leaser.ReleaseLease(rctx, l.name, l.holder, token); err != nil {
				l.log.Warn("scheduler: releasing the lease", "lease", l.name, "err", err)
			}
			cancel()
			lose("shutdown")
		}
	}()
	for {
		start := l.clock.Now()
		opCtx, cancel := context.WithTimeout(ctx, renewEvery)
		if token == 0 {
			tok, ok, err := l.leaser.AcquireLease(opCtx, l.name, l.holder, l.ttl)
			switch {
			case err != nil && ctx.Err() == nil:
				l.log.Debug("scheduler: acquiring the lease", "lease", l.name, "err", err)
			case ok:
				token, validUntil = tok, start.Add(l.ttl-l.ttl/10)
				l.log.Info("scheduler: acquired the lease", "lease", l.name, "holder", l.holder, "token", token)
				l.set(ctx, token, start)
			}
		} else {
			ok, err := l.leaser.RenewLease(opCtx, l.name, l.holder, token, l.ttl)
			switch {
			case err != nil:
				l.log.Warn("scheduler: renewing the lease", "lease", l.name, "err", err)
			case !ok:
				lose("renewal refused")
			default:
				validUntil = start.Add(l.ttl - l.ttl/10)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		wait := renewEvery - l.clock.Now().Sub(start)
		if token == 0 {
			// A standby polls faster than the holder renews, so it takes over within about one ttl of the
			// holder's last renewal.
			wait = l.ttl/10 - l.clock.Now().Sub(start)
		}
		if token != 0 {
			if left := validUntil.Sub(l.clock.Now()); left <= 0 {
				lose("lease expired without renewal")
				wait = 0
			} else if left < wait {
				wait = left
			}
		}
		if wait > 0 {
			t := l.clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
		if token != 0 && !l.clock.Now().Before(validUntil) {
			lose("lease expired without renewal")
		}
	}
}
