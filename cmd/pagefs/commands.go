package main

import "github.com/urfave/cli/v2"

// commands lists every subcommand pagefs offers. Only commands that work are
// listed.
func commands() []*cli.Command {
	return []*cli.Command{
		mountCommand(),
		ltxCommand(),
		restoreCommand(),
		verifyCommand(),
		statusCommand(),
		versionCommand(),
		fenceCommand(),
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the pagefs version",
		Action: func(c *cli.Context) error {
			_, err := c.App.Writer.Write([]byte("pagefs " + Version + "\n"))
			return err
		},
	}
}
