package lease

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Role is what a Keeper decided this node is.
type Role struct {
	Primary    bool   // this node holds the lease and may accept writes
	PrimaryURL string // on a replica: the holder's advertise URL; "" while no holder is known
}

// Keeper runs the lease loop of one node: it acquires the lease when no
// node holds it, renews it while it does, and demotes the node when less
// than Margin of the lease is left, whether or not the leaser answered.
type Keeper struct {
	// Leaser grants the lease. Required.
	Leaser Leaser

	// Margin is how long before the lease's deadline the node stops being
	// primary. Zero means a quarter of the TTL.
	Margin time.Duration

	// Poll is how often a replica checks whether the lease is free or has
	// moved. Zero means 250ms.
	Poll time.Duration

	// OnChange is called, from Run's goroutine, each time the role changes
	// (and once at the start). A demotion must take effect (the node
	// refuses writes) before OnChange returns; OnChange must not block for
	// long, since the lease is not renewed while it runs.
	OnChange func(Role)

	// OnLease is called, from Run's goroutine, each time the lease is
	// acquired or renewed, before the OnChange that makes the node primary,
	// with the moment the node must stop accepting writes unless it hears
	// of a renewal first (the zero time for a lease without TTL). A node
	// that is paused past that moment (SIGSTOP, a stalled VM) can refuse
	// writes as soon as it runs again, before this goroutine gets to
	// demote it.
	OnLease func(writeUntil time.Time)

	// Logger receives role changes and lease errors. Nil discards them.
	Logger *slog.Logger

	// now is the clock; tests replace it.
	now func() time.Time
}

// Run keeps the lease until ctx is done, then returns the lease it holds,
// if any, so the caller can release it once the node has stopped writing.
func (k *Keeper) Run(ctx context.Context) *Lease {
	if k.Logger == nil {
		k.Logger = slog.New(slog.DiscardHandler)
	}
	if k.Poll <= 0 {
		k.Poll = 250 * time.Millisecond
	}
	if k.now == nil {
		k.now = time.Now
	}
	var cur *Role
	set := func(r Role) {
		if cur != nil && *cur == r {
			return
		}
		cur = &r
		k.Logger.Info("role", "primary", r.Primary, "primary_url", r.PrimaryURL, "leaser", k.Leaser.Type())
		if k.OnChange != nil {
			k.OnChange(r)
		}
	}
	for {
		l, holder, err := k.acquire(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case l != nil:
			k.leased(l)
			set(Role{Primary: true})
			if l = k.hold(ctx, l); l != nil {
				return l // ctx done while primary
			}
			// Lost: refuse writes before anything else.
			set(Role{PrimaryURL: ""})
			continue
		case err != nil:
			k.Logger.Warn("lease: cannot reach the leaser; keeping the current role", "err", err)
			if cur == nil {
				set(Role{})
			}
		default:
			set(Role{PrimaryURL: holder})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(k.Poll):
		}
	}
}

// acquire tries to take the lease. It returns the lease, or the holder's
// URL, or an error.
func (k *Keeper) acquire(ctx context.Context) (*Lease, string, error) {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := k.Leaser.AcquireLease(actx)
	var exists *LeaseExistsError
	if errors.As(err, &exists) {
		return nil, exists.Owner, nil
	}
	return l, "", err
}

func (k *Keeper) margin(l *Lease) time.Duration {
	if k.Margin > 0 {
		return k.Margin
	}
	return l.TTL / 4
}

// demoteAt returns when the node stops being primary unless l is renewed
// first: Margin before the lease's deadline. The zero time means never.
func (k *Keeper) demoteAt(l *Lease) time.Time {
	if l.TTL == 0 {
		return time.Time{}
	}
	return l.Deadline().Add(-k.margin(l))
}

// leased reports a granted or renewed lease to OnLease.
func (k *Keeper) leased(l *Lease) {
	if k.OnLease != nil {
		k.OnLease(k.demoteAt(l))
	}
}

// hold renews l until it is lost or ctx is done. It returns nil once the
// lease is lost or about to expire, and the lease if ctx ended first.
func (k *Keeper) hold(ctx context.Context, l *Lease) *Lease {
	for {
		if l.TTL == 0 {
			<-ctx.Done() // a static lease never expires
			return l
		}
		demoteAt := k.demoteAt(l)
		renewAt := l.RenewedAt.Add(l.TTL / 3)
		now := k.now()
		if !now.Before(demoteAt) {
			k.Logger.Warn("lease: about to expire without renewal; stepping down", "lease", l.ID, "remaining", l.Remaining(now))
			return nil
		}
		if now.Before(renewAt) {
			t := time.NewTimer(renewAt.Sub(now))
			select {
			case <-ctx.Done():
				t.Stop()
				return l
			case <-t.C:
			}
			continue // re-check the deadline first: the process may have been paused
		}
		rctx, cancel := context.WithDeadline(ctx, demoteAt)
		nl, err := k.Leaser.RenewLease(rctx, l)
		cancel()
		switch {
		case ctx.Err() != nil:
			return l
		case errors.Is(err, ErrLeaseLost):
			k.Logger.Warn("lease: lost", "lease", l.ID)
			return nil
		case err != nil:
			k.Logger.Warn("lease: renewal failed; retrying", "lease", l.ID, "remaining", l.Remaining(k.now()), "err", err)
			select {
			case <-ctx.Done():
				return l
			case <-time.After(min(200*time.Millisecond, max(demoteAt.Sub(k.now()), 0))):
			}
		default:
			l = nl
			k.leased(l)
		}
	}
}
