package bastion_test

import (
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion/bastiontest"
)

// TestRefused checks that what a console bastion has no use for is refused:
// subsystems, agent and X11 forwarding, environment variables, remote
// forwards and other channel types.
func TestRefused(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	c := b.Dial(t, "alice")

	newSession := func(t *testing.T) *gossh.Session {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	t.Run("sftp subsystem", func(t *testing.T) {
		if err := newSession(t).RequestSubsystem("sftp"); err == nil {
			t.Error("sftp accepted")
		}
	})
	t.Run("agent forwarding", func(t *testing.T) {
		if ok, _ := newSession(t).SendRequest("auth-agent-req@openssh.com", true, nil); ok {
			t.Error("agent forwarding accepted")
		}
	})
	t.Run("x11 forwarding", func(t *testing.T) {
		payload := gossh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00", 0})
		if ok, _ := newSession(t).SendRequest("x11-req", true, payload); ok {
			t.Error("x11 forwarding accepted")
		}
	})
	t.Run("env", func(t *testing.T) {
		if err := newSession(t).Setenv("LD_PRELOAD", "/tmp/x.so"); err == nil {
			t.Error("env accepted")
		}
	})
	t.Run("remote forward", func(t *testing.T) {
		if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
			t.Error("tcpip-forward accepted")
		}
	})
	t.Run("other channel types", func(t *testing.T) {
		for _, typ := range []string{"x11", "forwarded-tcpip", "direct-streamlocal@openssh.com", "auth-agent@openssh.com"} {
			if ch, _, err := c.OpenChannel(typ, nil); err == nil {
				ch.Close()
				t.Errorf("%s channel accepted", typ)
			}
		}
	})
	t.Run("openssh -R", func(t *testing.T) {
		r := runSSH(t, b, "alice", "", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"})
		if r.code != 255 || !strings.Contains(r.stderr, "remote port forwarding failed") {
			t.Errorf("-R: %+v", r)
		}
	})
	// The connection still works after all that.
	out, err := newSession(t).Output("list")
	if err != nil || !strings.Contains(string(out), "web-1") {
		t.Errorf("list after refusals: %v %q", err, out)
	}
}
