// Command passerelle is the integration daemon and its operator commands. main stays thin: the
// command line lives in internal/cli, the daemon in internal/app.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/passerelle/passerelle/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, args, stdout, stderr, version)
}
