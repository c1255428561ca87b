// Command xenbastion is an SSH bastion for the consoles of XenServer and
// XCP-ng VMs. See README.md.
//
//	xenbastion serve --config FILE   run the bastion
//	xenbastion check --config FILE   check a configuration against the pools
//	xenbastion demo                  run on a built-in simulated pool
//	xenbastion version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `usage:
  xenbastion serve --config FILE   run the bastion
  xenbastion check --config FILE [--user NAME]
                                   validate FILE, log in to each pool, print what each user
                                   may open (with --user: and which rule allows it)
  xenbastion demo [--listen ADDR]  run on a built-in simulated pool
  xenbastion version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch cmd {
	case "serve":
		config := fs.String("config", "", "configuration file (YAML)")
		if fs.Parse(args) != nil || *config == "" || fs.NArg() > 0 {
			fmt.Fprint(stderr, "usage: xenbastion serve --config FILE\n")
			return 2
		}
		ctx, stop := signalContext()
		defer stop()
		err = serve(ctx, *config, stderr)
	case "check":
		config := fs.String("config", "", "configuration file (YAML)")
		user := fs.String("user", "", "show only this user, with the rule that allows each console")
		if fs.Parse(args) != nil || *config == "" || fs.NArg() > 0 {
			fmt.Fprint(stderr, "usage: xenbastion check --config FILE [--user NAME]\n")
			return 2
		}
		err = check(*config, *user, stdout, stderr)
	case "demo":
		listen := fs.String("listen", "127.0.0.1:2222", "SSH listen address")
		dir := fs.String("dir", "", "directory for the demo's keys and audit log (default: the user cache directory)")
		if fs.Parse(args) != nil || fs.NArg() > 0 {
			fmt.Fprint(stderr, "usage: xenbastion demo [--listen ADDR] [--dir DIR]\n")
			return 2
		}
		ctx, stop := signalContext()
		defer stop()
		err = demo(ctx, *listen, *dir, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "xenbastion %s\n", buildVersion())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "xenbastion: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "xenbastion: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// signalContext returns a context that is cancelled, with the signal as its
// cause, on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// serveUntilDone serves srv on l until ctx is done (in run, on SIGINT or
// SIGTERM), then shuts down: every console is ended and recorded before it
// returns.
func serveUntilDone(ctx context.Context, log *slog.Logger, srv *bastion.Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx).Error())
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	<-errc
	return nil
}
