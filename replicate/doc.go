// Package replicate ships LTX files out of a pagefs mount: to backup
// destinations (a folder or an S3 bucket) and back in again by restore.
// Peer streaming and leases live in the subpackages peer and lease.
//
// # Basics
//
// Client is the one small interface every backend implements (list the
// files of a level, open one, write one, delete some); the backends are the
// subpackages file and s3. A Destination is one backup URL, parsed by
// ParseURL and shared with Litestream: file:///abs/dir, or
// s3://bucket/prefix with the query parameters Litestream 0.5 also reads
// (endpoint, region, forcePathStyle, skipVerify). It holds each database
// under its name, in Litestream 0.5's layouts:
//
//	file://:  <root>/<db>/ltx/<level>/<min>-<max>.ltx   (level in decimal)
//	s3://:    <prefix>/<db>/<level %04x>/<min>-<max>.ltx
//
// Level 0 holds one file per captured transaction, or several consecutive
// ones merged under load; levels 1 to 8 hold compactions; level 9
// (SnapshotLevel) holds snapshots, files that start at TXID 1.
//
// Backup is the upload loop. The mount's OnCommit hook feeds it
// (Backup.OnCommit only signals); per database and destination a goroutine
// uploads the level-0 files in order, and another compacts level k-1 into
// level k at each level's interval, writes snapshots and applies
// retention, working from file lists kept in memory, so that steady state
// lists nothing and an idle database costs no request. Backup.RetentionFloor
// is the mount's RetentionFloor: the newest TXID every destination holds.
//
// Plan picks the fewest files that restore a TXID or a point in time;
// Restore applies them to a new file, checking every checksum; Verify
// checks a whole backup; Reconcile brings a data directory in line with its
// destinations before a mount serves it (restore, catch up, or refuse a
// diverged history).
//
// # Caveats
//
// The position each destination holds is kept on disk beside the chain
// (<data>/<db>/backup-<hash of the URL>.pos), but a start still lists each
// level of each destination once, to learn what compaction and retention
// have to work with and to check that the destination holds a prefix of the
// local chain. A destination that holds another history is left alone
// ("diverged") until an operator chooses a side.
//
// Litestream 0.5 writes files without database checksums
// (HeaderFlagNoChecksum). Restore, Verify and Reconcile accept them, checking
// file checksums only; a mount restored from such a bucket starts its own
// chain from a snapshot with checksums. Compaction merges only files that agree
// on the flag: where a bucket passes from Litestream's files to pagefs's,
// files are carried up one at a time.
//
// A Client is per database; Destination.Client makes one. Credentials never
// appear in URLs (ParseURL refuses them) nor in errors.
package replicate
