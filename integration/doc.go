// Package integration holds end-to-end tests: a real FUSE mount, real
// SQLite (modernc.org/sqlite and the sqlite3 shell), and, for backup and
// replication, real MinIO and etcd. The tests need root and /dev/fuse; with
// CI=true a missing FUSE fails the run instead of skipping it.
package integration
