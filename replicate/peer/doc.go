// Package peer streams LTX files from a primary pagefs node to its read
// replicas over HTTP, and applies them on the replicas.
//
// # Basics
//
// There are a few types. Server runs on every node's HTTP server (it
// answers only while the node is primary): a replica POSTs its position per
// database (TXID and checksum) to StreamPath and the Server answers with a
// stream of frames: the LTX files after that position, read from the
// primary's chain, or a snapshot when the replica is too far behind (the
// files are gone to retention) or its checksum disagrees; then each new
// transaction as the mount captures it (Server.OnCommit is the mount's
// commit hook), and a heartbeat every second. Databases the replica lacks
// arrive as snapshots.
//
// Follower runs on a replica: it connects, reconnects with backoff, and
// hands each frame to an Applier. Applier applies an LTX file as one
// ordinary SQLite write transaction that pagefs opens through its own mount
// (the FUSE layer lets pagefs's own process write on a replica), writing
// pages with the sqlite_dbpage virtual table, so SQLite's locking and WAL
// give the replica's readers their isolation. The mount captures the
// transaction into the replica's own chain, and the Applier checks that the
// replica's position then equals the primary's for that TXID. A snapshot of
// a database the replica does not have is written as a new file through the
// mount. Lag records, per database, the time from a commit's capture on the
// primary to its visibility on the replica.
//
// # Caveats
//
// SQLite rewrites page 1's change counter and version number whenever a
// transaction writes page 1. In WAL mode mount.DB.CommitWAL puts the
// primary's bytes back before capture; in rollback-journal modes the
// replica stays exact only while its change counter follows the primary's
// (each rollback transaction increments it) and the primary's writers use
// the same SQLite version as pagefs. A replica that cannot reproduce a
// transaction logs the mismatch and resyncs from a snapshot.
//
// A page-size change on the primary (VACUUM with a new page_size) cannot
// be applied to an existing database through SQLite: the replica reports
// it and keeps serving the old image.
//
// The Applier's connections must be closed (Applier.Close) before the mount
// is unmounted, or the unmount waits on pagefs's own open files.
package peer
