package lease

import (
	"context"
	"time"
)

// StaticType is the Type of a Static leaser.
const StaticType = "static"

// Static is a Leaser whose roles are fixed by configuration: a node
// configured without a primary URL is the primary forever; a node configured
// with one is its replica forever.
type Static struct {
	primaryURL   string // the primary's URL; "" if this node is the primary
	advertiseURL string // this node's URL
}

var _ Leaser = (*Static)(nil)

// NewStatic returns a static leaser. primaryURL names the primary this node
// replicates; an empty primaryURL makes this node the primary, known to
// others as advertiseURL.
func NewStatic(primaryURL, advertiseURL string) *Static {
	return &Static{primaryURL: primaryURL, advertiseURL: advertiseURL}
}

// Type returns "static".
func (s *Static) Type() string { return StaticType }

// AcquireLease returns a lease without TTL on the primary and a
// *LeaseExistsError naming the primary on a replica.
func (s *Static) AcquireLease(ctx context.Context) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.primaryURL != "" {
		return nil, &LeaseExistsError{Owner: s.primaryURL}
	}
	return &Lease{Owner: s.advertiseURL, RenewedAt: time.Now()}, nil
}

// RenewLease returns the lease renewed; a static lease never expires.
func (s *Static) RenewLease(ctx context.Context, l *Lease) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.primaryURL != "" {
		return nil, ErrLeaseLost
	}
	return &Lease{Owner: s.advertiseURL, RenewedAt: time.Now()}, nil
}

// ReleaseLease does nothing: the static primary stays the primary.
func (s *Static) ReleaseLease(ctx context.Context, l *Lease) error { return nil }

// Holder returns the configured primary's URL, or this node's own.
func (s *Static) Holder(ctx context.Context) (string, error) {
	if s.primaryURL != "" {
		return s.primaryURL, nil
	}
	return s.advertiseURL, nil
}
