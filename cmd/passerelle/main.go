// Command passerelle is the integration daemon and its operator commands. main stays thin: read
// the configuration, build the app, run it, stop it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes: 2 is a usage or configuration error, 1 anything else that failed.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError is a mistake in the command line or the configuration.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, args, stdout, stderr)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "passerelle:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailed
}

const usage = `usage: passerelle <command> [arguments]

commands:
  serve                     run the daemon (configuration from PASSERELLE_* variables)
  sandbox                   run the daemon wired to built-in partner simulators (make run)
  check-config              print the effective configuration (secrets masked) and which connectors are on
  dlq list [--all] [--pipeline P]   list dead letters (pending only unless --all)
  dlq retry <id>|--all      re-drive dead letters through their pipeline
  billing run [--period YYYY-MM] [--dry-run] [--force]   build and upload the file of clients to bill
  billing status            uploaded and pending periods
  shopapp create|delete|reactivate|add-prestations|cancel-prestation   provisioning (see shopapp -h)
  stages                    each stage's backlog: messages not yet acknowledged, and how long the oldest waited
  endpoints list            list sink endpoints disabled after a 410 Gone
  endpoints enable <id>     re-enable a disabled endpoint
  config-table              print the README's configuration table
  version                   print the version`

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("%s", usage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, stderr)
	case "sandbox":
		return sandbox(ctx, rest, stdout, stderr)
	case "check-config":
		return checkConfig(ctx, stdout)
	case "dlq":
		return dlq(ctx, rest, stdout)
	case "stages":
		return stages(ctx, rest, stdout)
	case "endpoints":
		return endpoints(ctx, rest, stdout)
	case "billing":
		return billing(ctx, rest, stdout)
	case "shopapp":
		return shopappCmd(ctx, rest, stdout)
	case "config-table":
		return configTable(stdout)
	case "version":
		fmt.Fprintln(stdout, "passerelle", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return usagef("unknown command %q\n%s", cmd, usage)
	}
}
