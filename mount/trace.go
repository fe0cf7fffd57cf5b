package mount

import (
	"encoding/json"
	"io"
	"os"
	"sync"
)

// TraceOp is one operation the Store was asked to perform, as recorded by
// a Tracer. Replaying a trace against a fresh Store reproduces what SQLite
// did through the mount, without a kernel: tests use recorded traces to
// check capture and recovery at every point between two operations.
type TraceOp struct {
	Op   string `json:"op"`             // open, write, truncate, sync, close, unlink, rename
	File uint64 `json:"file,omitempty"` // handle, for operations on an open file
	Name string `json:"name,omitempty"`
	To   string `json:"to,omitempty"` // rename target
	Flag int    `json:"flag,omitempty"`
	Off  int64  `json:"off,omitempty"`
	Size int64  `json:"size,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// Tracer writes TraceOps as JSON lines. It is safe for concurrent use.
type Tracer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewTracer returns a Tracer writing to w.
func NewTracer(w io.Writer) *Tracer { return &Tracer{enc: json.NewEncoder(w)} }

func (t *Tracer) record(op TraceOp) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.enc.Encode(op)
}

// Replayer applies TraceOps to a Store.
type Replayer struct {
	store *Store
	files map[uint64]*File
}

// NewReplayer returns a Replayer that applies operations to s.
func NewReplayer(s *Store) *Replayer { return &Replayer{store: s, files: make(map[uint64]*File)} }

// Apply performs one operation.
func (r *Replayer) Apply(op TraceOp) error {
	switch op.Op {
	case "open":
		f, err := r.store.OpenFile(op.Name, op.Flag, 0o644)
		if err != nil {
			return err
		}
		r.files[op.File] = f
	case "write":
		_, err := r.file(op).WriteAt(op.Data, op.Off)
		return err
	case "truncate":
		if op.File == 0 {
			return r.store.Truncate(op.Name, op.Size)
		}
		return r.file(op).Truncate(op.Size)
	case "sync":
		return r.file(op).Sync()
	case "close":
		f := r.file(op)
		delete(r.files, op.File)
		return f.Close()
	case "unlink":
		return r.store.Unlink(op.Name)
	case "rename":
		return r.store.Rename(op.Name, op.To, func() error {
			return os.Rename(r.store.BackingPath(op.Name), r.store.BackingPath(op.To))
		})
	}
	return nil
}

func (r *Replayer) file(op TraceOp) *File {
	if f := r.files[op.File]; f != nil {
		return f
	}
	return &File{store: r.store, f: os.NewFile(^uintptr(0), op.Name)} // fails with EBADF
}

// CloseAll closes every file the trace left open.
func (r *Replayer) CloseAll() {
	for id, f := range r.files {
		f.Close()
		delete(r.files, id)
	}
}
