package ltx

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
)

// Errors returned by Compactor.Compact for inputs that do not form a chain.
var (
	// ErrNoInputs is returned when a Compactor has no inputs.
	ErrNoInputs = errors.New("no input files")

	// ErrNonContiguous is returned when an input does not start at the
	// transaction after the previous input's last one.
	ErrNonContiguous = errors.New("input files not contiguous")

	// ErrChecksumChain is returned when an input's pre-apply checksum is not
	// the previous input's post-apply checksum.
	ErrChecksumChain = errors.New("input checksums do not chain")

	// ErrMismatchedInputs is returned when inputs differ in page size or in
	// HeaderFlagNoChecksum.
	ErrMismatchedInputs = errors.New("input files do not match")
)

// Compactor merges consecutive LTX files into one, equivalent to applying
// them in order: MinTXID and pre-apply checksum of the first, Commit,
// MaxTXID, Timestamp and post-apply checksum of the last, and for each page
// its newest version, dropping pages beyond the final commit size. If the
// first input is a snapshot the output is a snapshot. WAL fields and NodeID
// are zero in the output.
//
// The merge streams: it reads every input once, in page order, and holds one
// page per input plus the output's page index. Every input is fully verified;
// the output is closed (its trailer written) only if all of them are valid
// and chain (each MinTXID is the previous MaxTXID+1 and each pre-apply
// checksum is the previous post-apply checksum). On error the caller must
// discard what was written to w.
type Compactor struct {
	w      io.Writer
	inputs []io.Reader
	enc    *Encoder
}

// NewCompactor returns a Compactor that merges inputs, oldest first, into w.
func NewCompactor(w io.Writer, inputs []io.Reader) *Compactor {
	return &Compactor{w: w, inputs: inputs, enc: NewEncoder(w)}
}

// Header returns the output header. It is valid after Compact succeeds.
func (c *Compactor) Header() Header { return c.enc.Header() }

// Trailer returns the output trailer. It is valid after Compact succeeds.
func (c *Compactor) Trailer() Trailer { return c.enc.Trailer() }

// Compact performs the merge. It checks ctx between pages. Call it once.
func (c *Compactor) Compact(ctx context.Context) error {
	if len(c.inputs) == 0 {
		return ErrNoInputs
	}
	ins := make([]*mergeInput, len(c.inputs))
	for i, r := range c.inputs {
		d := NewDecoder(r)
		if i > 0 {
			// One compressed-page buffer serves every input: they are
			// read in turn. (An input with a larger page size gets its
			// own, then fails the page size check below.)
			d.zbuf = ins[0].dec.zbuf
		}
		if err := d.DecodeHeader(); err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
		ins[i] = &mergeInput{i: i, dec: d, hdr: d.Header()}
	}
	first, last := ins[0].hdr, ins[len(ins)-1].hdr
	for i := 1; i < len(ins); i++ {
		prev, h := ins[i-1].hdr, ins[i].hdr
		switch {
		case h.PageSize != prev.PageSize:
			return fmt.Errorf("%w: input %d has page size %d, input %d has %d", ErrMismatchedInputs, i-1, prev.PageSize, i, h.PageSize)
		case h.NoChecksum() != prev.NoChecksum():
			return fmt.Errorf("%w: input %d and input %d differ in the no-checksum flag", ErrMismatchedInputs, i-1, i)
		case h.MinTXID != prev.MaxTXID+1:
			return fmt.Errorf("%w: input %d has TXIDs %s-%s, input %d has %s-%s",
				ErrNonContiguous, i-1, prev.MinTXID, prev.MaxTXID, i, h.MinTXID, h.MaxTXID)
		}
	}

	if err := c.enc.EncodeHeader(Header{
		Version:          Version,
		Flags:            first.Flags & HeaderFlagNoChecksum,
		PageSize:         first.PageSize,
		Commit:           last.Commit,
		MinTXID:          first.MinTXID,
		MaxTXID:          last.MaxTXID,
		Timestamp:        last.Timestamp,
		PreApplyChecksum: first.PreApplyChecksum,
	}); err != nil {
		return fmt.Errorf("encode header: %w", err)
	}
	if err := c.merge(ctx, ins); err != nil {
		return err
	}

	for i, in := range ins {
		if err := in.dec.Close(); err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
	}
	for i := 1; i < len(ins); i++ {
		post, pre := ins[i-1].dec.Trailer().PostApplyChecksum, ins[i].hdr.PreApplyChecksum
		if post != pre {
			return fmt.Errorf("%w: input %d ends at %s, input %d starts from %s", ErrChecksumChain, i-1, post, i, pre)
		}
	}
	if !last.NoChecksum() {
		c.enc.SetPostApplyChecksum(ins[len(ins)-1].dec.Trailer().PostApplyChecksum)
	}
	if err := c.enc.Close(); err != nil {
		return fmt.Errorf("close output: %w", err)
	}
	return nil
}

// merge writes the newest version of each page, in page order.
func (c *Compactor) merge(ctx context.Context, ins []*mergeInput) error {
	h := make(mergeHeap, 0, len(ins))
	for _, in := range ins {
		in.data = make([]byte, in.hdr.PageSize)
		if ok, err := in.next(); err != nil {
			return err
		} else if ok {
			h = append(h, in)
		}
	}
	heap.Init(&h)
	commit := c.enc.Header().Commit
	for n := 0; len(h) > 0; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		top := h[0] // the newest input holding the lowest page
		pgno := top.pgno
		if pgno <= commit {
			if err := c.enc.EncodePage(PageHeader{Pgno: pgno}, top.data); err != nil {
				return fmt.Errorf("encode page %d from input %d: %w", pgno, top.i, err)
			}
		}
		// Advance every input positioned at pgno.
		for len(h) > 0 && h[0].pgno == pgno {
			in := h[0]
			if ok, err := in.next(); err != nil {
				return err
			} else if ok {
				heap.Fix(&h, 0)
			} else {
				heap.Pop(&h)
			}
		}
	}
	return nil
}

// mergeInput is one Compactor input positioned at a page.
type mergeInput struct {
	i    int // input position, oldest first
	dec  *Decoder
	hdr  Header
	pgno uint32 // current page
	data []byte // current page's data
}

// next reads the input's next page. It returns false at the end of its pages.
func (in *mergeInput) next() (bool, error) {
	var ph PageHeader
	if err := in.dec.DecodePage(&ph, in.data); err == io.EOF {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("input %d: %w", in.i, err)
	}
	in.pgno = ph.Pgno
	return true, nil
}

// mergeHeap orders inputs by page number, then newest first.
type mergeHeap []*mergeInput

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if h[i].pgno != h[j].pgno {
		return h[i].pgno < h[j].pgno
	}
	return h[i].i > h[j].i
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(*mergeInput)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
