package lease

import (
	"context"
	"sync"
	"testing"
	"time"
)

// mockLeaser is a Leaser made of functions.
type mockLeaser struct {
	AcquireFunc func(ctx context.Context) (*Lease, error)
	RenewFunc   func(ctx context.Context, l *Lease) (*Lease, error)
}

func (m *mockLeaser) Type() string { return "mock" }
func (m *mockLeaser) AcquireLease(ctx context.Context) (*Lease, error) {
	return m.AcquireFunc(ctx)
}
func (m *mockLeaser) RenewLease(ctx context.Context, l *Lease) (*Lease, error) {
	return m.RenewFunc(ctx, l)
}
func (m *mockLeaser) ReleaseLease(ctx context.Context, l *Lease) error { return nil }
func (m *mockLeaser) Holder(ctx context.Context) (string, error)       { return "", nil }

// roles records the roles a Keeper reports, with the time of each.
type roles struct {
	mu  sync.Mutex
	got []Role
	at  []time.Time
	ch  chan struct{}
}

func (r *roles) on(role Role) {
	r.mu.Lock()
	r.got = append(r.got, role)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *roles) wait(t *testing.T, n int) ([]Role, []time.Time) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.got) >= n {
			defer r.mu.Unlock()
			return append([]Role(nil), r.got...), append([]time.Time(nil), r.at...)
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("fewer than %d role changes: %+v", n, r.got)
		}
	}
}

// TestKeeper_StepsDownBeforeDeadline: when renewals hang (etcd partitioned
// away), the primary steps down before its lease's deadline, not after.
func TestKeeper_StepsDownBeforeDeadline(t *testing.T) {
	var mu sync.Mutex
	var granted *Lease
	m := &mockLeaser{
		AcquireFunc: func(ctx context.Context) (*Lease, error) {
			mu.Lock()
			defer mu.Unlock()
			if granted != nil {
				return nil, &LeaseExistsError{Owner: "http://other"}
			}
			granted = &Lease{ID: 1, Owner: "http://me", RenewedAt: time.Now(), TTL: 900 * time.Millisecond}
			return granted, nil
		},
		RenewFunc: func(ctx context.Context, l *Lease) (*Lease, error) {
			<-ctx.Done() // unreachable leaser
			return nil, ctx.Err()
		},
	}
	r := &roles{ch: make(chan struct{}, 1)}
	k := &Keeper{Leaser: m, OnChange: r.on, Poll: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	got, at := r.wait(t, 3)
	cancel()
	<-done
	if !got[0].Primary || got[1].Primary || got[1].PrimaryURL != "" || got[2] != (Role{PrimaryURL: "http://other"}) {
		t.Fatalf("roles %+v, want primary, stepped down, replica of http://other", got)
	}
	if !at[1].Before(granted.Deadline()) {
		t.Fatalf("stepped down at %v, after the deadline %v", at[1], granted.Deadline())
	}
}

// TestKeeper_RenewsAndReleases: a healthy primary stays primary across
// several renewals and hands its lease back when stopped.
func TestKeeper_RenewsAndReleases(t *testing.T) {
	var mu sync.Mutex
	renewals := 0
	m := &mockLeaser{
		AcquireFunc: func(ctx context.Context) (*Lease, error) {
			return &Lease{ID: 7, RenewedAt: time.Now(), TTL: 300 * time.Millisecond}, nil
		},
		RenewFunc: func(ctx context.Context, l *Lease) (*Lease, error) {
			mu.Lock()
			renewals++
			mu.Unlock()
			return &Lease{ID: l.ID, RenewedAt: time.Now(), TTL: l.TTL}, nil
		},
	}
	r := &roles{ch: make(chan struct{}, 1)}
	k := &Keeper{Leaser: m, OnChange: r.on}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan *Lease)
	go func() { res <- k.Run(ctx) }()
	r.wait(t, 1)
	for {
		mu.Lock()
		n := renewals
		mu.Unlock()
		if n >= 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	l := <-res
	if l == nil || l.ID != 7 {
		t.Fatalf("Run returned %+v, want the held lease", l)
	}
	got, _ := r.wait(t, 1)
	if len(got) != 1 || !got[0].Primary {
		t.Fatalf("roles %+v, want primary throughout", got)
	}
}

// TestKeeper_ReportsWriteDeadline: every grant and renewal tells OnLease
// until when the node may accept writes: before the lease's deadline, by
// the margin, and before the node is told it is primary.
func TestKeeper_ReportsWriteDeadline(t *testing.T) {
	var mu sync.Mutex
	var leases []*Lease
	var until []time.Time
	primaryAfter := -1
	m := &mockLeaser{
		AcquireFunc: func(ctx context.Context) (*Lease, error) {
			l := &Lease{ID: 3, RenewedAt: time.Now(), TTL: 400 * time.Millisecond}
			mu.Lock()
			leases = append(leases, l)
			mu.Unlock()
			return l, nil
		},
		RenewFunc: func(ctx context.Context, l *Lease) (*Lease, error) {
			nl := &Lease{ID: l.ID, RenewedAt: time.Now(), TTL: l.TTL}
			mu.Lock()
			leases = append(leases, nl)
			mu.Unlock()
			return nl, nil
		},
	}
	k := &Keeper{Leaser: m, Margin: 100 * time.Millisecond,
		OnLease: func(t time.Time) {
			mu.Lock()
			until = append(until, t)
			mu.Unlock()
		},
		OnChange: func(r Role) {
			mu.Lock()
			if r.Primary && primaryAfter < 0 {
				primaryAfter = len(until)
			}
			mu.Unlock()
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	for {
		mu.Lock()
		n := len(until)
		mu.Unlock()
		if n >= 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if primaryAfter != 1 {
		t.Fatalf("OnChange(primary) came after %d OnLease calls, want 1 (the deadline first)", primaryAfter)
	}
	for i, u := range until {
		if want := leases[i].Deadline().Add(-100 * time.Millisecond); !u.Equal(want) {
			t.Fatalf("OnLease #%d got %v, want the lease's deadline less the margin, %v", i, u, want)
		}
	}
}
