// Package mount is the core of pagefs: the set of SQLite databases under one
// mount and the capture of each committed transaction into an LTX file.
//
// # Basics
//
// There are only a few types: Store, DB and File. A Store owns a data
// directory: the real bytes of every file under the mount live in its files/
// folder, and each database's LTX chain lives at <data>/<db>/ltx/0, the same
// layout as a file:// backup, so a data directory is itself a valid backup
// root. The FUSE layer (package fuse) turns kernel requests into calls on the
// Store and on Files; nothing here imports a FUSE package, so tests drive a
// Store with exactly the operations SQLite issues, without a kernel.
//
// A DB recognises commits two ways:
//
//   - Rollback journal modes (DELETE, TRUNCATE, PERSIST): a transaction is the
//     set of pages written to the database while its -journal is hot (opens
//     with the journal magic). It commits when SQLite invalidates the journal
//     (unlink, truncate, or a zeroed header). pagefs writes the LTX file to a
//     pending name first, performs the invalidation, then renames the file
//     into the chain; recovery finishes or discards a pending file by looking
//     at the journal, so the chain never holds a rolled-back transaction and
//     never misses a committed one.
//   - WAL mode: the -wal and -shm files bypass the daemon (kernel
//     passthrough). pagefs reads committed frames from the backing WAL, using
//     the WAL's own checksum chain to tell which frames are final, either
//     when a poller sees the -shm header move or when a checkpoint is about to
//     write the database file, truncate or delete the WAL ("gated
//     checkpoints"). Every write to a WAL-mode database file is a checkpoint,
//     so capturing the whole valid WAL before performing it guarantees no
//     frame is ever overwritten before it is captured.
//
// # Caveats
//
// journal_mode=OFF and MEMORY leave no journal that marks a commit; writes to
// an existing database without a hot journal or a WAL fail with EIO and a
// log line. A new, empty file written without a journal (cp, VACUUM INTO) is
// captured as one transaction when it is synced or closed.
//
// The rolling checksum is kept incrementally: pagefs reads the old version of
// each page a transaction changes, never the whole database, except for the
// first transaction of a database, a page-size change and an import, which
// are captured as complete images.
package mount
