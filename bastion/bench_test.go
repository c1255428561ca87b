package bastion_test

import (
	"io"
	"net"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/xapi/xapitest/rfb"
)

// openForward opens a direct-tcpip channel to vm:5900, as "ssh -L" does.
func openForward(b *testing.B, c *gossh.Client, vm string) net.Conn {
	conn, err := c.Dial("tcp", net.JoinHostPort(vm, "5900"))
	if err != nil {
		b.Fatal(err)
	}
	return conn
}

// BenchmarkConsoleOpen measures a warm console open through the bastion:
// channel open to the first console byte (the RFB banner).
func BenchmarkConsoleOpen(b *testing.B) {
	bt := bastiontest.Start(b, bastiontest.Options{})
	c := bt.Dial(b, "alice")
	banner := make([]byte, 12)
	for b.Loop() {
		conn := openForward(b, c, "web-1")
		if _, err := io.ReadFull(conn, banner); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

// BenchmarkForwardFrames measures VM-to-client throughput of a forward:
// full 640x480x32bpp frame buffer updates of the simulated VNC console.
func BenchmarkForwardFrames(b *testing.B) {
	bt := bastiontest.Start(b, bastiontest.Options{})
	c := bt.Dial(b, "alice")
	conn := openForward(b, c, "web-1")
	defer conn.Close()
	// RFB 3.8 handshake: version, security None, ClientInit.
	buf := make([]byte, 64<<10)
	io.ReadFull(conn, buf[:12])
	conn.Write([]byte("RFB 003.008\n"))
	io.ReadFull(conn, buf[:2]) // one security type
	conn.Write([]byte{1})
	io.ReadFull(conn, buf[:4]) // SecurityResult
	conn.Write([]byte{1})      // shared
	io.ReadFull(conn, buf[:24])
	nameLen := int(buf[20])<<24 | int(buf[21])<<16 | int(buf[22])<<8 | int(buf[23])
	io.ReadFull(conn, buf[:nameLen])
	frame := int64(4 + 12 + rfb.Width*rfb.Height*4)
	req := []byte{3, 0, 0, 0, 0, 0, byte(rfb.Width >> 8), byte(rfb.Width & 0xff), byte(rfb.Height >> 8), byte(rfb.Height & 0xff)}
	b.SetBytes(frame)
	for b.Loop() {
		conn.Write(req)
		if _, err := io.CopyN(io.Discard, conn, frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeystroke measures keys' round trips through a console session
// with a PTY: two keys to the simulated shell and their echoes back.
// With -benchmem and -memprofile it shows what a keystroke allocates (the
// client's and the simulated pool's allocations are in the same process).
func BenchmarkKeystroke(b *testing.B) {
	bt := bastiontest.Start(b, bastiontest.Options{})
	c := bt.Dial(b, "alice")
	sess, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		b.Fatal(err)
	}
	in, _ := sess.StdinPipe()
	out, _ := sess.StdoutPipe()
	if err := sess.Start("console web-1"); err != nil {
		b.Fatal(err)
	}
	// The first key's echo comes after the bastion's greeting; the shell
	// then echoes each key typed.
	buf := make([]byte, 4096)
	key := []byte{'x'}
	if _, err := in.Write(key); err != nil {
		b.Fatal(err)
	}
	for seen := ""; !strings.HasSuffix(seen, "x"); {
		n, err := out.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		seen += string(buf[:n])
	}
	// Each op is two keys, so that the line stays short: a character
	// (echoed) and DEL (echoed as "\b \b").
	del := []byte{0x7f}
	for b.Loop() {
		for _, k := range []struct {
			key  []byte
			echo int
		}{{del, 3}, {key, 1}} {
			if _, err := in.Write(k.key); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(out, buf[:k.echo]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
