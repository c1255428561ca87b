package bastion_test

import (
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/internal/testtool"
)

// TestChannelCloseDuringRelay: a client that closes an attached console's
// session channel, keeping its connection (as OpenSSH's ControlMaster
// does), gets the reason the relay sees, "input ended" or "detached", and
// not "client vanished", which is for a lost connection. Only an open in
// progress is stopped by the close itself (TestHungConnect).
func TestChannelCloseDuringRelay(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	c := b.Dial(t, "alice")
	// next waits for the console.end of a session not seen yet.
	seen := map[string]bool{}
	next := func(t *testing.T) bastion.Event {
		ev := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleEnd && !seen[ev.SessionID] })
		seen[ev.SessionID] = true
		return ev
	}
	// start opens console web-1 in a new session and waits for its first
	// output; it returns the session and its input.
	start := func(t *testing.T, pty bool, ready string) (*gossh.Session, func(string)) {
		t.Helper()
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if pty {
			if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
				t.Fatal(err)
			}
		}
		stdin, err := sess.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out testtool.SyncBuffer
		sess.Stdout, sess.Stderr = &out, &out
		if err := sess.Start("console web-1"); err != nil {
			t.Fatal(err)
		}
		type_ := func(s string) {
			if _, err := stdin.Write([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		if ready == "" {
			type_("hostname\n")
			ready = "web-1\r\n"
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), ready); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in %q", ready, out.String())
			}
		}
		return sess, type_
	}
	for _, tt := range []struct {
		name string
		pty  bool
	}{{"without a terminal", false}, {"with a terminal", true}} {
		t.Run(tt.name, func(t *testing.T) {
			sess, _ := start(t, tt.pty, "")
			sess.Close()
			ev := next(t)
			if ev.Reason != bastion.EndInputDone {
				t.Errorf("console.end reason %q, want %q", ev.Reason, bastion.EndInputDone)
			}
		})
	}
	t.Run("Ctrl-] then close", func(t *testing.T) {
		for range 10 {
			sess, type_ := start(t, true, "Ctrl-] to detach")
			type_("\x1d")
			sess.Close()
			ev := next(t)
			if ev.Reason != bastion.EndDetached {
				t.Fatalf("console.end reason %q, want %q", ev.Reason, bastion.EndDetached)
			}
		}
	})
}
