package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pagefs/pagefs/fuse"
	"github.com/pagefs/pagefs/mount"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount pagefs and capture every SQLite transaction under it",
		ArgsUsage: "MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "data directory"},
			&cli.BoolFlag{Name: "debug"},
		},
		Action: runMount,
	}
}

func runMount(c *cli.Context) error {
	mp := c.Args().First()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := mount.Open(mount.Config{DataDir: c.String("data"), Logger: log})
	if err != nil {
		return err
	}
	srv, err := fuse.Mount(mp, store, fuse.Options{Logger: log, Debug: c.Bool("debug")})
	if err != nil {
		store.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	for i := 0; ; i++ {
		if err = srv.Unmount(); err == nil || i > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.Join(err, store.Close())
}
