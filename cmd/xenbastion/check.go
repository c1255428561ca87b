package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/xapi"
)

// check validates a configuration, logs in to each pool, and prints what
// each user may open. It fails if any pool cannot be reached.
func check(path, user string, stdout, stderr io.Writer) error {
	log := newLogger(stderr)
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	policy, err := cfg.policy(log)
	if err != nil {
		return err
	}
	if user != "" && policy.User(user) == nil {
		return fmt.Errorf("--user %s: no such user in %s", user, path)
	}
	clients, err := cfg.openPools(log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: configuration OK: %d pools, %d users\n", path, len(cfg.Pools), len(cfg.Users))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Pools that fail are tried once: a wrong password costs xapi's 5 s
	// delay per attempt and may count towards a directory lock-out.
	var up []*xapi.Client
	var down []string
	for _, c := range clients {
		if err := c.Login(ctx); err != nil {
			fmt.Fprintf(stdout, "pool %s: FAILED: %v\n", c.Name(), err)
			var fe *xapi.FingerprintError
			if errors.As(err, &fe) {
				fmt.Fprintf(stdout, "  host %s presents certificate %s\n", fe.Host, fe.Fingerprint)
			}
			down = append(down, c.Name())
			continue
		}
		fmt.Fprintf(stdout, "pool %s: logged in, master %s\n", c.Name(), c.Master())
		// Each host's certificate, so that an admin can pin them
		// (tls.fingerprints) instead of trusting them on first use.
		hosts, err := c.HostFingerprints(ctx)
		if err != nil {
			fmt.Fprintf(stdout, "  hosts: %v\n", err)
		}
		for _, h := range hosts {
			if h.Err != nil {
				fmt.Fprintf(stdout, "  host %s %s: %v\n", h.Name, h.Address, h.Err)
				continue
			}
			fmt.Fprintf(stdout, "  host %s %s %s\n", h.Name, h.Address, h.Fingerprint)
		}
		defer c.Close(context.Background())
		up = append(up, c)
	}
	srv := &bastion.Server{Pools: asPools(up), Policy: policy}
	for _, u := range cfg.Users {
		if user != "" && u.Name != user {
			continue
		}
		entries, _ := srv.VisibleVMs(ctx, u.Name)
		switch {
		case len(entries) > 0:
			fmt.Fprintf(stdout, "\nuser %s may open:\n", u.Name)
			bastion.WriteVMTable(stdout, entries, user != "")
		case len(down) > 0:
			fmt.Fprintf(stdout, "\nuser %s may open: nothing in the pools reached\n", u.Name)
		default:
			fmt.Fprintf(stdout, "\nuser %s may open: nothing\n", u.Name)
		}
		if len(down) > 0 {
			fmt.Fprintf(stdout, "  (not checked: pool %s could not be reached)\n", strings.Join(down, ", "))
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("%d of %d pools could not be reached", len(down), len(clients))
	}
	return nil
}
