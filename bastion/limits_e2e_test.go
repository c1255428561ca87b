package bastion_test

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/internal/testtool"
)

// openConsole starts "ssh USER@bastion console VM" with its input held
// open, and waits until the console answers.
func openConsole(t *testing.T, b *bastiontest.Bastion, user, vm string) (cmd *exec.Cmd, stdin io.WriteCloser, stderr *testtool.SyncBuffer) {
	t.Helper()
	testtool.NeedTool(t, "ssh")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	cmd = b.SSH(ctx, user, nil, "console", vm)
	stdin, _ = cmd.StdinPipe()
	t.Cleanup(func() { stdin.Close() })
	var out testtool.SyncBuffer
	stderr = &testtool.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = &out, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "echo up\n")
	waitFor(t, &out, "up\r\n")
	return cmd, stdin, stderr
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestReloadRevokes: a new policy ends the consoles it no longer allows,
// with reason "access revoked", and leaves the others running.
func TestReloadRevokes(t *testing.T) {
	t.Parallel()
	users := []bastiontest.User{{Name: "alice", Allow: []string{"*"}}, {Name: "bob", Allow: []string{"*"}}}
	b := bastiontest.Start(t, bastiontest.Options{Users: users})
	alice, _, aliceErr := openConsole(t, b, "alice", "web-1")
	bob, bobIn, _ := openConsole(t, b, "bob", "web-2")

	b.Server.SetPolicy(b.NewPolicy(t, []bastiontest.User{{Name: "alice", Allow: []string{"db-*"}}, users[1]}, nil))

	if err := alice.Wait(); exitCode(err) != 1 || !strings.Contains(aliceErr.String(), "access revoked") {
		t.Errorf("alice: %v, stderr %q; want exit 1 saying access revoked", err, aliceErr.String())
	}
	b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventConsoleEnd && ev.User == "alice" && ev.Reason == bastion.EndRevoked
	})
	// bob's session went on through the reload.
	io.WriteString(bobIn, "echo still-here\n")
	bobIn.Close()
	if err := bob.Wait(); err != nil {
		t.Errorf("bob's console after the reload: %v", err)
	}
	// A user removed altogether loses the connection.
	c := b.Dial(t, "alice")
	b.Server.SetPolicy(b.NewPolicy(t, users[1:], nil))
	if _, err := c.NewSession(); err == nil {
		t.Error("alice's connection survived her removal")
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	t.Run("idle timeout", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.IdleTimeout = 500 * time.Millisecond }})
		cmd, _, stderr := openConsole(t, b, "alice", "web-1")
		if err := cmd.Wait(); exitCode(err) != 1 || !strings.Contains(stderr.String(), "idle timeout") {
			t.Errorf("exit %v, stderr %q", err, stderr.String())
		}
		b.WaitEvent(t, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventConsoleEnd && ev.Reason == bastion.EndIdle
		})
	})
	t.Run("max session duration", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.MaxSessionDuration = time.Second }})
		cmd, stdin, stderr := openConsole(t, b, "alice", "web-1")
		go func() { // busy: the idle timeout is not what ends it
			for range 20 {
				if _, err := io.WriteString(stdin, "x"); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		if err := cmd.Wait(); exitCode(err) != 1 || !strings.Contains(stderr.String(), "max session duration") {
			t.Errorf("exit %v, stderr %q", err, stderr.String())
		}
	})
	t.Run("consoles per user", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.MaxConsolesPerUser = 1 }})
		openConsole(t, b, "alice", "web-1")
		r := runSSH(t, b, "alice", "", nil, "console", "web-2")
		if r.code != 1 || !strings.Contains(r.stderr, "consoles open, the most allowed") {
			t.Errorf("second console: %+v", r)
		}
		b.WaitEvent(t, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventConsoleDenied && ev.Reason == "console limit"
		})
	})
	t.Run("connections per user", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.MaxConnectionsPerUser = 1 }})
		b.Dial(t, "alice")
		r := runSSH(t, b, "alice", "", nil, "list")
		if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("second connection: %+v", r)
		}
		b.WaitEvent(t, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthFailure && strings.HasPrefix(ev.Reason, "too many connections")
		})
	})
	t.Run("channels per connection", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.MaxChannelsPerConnection = 1 }})
		c := b.Dial(t, "alice")
		first, err := c.Dial("tcp", "web-1:5900")
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if _, err := c.Dial("tcp", "web-2:5900"); err == nil || !strings.Contains(err.Error(), "too many channels on this connection") {
			t.Errorf("second forward: %v", err)
		}
		b.WaitEvent(t, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventConsoleDenied && ev.Target == "web-2" && ev.Reason == "channel limit"
		})
	})
	// A valid key over its user's connection limit is not a guess: a
	// script retrying over its limit must not block the others behind
	// the same address.
	t.Run("connections over the limit do not block the source", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{
			Users: []bastiontest.User{{Name: "alice", Allow: []string{"*"}}, {Name: "bob", Allow: []string{"*"}}},
			Configure: func(s *bastion.Server) {
				s.Limits.MaxConnectionsPerUser = 1
				s.Limits.AuthFailuresPerMinute = 2
			},
		})
		b.Dial(t, "alice")
		for range 4 {
			if r := runSSH(t, b, "alice", "", nil, "list"); r.code != 255 {
				t.Fatalf("a connection over the limit: %+v", r)
			}
		}
		// A client whose agent holds other keys offers them too, after
		// the good one or before it: the connection has still proved a
		// key.
		stranger := newSigner(t)
		for _, keys := range [][]gossh.Signer{{b.Signer("alice"), stranger}, {stranger, b.Signer("alice")}} {
			for range 3 { // past AuthFailuresPerMinute, were they counted
				if c, err := dialFromErr(b, "127.0.0.1", "alice", keys...); err == nil {
					c.Close()
					t.Fatal("a connection over the limit logged in")
				}
			}
		}
		if r := runSSH(t, b, "bob", "", nil, "list"); r.code != 0 {
			t.Errorf("bob, from the same address: %+v", r)
		}
		for _, ev := range b.Events(t) {
			if ev.Event == bastion.EventAuthBlocked {
				t.Errorf("blocked: %+v", ev)
			}
		}
	})
	t.Run("failed logins block the source", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.AuthFailuresPerMinute = 2 }})
		for range 3 {
			runSSH(t, b, "mallory", "", []string{"-i", b.Identity("alice")}, "list")
		}
		b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventAuthBlocked && ev.User == "mallory" })
		// Blocked: even alice, from the same address, is refused now.
		if r := runSSH(t, b, "alice", "", nil, "list"); r.code != 255 {
			t.Errorf("a blocked source got in: %+v", r)
		}
	})
	t.Run("slow handshake", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.HandshakeTimeout = 300 * time.Millisecond }})
		c, err := net.Dial("tcp", b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.SetReadDeadline(start.Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c) // the server's banner, then EOF when it gives up
		if err != nil || time.Since(start) > 5*time.Second {
			t.Errorf("the server did not close a silent connection (after %v: %v)", time.Since(start), err)
		}
		b.WaitEvent(t, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthFailure && ev.Reason == "handshake timeout"
		})
	})
	t.Run("unauthenticated cap", func(t *testing.T) {
		t.Parallel()
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.MaxUnauthenticated = 1 }})
		first, err := net.Dial("tcp", b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		banner := make([]byte, 8)
		io.ReadFull(first, banner) // the first is being served
		second, err := net.Dial("tcp", b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		second.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := second.Read(banner); err == nil {
			t.Errorf("a connection past the cap was served: %q", banner[:n])
		}
	})
}

// TestStalledClient: a client that stops reading its console's output
// still has its session ended by the limits, with a console.end record.
func TestStalledClient(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.MaxSessionDuration = time.Second }})
	c := b.Dial(t, "alice")
	conn, err := c.Dial("tcp", "web-1:5900")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Ask for full frame updates and never read them: the bastion's
	// writes block once the SSH window is full.
	io.ReadFull(conn, make([]byte, 12))
	conn.Write([]byte("RFB 003.008\n"))
	conn.Write([]byte{1, 1}) // security None, then shared ClientInit
	req := []byte{3, 0, 0, 0, 0, 0, 640 >> 8, 640 & 0xff, 480 >> 8, 480 & 0xff}
	for range 20 {
		conn.Write(req)
	}
	b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventConsoleEnd && ev.Reason == bastion.EndMaxDuration
	})
}

// TestStalledCommandClient: the same for a console command whose client
// stops reading: closing a session channel locally does not wake a write
// blocked on SSH flow control, so the bastion closes the connection.
func TestStalledCommandClient(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) { s.Limits.MaxSessionDuration = 2 * time.Second }})
	c := b.Dial(t, "alice")
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	stdin, _ := sess.StdinPipe()
	sess.StdoutPipe() // never read
	if err := sess.Start("console web-1"); err != nil {
		t.Fatal(err)
	}
	go func() { // the guest echoes every byte: megabytes of output nobody reads
		chunk := []byte(strings.Repeat("x", 32<<10))
		for range 200 {
			if _, err := stdin.Write(chunk); err != nil {
				return
			}
		}
	}()
	b.WaitEvent(t, func(ev bastion.Event) bool {
		return ev.Event == bastion.EventConsoleEnd && ev.Reason == bastion.EndMaxDuration
	})
}
