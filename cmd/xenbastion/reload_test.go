package main

import (
	"regexp"
	"strings"
	"syscall"
	"testing"

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
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	waitFor(t, log, regexp.MustCompile(`(reload: configuration reloaded)`), nil)
	if got := list(); got != "web-1 web-2" {
		t.Errorf("after the reload alice sees %q, want web-1 web-2", got)
	}

	data, _ := yaml.Marshal(c)
	writeFile(t, dir, "xenbastion.yaml", string(data)+"bogus: 1\n")
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	waitFor(t, log, regexp.MustCompile(`(reload failed; the running configuration stays.*unknown key)`), nil)
	if got := list(); got != "web-1 web-2" {
		t.Errorf("after a failed reload alice sees %q, want the running configuration's web-1 web-2", got)
	}
}
