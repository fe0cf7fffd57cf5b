package fence

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Op is what a Command asks of the fence.
type Op string

const (
	// OpTrack adds a -shm file to the set the fence covers.
	OpTrack Op = "track"
	// OpUntrack removes one; its lock, if taken, is released.
	OpUntrack Op = "untrack"
	// OpUntil sets the write deadline, at which the fence locks every
	// covered file, and lifts a Hold: the node holds a lease again. The
	// zero time means no deadline. Deadlines are on the fence's clock (see
	// Now), never the wall clock, which may be stepped.
	OpUntil Op = "until"
	// OpHold locks every covered file now and until the next OpUntil: the
	// node is no longer primary.
	OpHold Op = "hold"
)

// Command is one instruction from pagefs to the fence, sent as one line of
// text.
type Command struct {
	Op   Op
	Path string    // OpTrack, OpUntrack
	Time time.Time // OpUntil
}

// String encodes c as its line, without the newline.
func (c Command) String() string {
	switch c.Op {
	case OpTrack, OpUntrack:
		return string(c.Op) + " " + c.Path
	case OpUntil:
		if c.Time.IsZero() {
			return string(OpUntil) + " 0"
		}
		return string(OpUntil) + " " + strconv.FormatInt(c.Time.UnixNano(), 10)
	default:
		return string(c.Op)
	}
}

// ParseCommand decodes one line written by Command.String.
func ParseCommand(line string) (Command, error) {
	op, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	switch Op(op) {
	case OpTrack, OpUntrack:
		if arg == "" || !strings.HasPrefix(arg, "/") {
			return Command{}, fmt.Errorf("fence command %q: %s needs an absolute path", line, op)
		}
		return Command{Op: Op(op), Path: arg}, nil
	case OpUntil:
		n, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || n < 0 {
			return Command{}, fmt.Errorf("fence command %q: until needs nanoseconds since 1970", line)
		}
		c := Command{Op: OpUntil}
		if n > 0 {
			c.Time = time.Unix(0, n)
		}
		return c, nil
	case OpHold:
		if arg != "" {
			return Command{}, fmt.Errorf("fence command %q: hold takes no argument", line)
		}
		return Command{Op: OpHold}, nil
	}
	return Command{}, errors.New("fence command " + strconv.Quote(line) + ": unknown")
}

// State is the fence's schedule: which files it covers and whether, at a
// given moment, they must be locked. It does no I/O; its zero value covers
// nothing and never locks.
type State struct {
	files    map[string]bool
	deadline time.Time
	held     bool
}

// Apply changes the state by one command.
func (s *State) Apply(c Command) {
	switch c.Op {
	case OpTrack:
		if s.files == nil {
			s.files = map[string]bool{}
		}
		s.files[c.Path] = true
	case OpUntrack:
		delete(s.files, c.Path)
	case OpUntil:
		s.deadline, s.held = c.Time, false
	case OpHold:
		s.held = true
	}
}

// Locked reports whether the covered files must be locked at now.
func (s *State) Locked(now time.Time) bool {
	return s.held || (!s.deadline.IsZero() && !now.Before(s.deadline))
}

// Wake returns when Locked next changes without a command, if it will.
func (s *State) Wake(now time.Time) (time.Time, bool) {
	if s.held || s.deadline.IsZero() || !now.Before(s.deadline) {
		return time.Time{}, false
	}
	return s.deadline, true
}

// Covers reports whether path is a covered file.
func (s *State) Covers(path string) bool { return s.files[path] }

// Files returns the covered files in order.
func (s *State) Files() []string {
	out := make([]string, 0, len(s.files))
	for p := range s.files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Commands returns the commands that rebuild s in an empty State, for a
// restarted child.
func (s *State) Commands() []Command {
	cmds := []Command{{Op: OpUntil, Time: s.deadline}}
	if s.held {
		cmds = append(cmds, Command{Op: OpHold})
	}
	for _, p := range s.Files() {
		cmds = append(cmds, Command{Op: OpTrack, Path: p})
	}
	return cmds
}
