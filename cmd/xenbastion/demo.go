package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// demo runs the bastion on a built-in simulated pool, admitting the running
// user with their own SSH keys (or a key pair it makes), until ctx is done
// (in run, on Ctrl-C).
func demo(ctx context.Context, listen, dir string, stdout, stderr io.Writer) error {
	log := newLogger(stderr)
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir = filepath.Join(cache, "xenbastion-demo")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	name := currentUser()
	userKeys, identity, err := demoKeys(dir)
	if err != nil {
		return err
	}
	policy, err := bastion.NewPolicy([]bastion.User{{Name: name, Keys: keys.NewKeySet(userKeys), Allow: []bastion.Rule{{Pattern: "*"}}}}, nil)
	if err != nil {
		return err
	}
	hostKey, _, err := keys.LoadOrCreateHostKey(filepath.Join(dir, "ssh_host_ed25519_key"))
	if err != nil {
		return err
	}
	auditPath := filepath.Join(dir, "audit.jsonl")
	audit, err := bastion.OpenAuditLog(auditPath)
	if err != nil {
		return err
	}
	defer audit.Close()

	sim, err := xapitest.DemoPool(xapitest.Options{PoolName: "demo"})
	if err != nil {
		return fmt.Errorf("simulated pool: %w", err)
	}
	defer sim.Close()
	// The bastion trusts the simulated hosts by their pinned fingerprints,
	// as a production configuration should.
	pool, err := xapi.NewClient(xapi.Config{
		Name: "demo", URL: sim.URL(), Username: sim.Username(), Password: sim.Password(),
		Trust: xapi.Trust{Fingerprints: sim.Fingerprints()}, Logger: log,
	})
	if err != nil {
		return err
	}
	defer pool.Close(context.Background())

	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &bastion.Server{
		HostKey: hostKey, Pools: []bastion.Pool{pool}, Policy: policy,
		Audit: audit, Logger: log, Version: buildVersion(),
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	ssh := "ssh -p " + port
	if identity != "" {
		ssh += " -i " + identity
	}
	dest := name + "@" + host
	fmt.Fprintf(stdout, `xenbastion demo: a simulated XAPI pool %q (%s) and the bastion on %s
user %q, with %d key(s); host key %s
audit log: %s

Try (Ctrl-C here stops the demo):
  %s %s list
  %s -t %s console web-1        # text console; Ctrl-] detaches
  %s -N -L 5900:web-1:5900 %s   # then point a VNC client at localhost:5900
  %s %s console build-1         # refused: the VM is halted
`, "demo", sim.URL(), l.Addr(), name, len(userKeys), keys.Fingerprint(hostKey.PublicKey()), auditPath,
		ssh, dest, ssh, dest, ssh, dest, ssh, dest)
	err = serveUntilDone(ctx, log, srv, l)
	if errors.Is(err, bastion.ErrServerClosed) {
		return nil
	}
	return err
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "demo"
}

// defaultIdentities are the key files in ~/.ssh that ssh tries without -i.
var defaultIdentities = []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa"}

// demoKeys returns the keys in ~/.ssh/*.pub and ~/.ssh/authorized_keys, and
// the private key that ssh needs with -i when none of those keys has a
// file name that ssh tries by itself (e.g. only ~/.ssh/work.pub). If there
// are none, it makes a key pair in dir (once) and returns its public key
// and the private key's path.
func demoKeys(dir string) (ks []keys.AuthorizedKey, identity string, err error) {
	if home, err := os.UserHomeDir(); err == nil {
		files, _ := filepath.Glob(filepath.Join(home, ".ssh", "*.pub"))
		files = append(files, filepath.Join(home, ".ssh", "authorized_keys"))
		var named []string // private keys with names ssh does not try
		tried := false     // a key ssh tries by itself
		for _, f := range files {
			found, err := keys.LoadAuthorizedKeysFile(f)
			if err != nil {
				continue // a missing or odd file is no reason to stop a demo
			}
			for _, k := range found {
				if len(k.Options) == 0 {
					ks = append(ks, k)
				}
			}
			private, isPub := strings.CutSuffix(f, ".pub")
			if !isPub || len(found) == 0 {
				continue
			}
			if _, err := os.Stat(private); err != nil {
				continue // ssh has nothing to sign with (unless an agent does)
			}
			if slices.Contains(defaultIdentities, filepath.Base(private)) {
				tried = true
			} else {
				named = append(named, private)
			}
		}
		if len(ks) > 0 {
			if !tried && len(named) > 0 {
				identity = named[0] // the agent may have it too; -i does no harm then
			}
			return ks, identity, nil
		}
	}
	identity = filepath.Join(dir, "id_ed25519")
	if _, err := os.Stat(identity); errors.Is(err, os.ErrNotExist) {
		if err := writeKeyPair(identity); err != nil {
			return nil, "", err
		}
	}
	ks, err = keys.LoadAuthorizedKeysFile(identity + ".pub")
	return ks, identity, err
}

func writeKeyPair(path string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := gossh.MarshalPrivateKey(priv, "xenbastion demo")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	sshPub, err := gossh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	return os.WriteFile(path+".pub", gossh.MarshalAuthorizedKey(sshPub), 0o644)
}
