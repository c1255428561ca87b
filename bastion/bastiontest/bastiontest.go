// Package bastiontest starts a bastion on 127.0.0.1:0 in front of a
// simulated XAPI pool, for tests: one call, cleaned up with the test, like
// net/http/httptest. Users get fresh ed25519 keys written where the
// OpenSSH client can use them, and a known_hosts file pins the bastion.
package bastiontest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// User is a test user and what they may open.
type User struct {
	Name string
	// Allow and Deny are patterns of rules for every console; AllowRules
	// adds rules limited to some consoles.
	Allow, Deny []string
	AllowRules  []bastion.Rule
	// KeyOptions are authorized_keys options for the user's key, e.g.
	// `from="10.0.0.0/8"`.
	KeyOptions string
	// NoKey gives the user no authorized key (certificates only); a key
	// pair is still made, for certificates to certify.
	NoKey bool
}

func rules(patterns []string) []bastion.Rule {
	rs := make([]bastion.Rule, len(patterns))
	for i, p := range patterns {
		rs[i] = bastion.Rule{Pattern: p}
	}
	return rs
}

// Options configures Start. The zero Options gives user "alice" allowed
// everything, a pool named "lab" with the demo VMs, and a server whose
// drain times are short.
type Options struct {
	Users  []User
	Groups []bastion.Group
	// PolicyOptions add CAs and revocations to the policy.
	PolicyOptions []bastion.PolicyOption
	// Pool configures the simulated pool; its failed-login delay defaults
	// to none.
	Pool xapitest.Options
	// NoDemoVMs leaves the pool without the demo VMs.
	NoDemoVMs bool
	// Trust, if set, returns how the bastion trusts the pool's hosts;
	// nil pins every host's fingerprint.
	Trust func(*xapitest.Pool) xapi.Trust
	// Configure, if set, is called on the server before it starts.
	Configure func(*bastion.Server)
}

// Bastion is a running test bastion.
type Bastion struct {
	Server *bastion.Server
	Sim    *xapitest.Pool
	Client *xapi.Client
	// Addr is the bastion's address, 127.0.0.1:PORT.
	Addr       string
	Port       string
	AuditPath  string
	KnownHosts string
	Dir        string

	signers    map[string]gossh.Signer
	identities map[string]string
	policyOpts []bastion.PolicyOption
	hostKey    gossh.PublicKey
}

// Start starts a simulated pool and a bastion in front of it, and stops
// both when the test ends.
func Start(t testing.TB, opts Options) *Bastion {
	t.Helper()
	if len(opts.Users) == 0 {
		opts.Users = []User{{Name: "alice", Allow: []string{"*"}}}
	}
	if opts.Pool.AuthFailureDelay == 0 {
		opts.Pool.AuthFailureDelay = -1
	}
	if opts.Pool.PoolName == "" {
		opts.Pool.PoolName = "lab"
	}
	logger := testLogger(t) // first: its cleanup must run last
	dir := t.TempDir()
	b := &Bastion{
		Dir:        dir,
		AuditPath:  filepath.Join(dir, "audit.jsonl"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
		signers:    map[string]gossh.Signer{},
		identities: map[string]string{},
	}
	b.Sim = xapitest.NewTestPool(t, opts.Pool)
	if !opts.NoDemoVMs {
		b.Sim.AddDemoVMs()
	}

	for _, u := range opts.Users {
		b.signers[u.Name], b.identities[u.Name] = newUserKey(t, dir, u.Name)
	}
	b.policyOpts = opts.PolicyOptions
	policy := b.NewPolicy(t, opts.Users, opts.Groups)
	hostKey, _, err := keys.LoadOrCreateHostKey(filepath.Join(dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	b.hostKey = hostKey.PublicKey()
	trust := xapi.Trust{Fingerprints: b.Sim.Fingerprints()}
	if opts.Trust != nil {
		trust = opts.Trust(b.Sim)
	}
	b.Client, err = xapi.NewClient(xapi.Config{
		Name: opts.Pool.PoolName, URL: b.Sim.URL(), Username: b.Sim.Username(), Password: b.Sim.Password(),
		Trust: trust, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	audit, err := bastion.OpenAuditLog(b.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	b.Server = &bastion.Server{
		HostKey: hostKey, Pools: []bastion.Pool{b.Client}, Policy: policy, Audit: audit,
		DrainQuiet: 300 * time.Millisecond, DrainMax: 3 * time.Second,
		Logger: logger,
	}
	if opts.Configure != nil {
		opts.Configure(b.Server)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.Addr = l.Addr().String()
	_, b.Port, _ = net.SplitHostPort(b.Addr)
	line := "[127.0.0.1]:" + b.Port + " " + string(gossh.MarshalAuthorizedKey(b.hostKey))
	if err := os.WriteFile(b.KnownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- b.Server.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Server.Shutdown(ctx)
		<-served
		audit.Close()
		b.Client.Close(ctx)
	})
	return b
}

func newUserKey(t testing.TB, dir, name string) (gossh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id_"+name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return signer, path
}

// NewPolicy makes a policy for users (who must be among those Start was
// given, for their keys) and groups, with Options.PolicyOptions and opts,
// e.g. to reload the server with Server.SetPolicy.
func (b *Bastion) NewPolicy(t testing.TB, users []User, groups []bastion.Group, opts ...bastion.PolicyOption) *bastion.Policy {
	t.Helper()
	var us []bastion.User
	for _, u := range users {
		signer := b.signers[u.Name]
		if signer == nil {
			t.Fatalf("bastiontest: user %s has no key", u.Name)
		}
		var aks []keys.AuthorizedKey
		if !u.NoKey {
			line := strings.TrimSpace(u.KeyOptions + " " + string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
			var err error
			if aks, err = keys.ParseAuthorizedKeys([]byte(line), "test"); err != nil {
				t.Fatal(err)
			}
		}
		us = append(us, bastion.User{
			Name: u.Name, Keys: keys.NewKeySet(aks),
			Allow: append(rules(u.Allow), u.AllowRules...), Deny: rules(u.Deny),
		})
	}
	policy, err := bastion.NewPolicy(us, groups, append(b.policyOpts, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return policy
}

// Signer returns the user's private key, for x/crypto/ssh clients.
func (b *Bastion) Signer(user string) gossh.Signer { return b.signers[user] }

// Identity returns the path of the user's private key file.
func (b *Bastion) Identity(user string) string { return b.identities[user] }

// HostKey returns the bastion's public host key.
func (b *Bastion) HostKey() gossh.PublicKey { return b.hostKey }

// SSHArgs returns the arguments of an OpenSSH client command that logs in
// as user with the user's key, checking the host key against a pinned
// known_hosts and reading no user configuration; extra goes before the
// destination, and command after it.
func (b *Bastion) SSHArgs(user string, extra []string, command ...string) []string {
	args := []string{
		"-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + b.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "ConnectTimeout=10",
		"-p", b.Port,
	}
	if id := b.identities[user]; id != "" {
		args = append(args, "-i", id)
	}
	args = append(args, extra...)
	args = append(args, user+"@127.0.0.1")
	return append(args, command...)
}

// SSH returns an OpenSSH client command; see SSHArgs.
func (b *Bastion) SSH(ctx context.Context, user string, extra []string, command ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ssh", b.SSHArgs(user, extra, command...)...)
}

// Dial connects an x/crypto/ssh client as user.
func (b *Bastion) Dial(t testing.TB, user string) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", b.Addr, &gossh.ClientConfig{
		User:            user,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(b.signers[user])},
		HostKeyCallback: gossh.FixedHostKey(b.hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh dial as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Events reads the audit log's complete lines. A line without its newline
// is one the bastion is still appending: a read(2) may see part of a
// write(2) to the same file, and that part is left for the next call.
func (b *Bastion) Events(t testing.TB) []bastion.Event {
	t.Helper()
	data, err := os.ReadFile(b.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var evs []bastion.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var ev bastion.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// WaitEvent waits until the audit log has an event that match accepts, and
// returns it.
func (b *Bastion) WaitEvent(t testing.TB, match func(bastion.Event) bool) bastion.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, ev := range b.Events(t) {
			if match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching audit event; log:\n%s", mustRead(b.AuditPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustRead(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
