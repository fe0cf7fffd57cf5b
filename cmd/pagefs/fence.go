package main

import (
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pagefs/pagefs/replicate/fence"
)

// fenceCommand is the hidden child that `pagefs mount --lease etcd` runs to
// hold SQLite's WAL write lock against the application's connections once
// the lease lapses (see package fence).
func fenceCommand() *cli.Command {
	return &cli.Command{
		Name:   "fence",
		Usage:  "internal: hold the lease fence for pagefs mount (reads commands on stdin)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			// The fence runs in its own process group, out of a terminal's
			// reach; a signal sent to it by hand must not drop the fence
			// either: it ends when pagefs closes the pipe.
			signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			if err := fence.Serve(os.Stdin, os.Stdout); err != nil {
				return cli.Exit("pagefs fence: "+err.Error(), 1)
			}
			return nil
		},
	}
}

// startFence runs the fence process of a mount at mountpoint, or returns
// nil when the node's role does not come from a lease with a deadline.
func startFence(r ReplicationConfig, log *slog.Logger) *fence.Client {
	if r.Lease != "etcd" {
		return nil
	}
	// /proc/self/exe is the running binary even after an upgrade replaced
	// the file.
	return fence.Start([]string{"/proc/self/exe", "fence"}, log)
}

// walWritersHook is the mount's OnWALWriters: the fence covers the -shm of
// every database whose -wal the application holds open for writing.
func walWritersHook(fc *fence.Client, mountpoint string) func(db string, open bool) {
	if fc == nil {
		return nil
	}
	return func(db string, open bool) {
		shm := filepath.Join(mountpoint, filepath.FromSlash(db)) + "-shm"
		if open {
			fc.Track(shm)
		} else {
			fc.Untrack(shm)
		}
	}
}
