package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leaser grants the primary role to one node at a time. Implementations are
// safe for concurrent use. Every method takes a context and bounds its
// network calls with it; callers should pass one with a deadline shorter
// than the lease's TTL.
type Leaser interface {
	// Type returns the implementation's name: "static" or "etcd".
	Type() string

	// AcquireLease makes this node the primary if no other node is. If
	// another node holds the lease it returns a *LeaseExistsError that
	// names the holder.
	AcquireLease(ctx context.Context) (*Lease, error)

	// RenewLease extends a lease this node holds and returns the renewed
	// lease. It returns ErrLeaseLost if the lease expired or was taken;
	// other errors (an unreachable etcd) leave the lease as it was, valid
	// until its Deadline.
	RenewLease(ctx context.Context, l *Lease) (*Lease, error)

	// ReleaseLease gives up a held lease so another node can take over at
	// once. Releasing a lease that is already gone is not an error.
	ReleaseLease(ctx context.Context, l *Lease) error

	// Holder returns the advertise URL of the node that holds the lease,
	// or "" if no node does.
	Holder(ctx context.Context) (string, error)
}

// Lease is the primary role held by this node.
type Lease struct {
	ID        int64         // implementation's lease ID (etcd's lease ID); 0 for static
	Owner     string        // advertise URL of the holder
	RenewedAt time.Time     // when the request that granted or renewed it was sent
	TTL       time.Duration // how long after RenewedAt it stays valid; 0 means forever
}

// Deadline returns the moment after which the lease may be held by another
// node. The zero time means never.
func (l *Lease) Deadline() time.Time {
	if l.TTL == 0 {
		return time.Time{}
	}
	return l.RenewedAt.Add(l.TTL)
}

// Remaining returns how long the lease stays valid after now. A lease
// without TTL returns a very long duration.
func (l *Lease) Remaining(now time.Time) time.Duration {
	if l.TTL == 0 {
		return time.Duration(1<<63 - 1)
	}
	return l.Deadline().Sub(now)
}

// LeaseExistsError is returned by AcquireLease when another node holds the
// lease.
type LeaseExistsError struct {
	Owner string // advertise URL of the holder
}

func (e *LeaseExistsError) Error() string {
	return fmt.Sprintf("lease is held by %s", e.Owner)
}

// ErrLeaseLost is returned by RenewLease when the lease expired or another
// node holds it now.
var ErrLeaseLost = errors.New("lease lost")
