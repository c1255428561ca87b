package rfb

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Messages a client sends, for the tests to put together.

func setPixelFormatMsg(pf pixelFormat) []byte {
	return pf.appendTo([]byte{msgSetPixelFormat, 0, 0, 0})
}

func setEncodingsMsg(encs ...int32) []byte {
	b := binary.BigEndian.AppendUint16([]byte{msgSetEncodings, 0}, uint16(len(encs)))
	for _, e := range encs {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	return b
}

func updateRequestMsg(incremental bool, x, y, w, h int) []byte {
	b := []byte{msgFramebufferUpdateRequest, boolByte(incremental)}
	for _, v := range []int{x, y, w, h} {
		b = binary.BigEndian.AppendUint16(b, uint16(v))
	}
	return b
}

func keyEventMsg(down bool, key uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{msgKeyEvent, boolByte(down), 0, 0}, key)
}

func pointerEventMsg(mask uint8, x, y int) []byte {
	b := binary.BigEndian.AppendUint16([]byte{msgPointerEvent, mask}, uint16(x))
	return binary.BigEndian.AppendUint16(b, uint16(y))
}

// cutTextMsg returns a ClientCutText header announcing n bytes, followed by
// text.
func cutTextMsg(n uint32, text string) []byte {
	b := binary.BigEndian.AppendUint32([]byte{msgClientCutText, 0, 0, 0}, n)
	return append(b, text...)
}

// handshake38 is what a 3.8 client sends before its first message: version,
// security type None, shared flag.
const handshake38 = "RFB 003.008\n\x01\x01"

// Pixel formats for the tests.
var (
	// rgb565BE is 16 bits per pixel, big-endian, 5 bits red and blue and 6
	// bits green.
	rgb565BE = pixelFormat{bitsPerPixel: 16, depth: 16, bigEndian: true, trueColour: true,
		redMax: 31, greenMax: 63, blueMax: 31, redShift: 11, greenShift: 5, blueShift: 0}
	rgb555LE = pixelFormat{bitsPerPixel: 16, depth: 15, trueColour: true,
		redMax: 31, greenMax: 31, blueMax: 31, redShift: 10, greenShift: 5, blueShift: 0}
	bgr233 = pixelFormat{bitsPerPixel: 8, depth: 8, trueColour: true,
		redMax: 7, greenMax: 7, blueMax: 3, redShift: 0, greenShift: 3, blueShift: 6}
	// rgbx32BE is the format vncsnapshot asks for, but big-endian.
	rgbx32BE = pixelFormat{bitsPerPixel: 32, depth: 24, bigEndian: true, trueColour: true,
		redMax: 255, greenMax: 255, blueMax: 255, redShift: 0, greenShift: 8, blueShift: 16}
	// odd has 10-bit channels in a strange order.
	odd = pixelFormat{bitsPerPixel: 32, depth: 30, trueColour: true,
		redMax: 1023, greenMax: 1023, blueMax: 1023, redShift: 2, greenShift: 22, blueShift: 12}
)

// testClient is a minimal RFB client talking to Serve over net.Pipe.
type testClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	errc chan error // Serve's result
}

// newTestClient starts Serve on one end of a pipe and returns a client on
// the other, before the handshake.
func newTestClient(t *testing.T, name string) *testClient {
	t.Helper()
	server, client := net.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(server, name)
		server.Close()
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { client.Close() })
	return &testClient{t: t, conn: client, r: bufio.NewReader(client), errc: errc}
}

func (c *testClient) write(msgs ...[]byte) {
	c.t.Helper()
	for _, m := range msgs {
		if _, err := c.conn.Write(m); err != nil {
			c.t.Fatalf("client write: %v", err)
		}
	}
}

func (c *testClient) read(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Fatalf("client read %d bytes: %v", n, err)
	}
	return b
}

func (c *testClient) u32() uint32 { c.t.Helper(); return binary.BigEndian.Uint32(c.read(4)) }

// serverInit is the content of a ServerInit message.
type serverInit struct {
	width, height int
	pf            pixelFormat
	name          string
}

// handshake sends version (such as "RFB 003.008\n"), then does what the
// server should take it for, 3.minor, up to ServerInit, which it returns.
func (c *testClient) handshake(version string, minor int) serverInit {
	c.t.Helper()
	if got := string(c.read(12)); got != protocolVersion {
		c.t.Fatalf("server version = %q, want %q", got, protocolVersion)
	}
	c.write([]byte(version))
	if minor == 3 {
		// The server decides.
		if got := c.u32(); got != securityNone {
			c.t.Fatalf("security type = %d, want %d", got, securityNone)
		}
	} else {
		if got := c.read(2); !bytes.Equal(got, []byte{1, securityNone}) {
			c.t.Fatalf("security types = % x, want 01 01", got)
		}
		c.write([]byte{securityNone})
		if minor == 8 {
			if got := c.u32(); got != securityResultOK {
				c.t.Fatalf("security result = %d, want OK", got)
			}
		}
	}
	c.write([]byte{1}) // ClientInit, shared
	b := c.read(4 + pixelFormatLen + 4)
	si := serverInit{
		width:  int(binary.BigEndian.Uint16(b[0:])),
		height: int(binary.BigEndian.Uint16(b[2:])),
		pf:     parsePixelFormat(b[4:]),
	}
	si.name = string(c.read(int(binary.BigEndian.Uint32(b[4+pixelFormatLen:]))))
	return si
}

// update is a FramebufferUpdate with at most one rectangle.
type update struct {
	rects  int
	r      rect
	pixels []byte
}

// readUpdate reads a FramebufferUpdate whose pixels are in pf.
func (c *testClient) readUpdate(pf pixelFormat) update {
	c.t.Helper()
	b := c.read(4)
	if b[0] != 0 {
		c.t.Fatalf("server message type = %d, want FramebufferUpdate", b[0])
	}
	u := update{rects: int(binary.BigEndian.Uint16(b[2:]))}
	if u.rects == 0 {
		return u
	}
	if u.rects != 1 {
		c.t.Fatalf("update has %d rectangles, want 1", u.rects)
	}
	b = c.read(12)
	u.r = rect{
		x: int(binary.BigEndian.Uint16(b[0:])),
		y: int(binary.BigEndian.Uint16(b[2:])),
		w: int(binary.BigEndian.Uint16(b[4:])),
		h: int(binary.BigEndian.Uint16(b[6:])),
	}
	if enc := int32(binary.BigEndian.Uint32(b[8:])); enc != encodingRaw {
		c.t.Fatalf("rectangle encoding = %d, want Raw", enc)
	}
	u.pixels = c.read(u.r.w * u.r.h * pf.bytesPerPixel())
	return u
}

// closeAndWait closes the client end and returns Serve's result.
func (c *testClient) closeAndWait() error {
	c.t.Helper()
	c.conn.Close()
	select {
	case err := <-c.errc:
		return err
	case <-time.After(10 * time.Second):
		c.t.Fatal("Serve did not return after the client closed")
		return nil
	}
}

// decodePixel returns the channel values of the pixel at the start of b.
func decodePixel(pf pixelFormat, b []byte) (r, g, bl uint32) {
	var v uint32
	switch {
	case pf.bitsPerPixel == 8:
		v = uint32(b[0])
	case pf.bitsPerPixel == 16 && pf.bigEndian:
		v = uint32(binary.BigEndian.Uint16(b))
	case pf.bitsPerPixel == 16:
		v = uint32(binary.LittleEndian.Uint16(b))
	case pf.bigEndian:
		v = binary.BigEndian.Uint32(b)
	default:
		v = binary.LittleEndian.Uint32(b)
	}
	return v >> pf.redShift & uint32(pf.redMax),
		v >> pf.greenShift & uint32(pf.greenMax),
		v >> pf.blueShift & uint32(pf.blueMax)
}

// checkPixels checks that u's pixels in pf show the test pattern.
func checkPixels(t *testing.T, pf pixelFormat, u update) {
	t.Helper()
	bpp := pf.bytesPerPixel()
	bad := 0
	for y := u.r.y; y < u.r.y+u.r.h; y++ {
		for x := u.r.x; x < u.r.x+u.r.w; x++ {
			off := ((y-u.r.y)*u.r.w + (x - u.r.x)) * bpp
			gr, gg, gb := decodePixel(pf, u.pixels[off:])
			r, g, b := Pattern(x, y)
			wr, wg, wb := scale(uint32(r), pf.redMax), scale(uint32(g), pf.greenMax), scale(uint32(b), pf.blueMax)
			if gr != wr || gg != wg || gb != wb {
				if bad++; bad <= 5 {
					t.Errorf("pixel (%d, %d) = (%d, %d, %d), want (%d, %d, %d)", x, y, gr, gg, gb, wr, wg, wb)
				}
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d bad pixels in all", bad)
	}
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		version string
		minor   int // what the server should take it for
	}{
		{name: "3.3", version: "RFB 003.003\n", minor: 3},
		{name: "3.5 as 3.3", version: "RFB 003.005\n", minor: 3},
		{name: "3.7", version: "RFB 003.007\n", minor: 7},
		{name: "3.8", version: "RFB 003.008\n", minor: 8},
		{name: "Apple 3.889 as 3.8", version: "RFB 003.889\n", minor: 8},
		{name: "future 3.10 as 3.8", version: "RFB 003.010\n", minor: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, "vm-0 console")
			si := c.handshake(tt.version, tt.minor)
			want := serverInit{width: Width, height: Height, pf: serverFormat, name: "vm-0 console"}
			if si != want {
				t.Fatalf("ServerInit = %+v, want %+v", si, want)
			}
			c.write(updateRequestMsg(false, 0, 0, Width, Height))
			u := c.readUpdate(si.pf)
			if u.r != fullScreen {
				t.Fatalf("update rectangle = %+v, want %+v", u.r, fullScreen)
			}
			checkPixels(t, si.pf, u)
			if err := c.closeAndWait(); err != nil {
				t.Fatalf("Serve = %v, want nil after the client closed", err)
			}
		})
	}
}

func TestHandshakeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  error
	}{
		{name: "not RFB", input: "SSH-2.0-Go\r\n", want: ErrProtocol},
		{name: "bad digits", input: "RFB 003.0x8\n", want: ErrProtocol},
		{name: "version 4", input: "RFB 004.000\n", want: errors.ErrUnsupported},
		{name: "short version", input: "RFB 003", want: io.ErrUnexpectedEOF},
		{name: "security type not offered", input: "RFB 003.008\n\x02", want: ErrProtocol},
		{name: "no ClientInit", input: "RFB 003.008\n\x01", want: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rw := struct {
				io.Reader
				io.Writer
			}{strings.NewReader(tt.input), io.Discard}
			if err := Serve(rw, "x"); !errors.Is(err, tt.want) {
				t.Fatalf("Serve = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestSecurityFailureReason checks that a 3.8 client choosing a type that
// was not offered is told why.
func TestSecurityFailureReason(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, "x")
	c.read(12)
	c.write([]byte("RFB 003.008\n"))
	c.read(2)
	c.write([]byte{2}) // VNC authentication
	if got := c.u32(); got != securityFailed {
		t.Fatalf("security result = %d, want failed", got)
	}
	reason := string(c.read(int(c.u32())))
	if reason == "" {
		t.Error("no failure reason")
	}
	if err := c.closeAndWait(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Serve = %v, want %v", err, ErrProtocol)
	}
}

func TestSetPixelFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pf   pixelFormat
	}{
		{name: "16bpp 565 big-endian", pf: rgb565BE},
		{name: "16bpp 555 little-endian", pf: rgb555LE},
		{name: "8bpp bgr233", pf: bgr233},
		{name: "32bpp rgbx big-endian", pf: rgbx32BE},
		{name: "32bpp 10-bit channels", pf: odd},
		{name: "server format again", pf: serverFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, "x")
			c.handshake("RFB 003.008\n", 8)
			c.write(setPixelFormatMsg(tt.pf), updateRequestMsg(false, 0, 0, Width, Height))
			u := c.readUpdate(tt.pf)
			if u.r != fullScreen {
				t.Fatalf("update rectangle = %+v, want %+v", u.r, fullScreen)
			}
			checkPixels(t, tt.pf, u)
		})
	}
}

// TestRGB565Pixels checks a few pixels in 16bpp big-endian byte by byte,
// without trusting scale.
func TestRGB565Pixels(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, "x")
	c.handshake("RFB 003.008\n", 8)
	c.write(setPixelFormatMsg(rgb565BE), updateRequestMsg(false, 0, 0, Width, Height))
	u := c.readUpdate(rgb565BE)
	barW := Width / Bars
	tests := []struct {
		name string
		x, y int
		want [2]byte
	}{
		{name: "white", x: barW / 2, y: 10, want: [2]byte{0xff, 0xff}},
		{name: "yellow", x: barW + barW/2, y: 10, want: [2]byte{0xff, 0xe0}},
		{name: "cyan", x: 2*barW + 1, y: StripY - 1, want: [2]byte{0x07, 0xff}},
		{name: "red", x: 5*barW + barW/2, y: 100, want: [2]byte{0xf8, 0x00}},
		{name: "blue", x: 6*barW + barW/2, y: 100, want: [2]byte{0x00, 0x1f}},
		{name: "black strip", x: 0, y: StripY, want: [2]byte{0x00, 0x00}},
		{name: "white strip", x: Width - 1, y: Height - 1, want: [2]byte{0xff, 0xff}},
	}
	for _, tt := range tests {
		off := (tt.y*Width + tt.x) * 2
		if got := [2]byte(u.pixels[off:]); got != tt.want {
			t.Errorf("%s at (%d, %d) = % x, want % x", tt.name, tt.x, tt.y, got, tt.want)
		}
	}
}

func TestUpdateRegion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		x, y, w, h int
		want       rect // zero for an update without rectangles
	}{
		{name: "inside", x: 100, y: 50, w: 30, h: 20, want: rect{100, 50, 30, 20}},
		{name: "whole rows", x: 0, y: 400, w: Width, h: 7, want: rect{0, 400, Width, 7}},
		{name: "clipped", x: Width - 10, y: Height - 5, w: 100, h: 100, want: rect{Width - 10, Height - 5, 10, 5}},
		{name: "outside", x: Width, y: 0, w: 10, h: 10},
		{name: "empty", x: 10, y: 10, w: 0, h: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, "x")
			c.handshake("RFB 003.008\n", 8)
			c.write(setPixelFormatMsg(rgb565BE), updateRequestMsg(false, tt.x, tt.y, tt.w, tt.h))
			u := c.readUpdate(rgb565BE)
			if u.r != tt.want {
				t.Fatalf("update rectangle = %+v, want %+v", u.r, tt.want)
			}
			checkPixels(t, rgb565BE, u)
		})
	}
}

// TestIncremental checks that an incremental request gets what the client
// has not seen, and nothing once it has seen everything.
func TestIncremental(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, "x")
	c.handshake("RFB 003.008\n", 8)
	small := rect{1, 2, 3, 4}
	steps := []struct {
		name string
		msgs [][]byte
		pf   pixelFormat
		want rect
	}{
		{
			name: "first request is incremental",
			msgs: [][]byte{updateRequestMsg(true, 0, 0, Width, Height)},
			pf:   serverFormat,
			want: fullScreen,
		},
		{
			// The incremental request gets no answer, so the next update
			// is for the small non-incremental one.
			name: "nothing changed",
			msgs: [][]byte{
				updateRequestMsg(true, 0, 0, Width, Height),
				updateRequestMsg(false, small.x, small.y, small.w, small.h),
			},
			pf:   serverFormat,
			want: small,
		},
		{
			name: "new pixel format",
			msgs: [][]byte{setPixelFormatMsg(bgr233), updateRequestMsg(true, 10, 20, 30, 40)},
			pf:   bgr233,
			want: rect{10, 20, 30, 40},
		},
		{
			// The part-screen update did not cover everything new, so the
			// rest is still owed.
			name: "rest of new pixel format",
			msgs: [][]byte{updateRequestMsg(true, 0, 0, Width, Height)},
			pf:   bgr233,
			want: fullScreen,
		},
		{
			name: "nothing changed again",
			msgs: [][]byte{
				updateRequestMsg(true, 0, 0, Width, Height),
				updateRequestMsg(false, small.x, small.y, small.w, small.h),
			},
			pf:   bgr233,
			want: small,
		},
	}
	for _, s := range steps {
		c.write(s.msgs...)
		u := c.readUpdate(s.pf)
		if u.r != s.want {
			t.Fatalf("%s: update rectangle = %+v, want %+v", s.name, u.r, s.want)
		}
		checkPixels(t, s.pf, u)
	}
}

// TestIgnoredMessages checks that input events, encodings and cut text are
// read and do not disturb what follows.
func TestIgnoredMessages(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, "x")
	c.handshake("RFB 003.003\n", 3)
	c.write(
		setEncodingsMsg(7, 16, 5, 1, 0, -239, -223),
		keyEventMsg(true, 0xff0d),
		keyEventMsg(false, 0xff0d),
		pointerEventMsg(1, 320, 240),
		cutTextMsg(5, "hello"),
		cutTextMsg(0, ""),
		setEncodingsMsg(),
		updateRequestMsg(false, 5, 6, 7, 8),
	)
	u := c.readUpdate(serverFormat)
	if want := (rect{5, 6, 7, 8}); u.r != want {
		t.Fatalf("update rectangle = %+v, want %+v", u.r, want)
	}
	checkPixels(t, serverFormat, u)
	if err := c.closeAndWait(); err != nil {
		t.Fatalf("Serve = %v, want nil after the client closed", err)
	}
}

func TestServeErrors(t *testing.T) {
	t.Parallel()
	colourMap := rgb565BE
	colourMap.trueColour = false
	bpp24 := serverFormat
	bpp24.bitsPerPixel = 24
	tests := []struct {
		name string
		msgs [][]byte
		want error // nil: Serve returns nil
	}{
		{name: "clean end", want: nil},
		{name: "unknown message", msgs: [][]byte{{7, 0, 0, 0}}, want: ErrProtocol},
		{name: "qemu message", msgs: [][]byte{{255, 0, 0, 0}}, want: ErrProtocol},
		{name: "colour map", msgs: [][]byte{setPixelFormatMsg(colourMap)}, want: errors.ErrUnsupported},
		{name: "24bpp", msgs: [][]byte{setPixelFormatMsg(bpp24)}, want: errors.ErrUnsupported},
		{name: "cut text too long", msgs: [][]byte{cutTextMsg(MaxCutText+1, "x")}, want: ErrProtocol},
		{name: "cut text cut short", msgs: [][]byte{cutTextMsg(10, "abc")}, want: io.ErrUnexpectedEOF},
		{name: "cut text at limit", msgs: [][]byte{cutTextMsg(MaxCutText, strings.Repeat("x", MaxCutText))}, want: nil},
		{name: "request cut short", msgs: [][]byte{updateRequestMsg(false, 0, 0, 1, 1)[:6]}, want: io.ErrUnexpectedEOF},
		{name: "encodings cut short", msgs: [][]byte{setEncodingsMsg(0, 1, 2)[:9]}, want: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := append([]byte(handshake38), bytes.Join(tt.msgs, nil)...)
			rw := struct {
				io.Reader
				io.Writer
			}{bytes.NewReader(in), io.Discard}
			err := Serve(rw, "x")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Serve = %v, want %v", err, tt.want)
			}
		})
	}
}

// errWriter fails every write.
type errWriter struct{}

var errBroken = errors.New("broken pipe")

func (errWriter) Write([]byte) (int, error) { return 0, errBroken }

func TestServeWriteError(t *testing.T) {
	t.Parallel()
	rw := struct {
		io.Reader
		io.Writer
	}{strings.NewReader(handshake38), errWriter{}}
	if err := Serve(rw, "x"); !errors.Is(err, errBroken) {
		t.Fatalf("Serve = %v, want %v", err, errBroken)
	}
}

func TestPattern(t *testing.T) {
	t.Parallel()
	barW := Width / Bars
	tests := []struct {
		name    string
		x, y    int
		r, g, b uint8
	}{
		{name: "white bar", x: 0, y: 0, r: 255, g: 255, b: 255},
		{name: "yellow bar", x: barW, y: 0, r: 255, g: 255, b: 0},
		{name: "cyan bar", x: 2 * barW, y: 0, r: 0, g: 255, b: 255},
		{name: "green bar", x: 3 * barW, y: 0, r: 0, g: 255, b: 0},
		{name: "magenta bar", x: 4 * barW, y: 0, r: 255, g: 0, b: 255},
		{name: "red bar", x: 5 * barW, y: 0, r: 255, g: 0, b: 0},
		{name: "blue bar", x: 6*barW + barW - 1, y: StripY - 1, r: 0, g: 0, b: 255},
		{name: "black bar", x: Width - 1, y: 0, r: 0, g: 0, b: 0},
		{name: "strip black", x: 0, y: StripY, r: 0, g: 0, b: 0},
		{name: "strip second step", x: barW, y: Height - 1, r: 36, g: 36, b: 36},
		{name: "strip white", x: Width - 1, y: Height - 1, r: 255, g: 255, b: 255},
		{name: "outside", x: -1, y: 0, r: 0, g: 0, b: 0},
		{name: "below", x: 0, y: Height, r: 0, g: 0, b: 0},
	}
	for _, tt := range tests {
		if r, g, b := Pattern(tt.x, tt.y); r != tt.r || g != tt.g || b != tt.b {
			t.Errorf("%s: Pattern(%d, %d) = (%d, %d, %d), want (%d, %d, %d)", tt.name, tt.x, tt.y, r, g, b, tt.r, tt.g, tt.b)
		}
	}
}

// FuzzServe feeds arbitrary bytes to Serve after a 3.8 handshake. Serve
// must not panic, and must return once the input ends.
func FuzzServe(f *testing.F) {
	f.Add([]byte{})
	f.Add(updateRequestMsg(false, 0, 0, Width, Height))
	f.Add(bytes.Join([][]byte{
		setPixelFormatMsg(rgb565BE),
		setEncodingsMsg(0, 1, -239),
		updateRequestMsg(true, 0, 0, Width, Height),
		updateRequestMsg(true, 0, 0, Width, Height),
		updateRequestMsg(false, 600, 400, 100, 100),
		keyEventMsg(true, 'a'),
		pointerEventMsg(0, 1, 1),
		cutTextMsg(3, "abc"),
	}, nil))
	f.Add(setPixelFormatMsg(pixelFormat{bitsPerPixel: 32, trueColour: true,
		redMax: 65535, greenMax: 0, blueMax: 1, redShift: 255, greenShift: 31, blueShift: 32}))
	f.Add(cutTextMsg(0xffffffff, ""))
	f.Fuzz(func(t *testing.T, data []byte) {
		rw := struct {
			io.Reader
			io.Writer
		}{io.MultiReader(strings.NewReader(handshake38), bytes.NewReader(data)), io.Discard}
		Serve(rw, "fuzz")
	})
}

func BenchmarkFullUpdate(b *testing.B) {
	for _, pf := range []pixelFormat{serverFormat, rgb565BE} {
		b.Run(pf.name(), func(b *testing.B) {
			c := &conn{w: bufio.NewWriterSize(io.Discard, 64<<10), pf: pf}
			b.SetBytes(int64(Width * Height * pf.bytesPerPixel()))
			for b.Loop() {
				if err := c.sendUpdate(fullScreen); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	rgb := frameRGB()
	for b.Loop() {
		rgb565BE.encode(rgb)
	}
}

// name describes pf for benchmark names.
func (pf pixelFormat) name() string {
	order := "le"
	if pf.bigEndian {
		order = "be"
	}
	return fmt.Sprintf("%dbpp-%s", pf.bitsPerPixel, order)
}
