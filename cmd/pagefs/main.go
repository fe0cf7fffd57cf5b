// Command pagefs is a FUSE filesystem for SQLite that captures every
// committed transaction into LTX files and ships them to object storage and
// peer nodes. Run "pagefs --help" for the list of commands.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "pagefs: %v\n", err)
		os.Exit(1)
	}
}

// newApp builds the command tree. Each command lives in its own file and is
// registered here, so a test can run the CLI in-process.
func newApp() *cli.App {
	return &cli.App{
		Name:  "pagefs",
		Usage: "a FUSE filesystem that replicates SQLite databases page by page",
		Description: "pagefs sits under an application's SQLite files. Mount it, point the database path\n" +
			"into the mount, and every committed transaction is captured into an LTX file.",
		Version:              Version,
		HideVersion:          true,
		EnableBashCompletion: true,
		Commands:             commands(),
	}
}
