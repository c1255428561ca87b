package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// TestReloadOnSIGHUP: SIGHUP applies a new configuration; a bad one keeps
// the running configuration and the log says why. Not parallel: it signals
// the test process.
func TestReloadOnSIGHUP(t *testing.T) {
	p := xapitest.NewTestPool(t, xapitest.Options{AuthFailureDelay: -1, PoolName: "lab", Password: poolPassword})
	p.AddDemoVMs()
	dir := t.TempDir()
	aliceKey, aliceLine := newUserKey(t)
	c := labConfig(t, p, dir)
	c.Listen = "127.0.0.1:0"
	c.Users = c.Users[:1]
	c.Users[0].Keys = []string{aliceLine}
	path := writeConfig(t, dir, c)
	addr, log, _ := startServe(t, path)
	hostKey := hostPublicKey(t, c.HostKeyFile)
	list := func() string {
		return strings.Join(listNames(sshRun(t, addr, "alice", aliceKey, hostKey, "list")), " ")
	}
	if got := list(); got != "build-1 db-1 web-1 web-2" {
		t.Fatalf("before the reload alice sees %q", got)
	}

	c.Users[0].Allow = rulesOf("web-*")
	writeConfig(t, dir, c)
	// logrotate's default: the log is renamed, then the bastion is told.
	if err := os.Rename(c.AuditLog, c.AuditLog+".1"); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	waitFor(t, log, regexp.MustCompile(`(reload: configuration reloaded)`), nil)
	if got := list(); got != "web-1 web-2" {
		t.Errorf("after the reload alice sees %q, want web-1 web-2", got)
	}
	if data, err := os.ReadFile(c.AuditLog); err != nil || !strings.Contains(string(data), `"event":"auth.success"`) {
		t.Errorf("after rotation and SIGHUP, the audit log at its path has %q (%v), want the new login", data, err)
	}

	// Renaming (or removing) a running pool needs a restart: the pool is
	// still served, and the rules that name it would be gone.
	renamed := c
	renamed.Users = slices.Clone(c.Users)
	renamed.Pools = slices.Clone(c.Pools)
	renamed.Pools[0].Name = "lab2"
	renamed.Ciphers = []string{"aes128-gcm@openssh.com"}
	writeConfig(t, dir, renamed)
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	waitFor(t, log, regexp.MustCompile(`(reload failed; the running configuration stays.*pool \\"lab\\" is no longer in the file)`), nil)
	if got := list(); got != "web-1 web-2" {
		t.Errorf("after a refused reload alice sees %q, want the running configuration's web-1 web-2", got)
	}
	renamed.Pools = c.Pools
	renamed.Users[0].Allow = rulesOf("web-1")
	writeConfig(t, dir, renamed)
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	waitFor(t, log, regexp.MustCompile(`(?s)(reload: these changes take effect at the next restart.*changed=ciphers.*reload: configuration reloaded)`), nil)
	if got := list(); got != "web-1" {
		t.Errorf("after the reload alice sees %q, want web-1", got)
	}

	data, _ := yaml.Marshal(renamed)
	writeFile(t, dir, "xenbastion.yaml", string(data)+"bogus: 1\n")
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	waitFor(t, log, regexp.MustCompile(`(reload failed; the running configuration stays.*unknown key)`), nil)
	if got := list(); got != "web-1" {
		t.Errorf("after a failed reload alice sees %q, want the running configuration's web-1", got)
	}
}

// TestReloadDuringStartup: a SIGHUP while serve is still starting (here
// logging in to a pool that never answers; config management may reload
// right after a restart) is taken as a reload, not as the signal's default
// action, which ends the process. It runs serve in a child process.
func TestReloadDuringStartup(t *testing.T) {
	if path := os.Getenv("XENBASTION_TEST_HUP_CONFIG"); path != "" {
		os.Exit(run([]string{"serve", "--config", path}, io.Discard, os.Stderr))
	}
	dir := t.TempDir()
	// A "pool" that accepts and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	sshAddr := l.Addr().String()
	l.Close()
	_, line := newUserKey(t)
	c := Config{
		Listen: sshAddr, HostKeyFile: filepath.Join(dir, "host_key"), AuditLog: filepath.Join(dir, "audit.jsonl"),
		Pools: []PoolConfig{{Name: "lab", URL: "https://" + hang.Addr().String(), Username: "root",
			PasswordFile: writeFile(t, dir, "pw", "x\n"), TLS: TLSConfig{InsecureSkipVerify: true}}},
		Users: []UserConfig{{Name: "alice", Keys: []string{line}, Allow: rulesOf("*")}},
	}
	path := writeConfig(t, dir, c)
	cmd := exec.Command(os.Args[0], "-test.run=^TestReloadDuringStartup$")
	cmd.Env = append(os.Environ(), "XENBASTION_TEST_HUP_CONFIG="+path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", sshAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bastion never listened")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGHUP) // kill -HUP: reload
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Errorf("the bastion exited on SIGHUP during start-up: %v", err)
	case <-time.After(2 * time.Second):
		// still running: the reload was taken as a reload
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
	}
}
