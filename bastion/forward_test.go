package bastion

import (
	"bytes"
	"net"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// fakeNewChannel is a channel open that records what it is accepted with;
// it takes at most window bytes with the confirmation.
type fakeNewChannel struct {
	gossh.NewChannel
	window   int
	accepted bool
	data     []byte
	extra    []byte // the open's payload
	rejected string // the message it was rejected with
}

func (f *fakeNewChannel) ExtraData() []byte { return f.extra }

func (f *fakeNewChannel) Reject(_ gossh.RejectionReason, msg string) error {
	f.rejected = msg
	return nil
}

func (f *fakeNewChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	f.accepted = true
	return nil, nil, nil
}

func (f *fakeNewChannel) AcceptWithData(data []byte) (gossh.Channel, <-chan *gossh.Request, int, error) {
	f.accepted = true
	n := min(len(data), f.window)
	f.data = bytes.Clone(data[:n])
	return nil, nil, n, nil
}

// bufferedConn is a console connection with bytes that came with the
// CONNECT reply.
type bufferedConn struct {
	net.Conn
	buf []byte
}

func (c *bufferedConn) Buffered() int { return len(c.buf) }

func (c *bufferedConn) Read(p []byte) (int, error) {
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// TestAcceptSendsFirstBytes: console bytes buffered with the CONNECT reply
// go with the channel's confirmation as far as the client's window allows,
// the rest waits for the relay, and bytes_out counts what was sent.
func TestAcceptSendsFirstBytes(t *testing.T) {
	const banner = "RFB 003.008\n"
	for _, tc := range []struct {
		name                string
		buffered            string
		window              int
		wantSent, wantLater string
	}{
		{"banner", banner, 1 << 20, banner, ""},
		{"small window", banner, 5, banner[:5], banner[5:]},
		{"nothing buffered", "", 1 << 20, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := &fakeNewChannel{window: tc.window}
			cs := &consoleSession{}
			if _, _, err := accept(nc, cs, &bufferedConn{buf: []byte(tc.buffered)}); err != nil {
				t.Fatal(err)
			}
			if !nc.accepted {
				t.Fatal("not accepted")
			}
			if string(nc.data) != tc.wantSent || string(cs.pending) != tc.wantLater {
				t.Errorf("sent %q with the confirmation and left %q, want %q and %q", nc.data, cs.pending, tc.wantSent, tc.wantLater)
			}
			if got := cs.bytesOut.Load(); got != int64(len(tc.wantSent)) {
				t.Errorf("bytes out %d, want %d", got, len(tc.wantSent))
			}
		})
	}
}
