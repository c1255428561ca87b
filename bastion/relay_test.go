package bastion_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/xapi"
	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// panicPool's consoles panic when read, as a bug anywhere on the
// console->client path of one session would.
type panicPool struct{ bastion.Pool }

type panicConn struct{ net.Conn }

func (panicConn) Read([]byte) (int, error) { panic("a bug in the console->client copy") }

func (p panicPool) DialConsole(ctx context.Context, vm xapi.VM, proto xapi.Protocol) (net.Conn, error) {
	c, err := p.Pool.DialConsole(ctx, vm, proto)
	if err != nil || vm.Name != "web-1" {
		return c, err
	}
	return panicConn{c}, nil
}

// TestRelayPanic: a relay that panics ends its own session, with
// console.end reason "internal error", and nothing else: the process and
// another user's console go on.
func TestRelayPanic(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{Configure: func(s *bastion.Server) {
		s.Pools[0] = panicPool{s.Pools[0]}
	}})
	other, err := b.Dial(t, "alice").Dial("tcp", "web-2:5900")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	banner := make([]byte, 12)
	if _, err := io.ReadFull(other, banner); err != nil {
		t.Fatal(err)
	}

	conn, err := b.Dial(t, "alice").Dial("tcp", "web-1:5900")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ev := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleEnd && ev.VM == "web-1" })
	if ev.Reason != bastion.EndInternalError {
		t.Errorf("console.end reason %q, want %q", ev.Reason, bastion.EndInternalError)
	}
	// web-2's console still answers: its RFB handshake goes on.
	other.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := other.Write(banner); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Read(make([]byte, 64)); err != nil {
		t.Errorf("the other console after the panic: %v", err)
	}
}

// TestBytesOutCountsPartialWrite: the VM streams while the client reads
// nothing, so the bastion sends exactly the channel's window (2 MiB,
// x/crypto's) and blocks in a write that has sent part of its data; the
// client then closes. console.end counts every byte the client was sent.
func TestBytesOutCountsPartialWrite(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	b.Sim.AddVM(xapitest.VMSpec{Name: "bulk", Backend: xapitest.BenchBackend})
	conn, err := b.Dial(t, "alice").Dial("tcp", "bulk:5900")
	if err != nil {
		t.Fatal(err)
	}
	banner := make([]byte, len(xapitest.BenchBanner))
	if _, err := io.ReadFull(conn, banner); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "S 8388608\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the window fills (in milliseconds); nothing is read
	conn.Close()
	ev := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventConsoleEnd })
	const window = 2 << 20 // the banner included
	if *ev.BytesOut != window {
		t.Errorf("bytes_out = %d, want %d: the window the client was sent", *ev.BytesOut, window)
	}
}

// TestTypedAfterDetach: what is typed after Ctrl-] in the same packet (a
// paste, or keys a slow link sends together) goes to the prompt.
func TestTypedAfterDetach(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	_, _, in, out := promptSession(t, b, 80)
	io.WriteString(in, "console web-1\r")
	waitFor(t, out, "Ctrl-] to detach")
	io.WriteString(in, "\x1dbogus\r") // one write: one channel data packet
	waitFor(t, out, "detached from web-1")
	waitFor(t, out, `unknown command "bogus"`)
	if strings.Contains(out.String(), "root@web-1:~# bogus") {
		t.Error("what came after Ctrl-] went to the console")
	}
}
