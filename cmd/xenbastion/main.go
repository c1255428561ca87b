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
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"
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
  xenbastion check --config FILE   validate FILE, log in to each pool, print what each user may open
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
		err = serve(*config, stderr)
	case "check":
		config := fs.String("config", "", "configuration file (YAML)")
		if fs.Parse(args) != nil || *config == "" || fs.NArg() > 0 {
			fmt.Fprint(stderr, "usage: xenbastion check --config FILE\n")
			return 2
		}
		err = check(*config, stdout, stderr)
	case "demo":
		listen := fs.String("listen", "127.0.0.1:2222", "SSH listen address")
		dir := fs.String("dir", "", "directory for the demo's keys and audit log (default: the user cache directory)")
		if fs.Parse(args) != nil || fs.NArg() > 0 {
			return 2
		}
		err = demo(*listen, *dir, stdout, stderr)
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

// serveUntilSignal serves until SIGINT or SIGTERM, then shuts down: every
// console is ended and recorded before the process exits.
func serveUntilSignal(log *slog.Logger, serve func() error, shutdown func(context.Context) error) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	<-errc
	return nil
}
