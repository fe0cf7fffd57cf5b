package fuse

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pagefs/pagefs/mount"
)

// node is a file or folder under the mount: a loopback node whose changing
// operations go through the store.
type node struct {
	*fs.LoopbackNode
	store         *mount.Store
	noPassthrough bool
}

var _ fs.NodeWrapChilder = (*node)(nil)

// WrapChild makes every node the loopback creates a pagefs node.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), store: n.store, noPassthrough: n.noPassthrough}
}

var (
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeSetattrer = (*node)(nil)
	_ fs.NodeUnlinker  = (*node)(nil)
	_ fs.NodeRenamer   = (*node)(nil)
)

// name is the node's path relative to the mount root.
func (n *node) name() string {
	return n.Path(n.Root())
}

func (n *node) child(name string) string {
	return path.Join(n.name(), name)
}

// refuseWrite reports whether a caller must not change the file name: on a
// read-only replica, only pagefs itself writes to databases. SQLite, refused
// a read-write open, opens the database read-only and answers writes with
// "attempt to write a readonly database".
func (n *node) refuseWrite(ctx context.Context, name string) bool {
	if n.store.WriteAllowed(name) {
		return false
	}
	return !callerIsSelf(ctx)
}

// callerIsSelf reports whether the request comes from a thread of this
// process. The kernel names the calling thread, not its process.
func callerIsSelf(ctx context.Context) bool {
	c, ok := gofuse.FromContext(ctx)
	if !ok {
		return false
	}
	if int(c.Pid) == os.Getpid() {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", c.Pid))
	return err == nil
}

const writeFlags = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_TRUNC | syscall.O_APPEND

// markApplication tells the store when the application opens a -wal or
// -shm for writing: such a connection can commit without pagefs seeing
// it, until it closes, even after this node stops being primary.
func markApplication(ctx context.Context, f *mount.File) {
	if !f.SharesWAL() {
		return
	}
	if pid := callerPID(ctx); pid != os.Getpid() {
		f.MarkApplication(pid)
	}
}

// callerPID returns the process of the thread that made the request, or 0
// when it cannot be known (the thread has exited).
func callerPID(ctx context.Context) int {
	c, ok := gofuse.FromContext(ctx)
	if !ok {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			pid, _ := strconv.Atoi(strings.TrimSpace(v))
			return pid
		}
	}
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&writeFlags != 0 && n.refuseWrite(ctx, n.name()) {
		return nil, 0, syscall.EACCES
	}
	f, err := n.store.OpenFile(n.name(), int(flags), 0)
	if err != nil {
		return nil, 0, mount.Errno(err)
	}
	markApplication(ctx, f)
	return newHandle(f, !n.noPassthrough)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *gofuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if n.refuseWrite(ctx, n.child(name)) {
		return nil, nil, 0, syscall.EACCES
	}
	// The loopback creates the file and its inode; pagefs then reopens it
	// through the store so the handle is one the store knows.
	if n.store.PrepareCreate(n.child(name)) {
		flags &^= syscall.O_EXCL // a recycled journal's inode is already in place, empty
	}
	ch, lf, _, errno := n.LoopbackNode.Create(ctx, name, flags&^syscall.O_TRUNC, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if r, ok := lf.(fs.FileReleaser); ok {
		r.Release(ctx)
	}
	f, err := n.store.OpenFile(n.child(name), int(flags&^syscall.O_EXCL)|syscall.O_CREAT, os.FileMode(mode))
	if err != nil {
		return nil, nil, 0, mount.Errno(err)
	}
	markApplication(ctx, f)
	h, fuseFlags, errno := newHandle(f, !n.noPassthrough)
	return ch, h, fuseFlags, errno
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *gofuse.SetAttrIn, out *gofuse.AttrOut) syscall.Errno {
	if n.refuseWrite(ctx, n.name()) {
		return syscall.EACCES
	}
	if f == nil {
		if sz, ok := in.GetSize(); ok {
			if err := n.store.Truncate(n.name(), int64(sz)); err != nil {
				return mount.Errno(err)
			}
			in.Valid &^= gofuse.FATTR_SIZE
		}
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.refuseWrite(ctx, n.child(name)) {
		return syscall.EACCES
	}
	return mount.Errno(n.store.Unlink(n.child(name)))
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	oldPath, newPath := n.child(name), np.child(newName)
	if n.refuseWrite(ctx, oldPath) || n.refuseWrite(ctx, newPath) {
		return syscall.EACCES
	}
	return mount.Errno(n.store.Rename(oldPath, newPath, func() error {
		if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
			return errno
		}
		return nil
	}))
}
