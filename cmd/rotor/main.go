// Command rotor is the Rotor server and command line. See package cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"rotor.sh/rotor/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rotor: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	return cli.Run(ctx, args, os.Stdout, os.Stderr)
}
