package peer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/pagefs/pagefs/ltx"
)

// StreamPath is the HTTP path of the replication stream on every node.
const StreamPath = "/pagefs/v1/stream"

// PrimaryHeader names, in a refusal from a node that is not primary, the
// primary it knows of.
const PrimaryHeader = "Pagefs-Primary"

// Request is what a replica POSTs to StreamPath as JSON.
type Request struct {
	Node string            `json:"node"` // the replica's advertise URL, for logs
	DBs  map[string]string `json:"dbs"`  // database name -> position (ltx.Pos.String)

	// Recent lists, per database, the positions of the replica's newest
	// chain files, newest first, so that the primary can tell the replica
	// which of its transactions it shares when it sends a snapshot.
	Recent map[string][]string `json:"recent,omitempty"`

	// Paused lists databases the replica applies nothing to for now (the
	// application still writes them from when the replica was primary);
	// the primary sends nothing for them.
	Paused []string `json:"paused,omitempty"`
}

// positions parses the request's positions.
func (r *Request) positions() (map[string]ltx.Pos, error) {
	out := make(map[string]ltx.Pos, len(r.DBs))
	for name, s := range r.DBs {
		p, err := ltx.ParsePos(s)
		if err != nil {
			return nil, fmt.Errorf("position of %s: %w", name, err)
		}
		out[name] = p
	}
	return out, nil
}

// recent parses the request's recent positions of one database.
func (r *Request) recent(db string) []ltx.Pos {
	var out []ltx.Pos
	for _, s := range r.Recent[db] {
		if p, err := ltx.ParsePos(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func decodeRequest(r io.Reader) (*Request, error) {
	var req Request
	if err := json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(&req); err != nil {
		return nil, fmt.Errorf("bad stream request: %w", err)
	}
	return &req, nil
}

// Frame types.
const (
	frameLTX       = 'L' // an LTX file that continues the replica's position
	frameSnapshot  = 'S' // an LTX snapshot that replaces the replica's database
	frameHeartbeat = 'H' // nothing; the stream is alive
)

// frameHeader precedes each frame's payload:
//
//	type (1 byte) | name length (2, big-endian) | name | commit time (8, unix ns; 0 unknown) | base (8) | payload size (8)
type frameHeader struct {
	Type   byte
	DB     string
	Commit int64  // when the primary captured the transaction, unix nanoseconds
	Base   uint64 // snapshots: the newest TXID the replica shares with the primary; 0 if none is known
	Size   int64  // payload bytes
}

// maxPayload bounds one frame's payload.
const maxPayload = 1 << 40

func (h *frameHeader) marshal() []byte {
	b := make([]byte, 0, 19+len(h.DB))
	b = append(b, h.Type)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.DB)))
	b = append(b, h.DB...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Commit))
	b = binary.BigEndian.AppendUint64(b, h.Base)
	return binary.BigEndian.AppendUint64(b, uint64(h.Size))
}

var errBadFrame = errors.New("bad frame")

func readFrameHeader(r io.Reader) (frameHeader, error) {
	var h frameHeader
	var b [8]byte
	if _, err := io.ReadFull(r, b[:3]); err != nil {
		return h, err
	}
	h.Type = b[0]
	switch h.Type {
	case frameLTX, frameSnapshot, frameHeartbeat:
	default:
		return h, fmt.Errorf("%w: type %q", errBadFrame, h.Type)
	}
	name := make([]byte, binary.BigEndian.Uint16(b[1:3]))
	if _, err := io.ReadFull(r, name); err != nil {
		return h, unexpected(err)
	}
	h.DB = string(name)
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return h, unexpected(err)
	}
	h.Commit = int64(binary.BigEndian.Uint64(b[:]))
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return h, unexpected(err)
	}
	h.Base = binary.BigEndian.Uint64(b[:])
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return h, unexpected(err)
	}
	h.Size = int64(binary.BigEndian.Uint64(b[:]))
	if h.Size < 0 || h.Size > maxPayload || (h.Type == frameHeartbeat && h.Size != 0) {
		return h, fmt.Errorf("%w: payload of %d bytes", errBadFrame, h.Size)
	}
	if h.Type != frameHeartbeat && h.DB == "" {
		return h, fmt.Errorf("%w: no database name", errBadFrame)
	}
	if h.DB != "" && !validName(h.DB) {
		return h, fmt.Errorf("%w: database name %q is not a path inside the mount", errBadFrame, h.DB)
	}
	return h, nil
}

// validName reports whether a database name from the primary is a clean
// relative path that stays inside the mount: the replica joins it to its
// mountpoint.
func validName(name string) bool {
	return fs.ValidPath(name) && name != "." && !strings.ContainsRune(name, 0)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
