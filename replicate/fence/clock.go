package fence

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now reads the clock that fence deadlines are given in: CLOCK_BOOTTIME,
// which pagefs and the fence process share, which no step of the wall clock
// moves, and which keeps counting through a suspend as the lease's TTL
// does.
func Now() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic("fence: CLOCK_BOOTTIME: " + err.Error()) // Linux has had it since 2.6.39
	}
	return time.Unix(0, ts.Nano())
}

// fromWall converts a deadline from Go's clock to the fence's.
func fromWall(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	b := Now().Add(time.Until(t))
	if b.UnixNano() <= 0 {
		// Long past (before the machine booted): still a deadline, and not
		// the zero that means none.
		return time.Unix(0, 1)
	}
	return b
}
