package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdType is the Type of an Etcd leaser.
const EtcdType = "etcd"

// DefaultKey is the etcd key nodes compete for when EtcdConfig.Key is empty.
const DefaultKey = "/pagefs/primary"

// DefaultTTL is the lease TTL when EtcdConfig.TTL is zero.
const DefaultTTL = 10 * time.Second

// EtcdConfig configures NewEtcd.
type EtcdConfig struct {
	// Endpoints are the etcd client URLs, e.g. http://127.0.0.1:2379.
	// Required.
	Endpoints []string

	// Key is the etcd key whose holder is the primary. Nodes of one
	// cluster share it. Empty means DefaultKey.
	Key string

	// AdvertiseURL is the URL other nodes reach this node's HTTP server
	// at; the primary publishes it as the key's value. Required.
	AdvertiseURL string

	// TTL is how long a lease lives without renewal; etcd rounds it up to
	// whole seconds. Zero means DefaultTTL.
	TTL time.Duration

	// DialTimeout bounds connecting to etcd. Zero means 5 seconds.
	DialTimeout time.Duration
}

// Etcd is a Leaser that holds the primary role as an etcd key bound to an
// etcd lease. The caller must Close it.
type Etcd struct {
	client *clientv3.Client
	key    string
	url    string
	ttl    time.Duration
}

var _ Leaser = (*Etcd)(nil)

// NewEtcd connects to etcd. It does not contact the cluster yet: the first
// AcquireLease does.
func NewEtcd(cfg EtcdConfig) (*Etcd, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd leaser: no endpoints given")
	}
	if cfg.AdvertiseURL == "" {
		return nil, errors.New("etcd leaser: no advertise URL given (other nodes need it to reach the primary)")
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second {
		cfg.TTL = time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, err)
	}
	return &Etcd{client: c, key: cfg.Key, url: cfg.AdvertiseURL, ttl: cfg.TTL}, nil
}

// Close closes the connection to etcd. It does not release a held lease.
func (e *Etcd) Close() error { return e.client.Close() }

// Type returns "etcd".
func (e *Etcd) Type() string { return EtcdType }

func (e *Etcd) ttlSeconds() int64 { return int64((e.ttl + time.Second - 1) / time.Second) }

// AcquireLease grants an etcd lease and creates the key with it, unless
// another node's key exists. A key that holds this node's own advertise URL
// (left by its previous run) is taken over at once.
func (e *Etcd) AcquireLease(ctx context.Context) (*Lease, error) {
	sent := time.Now()
	g, err := e.client.Grant(ctx, e.ttlSeconds())
	if err != nil {
		return nil, fmt.Errorf("etcd: grant lease: %w", err)
	}
	put := clientv3.OpPut(e.key, e.url, clientv3.WithLease(g.ID))
	resp, err := e.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(e.key), "=", 0)).
		Then(put).
		Else(clientv3.OpGet(e.key)).
		Commit()
	if err == nil && !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 1 && string(kvs[0].Value) == e.url {
			// Our own key from a previous run: replace its lease.
			resp, err = e.client.Txn(ctx).
				If(clientv3.Compare(clientv3.Value(e.key), "=", e.url),
					clientv3.Compare(clientv3.ModRevision(e.key), "=", kvs[0].ModRevision)).
				Then(put).
				Else(clientv3.OpGet(e.key)).
				Commit()
		}
	}
	if err != nil || !resp.Succeeded {
		e.revoke(g.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd: create key %s: %w", e.key, err)
	}
	if !resp.Succeeded {
		owner := ""
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
			owner = string(kvs[0].Value)
		}
		return nil, &LeaseExistsError{Owner: owner}
	}
	return &Lease{ID: int64(g.ID), Owner: e.url, RenewedAt: sent, TTL: time.Duration(g.TTL) * time.Second}, nil
}

// revoke drops a granted lease that did not become the primary's, so it
// does not linger until its TTL.
func (e *Etcd) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = e.client.Revoke(ctx, id)
}

// RenewLease sends one keep-alive and checks that the key is still bound
// to the lease.
func (e *Etcd) RenewLease(ctx context.Context, l *Lease) (*Lease, error) {
	sent := time.Now()
	ka, err := e.client.KeepAliveOnce(ctx, clientv3.LeaseID(l.ID))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil, ErrLeaseLost
	} else if err != nil {
		return nil, fmt.Errorf("etcd: renew lease %x: %w", l.ID, err)
	}
	if ka.TTL <= 0 {
		return nil, ErrLeaseLost
	}
	resp, err := e.client.Get(ctx, e.key)
	if err != nil {
		return nil, fmt.Errorf("etcd: read key %s: %w", e.key, err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].Lease != l.ID {
		return nil, ErrLeaseLost
	}
	return &Lease{ID: l.ID, Owner: e.url, RenewedAt: sent, TTL: time.Duration(ka.TTL) * time.Second}, nil
}

// ReleaseLease revokes the lease, which deletes the key.
func (e *Etcd) ReleaseLease(ctx context.Context, l *Lease) error {
	_, err := e.client.Revoke(ctx, clientv3.LeaseID(l.ID))
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd: revoke lease %x: %w", l.ID, err)
	}
	return nil
}

// Holder returns the key's value: the primary's advertise URL.
func (e *Etcd) Holder(ctx context.Context) (string, error) {
	resp, err := e.client.Get(ctx, e.key)
	if err != nil {
		return "", fmt.Errorf("etcd: read key %s: %w", e.key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
