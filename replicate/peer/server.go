package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pagefs/pagefs/ltx"
	"github.com/pagefs/pagefs/mount"
)

// Server streams a primary's transactions to replicas. It is an
// http.Handler for StreamPath; it answers 503 while the node is not the
// primary. It is safe for concurrent use.
type Server struct {
	store     *mount.Store
	log       *slog.Logger
	heartbeat time.Duration

	mu      sync.Mutex
	subs    map[chan struct{}]struct{}
	commits map[string]*commitTimes // database -> capture times of recent TXIDs
}

// commitTimes remembers when the newest transactions of a database were
// captured, so that frames carry it to replicas for lag.
type commitTimes struct {
	txid [256]uint64
	at   [256]int64
}

// NewServer returns a Server for the store. A nil logger discards logs.
func NewServer(store *mount.Store, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{store: store, log: log, heartbeat: time.Second, subs: map[chan struct{}]struct{}{}, commits: map[string]*commitTimes{}}
}

// OnCommit is the mount's commit hook (mount.Config.OnCommit). It records
// the capture time and wakes the streams; it never blocks.
func (s *Server) OnCommit(c mount.Commit) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	ct := s.commits[c.DB]
	if ct == nil {
		ct = &commitTimes{}
		s.commits[c.DB] = ct
	}
	i := c.MaxTXID % uint64(len(ct.txid))
	ct.txid[i], ct.at[i] = c.MaxTXID, now
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

func (s *Server) commitTime(db string, txid ltx.TXID) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ct := s.commits[db]
	if ct == nil {
		return 0
	}
	i := uint64(txid) % uint64(len(ct.txid))
	if ct.txid[i] != uint64(txid) {
		return 0
	}
	return ct.at[i]
}

func (s *Server) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch
}

func (s *Server) unsubscribe(ch chan struct{}) {
	s.mu.Lock()
	delete(s.subs, ch)
	s.mu.Unlock()
}

// ServeHTTP serves one replica's stream until the replica goes away or
// this node stops being the primary.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a stream request", http.StatusMethodNotAllowed)
		return
	}
	if p := s.store.Primary(); p != "" {
		w.Header().Set(PrimaryHeader, p)
		http.Error(w, "not the primary", http.StatusServiceUnavailable)
		return
	}
	req, err := decodeRequest(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pos, err := req.positions()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	log := s.log.With("replica", req.Node)
	log.Info("replica connected", "databases", len(pos))
	err = s.stream(r.Context(), w, rc, pos, req)
	if err != nil && r.Context().Err() == nil {
		log.Warn("replica stream ended", "err", err)
	} else {
		log.Info("replica disconnected")
	}
}

// stream sends what each database's replica lacks, then waits for commits.
func (s *Server) stream(ctx context.Context, w io.Writer, rc *http.ResponseController, pos map[string]ltx.Pos, req *Request) error {
	wake := s.subscribe()
	defer s.unsubscribe(wake)
	hb := time.NewTicker(s.heartbeat)
	defer hb.Stop()
	for {
		if p := s.store.Primary(); p != "" {
			return fmt.Errorf("this node is no longer the primary (now %s)", p)
		}
		sent := false
		for _, db := range s.store.DBs() {
			if slices.Contains(req.Paused, db.Name()) {
				continue
			}
			n, err := s.catchUp(ctx, w, db, pos, req)
			if err != nil {
				return err
			}
			sent = sent || n > 0
		}
		if sent {
			if err := rc.Flush(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-hb.C:
			if _, err := w.Write((&frameHeader{Type: frameHeartbeat}).marshal()); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
	}
}

// catchUp sends the files of one database after the replica's position, or
// a snapshot. It updates pos and returns how many frames it sent.
func (s *Server) catchUp(ctx context.Context, w io.Writer, db *mount.DB, pos map[string]ltx.Pos, req *Request) (int, error) {
	name := db.Name()
	head := db.Pos()
	have := pos[name]
	if head.TXID == 0 || have == head {
		return 0, nil
	}
	n := 0
	if have.TXID > 0 && have.TXID < head.TXID {
		for have.TXID < head.TXID {
			p, hdr, ok := s.nextFile(db, have)
			if !ok {
				break
			}
			if err := s.sendFile(w, frameLTX, name, p, s.commitTime(name, hdr.MaxTXID)); err != nil {
				return n, err
			}
			n++
			post, err := postApply(p)
			if err != nil {
				return n, err
			}
			have = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: post}
			if err := ctx.Err(); err != nil {
				return n, err
			}
		}
		if have.TXID >= head.TXID {
			pos[name] = have
			return n, nil
		}
	}
	// Too far behind, diverged, ahead of us, or new: a snapshot.
	snap, err := s.snapshot(ctx, db)
	if err != nil {
		return n, err
	}
	defer os.Remove(snap.path)
	base := s.shared(db, snap.pos, append([]ltx.Pos{have}, req.recent(name)...))
	delete(req.Recent, name)
	s.log.Info("sending a snapshot", "db", name, "replica_pos", have, "shared_txid", base, "snapshot", snap.pos)
	if err := s.sendFileBase(w, frameSnapshot, name, snap.path, 0, uint64(base)); err != nil {
		return n, err
	}
	pos[name] = snap.pos
	return n + 1, nil
}

// nextFile finds the chain file that continues have, if it exists and its
// pre-apply checksum matches.
func (s *Server) nextFile(db *mount.DB, have ltx.Pos) (string, ltx.Header, bool) {
	want := have.TXID + 1
	p := filepath.Join(db.LTXDir(), ltx.FormatFilename(want, want))
	hdr, err := readHeader(p)
	if err != nil {
		ents, _ := os.ReadDir(db.LTXDir())
		found := false
		for _, e := range ents {
			if min, _, err := ltx.ParseFilename(e.Name()); err == nil && min == want {
				p = filepath.Join(db.LTXDir(), e.Name())
				if hdr, err = readHeader(p); err == nil {
					found = true
				}
				break
			}
		}
		if !found {
			return "", hdr, false
		}
	}
	if hdr.PreApplyChecksum != have.PostApplyChecksum {
		return "", hdr, false
	}
	return p, hdr, true
}

func readHeader(p string) (ltx.Header, error) {
	f, err := os.Open(p)
	if err != nil {
		return ltx.Header{}, err
	}
	defer f.Close()
	b := make([]byte, ltx.HeaderSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return ltx.Header{}, err
	}
	var h ltx.Header
	if err := h.UnmarshalBinary(b); err != nil {
		return ltx.Header{}, err
	}
	return h, nil
}

// shared returns the newest of the replica's positions that the primary's
// chain also holds (same TXID, same checksum), or 0.
func (s *Server) shared(db *mount.DB, head ltx.Pos, replica []ltx.Pos) ltx.TXID {
	var best ltx.TXID
	for _, p := range replica {
		if p.TXID == 0 || p.TXID <= best || p.TXID > head.TXID {
			continue
		}
		if p == head {
			best = p.TXID
			continue
		}
		post, err := postApply(filepath.Join(db.LTXDir(), ltx.FormatFilename(p.TXID, p.TXID)))
		if err == nil && post == p.PostApplyChecksum {
			best = p.TXID
		}
	}
	return best
}

// postApply reads a file's post-apply checksum from its trailer.
func postApply(p string) (ltx.Checksum, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() < ltx.HeaderSize+ltx.TrailerSize {
		return 0, fmt.Errorf("%s: %d bytes is too short for an LTX file", p, fi.Size())
	}
	b := make([]byte, ltx.TrailerSize)
	if _, err := f.ReadAt(b, fi.Size()-ltx.TrailerSize); err != nil {
		return 0, err
	}
	var t ltx.Trailer
	if err := t.UnmarshalBinary(b); err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return t.PostApplyChecksum, nil
}

// sendFile writes one frame whose payload is the file at p.
func (s *Server) sendFile(w io.Writer, typ byte, name, p string, commit int64) error {
	return s.sendFileBase(w, typ, name, p, commit, 0)
}

func (s *Server) sendFileBase(w io.Writer, typ byte, name, p string, commit int64, base uint64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h := frameHeader{Type: typ, DB: name, Commit: commit, Base: base, Size: fi.Size()}
	if _, err := w.Write(h.marshal()); err != nil {
		return err
	}
	if _, err := io.CopyN(w, f, fi.Size()); err != nil {
		return fmt.Errorf("send %s: %w", p, err)
	}
	return nil
}

type snapshotFile struct {
	path string
	pos  ltx.Pos
}

// snapshot writes the database's current image to a temporary file.
func (s *Server) snapshot(ctx context.Context, db *mount.DB) (snapshotFile, error) {
	for {
		f, err := os.CreateTemp("", "pagefs-snapshot-*.ltx")
		if err != nil {
			return snapshotFile{}, err
		}
		pos, err := db.WriteSnapshot(f)
		cerr := f.Close()
		if err == nil && cerr == nil {
			return snapshotFile{path: f.Name(), pos: pos}, nil
		}
		os.Remove(f.Name())
		if !errors.Is(err, mount.ErrSnapshotBusy) {
			return snapshotFile{}, fmt.Errorf("snapshot of %s: %w", db.Name(), errors.Join(err, cerr))
		}
		select {
		case <-ctx.Done():
			return snapshotFile{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
