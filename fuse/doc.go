// Package fuse serves a mount.Store through the kernel with go-fuse. Its
// nodes and file handles translate file operations into calls on the store
// and hold no database logic.
//
// # Basics
//
// Mount mounts a Store's backing folder at a mountpoint and returns a
// Server. Every file is a loopback of its backing file. Writes, truncations,
// syncs, closes, unlinks and renames go through the Store, which decides what
// they mean for a database. Reads are served from the backing file.
//
// # Caveats
//
//   - WAL and SHM files use kernel FUSE passthrough when the kernel offers it
//     (Linux 6.9+, as root): their reads, writes and mmaps never reach the
//     daemon. Other files never use passthrough, because the kernel shares
//     one passthrough file per inode and pagefs must see every write to a
//     database or journal.
//   - POSIX locks are left to the kernel (go-fuse does not ask for them), so
//     SQLite's locks cost no round trip and conflict correctly between
//     processes using the mount.
//   - Entries and attributes are cached by the kernel for CacheTimeout: the
//     backing folder must not be changed behind the mount's back.
package fuse
