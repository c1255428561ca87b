package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi/xapitest"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// waitFor polls out until re matches, and returns the first submatch. It
// fails the test if errc reports first or after 10 s.
func waitFor(t *testing.T, out *testtool.SyncBuffer, re *regexp.Regexp, errc <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-errc:
			t.Fatalf("returned %v before %s; output:\n%s", err, re, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no %s after 10 s; output:\n%s", re, out)
	return ""
}

var listeningRE = regexp.MustCompile(`msg="xenbastion listening" addr=(\S+)`)

// startServe runs serve on the configuration at path until the test ends or
// stop is called, and returns the address it listens on and its log.
func startServe(t *testing.T, path string) (addr string, log *testtool.SyncBuffer, stop func() error) {
	t.Helper()
	log = &testtool.SyncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, path, log) }()
	addr = waitFor(t, log, listeningRE, errc)
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(15 * time.Second):
				err = errors.New("serve did not return 15 s after its context was cancelled")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return addr, log, stop
}

// hostPublicKey reads the public half of the private key file at path.
func hostPublicKey(t *testing.T, path string) gossh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return signer.PublicKey()
}

// sshRun runs command on the bastion at addr as user, and returns its
// standard output.
func sshRun(t *testing.T, addr, user string, key gossh.Signer, hostKey gossh.PublicKey, command string) string {
	t.Helper()
	client, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            user,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(key)},
		HostKeyCallback: gossh.FixedHostKey(hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh %s@%s: %v", user, addr, err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	out, err := sess.Output(command)
	if err != nil {
		t.Fatalf("ssh %s@%s %s: %v; stderr %q", user, addr, command, err, &stderr)
	}
	return string(out)
}

// waitServing waits until the SSH server at addr sends its version banner,
// which it does only once it accepts connections.
func waitServing(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	banner, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the SSH banner of %s: %v", addr, err)
	}
	return banner
}

// listNames returns the NAME column of the output of "list".
func listNames(out string) []string {
	var names []string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] != "POOL" {
			names = append(names, f[1])
		}
	}
	return names
}

func TestServe(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{AuthFailureDelay: -1, PoolName: "lab", Password: poolPassword})
	p.AddDemoVMs()
	dir := t.TempDir()
	aliceKey, aliceLine := newUserKey(t)
	bobKey, bobLine := newUserKey(t)
	c := labConfig(t, p, dir)
	c.Listen = "127.0.0.1:0"
	c.HostKeyFile = filepath.Join(dir, "keys", "ssh_host_ed25519_key") // in a directory to create
	c.Users[0].Keys = []string{aliceLine}
	c.Users[1].Keys = []string{bobLine}
	path := writeConfig(t, dir, c)

	addr, log, stop := startServe(t, path)
	fi, err := os.Stat(c.HostKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key file has mode %#o, want 0600", fi.Mode().Perm())
	}
	hostKey := hostPublicKey(t, c.HostKeyFile)
	for _, w := range []string{
		"created SSH host key", `msg="pool ready" pool=lab`,
		"host_key=" + keys.Fingerprint(hostKey),
	} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log does not contain %q:\n%s", w, log)
		}
	}

	tests := []struct {
		name string
		user string
		key  gossh.Signer
		want []string
	}{
		{name: "alice", user: "alice", key: aliceKey, want: []string{"build-1", "db-1", "web-1", "web-2"}},
		{name: "bob", user: "bob", key: bobKey, want: []string{"web-1", "web-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := sshRun(t, addr, tt.user, tt.key, hostKey, "list")
			if got := listNames(out); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("list = %q, want %q; output:\n%s", got, tt.want, out)
			}
		})
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after its context was cancelled", err)
	}
	if !strings.Contains(log.String(), "shutting down") {
		t.Errorf("log does not say it is shutting down:\n%s", log)
	}
	audit, err := os.ReadFile(c.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(audit), `"event":"auth.success"`); n != 2 {
		t.Errorf("audit log has %d auth.success events, want 2:\n%s", n, audit)
	}
	if out := log.String(); strings.Contains(out, poolPassword) {
		t.Errorf("the XAPI password was logged")
	}

	t.Run("restart keeps the host key", func(t *testing.T) {
		_, log, stop := startServe(t, path)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log.String(), "created SSH host key") {
			t.Errorf("the host key was created again:\n%s", log)
		}
		if got := hostPublicKey(t, c.HostKeyFile); !bytes.Equal(got.Marshal(), hostKey.Marshal()) {
			t.Errorf("host key changed from %s to %s", keys.Fingerprint(hostKey), keys.Fingerprint(got))
		}
	})
}

// TestServeStdoutAuditPoolDown serves with the audit log on standard
// output and a pool that is down, which is not fatal at start-up.
func TestServeStdoutAuditPoolDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, line := newUserKey(t)
	path := writeConfig(t, dir, Config{
		Listen: "127.0.0.1:0", HostKeyFile: filepath.Join(dir, "host_key"), AuditLog: "-",
		Pools: []PoolConfig{{
			Name: "down", URL: "https://127.0.0.1:1", Username: "root",
			PasswordFile: writeFile(t, dir, "pw", "x\n"), TLS: TLSConfig{Fingerprints: []string{fp}},
		}},
		Users: []UserConfig{{Name: "alice", Keys: []string{line}, Allow: rulesOf("*")}},
	})
	addr, log, stop := startServe(t, path)
	if banner := waitServing(t, addr); !strings.HasPrefix(banner, "SSH-2.0-xenbastion_") {
		t.Errorf("SSH banner %q, want SSH-2.0-xenbastion_...", banner)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after its context was cancelled", err)
	}
	if !strings.Contains(log.String(), "pool login failed; will retry on demand") {
		t.Errorf("log does not report the failed login:\n%s", log)
	}
}

// TestServeHungPool: a pool that takes the connection and never answers
// does not keep the other pools' users waiting for its login to time out:
// serve serves once the healthy pool is logged in and loginWait has
// passed, while that login goes on.
func TestServeHungPool(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{AuthFailureDelay: -1, PoolName: "lab", Password: poolPassword})
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		hang.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	dir := t.TempDir()
	c := labConfig(t, p, dir)
	c.Listen = "127.0.0.1:0"
	c.Pools = append(c.Pools, PoolConfig{Name: "hung", URL: "https://" + hang.Addr().String(), Username: "root",
		PasswordFile: writeFile(t, dir, "hung.password", "x\n"), TLS: TLSConfig{InsecureSkipVerify: true}})
	addr, log, _ := startServe(t, writeConfig(t, dir, c))
	if banner := waitServing(t, addr); !strings.HasPrefix(banner, "SSH-2.0-xenbastion_") {
		t.Errorf("SSH banner %q", banner)
	}
	out := log.String()
	for _, want := range []string{`msg="pool ready" pool=lab`, "serving before every pool has answered its login"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "pool login failed") {
		t.Errorf("serve waited for the hung pool's login to fail:\n%s", out)
	}
}

// TestServeCancelled cancels serve's context before it starts serving:
// serve must still return.
func TestServeCancelled(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{AuthFailureDelay: -1, PoolName: "lab"})
	dir := t.TempDir()
	c := labConfig(t, p, dir)
	c.Listen = "127.0.0.1:0"
	path := writeConfig(t, dir, c)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errc := make(chan error, 1)
	var log testtool.SyncBuffer
	go func() { errc <- serve(ctx, path, &log) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("serve = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not return with a cancelled context; log:\n%s", &log)
	}
}

// writeHostKey writes a new ed25519 private key to path with mode.
func writeHostKey(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
}

func TestServeStartErrors(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	tests := []struct {
		name     string
		edit     func(t *testing.T, dir string, c *Config)
		want     []string // each in the error
		wantAs   any      // if not nil, a pointer for errors.As
		wantIs   error
		noConfig bool // no configuration file
	}{
		{
			name: "host key readable by others",
			edit: func(t *testing.T, dir string, c *Config) {
				writeHostKey(t, c.HostKeyFile, 0o644)
			},
			want:   []string{"0644", "chmod 600 "},
			wantAs: new(*keys.ModeError),
		},
		{
			name: "host key not a key",
			edit: func(t *testing.T, dir string, c *Config) {
				writeFile(t, dir, filepath.Base(c.HostKeyFile), "not a key\n")
			},
			want: []string{"host key " + filepath.Join("DIR", "host_key")},
		},
		{
			name:     "no configuration file",
			noConfig: true,
			want:     []string{"config: "},
			wantIs:   fs.ErrNotExist,
		},
		{
			name: "bad user key",
			edit: func(t *testing.T, dir string, c *Config) {
				c.Users[0].Keys = []string{"ssh-ed25519 AAAA!!!!"}
			},
			want:   []string{"user alice keys[0]:1: not a valid authorized key"},
			wantAs: new(*keys.ParseError),
		},
		{
			name: "audit log in a missing directory",
			edit: func(t *testing.T, dir string, c *Config) {
				c.AuditLog = filepath.Join(dir, "missing", "audit.jsonl")
			},
			want:   []string{"audit log: ", "missing/audit.jsonl"},
			wantIs: fs.ErrNotExist,
		},
		{
			name: "password_env not set",
			edit: func(t *testing.T, dir string, c *Config) {
				c.Pools[0].PasswordFile = ""
				c.Pools[0].PasswordEnv = "XENBASTION_TEST_UNSET_PASSWORD"
			},
			want: []string{"pool lab: password_env: $XENBASTION_TEST_UNSET_PASSWORD is not set"},
		},
		{
			name: "listen address in use",
			edit: func(t *testing.T, dir string, c *Config) {
				c.Listen = busy.Addr().String()
			},
			want: []string{busy.Addr().String()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, line := newUserKey(t)
			c := Config{
				Listen: "127.0.0.1:0", HostKeyFile: filepath.Join(dir, "host_key"), AuditLog: filepath.Join(dir, "audit.jsonl"),
				Pools: []PoolConfig{{
					Name: "lab", URL: "https://127.0.0.1:1", Username: "root",
					PasswordFile: writeFile(t, dir, "pw", "x\n"), TLS: TLSConfig{Fingerprints: []string{fp}},
				}},
				Users: []UserConfig{{Name: "alice", Keys: []string{line}, Allow: rulesOf("*")}},
			}
			if tt.edit != nil {
				tt.edit(t, dir, &c)
			}
			path := filepath.Join(dir, "xenbastion.yaml")
			if !tt.noConfig {
				path = writeConfig(t, dir, c)
			}
			// Should serve start by mistake, it stops after a while
			// and the test fails for want of an error.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var log testtool.SyncBuffer
			err := serve(ctx, path, &log)
			if err == nil {
				t.Fatalf("serve = nil, want an error; log:\n%s", &log)
			}
			msg := strings.ReplaceAll(err.Error(), dir, "DIR")
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if tt.wantAs != nil && !errors.As(err, tt.wantAs) {
				t.Errorf("error %v is not a %T", err, tt.wantAs)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if strings.Contains(log.String(), "xenbastion listening") {
				t.Errorf("serve listened before failing:\n%s", &log)
			}
		})
	}
}
