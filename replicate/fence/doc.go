// Package fence keeps a primary that has lost its lease from committing
// through SQLite connections the application opened while it held it.
//
// pagefs refuses the application's new read-write opens once a primary's
// write deadline passes, and in the rollback journal modes that also stops
// open connections, which reopen the journal for every transaction. A WAL
// connection does not: it writes its frames and the wal-index through
// kernel passthrough, unseen by pagefs, as long as it keeps its -wal open.
// What every WAL writer must take first is SQLite's write lock, an
// exclusive POSIX lock on byte 120 of the -shm. The fence holds a shared
// lock on that byte, so the application's connections get SQLITE_BUSY
// ("database is locked") instead of committing.
//
// The lock cannot live in the pagefs process: POSIX locks belong to a
// process, so pagefs's own SQLite connections (the replica's applier)
// would share it and, by unlocking, drop it. And it must be taken on time
// even when the pagefs process is stopped (SIGSTOP, a stalled VM thread),
// which is when another node takes the lease. So a small child process,
// `pagefs fence`, holds the locks. pagefs tells it, over a pipe, which
// -shm files to cover and when the lease's write deadline falls; the child
// takes the locks by itself at that moment unless a renewal moved it.
//
// A State holds that schedule and nothing else; a Holder is the child's
// loop, which opens and locks files; a Client runs the child from pagefs.
package fence
