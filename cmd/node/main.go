// Command panda-node is the pandanet daemon and its command-line client.
//
// `panda-node run` starts a node (see docs/node-contract.md for every flag, environment
// variable and YAML key); the other subcommands either work offline on key files (keygen,
// id, version) or talk to a running node through its admin API (status, peers, topics,
// publish, subscribe).
//
// Exit status: 0 success, 1 runtime error, 2 usage or configuration error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pandanet/pandanet/internal/config"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// usageError marks errors caused by how the command was invoked (bad flag, bad config
// value, missing argument): they exit with status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the CLI and maps errors to exit codes.
func execute(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "panda-node: "+err.Error())
	return exitCode(err)
}

func exitCode(err error) int {
	var ue *usageError
	var ce *config.Error
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	// cobra reports an unknown subcommand as a plain error.
	if strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage
	}
	return exitRuntime
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "panda-node",
		Short: "pandanet node: local-first, peer-to-peer topic streams on libp2p and SQLite",
		Long: `panda-node runs a pandanet node (a Go implementation of the p2panda Node) and talks
to a running node through its admin API.

  panda-node run --topics-file topics.txt        start a node
  panda-node keygen --out identity.key           create an identity key file
  panda-node publish --topic chat "hello"        publish through the local node
  panda-node subscribe --topic chat --from start  print a topic's events

Every "run" flag can also be set with an environment variable PANDA_<FLAG> (e.g.
PANDA_DATA_DIR) or a key in the YAML file given by --config; flags win over environment,
environment over YAML.

Exit status: 0 success, 1 runtime error, 2 usage or configuration error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{err: fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(
		newRunCmd(),
		newKeygenCmd(),
		newIDCmd(),
		newVersionCmd(),
		newStatusCmd(),
		newPeersCmd(),
		newTopicsCmd(),
		newPublishCmd(),
		newSubscribeCmd(),
		newAckCmd(),
	)
	return root
}

// exactArgs is cobra.ExactArgs returning a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err: fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())}
		}
		return nil
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the panda-node version",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "panda-node "+version)
			return nil
		},
	}
}
