package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
)

// check validates a configuration, logs in to each pool, and prints what
// each user may open. It fails if any pool cannot be reached.
func check(path string, stdout, stderr io.Writer) error {
	log := newLogger(stderr)
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	policy, err := cfg.policy()
	if err != nil {
		return err
	}
	clients, err := cfg.openPools(log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: configuration OK: %d pools, %d users\n", path, len(cfg.Pools), len(cfg.Users))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failed := 0
	for _, c := range clients {
		if err := c.Login(ctx); err != nil {
			fmt.Fprintf(stdout, "pool %s: FAILED: %v\n", c.Name(), err)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "pool %s: logged in, master %s\n", c.Name(), c.Master())
		defer c.Close(context.Background())
	}
	srv := &bastion.Server{Pools: asPools(clients), Policy: policy}
	for _, u := range cfg.Users {
		entries, _ := srv.VisibleVMs(ctx, u.Name)
		if len(entries) == 0 {
			fmt.Fprintf(stdout, "\nuser %s may open: nothing\n", u.Name)
			continue
		}
		fmt.Fprintf(stdout, "\nuser %s may open:\n", u.Name)
		bastion.WriteVMTable(stdout, entries)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d pools could not be reached", failed, len(clients))
	}
	return nil
}
