package fuse

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/pagefs/pagefs/mount"
)

// handle is an open file. Reads, attributes and seeks go to the backing
// file through the embedded LoopbackFile; everything that changes the file
// goes through the store's File.
type handle struct {
	*fs.LoopbackFile
	file *mount.File
}

// passthroughHandle is a handle whose reads and writes the kernel sends
// straight to the backing file.
type passthroughHandle struct{ handle }

func newHandle(f *mount.File, passthrough bool) (fs.FileHandle, uint32, syscall.Errno) {
	h := handle{LoopbackFile: fs.NewLoopbackFileFromOS(f.Fd()), file: f}
	if f.Kind().Passthrough() && passthrough {
		return &passthroughHandle{h}, 0, 0
	}
	if f.Kind().Passthrough() {
		return &h, 0, 0
	}
	if f.Name() == mount.PrimaryFile {
		return &h, gofuse.FOPEN_DIRECT_IO, 0 // pagefs rewrites it behind the kernel's back
	}
	// pagefs sees every write to these files, so the kernel's cached pages
	// stay valid across opens.
	return &h, gofuse.FOPEN_KEEP_CACHE, 0
}

// PassthroughFd keeps database, journal and plain files out of kernel
// passthrough: pagefs must see their writes.
func (h *handle) PassthroughFd() (int, bool) { return 0, false }

// PassthroughFd hands the backing file to the kernel.
func (h *passthroughHandle) PassthroughFd() (int, bool) {
	return h.LoopbackFile.PassthroughFd()
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.file.WriteAt(data, off)
	return uint32(n), mount.Errno(err)
}

func (h *handle) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	var buf []byte
	for _, d := range data {
		buf = append(buf, d...)
	}
	return h.Write(ctx, buf, off)
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return mount.Errno(h.file.Sync())
}

// Flush runs at every close of a file descriptor. Locks live in the kernel,
// so there is nothing to release; the store may commit an import.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	return mount.Errno(h.file.Flush())
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	return mount.Errno(h.file.Close())
}

func (h *handle) Setattr(ctx context.Context, in *gofuse.SetAttrIn, out *gofuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if err := h.file.Truncate(int64(sz)); err != nil {
			return mount.Errno(err)
		}
		in.Valid &^= gofuse.FATTR_SIZE
	}
	return h.LoopbackFile.Setattr(ctx, in, out)
}

// Allocate is refused for database files and journals, whose every change
// pagefs must interpret; SQLite falls back to writes.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if k := h.file.Kind(); k == mount.KindDB || k == mount.KindJournal {
		return syscall.EOPNOTSUPP
	}
	return h.LoopbackFile.Allocate(ctx, off, size, mode)
}
