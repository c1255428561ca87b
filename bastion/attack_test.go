package bastion_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/keys"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// TestAttackSuite runs hostile cases against one running bastion. Each
// must be refused, leave an audit record where it is a console or auth
// event, and leave the server up, while another user's console session
// keeps working throughout (checked after every case).
func TestAttackSuite(t *testing.T) {
	testtool.NeedTool(t, "ssh")
	users := []bastiontest.User{
		{Name: "alice", Allow: []string{"*"}},
		{Name: "mallory", Allow: []string{"web-*"}},
		{Name: "rex", Allow: []string{"*"}}, // whose key gets revoked
	}
	b := bastiontest.Start(t, bastiontest.Options{
		Users: users,
		Configure: func(s *bastion.Server) {
			s.Limits.HandshakeTimeout = time.Second
			s.Limits.AuthFailuresPerMinute = 5
		},
	})
	ca := newSigner(t)
	revoked, err := keys.ParseRevocationList(gossh.MarshalAuthorizedKey(b.Signer("rex").PublicKey()), "test")
	if err != nil {
		t.Fatal(err)
	}
	b.Server.SetPolicy(b.NewPolicy(t, users, nil, bastion.WithUserCAs(keys.NewCASet(ca.PublicKey())), bastion.WithRevoked(revoked)))
	victim := newVictim(t, b)
	mallory := dialFrom(t, b, "127.0.0.2", "mallory", b.Signer("mallory"))

	// forward opens a direct-tcpip channel as "ssh -L" does, with any
	// host string.
	forward := func(host string, port int) func(t *testing.T) error {
		return func(t *testing.T) error {
			c, err := mallory.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
			if err == nil {
				c.Close()
				return errors.New("forward accepted")
			}
			return nil
		}
	}
	denied := func(target string) func(bastion.Event) bool {
		return func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleDenied && ev.Target == target }
	}
	authFailed := func(user string) func(bastion.Event) bool {
		return func(ev bastion.Event) bool { return ev.Event == bastion.EventAuthFailure && ev.User == user }
	}
	session := func(f func(s *gossh.Session) error) func(t *testing.T) error {
		return func(t *testing.T) error {
			s, err := mallory.NewSession()
			if err != nil {
				return err
			}
			defer s.Close()
			return f(s)
		}
	}
	// command runs a command and fails if it looks like a shell ran it.
	command := func(cmd string) func(t *testing.T) error {
		return session(func(s *gossh.Session) error {
			out, err := s.CombinedOutput(cmd)
			var ee *gossh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() == 0 {
				return fmt.Errorf("command %q: %v", cmd, err)
			}
			if strings.Contains(string(out), "root:") || strings.Contains(string(out), "uid=") {
				return fmt.Errorf("command %q ran a shell: %q", cmd, out)
			}
			return nil
		})
	}
	xapiHost, xapiPort, _ := net.SplitHostPort(b.Sim.Master().Address())
	var xapiPortN int
	fmt.Sscan(xapiPort, &xapiPortN)
	long := strings.Repeat("a", 1100)

	cases := []struct {
		name  string
		run   func(t *testing.T) error
		audit func(bastion.Event) bool // nil: not a console or auth event
	}{
		{"forward to 127.0.0.1", forward("127.0.0.1", 5900), denied("127.0.0.1")},
		{"forward to localhost", forward("localhost", 5900), denied("localhost")},
		{"forward to the XAPI host", forward(xapiHost, xapiPortN), denied(xapiHost)},
		{"forward to the XAPI host on 5900", forward(xapiHost, 5900), denied(xapiHost)},
		{"forward to port 22", forward("web-1", 22), denied("web-1")},
		{"forward to port 443", forward("web-1", 443), denied("web-1")},
		{"forward to a name with NUL", forward("web-1\x00evil", 5900), denied("web-1\x00evil")},
		{"forward to a name with /", forward("web-1/x", 5900), denied("web-1/x")},
		{"forward to ..", forward("..", 5900), denied("..")},
		{"forward to ../web-1", forward("../web-1", 5900), denied("../web-1")},
		{"forward to a name with @", forward("root@web-1", 5900), denied("root@web-1")},
		{"forward to a name with %", forward("web-1%00", 5900), denied("web-1%00")},
		{"forward to a VM not allowed", forward("db-1", 5900), denied("db-1")},
		{"forward to a name over 1 KiB", forward(long, 5900), func(ev bastion.Event) bool {
			// Recorded, truncated: a target may be as long as an SSH packet.
			return ev.Event == bastion.EventConsoleDenied && strings.HasPrefix(long, strings.TrimSuffix(ev.Target, "...")) && len(ev.Target) < 300
		}},
		{"forward to invalid UTF-8", forward("web-\xff\xfe", 5900), func(ev bastion.Event) bool {
			return ev.Event == bastion.EventConsoleDenied && strings.HasPrefix(ev.Target, "web-") && ev.Reason == "malformed target"
		}},
		{"openssh -W to 127.0.0.1:22", func(t *testing.T) error {
			r := runSSH(t, b, "mallory", "", []string{"-b", "127.0.0.2", "-W", "127.0.0.1:22"})
			if r.code == 0 || !strings.Contains(r.stderr, "administratively prohibited") {
				return fmt.Errorf("-W: %+v", r)
			}
			return nil
		}, nil},
		{"remote forward (-R)", func(t *testing.T) error {
			r := runSSH(t, b, "mallory", "", []string{"-b", "127.0.0.2", "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"})
			if r.code == 0 || !strings.Contains(r.stderr, "remote port forwarding failed") {
				return fmt.Errorf("-R: %+v", r)
			}
			return nil
		}, nil},
		{"remote forward (x/crypto)", func(t *testing.T) error {
			if l, err := mallory.Listen("tcp", "0.0.0.0:2200"); err == nil {
				l.Close()
				return errors.New("tcpip-forward accepted")
			}
			return nil
		}, nil},
		{"agent forwarding", session(func(s *gossh.Session) error {
			if ok, _ := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok {
				return errors.New("agent forwarding accepted")
			}
			return nil
		}), nil},
		{"X11 forwarding", session(func(s *gossh.Session) error {
			req := gossh.Marshal(struct {
				Single        bool
				Proto, Cookie string
				Screen        uint32
			}{false, "MIT-MAGIC-COOKIE-1", "deadbeef", 0})
			if ok, _ := s.SendRequest("x11-req", true, req); ok {
				return errors.New("x11 forwarding accepted")
			}
			return nil
		}), nil},
		{"sftp subsystem", session(func(s *gossh.Session) error {
			if s.RequestSubsystem("sftp") == nil {
				return errors.New("sftp accepted")
			}
			return nil
		}), nil},
		{"openssh sftp subsystem", func(t *testing.T) error {
			r := runSSH(t, b, "mallory", "", []string{"-b", "127.0.0.2", "-s"}, "sftp")
			if r.code == 0 {
				return fmt.Errorf("-s sftp: %+v", r)
			}
			return nil
		}, nil},
		{"env request", session(func(s *gossh.Session) error {
			if s.Setenv("LD_PRELOAD", "/tmp/evil.so") == nil {
				return errors.New("env accepted")
			}
			return nil
		}), nil},
		{"command with ;", command("list; cat /etc/passwd"), nil},
		{"command with &&", command("console web-1 && id"), nil},
		{"command with $()", command("console $(id)"), denied("$(id)")},
		{"command with backticks", command("console `id`"), denied("`id`")},
		{"command with a pipe", command("list | sh"), nil},
		{"other channel type", func(t *testing.T) error {
			if ch, _, err := mallory.OpenChannel("direct-streamlocal@openssh.com", nil); err == nil {
				ch.Close()
				return errors.New("streamlocal accepted")
			}
			return nil
		}, nil},
		{"unknown user", func(t *testing.T) error {
			if c, err := dialFromErr(b, "127.0.0.3", "eve", b.Signer("mallory")); err == nil {
				c.Close()
				return errors.New("unknown user logged in")
			}
			return nil
		}, authFailed("eve")},
		{"wrong key", func(t *testing.T) error {
			if c, err := dialFromErr(b, "127.0.0.3", "alice", b.Signer("mallory")); err == nil {
				c.Close()
				return errors.New("mallory's key logged in as alice")
			}
			return nil
		}, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthFailure && ev.User == "alice" && ev.Reason == "key not authorized for user"
		}},
		{"expired certificate", func(t *testing.T) error {
			_, signer := certify(t, ca, b.Signer("mallory"), func(c *gossh.Certificate) {
				c.ValidPrincipals = []string{"mallory"}
				c.ValidBefore = uint64(time.Now().Add(-time.Minute).Unix())
			})
			if c, err := dialFromErr(b, "127.0.0.6", "mallory", signer); err == nil {
				c.Close()
				return errors.New("an expired certificate logged in")
			}
			return nil
		}, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthFailure && ev.User == "mallory" && strings.Contains(ev.Reason, "expired")
		}},
		{"certificate for another principal", func(t *testing.T) error {
			_, signer := certify(t, ca, b.Signer("mallory"), func(c *gossh.Certificate) { c.ValidPrincipals = []string{"mallory"} })
			if c, err := dialFromErr(b, "127.0.0.6", "alice", signer); err == nil {
				c.Close()
				return errors.New("mallory's certificate logged in as alice")
			}
			return nil
		}, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthFailure && ev.User == "alice" && strings.Contains(ev.Reason, `principal "alice" not in the certificate`)
		}},
		{"revoked key", func(t *testing.T) error {
			if c, err := dialFromErr(b, "127.0.0.6", "rex", b.Signer("rex")); err == nil {
				c.Close()
				return errors.New("a revoked key logged in")
			}
			return nil
		}, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthFailure && ev.User == "rex" && ev.Reason == "key revoked"
		}},
		{"password", func(t *testing.T) error {
			c, err := gossh.Dial("tcp", b.Addr, &gossh.ClientConfig{User: "alice", Auth: []gossh.AuthMethod{gossh.Password("hunter2")},
				HostKeyCallback: gossh.FixedHostKey(b.HostKey()), Timeout: 5 * time.Second})
			if err == nil {
				c.Close()
				return errors.New("password accepted")
			}
			return nil
		}, func(ev bastion.Event) bool {
			// The server offers only publickey, so the client never gets
			// to send its password.
			return ev.Event == bastion.EventAuthFailure && ev.User == "alice" && ev.Reason == "no key offered" &&
				strings.HasPrefix(ev.RemoteAddr, "127.0.0.1:")
		}},
		{"slow handshake", func(t *testing.T) error {
			c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}).Dial("tcp", b.Addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.Write([]byte("SSH-2.0-slowloris\r\n")) // and then nothing
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			io.Copy(io.Discard, c)
			if time.Since(start) > 5*time.Second {
				return errors.New("a silent client was not cut off")
			}
			return nil
		}, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthFailure && ev.Reason == "handshake timeout"
		}},
		// Last: it blocks its source address.
		{"flood of failed logins", func(t *testing.T) error {
			for range 8 {
				if c, err := dialFromErr(b, "127.0.0.5", "root", b.Signer("mallory")); err == nil {
					c.Close()
					return errors.New("root logged in")
				}
			}
			b.WaitEvent(t, func(ev bastion.Event) bool {
				return ev.Event == bastion.EventAuthBlocked && strings.HasPrefix(ev.RemoteAddr, "127.0.0.5:")
			})
			// Blocked now, even with a valid key.
			if c, err := dialFromErr(b, "127.0.0.5", "mallory", b.Signer("mallory")); err == nil {
				c.Close()
				return errors.New("a blocked source logged in")
			}
			return nil
		}, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthBlocked && strings.HasPrefix(ev.RemoteAddr, "127.0.0.5:")
		}},
	}
	refused := 0
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(t); err != nil {
				t.Fatalf("not refused: %v", err)
			}
			if tc.audit != nil {
				b.WaitEvent(t, tc.audit)
			}
			victim.check(t, i)
			refused++
		})
	}
	// The server is still up for everyone else.
	if out, err := newSessionOutput(t, dialFrom(t, b, "127.0.0.1", "alice", b.Signer("alice")), "list"); err != nil || !strings.Contains(out, "web-1") {
		t.Errorf("after the suite, list: %v %q", err, out)
	}
	t.Logf("hostile cases tried: %d, refused: %d", len(cases), refused)
}

// victim is another user's console session that must keep working while
// the attacks run.
type victim struct {
	in  io.Writer
	out *bufio.Reader
	n   atomic.Int32
}

func newVictim(t *testing.T, b *bastiontest.Bastion) *victim {
	c := dialFrom(t, b, "127.0.0.1", "alice", b.Signer("alice"))
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start("console web-2"); err != nil {
		t.Fatal(err)
	}
	v := &victim{in: in, out: bufio.NewReader(out)}
	v.check(t, -1)
	return v
}

// check types a command on the victim's console and waits for its output.
func (v *victim) check(t *testing.T, i int) {
	t.Helper()
	word := fmt.Sprintf("alive-%d", i+1)
	if _, err := fmt.Fprintf(v.in, "echo %s\n", word); err != nil {
		t.Fatalf("the victim's console is gone: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			line, err := v.out.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			if strings.TrimSpace(line) == word {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the victim's console failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the victim's console stopped answering")
	}
}

// dialFrom logs in from a given loopback address, so that blocking one
// attacker's address leaves the others alone.
func dialFrom(t *testing.T, b *bastiontest.Bastion, from, user string, key gossh.Signer) *gossh.Client {
	t.Helper()
	c, err := dialFromErr(b, from, user, key)
	if err != nil {
		t.Fatalf("ssh as %s from %s: %v", user, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialFromErr(b *bastiontest.Bastion, from, user string, keys ...gossh.Signer) (*gossh.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		return nil, err
	}
	cc, chans, reqs, err := gossh.NewClientConn(conn, b.Addr, &gossh.ClientConfig{
		User: user, Auth: []gossh.AuthMethod{gossh.PublicKeys(keys...)},
		HostKeyCallback: gossh.FixedHostKey(b.HostKey()), Timeout: 10 * time.Second,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return gossh.NewClient(cc, chans, reqs), nil
}

func newSessionOutput(t *testing.T, c *gossh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output(cmd)
	return string(out), err
}
