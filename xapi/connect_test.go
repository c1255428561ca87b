package xapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// openBench opens the rfb console of a VM served by xapitest.BenchBackend
// and reads its banner.
func openBench(t *testing.T) net.Conn {
	t.Helper()
	p := newPool(t, xapitest.Options{})
	p.AddVM(xapitest.VMSpec{Name: "bulk", Backend: xapitest.BenchBackend})
	c := newClient(t, p)
	conn, err := c.DialConsole(t.Context(), findVM(t, c, "bulk"), RFB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	banner := make([]byte, len(xapitest.BenchBanner))
	if _, err := io.ReadFull(conn, banner); err != nil || string(banner) != xapitest.BenchBanner {
		t.Fatalf("banner %q, %v", banner, err)
	}
	return conn
}

// readWithin runs conn.Read(p), failing the test if it has not returned
// after a long while: a Read that waits for more than the data already
// sent would hang there.
func readWithin(t *testing.T, conn net.Conn, p []byte) int {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := conn.Read(p)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Read: %v", r.err)
		}
		return r.n
	case <-time.After(10 * time.Second):
		t.Fatal("Read is still waiting 10 s after the data was sent")
		return 0
	}
}

// TestConsoleReadTakesReceivedRecords: during a bulk transfer a Read with
// room for several TLS records returns more than one when they have come
// (crypto/tls alone returns one, at most 16 KiB, so a relay would send
// two SSH packets per 32 KiB), and every byte arrives once, in order.
func TestConsoleReadTakesReceivedRecords(t *testing.T) {
	t.Parallel()
	conn := openBench(t)
	const total = 8 << 20
	if _, err := fmt.Fprintf(conn, "S %d\n", total); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	largest := 0
	for got := int64(0); got < total; {
		n := readWithin(t, conn, buf)
		for i, b := range buf[:n] {
			if want := xapitest.BenchPatternByte(got + int64(i)); b != want {
				t.Fatalf("byte %d is %d, want %d", got+int64(i), b, want)
			}
		}
		got += int64(n)
		largest = max(largest, n)
	}
	if largest <= 16<<10 {
		t.Errorf("largest Read of a %d-byte transfer into %d bytes: %d, no more than one TLS record", total, len(buf), largest)
	}
}

// TestConsoleReadDoesNotWaitForMore: a Read that got a full record and has
// room for more returns it without waiting for the next one, and the
// connection reads normally afterwards (the expired deadline it uses to
// stop is cleared).
func TestConsoleReadDoesNotWaitForMore(t *testing.T) {
	t.Parallel()
	conn := openBench(t)
	buf := make([]byte, 64<<10)
	// crypto/tls sends small records until 128 KiB have gone; after
	// these, 16 KiB go as one full record, then nothing until the next
	// command.
	const warm = 256 << 10
	if _, err := fmt.Fprintf(conn, "S %d\n", warm); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < warm; {
		got += readWithin(t, conn, buf[:min(len(buf), warm-got)])
	}
	if _, err := fmt.Fprintf(conn, "S %d\n", 16<<10); err != nil {
		t.Fatal(err)
	}
	if n := readWithin(t, conn, buf); n != 16<<10 {
		t.Fatalf("Read returned %d bytes, want the one record of %d", n, 16<<10)
	}
	if _, err := io.WriteString(conn, "S 100\n"); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 100; {
		got += readWithin(t, conn, buf[got:])
	}
}

// TestConnectGivesUpWhenCancelled: a host that takes the CONNECT and never
// answers holds a dial only until its context ends (the SSH client left,
// the bastion shuts down), not for the whole Timeout; over a fresh
// connection and over a spare one (ConnectNow).
func TestConnectGivesUpWhenCancelled(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p, func(cfg *Config) { cfg.Timeout = 30 * time.Second })
	vm := findVM(t, c, "web-1")
	p.SetHoldConnects(true)
	for _, how := range []string{"fresh connection", "spare connection"} {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		var err error
		if how == "fresh connection" {
			_, err = c.DialConsole(ctx, vm, RFB)
		} else {
			p.SetHoldConnects(false)
			readBanner(t, dial(t, c, vm, RFB)) // leaves a spare behind
			waitSpare(t, c, p.Host(0).Address())
			p.SetHoldConnects(true)
			f := c.ConnectNow(ctx, vm, RFB)
			if f == nil {
				t.Fatal("ConnectNow returned nil with a spare waiting")
			}
			_, err = f()
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s: the dial went on for %v after its context was cancelled", how, took.Round(time.Millisecond))
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", how, err)
		}
	}
}

// TestCloseWhenHostStopsReading: closing a console whose host has stopped
// reading, or closing its writing half (a forward's client sent EOF), does
// not wait for crypto/tls's 5 s close_notify deadline, which would hold up
// the end of the session (its console.end record, its channel's close)
// for as long.
func TestCloseWhenHostStopsReading(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	p.AddVM(xapitest.VMSpec{Name: "stuck", Backend: func(rw io.ReadWriter) error {
		if _, err := io.WriteString(rw, "hello"); err != nil {
			return err
		}
		<-release // reads nothing more
		return nil
	}})
	c := newClient(t, p)
	for _, tt := range []struct {
		name  string
		close func(net.Conn) error
	}{
		{"Close", net.Conn.Close},
		{"CloseWrite", func(c net.Conn) error { return c.(interface{ CloseWrite() error }).CloseWrite() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := c.DialConsole(t.Context(), findVM(t, c, "stuck"), RFB)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Fill the buffers toward the host until a write cannot go on.
			if err := conn.SetWriteDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			chunk := make([]byte, 64<<10)
			for {
				if _, err := conn.Write(chunk); err != nil {
					break
				}
			}
			// And the last bytes of room, which a write that timed out can
			// leave (the host reads nothing, so corrupting the stream is
			// harmless).
			raw := conn.(*consoleConn).NetConn()
			if err := raw.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			for {
				if _, err := raw.Write([]byte{0}); err != nil {
					break
				}
			}
			if err := conn.SetWriteDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			tt.close(conn)
			// Without a bound it takes 5 s; with it, closeNotifyWait. The
			// margin is wide, for a loaded machine.
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%s took %v with a host that does not read", tt.name, d.Round(time.Millisecond))
			}
		})
	}
}
