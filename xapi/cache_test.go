package xapi

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// TestWarmOpen: a warm open of a console costs no XAPI call, and a VM that
// rebooted (new console records on another host) or stopped since it was
// cached is looked up again, once.
func TestWarmOpen(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p)
	open := func() error {
		vms, err := c.FindVMs(t.Context(), "web-1")
		if err != nil {
			return err
		}
		vm, err := Choose("web-1", vms)
		if err != nil {
			return err
		}
		conn, err := c.DialConsole(t.Context(), vm, RFB)
		if err != nil {
			return err
		}
		defer conn.Close()
		banner := make([]byte, 12)
		_, err = io.ReadFull(conn, banner)
		return err
	}
	if err := open(); err != nil {
		t.Fatal(err)
	}
	before := p.Calls()
	for range 5 {
		if err := open(); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Calls() - before; n != 0 {
		t.Errorf("5 warm opens made %d XAPI calls, want 0", n)
	}

	// Rebooted onto the member: the cached console location is stale.
	if _, err := p.PowerOn("web-1", 1); err != nil {
		t.Fatal(err)
	}
	if err := open(); err != nil {
		t.Errorf("open after a reboot elsewhere: %v", err)
	}
	// Stopped: the user is told so, not that the console failed.
	if err := p.PowerOff("web-1"); err != nil {
		t.Fatal(err)
	}
	if err := open(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("open after power-off: %v, want ErrNotRunning", err)
	}
}

// TestSpareConnections: after a console dial the client keeps one TLS
// connection to that host ready for the next CONNECT, and falls back to a
// fresh dial when the host has dropped it.
func TestSpareConnections(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p)
	vm := findVM(t, c, "web-1")
	host := p.Host(0).Address()
	dial := func() {
		t.Helper()
		conn, err := c.DialConsole(t.Context(), vm, RFB)
		if err != nil {
			t.Fatal(err)
		}
		readBanner(t, conn)
	}
	dial()
	spare := waitSpare(t, c, host)
	dial() // takes the spare
	if again := waitSpare(t, c, host); again == spare {
		t.Error("the spare was not used")
	}
	// The host drops the waiting connection: the next dial still works.
	waitSpare(t, c, host).NetConn().Close()
	dial()
}

// readBanner reads the RFB banner from conn, then closes it.
func readBanner(t *testing.T, conn net.Conn) {
	t.Helper()
	banner := make([]byte, 12)
	if _, err := io.ReadFull(conn, banner); err != nil || string(banner) != "RFB 003.008\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	conn.Close()
}

// waitSpare waits for c's spare connection to host and returns it.
func waitSpare(t *testing.T, c *Client, host string) *tls.Conn {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		c.spare.mu.Lock()
		tc := c.spare.conns[host]
		c.spare.mu.Unlock()
		if tc != nil {
			return tc
		}
	}
	t.Fatal("no spare connection to the console host")
	return nil
}

// TestSpareDialledAfterFirstBytes: the next spare connection is dialled
// once the caller is through with the console's first bytes (it reads
// again, or closes), not while it is relaying them.
func TestSpareDialledAfterFirstBytes(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	host := p.Host(0).Address()
	vm := findVM(t, newClient(t, p), "web-1")
	spareState := func(c *Client) (dialing, waiting bool) {
		c.spare.mu.Lock()
		defer c.spare.mu.Unlock()
		return c.spare.dialing[host], c.spare.conns[host] != nil
	}
	for _, closeFirst := range []bool{false, true} {
		c := newClient(t, p)
		conn, err := c.DialConsole(t.Context(), vm, RFB)
		if err != nil {
			t.Fatal(err)
		}
		if d, w := spareState(c); d || w {
			t.Fatalf("a spare was dialled (%v) or is waiting (%v) before the console's first bytes were read", d, w)
		}
		if closeFirst {
			conn.Close()
		} else {
			// The RFB banner, then the client's version: the server then
			// sends its security types, read by a second Read.
			banner := make([]byte, 12)
			withReply := conn.(interface{ Buffered() int }).Buffered() >= len(banner)
			if _, err := io.ReadFull(conn, banner); err != nil {
				t.Fatal(err)
			}
			if d, w := spareState(c); withReply && (d || w) {
				t.Fatal("a spare was dialled while the first bytes, which came with the reply, were being relayed")
			}
			if _, err := conn.Write(banner); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Read(make([]byte, 64)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for d, w := spareState(c); !d && !w; d, w = spareState(c) {
			if time.Now().After(deadline) {
				t.Fatalf("close first %v: no spare dialled after the first bytes", closeFirst)
			}
			time.Sleep(5 * time.Millisecond)
		}
		conn.Close()
	}
}

// TestConnectNow: with the console's record cached, a session and a spare
// connection waiting, ConnectNow sends the CONNECT at once and its function
// returns the console; otherwise it returns nil. An expired session, a
// dropped spare and a busy console give what DialConsole gives.
func TestConnectNow(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	host := p.Host(0).Address()
	c := newClient(t, p)
	vm := findVM(t, c, "web-1")
	if f := c.ConnectNow(t.Context(), vm, RFB); f != nil {
		t.Fatal("ConnectNow sent a CONNECT with no spare connection")
	}
	conn, err := c.DialConsole(t.Context(), vm, RFB)
	if err != nil {
		t.Fatal(err)
	}
	readBanner(t, conn)
	connectNow := func(what string) (net.Conn, error) {
		t.Helper()
		waitSpare(t, c, host)
		f := c.ConnectNow(t.Context(), vm, RFB)
		if f == nil {
			t.Fatalf("%s: ConnectNow returned nil with a spare waiting", what)
		}
		return f()
	}

	conn, err = connectNow("warm")
	if err != nil {
		t.Fatal(err)
	}
	readBanner(t, conn)

	logins := p.Logins()
	p.ExpireSessions()
	if conn, err = connectNow("expired session"); err != nil {
		t.Fatal(err)
	}
	readBanner(t, conn)
	if got := p.Logins() - logins; got != 1 {
		t.Errorf("expired session: %d logins, want 1", got)
	}

	waitSpare(t, c, host).NetConn().Close() // the request cannot be sent
	if conn, err = connectNow("closed spare"); err != nil {
		t.Fatal(err)
	}
	readBanner(t, conn)
	// The request goes out, but the reply never comes: read as if the host
	// had dropped the connection.
	waitSpare(t, c, host).NetConn().(*batchConn).Conn.(*net.TCPConn).CloseRead()
	if conn, err = connectNow("dropped spare"); err != nil {
		t.Fatal(err)
	}
	readBanner(t, conn)

	// The consoles opened above are closed, but the pool may not have seen
	// the last close yet, and with the limit on it would still count it.
	waitConsolesClosed(t, p)
	p.SetConsoleLimit(true)
	held, err := c.DialConsole(t.Context(), vm, VT100)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	go io.Copy(io.Discard, held) // reading it lets the next spare be dialled
	_, err = connectNow("busy console")
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.StatusCode != 503 {
		t.Fatalf("busy console: %v, want a 503 ConnectError", err)
	}
}
