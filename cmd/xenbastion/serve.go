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

// loginAll logs in to each pool, logging the outcome; a pool that is down
// at start-up is not fatal: the bastion logs in again when asked.
func loginAll(ctx context.Context, log *slog.Logger, clients []*xapi.Client) {
	for _, c := range clients {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := c.Login(ctx); err != nil {
			log.Error("pool login failed; will retry on demand", "pool", c.Name(), "err", err)
		} else {
			log.Info("pool ready", "pool", c.Name(), "master", c.Master())
		}
		cancel()
	}
}

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
	loginAll(ctx, log, clients)
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
// SIGHUP from hup and gives the server the new policy. A file that does
// not load keeps the running configuration, and the log says why. Changes
// to pools, limits, the listen address or the host key need a restart; the
// log says so.
func reloadOnHangup(log *slog.Logger, hup <-chan os.Signal, path string, running *Config, srv *bastion.Server) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				reload(log, path, running, srv)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

func reload(log *slog.Logger, path string, running *Config, srv *bastion.Server) {
	cfg, err := loadConfig(path)
	if err == nil {
		var policy *bastion.Policy
		if policy, err = cfg.policy(log); err == nil {
			if !reflect.DeepEqual(cfg.Pools, running.Pools) || cfg.Limits != running.Limits ||
				cfg.Listen != running.Listen || cfg.HostKeyFile != running.HostKeyFile || cfg.AuditLog != running.AuditLog {
				log.Warn("reload: changes to pools, limits, listen, host_key_file or audit_log take effect at the next restart")
			}
			srv.SetPolicy(policy)
			log.Info("reload: configuration reloaded", "users", len(cfg.Users), "groups", len(cfg.Groups))
			return
		}
	}
	log.Error("reload failed; the running configuration stays", "err", err)
}
