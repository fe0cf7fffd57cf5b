package fuse

import (
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pagefs/pagefs/mount"
)

// Options configures Mount.
type Options struct {
	// CacheTimeout is how long the kernel caches entries, attributes and
	// failed lookups. Zero means one second.
	CacheTimeout time.Duration

	// Debug logs every FUSE request.
	Debug bool

	// NoPassthrough sends WAL and SHM writes through the daemon too. It is
	// slower; tests use it to record every write SQLite makes.
	NoPassthrough bool

	Logger *slog.Logger
}

// Server is a mounted store.
type Server struct {
	srv *gofuse.Server
	log *slog.Logger
}

// Mount serves store at mountpoint. The caller must call Unmount, then
// close the store.
func Mount(mountpoint string, store *mount.Store, opts Options) (*Server, error) {
	if opts.CacheTimeout == 0 {
		opts.CacheTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(store.Root(), &st); err != nil {
		return nil, err
	}
	lr := &fs.LoopbackRoot{Path: store.Root(), Dev: uint64(st.Dev)}
	root := &node{LoopbackNode: &fs.LoopbackNode{RootData: lr}, store: store, noPassthrough: opts.NoPassthrough}
	lr.RootNode = root
	t := opts.CacheTimeout
	srv, err := fs.Mount(mountpoint, root, &fs.Options{
		EntryTimeout:    &t,
		AttrTimeout:     &t,
		NegativeTimeout: &t,
		MountOptions: gofuse.MountOptions{
			FsName:        "pagefs",
			Name:          "pagefs",
			DirectMount:   true,
			AllowOther:    true,
			DisableXAttrs: true,
			// Every change to a file reaches the backing file through this
			// daemon, so the kernel's cached pages stay valid: without
			// this, a changed mtime makes the kernel drop a database's
			// cached pages, and DELETE-mode point reads fell to 0.8x.
			ExplicitDataCacheControl: true,
			MaxWrite:                 1 << 20,
			Debug:                    opts.Debug,
			Options:                  []string{"default_permissions"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	s := &Server{srv: srv, log: opts.Logger}
	if srv.KernelSettings().Flags64()&gofuse.CAP_PASSTHROUGH == 0 {
		s.log.Warn("kernel offers no FUSE passthrough: WAL writes go through the daemon (slower, still exact)")
	}
	return s, nil
}

// Unmount unmounts the filesystem and waits for the server to stop. It
// fails while files are open unless the unmount is lazy.
func (s *Server) Unmount() error {
	err := s.srv.Unmount()
	if err != nil {
		return err
	}
	s.srv.Wait()
	return nil
}

// Wait blocks until the filesystem is unmounted.
func (s *Server) Wait() { s.srv.Wait() }
