package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pagefs/pagefs/mount"
	"github.com/pagefs/pagefs/replicate/fence"
	"github.com/pagefs/pagefs/replicate/lease"
	"github.com/pagefs/pagefs/replicate/peer"
)

// ReplicationConfig says which node is the primary and how replicas reach
// it. With no settings the node is a standalone primary.
type ReplicationConfig struct {
	Lease         string   `yaml:"lease"`          // static (default) or etcd
	PrimaryURL    string   `yaml:"primary-url"`    // static: the primary this node replicates; empty on the primary
	AdvertiseURL  string   `yaml:"advertise-url"`  // this node's URL for other nodes; default http://<http-addr>
	EtcdEndpoints []string `yaml:"etcd-endpoints"` // etcd: client URLs
	EtcdKey       string   `yaml:"etcd-key"`       // etcd: the key nodes compete for; default /pagefs/primary
	LeaseTTL      Duration `yaml:"lease-ttl"`      // etcd: lease TTL; default 10s
}

// validate fills defaults and checks the replication settings.
func (r *ReplicationConfig) validate(httpAddr string) error {
	switch r.Lease {
	case "", lease.StaticType:
		r.Lease = lease.StaticType
	case lease.EtcdType:
		if len(r.EtcdEndpoints) == 0 {
			return errors.New("lease etcd needs --etcd-endpoints")
		}
		if r.PrimaryURL != "" {
			return errors.New("--primary-url is for --lease static; with etcd the lease holder is the primary")
		}
	default:
		return fmt.Errorf("lease %q: use static or etcd", r.Lease)
	}
	if r.AdvertiseURL == "" && httpAddr != "" {
		r.AdvertiseURL = "http://" + httpAddr
	}
	if r.Lease == lease.EtcdType && (httpAddr == "" || r.AdvertiseURL == "") {
		return errors.New("lease etcd needs --http-addr (replicas stream from it) and --advertise-url")
	}
	for _, u := range []string{r.PrimaryURL, r.AdvertiseURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("URL %q: use http://host:port", u)
		}
	}
	if r.LeaseTTL < 0 {
		return fmt.Errorf("lease TTL %s is negative", r.LeaseTTL)
	}
	return nil
}

// replicationIdlePoll is the slowest capture poll of a node that serves
// HTTP (and so may have replicas) when no idle-poll-interval is set.
const replicationIdlePoll = 2 * time.Millisecond

// unknownPrimary is what .primary says on a node that refuses writes but
// does not know the primary yet (starting with etcd, or a lost lease).
const unknownPrimary = "unknown"

// commitHooks fans the mount's commit hook out to several receivers. The
// receivers are set before the mount serves anything.
type commitHooks struct {
	fns atomic.Pointer[[]func(mount.Commit)]
}

func (h *commitHooks) add(fn func(mount.Commit)) {
	var next []func(mount.Commit)
	if cur := h.fns.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, fn)
	h.fns.Store(&next)
}

// call is the mount's OnCommit.
func (h *commitHooks) call(c mount.Commit) {
	if fns := h.fns.Load(); fns != nil {
		for _, fn := range *fns {
			fn(c)
		}
	}
}

// replication runs a node's role: the lease, the stream server on the
// primary, the follower on a replica.
type replication struct {
	cfg      ReplicationConfig
	store    *mount.Store
	log      *slog.Logger
	leaser   lease.Leaser
	server   *peer.Server
	applier  *peer.Applier
	follower *peer.Follower
	fence    *fence.Client // nil unless the role comes from a lease with a deadline

	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	role       lease.Role
	stopFollow context.CancelFunc
	followDone chan struct{}
	held       *lease.Lease
}

// newReplication sets the node up and, before the mount serves anything,
// makes it refuse writes unless it is a static primary.
func newReplication(cfg ReplicationConfig, store *mount.Store, mountpoint string, log *slog.Logger, hooks *commitHooks, fc *fence.Client) (*replication, error) {
	r := &replication{cfg: cfg, store: store, log: log, fence: fc}
	switch cfg.Lease {
	case lease.EtcdType:
		l, err := lease.NewEtcd(lease.EtcdConfig{Endpoints: cfg.EtcdEndpoints, Key: cfg.EtcdKey, AdvertiseURL: cfg.AdvertiseURL, TTL: time.Duration(cfg.LeaseTTL)})
		if err != nil {
			return nil, err
		}
		r.leaser = l
	default:
		r.leaser = lease.NewStatic(cfg.PrimaryURL, cfg.AdvertiseURL)
	}
	r.server = peer.NewServer(store, log)
	hooks.add(r.server.OnCommit)
	r.applier = peer.NewApplier(store, mountpoint, log)
	r.follower = peer.NewFollower(store, r.applier, cfg.AdvertiseURL, log)
	initial := ""
	switch {
	case cfg.Lease == lease.EtcdType:
		initial = unknownPrimary
	case cfg.PrimaryURL != "":
		initial = cfg.PrimaryURL
	}
	if err := store.SetPrimary(initial); err != nil {
		return nil, fmt.Errorf("set role: %w", err)
	}
	return r, nil
}

// routes returns the HTTP handlers to serve beside /status.
func (r *replication) routes() map[string]http.Handler {
	return map[string]http.Handler{"POST " + peer.StreamPath: r.server}
}

// start runs the lease keeper until stop.
func (r *replication) start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	k := &lease.Keeper{Leaser: r.leaser, OnChange: r.onChange, OnLease: r.onLease, Logger: r.log}
	go func() {
		defer close(r.done)
		held := k.Run(ctx)
		r.mu.Lock()
		r.held = held
		r.mu.Unlock()
	}()
}

// onLease moves the write deadline at each grant and renewal: the store
// refuses new writes past it, and the fence locks out the connections that
// are already open.
func (r *replication) onLease(writeUntil time.Time) {
	r.store.SetWriteDeadline(writeUntil)
	if r.fence != nil {
		r.fence.Until(writeUntil)
	}
}

// onChange applies a role decided by the keeper. A demotion refuses writes
// first.
func (r *replication) onChange(role lease.Role) {
	r.mu.Lock()
	r.role = role
	r.mu.Unlock()
	if !role.Primary && r.fence != nil {
		r.fence.Hold()
	}
	if role.Primary {
		r.stopFollowing()
		if err := r.store.SetPrimary(""); err != nil {
			r.log.Error("become primary", "err", err)
			return
		}
		r.log.Info("this node is the primary", "advertise_url", r.cfg.AdvertiseURL)
		return
	}
	url := role.PrimaryURL
	if url == "" {
		url = unknownPrimary
	}
	if err := r.store.SetPrimary(url); err != nil {
		r.log.Error("become replica", "err", err)
	}
	r.stopFollowing()
	if role.PrimaryURL != "" && role.PrimaryURL != r.cfg.AdvertiseURL {
		r.startFollowing(role.PrimaryURL)
	}
}

func (r *replication) startFollowing(url string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.mu.Lock()
	r.stopFollow, r.followDone = cancel, done
	r.mu.Unlock()
	go func() {
		defer close(done)
		r.follower.Run(ctx, url)
	}()
}

// stopFollowing stops the follower and waits for the transaction it is
// applying.
func (r *replication) stopFollowing() {
	r.mu.Lock()
	cancel, done := r.stopFollow, r.followDone
	r.stopFollow, r.followDone = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// stop stops the keeper and the follower and closes pagefs's own SQLite
// connections, which must happen before the unmount.
func (r *replication) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.stopFollowing()
	if err := r.applier.Close(); err != nil {
		r.log.Warn("close replica connections", "err", err)
	}
}

// release gives the lease back once the node no longer writes, so another
// node takes over at once.
func (r *replication) release() {
	r.mu.Lock()
	held := r.held
	r.mu.Unlock()
	if held != nil && r.fence != nil {
		// Another node may be primary the moment the lease is released;
		// connections the application still holds must not commit.
		r.fence.Hold()
	}
	if held != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := r.leaser.ReleaseLease(ctx, held); err != nil {
			r.log.Warn("release lease", "err", err)
		}
	}
	if c, ok := r.leaser.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// replicationStatus is the "replication" section of /status.
type replicationStatus struct {
	Lease     string             `json:"lease"`
	Primary   string             `json:"primary,omitempty"` // on a replica
	Connected bool               `json:"connected"`         // on a replica: streaming from the primary
	LastError string             `json:"last_error,omitempty"`
	Lag       map[string]lagInfo `json:"lag,omitempty"` // per database, on a replica
	// Paused names, on a replica, the databases it applies nothing to while
	// the application still writes them from when this node was primary,
	// with those processes' pids.
	Paused map[string][]int `json:"paused,omitempty"`
}

type lagInfo struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// decorate fills the node's role and replication state into /status.
func (r *replication) decorate(st *nodeStatus) {
	p := r.store.Primary()
	rs := &replicationStatus{Lease: r.leaser.Type(), Primary: p}
	st.Role = "primary"
	if p != "" {
		st.Role = "replica"
		fs := r.follower.Status()
		rs.Connected, rs.LastError, rs.Paused = fs.Connected, fs.LastError, fs.Paused
		rs.Lag = map[string]lagInfo{}
		for _, d := range st.Databases {
			if s := r.follower.Lag.Stats(d.Name); s.Samples > 0 {
				rs.Lag[d.Name] = lagInfo{Samples: s.Samples, P50Ms: ms(s.P50), P99Ms: ms(s.P99), MaxMs: ms(s.Max)}
			}
		}
	}
	st.Replication = rs
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
