package bastion_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/xapi"
)

// TestHungConnect: the console host takes the CONNECT and never answers
// (a stuck xapi), after console.start is written. The open ends as soon as
// the client leaves or the bastion shuts down, not at the pool client's
// timeout (10 s here), and console.end says which; at the open's own
// deadline it ends as a timeout, and the user is told so.
func TestHungConnect(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T, configure func(*bastion.Server)) *bastiontest.Bastion {
		b := bastiontest.Start(t, bastiontest.Options{Configure: configure})
		b.Sim.SetHoldConnects(true)
		return b
	}
	// openForward asks for a forward to web-1 and waits for its
	// console.start.
	openForward := func(t *testing.T, b *bastiontest.Bastion) *gossh.Client {
		c := b.Dial(t, "alice")
		go func() {
			if conn, err := c.Dial("tcp", "web-1:5900"); err == nil {
				conn.Close()
			}
		}()
		b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleStart })
		return c
	}
	consoleEnd := func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleEnd }
	// endsSoon checks that console.end comes within 5 s of since (what
	// happened then), with reason want.
	endsSoon := func(t *testing.T, b *bastiontest.Bastion, since time.Time, what, want string) {
		t.Helper()
		ev := b.WaitEvent(t, consoleEnd)
		if took := time.Since(since); took > 5*time.Second {
			t.Errorf("console.end came %v after %s", took.Round(time.Millisecond), what)
		}
		if ev.Reason != want {
			t.Errorf("console.end reason %q, want %q", ev.Reason, want)
		}
	}

	t.Run("client leaves", func(t *testing.T) {
		t.Parallel()
		b := start(t, nil)
		c := openForward(t, b)
		left := time.Now()
		c.Close()
		endsSoon(t, b, left, "the client left", bastion.EndDisconnected)
	})

	// A client that multiplexes sessions over one connection (OpenSSH's
	// ControlMaster) can close the session alone: the open stops then,
	// not when the pool times out.
	t.Run("session closed, connection kept", func(t *testing.T) {
		t.Parallel()
		b := start(t, nil)
		c := b.Dial(t, "alice")
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.Start("console web-1"); err != nil {
			t.Fatal(err)
		}
		b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleStart })
		closed := time.Now()
		sess.Close()
		endsSoon(t, b, closed, "the session closed", bastion.EndClientClosed)
		// The connection is still good for another session.
		if out, err := newSessionOutput(t, c, "list"); err != nil || !strings.Contains(out, "web-1") {
			t.Errorf("list after: %v %q", err, out)
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		t.Parallel()
		b := start(t, nil)
		openForward(t, b)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Server.Shutdown(ctx)
		// The caller of Shutdown closes the audit log next: the record
		// must be in it already.
		var end *bastion.Event
		for _, ev := range b.Events(t) {
			if consoleEnd(ev) {
				end = &ev
			}
		}
		switch {
		case end == nil:
			t.Error("Shutdown returned before console.end was written")
		case end.Reason != bastion.EndShutdown:
			t.Errorf("console.end reason %q, want %q", end.Reason, bastion.EndShutdown)
		}
	})

	t.Run("revoked", func(t *testing.T) {
		t.Parallel()
		b := start(t, nil)
		openForward(t, b)
		revoked := time.Now()
		b.Server.SetPolicy(b.NewPolicy(t, []bastiontest.User{{Name: "alice"}}, nil)) // no rules left
		endsSoon(t, b, revoked, "the reload", bastion.EndRevoked)
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		b := start(t, func(s *bastion.Server) { s.ConsoleTimeout = 2 * time.Second })
		sess, err := b.Dial(t, "alice").NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.CombinedOutput("console web-1")
		if err == nil || string(out) != "xenbastion: the pool did not answer in time\n" {
			t.Errorf("console web-1: %v, %q", err, out)
		}
		if ev := b.WaitEvent(t, consoleEnd); ev.Reason != "timeout" {
			t.Errorf("console.end reason %q, want timeout", ev.Reason)
		}
	})
}

// TestShutdownDuringLogin: a client still logging in when the bastion
// shuts down is disconnected, and its auth.failure record is written
// before Shutdown returns (its caller closes the audit log next), not
// when the handshake would have timed out.
func TestShutdownDuringLogin(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	hold, asking := make(chan struct{}), make(chan struct{})
	defer close(hold)
	go func() {
		conn, err := net.Dial("tcp", b.Addr)
		if err != nil {
			return
		}
		defer conn.Close()
		// The client tries "none" first, then waits here for its keys.
		gossh.NewClientConn(conn, b.Addr, &gossh.ClientConfig{
			User: "alice",
			Auth: []gossh.AuthMethod{gossh.PublicKeysCallback(func() ([]gossh.Signer, error) {
				close(asking)
				<-hold
				return nil, errors.New("no keys")
			})},
			HostKeyCallback: gossh.FixedHostKey(b.HostKey()),
		})
	}()
	select {
	case <-asking: // the "none" attempt was refused: the login is under way
	case <-time.After(10 * time.Second):
		t.Fatal("the client never got to offering keys")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.Server.Shutdown(ctx)
	for _, ev := range b.Events(t) {
		if ev.Event == bastion.EventAuthFailure && ev.User == "alice" {
			return
		}
	}
	t.Error("Shutdown returned before the auth.failure of the login it cut short was written")
}

// hungLookupPool's lookups wait for their context to end, as a stuck
// xapi's would: asked has a value each time one starts.
type hungLookupPool struct {
	bastion.Pool
	asked chan struct{}
	// err, if set, is what a lookup returns once its context has ended.
	err error
	// returned, if set, counts the lookups that have returned.
	returned *atomic.Int32
}

func (p hungLookupPool) FindVMs(ctx context.Context, target string) ([]xapi.VM, error) {
	p.asked <- struct{}{}
	<-ctx.Done()
	if p.err != nil {
		return nil, p.err
	}
	return nil, fmt.Errorf("VM.get_by_name_label: %w", ctx.Err())
}

func (p hungLookupPool) VMs(ctx context.Context) ([]xapi.VM, error) {
	p.asked <- struct{}{}
	<-ctx.Done()
	if p.returned != nil {
		defer p.returned.Add(1)
	}
	if p.err != nil {
		return nil, p.err
	}
	return nil, fmt.Errorf("VM.get_all_records: %w", ctx.Err())
}

// TestListAsksPoolsAtOnce: list asks every pool at once, so that a pool
// that does not answer holds up the others' rows by its own wait, not by
// the sum of every slow pool's.
func TestListAsksPoolsAtOnce(t *testing.T) {
	t.Parallel()
	asked, returned := make(chan struct{}, 2), new(atomic.Int32)
	b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) {
		first := hungLookupPool{Pool: s.Pools[0], asked: asked, returned: returned}
		s.Pools = []bastion.Pool{first, first}
		s.ConsoleTimeout = 2 * time.Second // were they asked in turn, the second would wait this long
	}})
	sess, err := b.Dial(t, "alice").NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Start("list"); err != nil {
		t.Fatal(err)
	}
	<-asked
	<-asked
	if n := returned.Load(); n != 0 {
		t.Errorf("the second pool was asked after %d answer(s)", n)
	}
}

// errorLog keeps the messages of the records at level ERROR that pass
// through it.
type errorLog struct {
	slog.Handler
	mu   *sync.Mutex
	msgs *[]string
}

func (h errorLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.mu.Lock()
		*h.msgs = append(*h.msgs, r.Message)
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h errorLog) errors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.msgs)
}

// TestHungLookup: the pool never answers the lookup of the VM a console
// is asked for. A client that leaves or closes the session, or a shutdown,
// ends the wait at once; console.denied says which, and the operator's
// log has no error, since the pool has not failed. The open's own
// deadline is the pool's failure: "pool unavailable", and an error logged.
func TestHungLookup(t *testing.T) {
	t.Parallel()
	// start's pool hangs its lookups; once their context ends they return
	// lookupErr, or the context's error if it is nil.
	start := func(t *testing.T, timeout time.Duration, lookupErr error) (*bastiontest.Bastion, hungLookupPool, errorLog) {
		pool := hungLookupPool{asked: make(chan struct{}, 1), err: lookupErr}
		log := errorLog{slog.NewTextHandler(io.Discard, nil), new(sync.Mutex), new([]string)}
		b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) {
			pool.Pool = s.Pools[0]
			s.Pools[0] = pool
			s.Logger = slog.New(log)
			if timeout > 0 {
				s.ConsoleTimeout = timeout
			}
		}})
		return b, pool, log
	}
	// denied waits for console.denied, which must come within 5 s of
	// since (what happened then) with reason want, and checks what the
	// operator's log says.
	denied := func(t *testing.T, b *bastiontest.Bastion, log errorLog, since time.Time, what, want string, wantErrors int) {
		t.Helper()
		ev := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleDenied })
		if took := time.Since(since); took > 5*time.Second {
			t.Errorf("console.denied came %v after %s", took.Round(time.Millisecond), what)
		}
		if ev.Reason != want {
			t.Errorf("console.denied reason %q, want %q", ev.Reason, want)
		}
		if got := log.errors(); len(got) != wantErrors {
			t.Errorf("errors logged: %q, want %d", got, wantErrors)
		}
	}
	// run starts cmd in a new session of c, and returns once the pool has
	// been asked.
	run := func(t *testing.T, c *gossh.Client, pool hungLookupPool, cmd string, stderr io.Writer) *gossh.Session {
		t.Helper()
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		sess.Stderr = stderr
		if err := sess.Start(cmd); err != nil {
			t.Fatal(err)
		}
		<-pool.asked
		return sess
	}
	// forward asks c for a forward to web-1, and returns once the pool
	// has been asked.
	forward := func(pool hungLookupPool, c *gossh.Client) {
		go func() {
			if conn, err := c.Dial("tcp", "web-1:5900"); err == nil {
				conn.Close()
			}
		}()
		<-pool.asked
	}

	t.Run("session closed, connection kept", func(t *testing.T) {
		t.Parallel()
		b, pool, log := start(t, 0, nil)
		sess := run(t, b.Dial(t, "alice"), pool, "console web-1", nil)
		closed := time.Now()
		sess.Close()
		denied(t, b, log, closed, "the session closed", bastion.EndClientClosed, 0)
	})

	t.Run("list, session closed", func(t *testing.T) {
		t.Parallel()
		b, pool, log := start(t, 0, nil)
		sess := run(t, b.Dial(t, "alice"), pool, "list", nil)
		sess.Close()
		// list writes no record: Shutdown waits for its handler.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Server.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := log.errors(); len(got) != 0 {
			t.Errorf("errors logged: %q, want none", got)
		}
	})

	// Shutdown waits for every handler: a list stuck on the pool must not
	// hold it to its deadline (after which it closes connections without
	// their last packets).
	t.Run("list, shutdown", func(t *testing.T) {
		t.Parallel()
		b, pool, log := start(t, 0, nil)
		var stderr strings.Builder
		sess := run(t, b.Dial(t, "alice"), pool, "list", &stderr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped := time.Now()
		if err := b.Server.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v after %v", err, time.Since(stopped).Round(time.Millisecond))
		}
		if err := sess.Wait(); err == nil || stderr.String() != "xenbastion: the bastion is shutting down\n" {
			t.Errorf("list: %v, %q", err, stderr.String())
		}
		if got := log.errors(); len(got) != 0 {
			t.Errorf("errors logged: %q, want none", got)
		}
	})

	// A certificate refused just as the client goes is still a security
	// event: its record is written.
	t.Run("session closed, certificate refused", func(t *testing.T) {
		t.Parallel()
		b, pool, log := start(t, 0, &xapi.FingerprintError{Host: "192.0.2.9:443", Fingerprint: "AA:BB"})
		run(t, b.Dial(t, "alice"), pool, "console web-1", nil).Close()
		ev := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventTLSMismatch })
		if ev.XAPIHost != "192.0.2.9:443" || ev.User != "alice" {
			t.Errorf("xapi.tls_mismatch: %+v", ev)
		}
		if got := log.errors(); len(got) != 1 {
			t.Errorf("errors logged: %q, want 1", got)
		}
	})

	t.Run("client leaves", func(t *testing.T) {
		t.Parallel()
		b, pool, log := start(t, 0, nil)
		c := b.Dial(t, "alice")
		forward(pool, c)
		left := time.Now()
		c.Close()
		denied(t, b, log, left, "the client left", bastion.EndDisconnected, 0)
	})

	t.Run("shutdown", func(t *testing.T) {
		t.Parallel()
		b, pool, log := start(t, 0, nil)
		forward(pool, b.Dial(t, "alice"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped := time.Now()
		b.Server.Shutdown(ctx)
		denied(t, b, log, stopped, "the shutdown", bastion.EndShutdown, 0)
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		b, _, log := start(t, time.Second, nil)
		sess, err := b.Dial(t, "alice").NewSession()
		if err != nil {
			t.Fatal(err)
		}
		asked := time.Now()
		out, err := sess.CombinedOutput("console web-1")
		if err == nil || string(out) != "xenbastion: the pool is unavailable, try again later\n" {
			t.Errorf("console web-1: %v, %q", err, out)
		}
		denied(t, b, log, asked, "the console was asked for", "pool unavailable", 1)
	})
}
