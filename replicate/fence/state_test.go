package fence

import (
	"reflect"
	"testing"
	"time"
)

func TestState_LocksAtTheDeadlineUnlessRenewed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s State
	if s.Locked(t0) {
		t.Fatal("a fresh state locks")
	}
	s.Apply(Command{Op: OpUntil, Time: t0.Add(time.Second)})
	if s.Locked(t0) {
		t.Fatal("locked before the deadline")
	}
	if w, ok := s.Wake(t0); !ok || !w.Equal(t0.Add(time.Second)) {
		t.Fatalf("wake = %v %v, want the deadline", w, ok)
	}
	if !s.Locked(t0.Add(time.Second)) {
		t.Fatal("not locked at the deadline")
	}
	s.Apply(Command{Op: OpUntil, Time: t0.Add(3 * time.Second)}) // a renewal
	if s.Locked(t0.Add(2 * time.Second)) {
		t.Fatal("locked before the renewed deadline")
	}
	s.Apply(Command{Op: OpUntil}) // no deadline: a lease without one
	if s.Locked(t0.Add(time.Hour)) {
		t.Fatal("locked with no deadline")
	}
	if _, ok := s.Wake(t0); ok {
		t.Fatal("wake without a deadline")
	}
}

func TestState_HoldLocksUntilTheNextLease(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s State
	s.Apply(Command{Op: OpUntil, Time: t0.Add(time.Hour)})
	s.Apply(Command{Op: OpHold})
	if !s.Locked(t0) {
		t.Fatal("a demoted node does not lock")
	}
	if _, ok := s.Wake(t0); ok {
		t.Fatal("a hold wakes")
	}
	s.Apply(Command{Op: OpUntil, Time: t0.Add(time.Hour)}) // primary again
	if s.Locked(t0) {
		t.Fatal("still locked after a new lease")
	}
}

func TestState_CommandsRebuildIt(t *testing.T) {
	var s State
	for _, c := range []Command{
		{Op: OpTrack, Path: "/m/b.db-shm"},
		{Op: OpTrack, Path: "/m/a.db-shm"},
		{Op: OpTrack, Path: "/m/c.db-shm"},
		{Op: OpUntrack, Path: "/m/c.db-shm"},
		{Op: OpUntil, Time: time.Unix(5, 0)},
		{Op: OpHold},
	} {
		s.Apply(c)
	}
	var r State
	for _, c := range s.Commands() {
		r.Apply(c)
	}
	if !reflect.DeepEqual(r, s) {
		t.Fatalf("rebuilt %+v, want %+v", r, s)
	}
	if got, want := s.Files(), []string{"/m/a.db-shm", "/m/b.db-shm"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
}

func TestCommand_RoundTrips(t *testing.T) {
	for _, c := range []Command{
		{Op: OpTrack, Path: "/mnt/dir with space/app.db-shm"},
		{Op: OpUntrack, Path: "/x-shm"},
		{Op: OpUntil, Time: time.Unix(0, 1_700_000_000_123_456_789)},
		{Op: OpUntil},
		{Op: OpHold},
	} {
		got, err := ParseCommand(c.String())
		if err != nil {
			t.Fatalf("%q: %v", c.String(), err)
		}
		if got.Op != c.Op || got.Path != c.Path || !got.Time.Equal(c.Time) {
			t.Fatalf("%q decodes to %+v, want %+v", c.String(), got, c)
		}
	}
}

func TestParseCommand_RefusesWhatPagefsNeverSends(t *testing.T) {
	for _, line := range []string{"", "lock", "track", "track relative-shm", "until", "until -5", "until soon", "hold now"} {
		if c, err := ParseCommand(line); err == nil {
			t.Errorf("%q parsed as %+v", line, c)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"track /a-shm", "until 0", "until 17", "hold", "untrack /b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line)
		if err != nil {
			return
		}
		again, err := ParseCommand(c.String())
		if err != nil {
			t.Fatalf("%q parsed as %+v, whose encoding %q does not parse: %v", line, c, c.String(), err)
		}
		if again.Op != c.Op || again.Path != c.Path || !again.Time.Equal(c.Time) {
			t.Fatalf("%q: %+v re-encodes to %+v", line, c, again)
		}
	})
}

// A deadline long past still reaches the fence as a deadline, never as the
// zero that means none.
func TestFromWall_KeepsAncientDeadlines(t *testing.T) {
	got := fromWall(time.Now().Add(-100 * 365 * 24 * time.Hour))
	if got.IsZero() || got.UnixNano() <= 0 {
		t.Fatalf("an ancient deadline became %v", got)
	}
	c, err := ParseCommand(Command{Op: OpUntil, Time: got}.String())
	if err != nil || c.Time.IsZero() || !(&State{deadline: c.Time}).Locked(Now()) {
		t.Fatalf("an ancient deadline does not lock: %+v %v", c, err)
	}
}
