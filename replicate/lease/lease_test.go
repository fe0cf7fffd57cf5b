package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pagefs/pagefs/replicate/lease"
	"github.com/pagefs/pagefs/replicate/lease/etcdtest"
)

// cluster makes leasers for nodes of one cluster. The first node made is
// the one a static configuration names as the primary.
type cluster func(t *testing.T, url string) lease.Leaser

// RunWithLeaser runs fn against every Leaser implementation: static, and
// etcd against a real etcd server.
func RunWithLeaser(t *testing.T, fn func(t *testing.T, typ string, node cluster)) {
	t.Run(lease.StaticType, func(t *testing.T) {
		var once sync.Once
		primary := ""
		fn(t, lease.StaticType, func(t *testing.T, url string) lease.Leaser {
			once.Do(func() { primary = url })
			if url == primary {
				return lease.NewStatic("", url)
			}
			return lease.NewStatic(primary, url)
		})
	})
	t.Run(lease.EtcdType, func(t *testing.T) {
		srv := etcdtest.Start(t)
		key := fmt.Sprintf("/pagefs-test/%s/primary", t.Name())
		fn(t, lease.EtcdType, func(t *testing.T, url string) lease.Leaser {
			l, err := lease.NewEtcd(lease.EtcdConfig{Endpoints: []string{srv.Endpoint}, Key: key, AdvertiseURL: url, TTL: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		})
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestLeaser(t *testing.T) {
	RunWithLeaser(t, func(t *testing.T, typ string, node cluster) {
		a := node(t, "http://a:1")
		b := node(t, "http://b:1")
		la, err := a.AcquireLease(ctx(t))
		if err != nil {
			t.Fatalf("first node: %v", err)
		}
		if la.Owner != "http://a:1" || la.RenewedAt.After(time.Now()) {
			t.Fatalf("lease %+v", la)
		}
		if a.Type() != typ {
			t.Fatalf("Type() = %q", a.Type())
		}

		t.Run("OtherNodeSeesHolder", func(t *testing.T) {
			_, err := b.AcquireLease(ctx(t))
			var exists *lease.LeaseExistsError
			if !errors.As(err, &exists) || exists.Owner != "http://a:1" {
				t.Fatalf("second node: %v, want LeaseExistsError naming a", err)
			}
			for _, l := range []lease.Leaser{a, b} {
				if h, err := l.Holder(ctx(t)); err != nil || h != "http://a:1" {
					t.Fatalf("Holder = %q, %v", h, err)
				}
			}
		})

		t.Run("RenewKeepsLease", func(t *testing.T) {
			nl, err := a.RenewLease(ctx(t), la)
			if err != nil {
				t.Fatal(err)
			}
			if nl.Deadline().Before(la.Deadline()) {
				t.Fatalf("renewal moved the deadline back: %v < %v", nl.Deadline(), la.Deadline())
			}
			la = nl
		})

		t.Run("SameNodeRestarted", func(t *testing.T) {
			// A node restarted with the same advertise URL takes its own
			// lease back instead of following itself.
			a2 := node(t, "http://a:1")
			l, err := a2.AcquireLease(ctx(t))
			if err != nil {
				t.Fatalf("restarted primary: %v", err)
			}
			la, a = l, a2
			if _, err := b.AcquireLease(ctx(t)); err == nil {
				t.Fatal("second node acquired a held lease")
			}
		})
	})
}

// TestEtcd covers what only a lease with a TTL does: expiry, release and
// renewal of a lost lease.
func TestEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	mk := func(url string) *lease.Etcd {
		l, err := lease.NewEtcd(lease.EtcdConfig{Endpoints: []string{srv.Endpoint}, Key: "/t/" + t.Name(), AdvertiseURL: url, TTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := mk("http://a:1"), mk("http://b:1")

	t.Run("Expiry", func(t *testing.T) {
		la, err := a.AcquireLease(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		// Nobody renews: b gets it once etcd expires the lease, never
		// before a's own deadline.
		var lb *lease.Lease
		for lb == nil {
			if lb, err = b.AcquireLease(ctx(t)); err != nil {
				var exists *lease.LeaseExistsError
				if !errors.As(err, &exists) {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if time.Now().Before(la.Deadline()) {
			t.Fatalf("b acquired before a's deadline")
		}
		if _, err := a.RenewLease(ctx(t), la); !errors.Is(err, lease.ErrLeaseLost) {
			t.Fatalf("renew an expired lease: %v, want ErrLeaseLost", err)
		}
		if err := b.ReleaseLease(ctx(t), lb); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Release", func(t *testing.T) {
		la, err := a.AcquireLease(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.ReleaseLease(ctx(t), la); err != nil {
			t.Fatal(err)
		}
		if h, _ := b.Holder(ctx(t)); h != "" {
			t.Fatalf("holder after release: %q", h)
		}
		lb, err := b.AcquireLease(ctx(t))
		if err != nil {
			t.Fatalf("acquire after release: %v", err)
		}
		if err := a.ReleaseLease(ctx(t), la); err != nil {
			t.Fatalf("releasing a released lease: %v", err)
		}
		_ = b.ReleaseLease(ctx(t), lb)
	})
}

func TestNewEtcd_Errors(t *testing.T) {
	if _, err := lease.NewEtcd(lease.EtcdConfig{AdvertiseURL: "http://a"}); err == nil {
		t.Fatal("no endpoints accepted")
	}
	if _, err := lease.NewEtcd(lease.EtcdConfig{Endpoints: []string{"http://127.0.0.1:1"}}); err == nil {
		t.Fatal("no advertise URL accepted")
	}
}
