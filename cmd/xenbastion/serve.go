package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
)

// openPools makes a XAPI client for each configured pool.
func (c *Config) openPools(log *slog.Logger) ([]*xapi.Client, error) {
	clients := make([]*xapi.Client, 0, len(c.Pools))
	for _, p := range c.Pools {
		if p.TLS.InsecureSkipVerify {
			log.Warn("TLS certificates of this pool are NOT verified (insecure_skip_verify); pin them with tls.fingerprints", "pool", p.Name)
		}
		pw, err := p.password()
		if err != nil {
			return nil, err
		}
		cl, err := xapi.NewClient(xapi.Config{
			Name: p.Name, URL: p.URL, Username: p.Username, Password: pw,
			Trust: p.trust(c.knownHosts()), Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		clients = append(clients, cl)
	}
	return clients, nil
}

func asPools(clients []*xapi.Client) []bastion.Pool {
	pools := make([]bastion.Pool, len(clients))
	for i, c := range clients {
		pools[i] = c
	}
	return pools
}

// loginAll logs in to every pool at once, logging each outcome, and
// returns when all are done or after wait. A pool that is down at start-up
// is not fatal (the bastion logs in again when asked), and one that hangs
// must not hold up the others' users: its login goes on meanwhile, and a
// console open of that pool waits for it.
func loginAll(ctx context.Context, log *slog.Logger, clients []*xapi.Client, wait time.Duration) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := c.Login(ctx); err != nil {
				log.Error("pool login failed; will retry on demand", "pool", c.Name(), "err", err)
			} else {
				log.Info("pool ready", "pool", c.Name(), "master", c.Master())
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(wait):
		log.Warn("serving before every pool has answered its login", "waited", wait)
	}
}

// loginWait is how long serve waits for the pools' logins before it
// serves anyway.
const loginWait = 5 * time.Second

// serve runs the bastion configured in the file at path until ctx is done,
// then shuts it down.
func serve(ctx context.Context, path string, stderr io.Writer) error {
	// SIGHUP is taken from the start: its default action would end the
	// process during start-up (pool logins can take a while), and a
	// reload asked for then is done once the server runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := newLogger(stderr)
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	policy, err := cfg.policy(log)
	if err != nil {
		return err
	}
	hostKey, created, err := keys.LoadOrCreateHostKey(cfg.HostKeyFile)
	if err != nil {
		return err
	}
	if created {
		log.Info("created SSH host key", "file", cfg.HostKeyFile, "fingerprint", keys.Fingerprint(hostKey.PublicKey()))
	}
	audit, err := bastion.OpenAuditLog(cfg.AuditLog)
	if err != nil {
		return err
	}
	defer audit.Close()
	clients, err := cfg.openPools(log)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.DebugListen != "" {
		if err := serveDebug(cfg.DebugListen, log); err != nil {
			return err
		}
	}
	loginAll(ctx, log, clients, loginWait)
	srv := &bastion.Server{
		HostKey: hostKey, Pools: asPools(clients), Policy: policy,
		Audit: audit, Logger: log, Version: buildVersion(),
		Limits: cfg.Limits.limits(), Ciphers: cfg.Ciphers,
	}
	stopReload := reloadOnHangup(log, hup, path, cfg, srv)
	defer stopReload()
	log.Info("xenbastion listening", "addr", l.Addr().String(), "host_key", keys.Fingerprint(hostKey.PublicKey()), "version", buildVersion())
	err = serveUntilDone(ctx, log, srv, l)
	for _, c := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Close(ctx)
		cancel()
	}
	if errors.Is(err, bastion.ErrServerClosed) {
		return nil
	}
	return err
}

// reloadOnHangup re-reads the configuration and every key file on each
// SIGHUP from hup and gives the server the new policy. It reopens the
// audit log first, for log rotation. A file that does not load, or drops a
// running pool, keeps the running configuration, and the log says why.
// The other settings need a restart (restartOnly); the log names those
// that changed.
func reloadOnHangup(log *slog.Logger, hup <-chan os.Signal, path string, running *Config, srv *bastion.Server) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-hup:
				if err := srv.Audit.Reopen(); err != nil {
					// Its text says whether records still go to the old file.
					log.Error("reload: reopening the audit log", "err", err)
				}
				reload(log, path, running, srv)
			case <-done:
				return
			}
		}
	}()
	// stop waits for a reload under way: the audit log is closed next.
	return func() { close(done); <-exited }
}

func reload(log *slog.Logger, path string, running *Config, srv *bastion.Server) {
	cfg, err := loadConfig(path)
	if err == nil {
		err = keepsPools(running, cfg)
	}
	if err == nil {
		var policy *bastion.Policy
		if policy, err = cfg.policy(log); err == nil {
			if changed := restartOnly(running, cfg); len(changed) > 0 {
				log.Warn("reload: these changes take effect at the next restart", "changed", strings.Join(changed, ", "))
			}
			srv.SetPolicy(policy)
			log.Info("reload: configuration reloaded", "users", len(cfg.Users), "groups", len(cfg.Groups))
			return
		}
	}
	log.Error("reload failed; the running configuration stays", "err", err)
}

// keepsPools refuses a new configuration that drops (or renames) a pool
// the server runs: the pool is served until a restart, and the rules
// that name it, a deny among them, would be gone meanwhile (a rule must
// name a configured pool).
func keepsPools(running, cfg *Config) error {
	for _, p := range running.Pools {
		if !slices.ContainsFunc(cfg.Pools, func(q PoolConfig) bool { return q.Name == p.Name }) {
			return fmt.Errorf("pool %q is no longer in the file, but it is served until a restart: removing or renaming a pool needs a restart", p.Name)
		}
	}
	return nil
}

// restartOnly names the settings that cfg changes from running and that
// only a restart applies: all but the users, groups and key files.
func restartOnly(running, cfg *Config) []string {
	var changed []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"listen", cfg.Listen == running.Listen},
		{"host_key_file", cfg.HostKeyFile == running.HostKeyFile},
		{"audit_log", cfg.AuditLog == running.AuditLog},
		{"debug_listen", cfg.DebugListen == running.DebugListen},
		{"pools", reflect.DeepEqual(cfg.Pools, running.Pools)},
		{"limits", cfg.Limits == running.Limits},
		{"xapi_known_hosts", cfg.XAPIKnownHosts == running.XAPIKnownHosts},
		{"ciphers", slices.Equal(cfg.Ciphers, running.Ciphers)},
	} {
		if !f.same {
			changed = append(changed, f.name)
		}
	}
	return changed
}
