// Package rfb is a small RFB (VNC) server whose screen is a fixed test
// pattern.
//
// The simulated XAPI pool in xapitest serves it behind the console CONNECT
// endpoint of every rfb console, so that the bastion can be tested end to end,
// with real VNC clients, without a hypervisor. It speaks enough of RFC 6143 for
// a viewer to draw the screen: protocol versions 3.3, 3.7 and 3.8, the
// security type None, any true-colour pixel format, and the Raw encoding.
//
// The screen never changes. A request for a non-incremental update is
// answered at once with the requested region. An incremental request is
// answered with whatever the client has not been sent yet in its current
// pixel format (everything, on a new connection or after SetPixelFormat);
// once the client has the whole screen, incremental requests stay pending
// for ever, as they would on a real server whose screen is idle.
package rfb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrProtocol is wrapped by the errors Serve returns when the client breaks
// the protocol: a malformed version, an unknown message type, or a cut text
// longer than MaxCutText. Requests that are valid but not implemented, such as
// a colour-map pixel format, wrap errors.ErrUnsupported instead.
var ErrProtocol = errors.New("protocol error")

// MaxCutText is the longest ClientCutText that Serve accepts (and ignores).
const MaxCutText = 1 << 20

// Client-to-server message types, RFC 6143 section 7.5.
const (
	msgSetPixelFormat           = 0
	msgSetEncodings             = 2
	msgFramebufferUpdateRequest = 3
	msgKeyEvent                 = 4
	msgPointerEvent             = 5
	msgClientCutText            = 6
)

// Security types and results, RFC 6143 sections 7.1.2 and 7.1.3.
const (
	securityNone     = 1
	securityResultOK = 0
	securityFailed   = 1
)

const encodingRaw = 0

// protocolVersion is the banner sent by the server.
const protocolVersion = "RFB 003.008\n"

// Serve speaks RFB on rw as the server until rw fails or the client goes away.
// name is the desktop name sent in ServerInit.
//
// Serve returns nil when the client closes the connection between messages
// (rw's Read returns io.EOF). It returns an error wrapping ErrProtocol or
// errors.ErrUnsupported when the client sends something it cannot follow,
// and an error wrapping rw's error when reading or writing fails. Serve does
// not close rw.
func Serve(rw io.ReadWriter, name string) error {
	c := &conn{
		r:     bufio.NewReader(rw),
		w:     bufio.NewWriterSize(rw, 64<<10),
		pf:    serverFormat,
		dirty: fullScreen,
	}
	if err := c.handshake(name); err != nil {
		return err
	}
	return c.serve()
}

// conn is the state of one connection.
type conn struct {
	r *bufio.Reader
	w *bufio.Writer

	pf pixelFormat // the client's pixel format
	fb []byte      // the pattern in pf, from frame; nil until needed

	// encodings is the client's list from SetEncodings, most preferred
	// first. Only Raw is ever sent, which RFC 6143 allows whatever the list
	// says, so it is kept only to be looked at in a debugger.
	encodings []int32

	// dirty bounds what the client has not been sent in pf. It is only
	// cleared by an update that covers it all, so it may overstate.
	dirty rect

	buf [64]byte // scratch space for reading fixed-size messages
}

// readFull reads exactly n <= len(c.buf) bytes into c.buf. It reports
// io.ErrUnexpectedEOF if the input ends before n bytes.
func (c *conn) readFull(n int) ([]byte, error) {
	b := c.buf[:n]
	if _, err := io.ReadFull(c.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// handshake runs the protocol version, security and initialisation phases
// (RFC 6143 sections 7.1 and 7.3).
func (c *conn) handshake(name string) error {
	if _, err := io.WriteString(c.w, protocolVersion); err != nil {
		return fmt.Errorf("rfb: write protocol version: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("rfb: write protocol version: %w", err)
	}
	b, err := c.readFull(len(protocolVersion))
	if err != nil {
		return fmt.Errorf("rfb: read client protocol version: %w", err)
	}
	minor, err := parseVersion(b)
	if err != nil {
		return err
	}

	if minor == 3 {
		// Version 3.3: the server decides the security type alone.
		b := binary.BigEndian.AppendUint32(c.buf[:0], securityNone)
		if _, err := c.w.Write(b); err != nil {
			return fmt.Errorf("rfb: write security type: %w", err)
		}
	} else {
		if _, err := c.w.Write([]byte{1, securityNone}); err != nil {
			return fmt.Errorf("rfb: write security types: %w", err)
		}
		if err := c.w.Flush(); err != nil {
			return fmt.Errorf("rfb: write security types: %w", err)
		}
		b, err := c.readFull(1)
		if err != nil {
			return fmt.Errorf("rfb: read security type: %w", err)
		}
		if b[0] != securityNone {
			err := fmt.Errorf("rfb: %w: client chose security type %d, which was not offered", ErrProtocol, b[0])
			if minor >= 8 {
				// 3.8 reports the failure with a reason; 3.7 just closes.
				reason := "security type not offered"
				out := binary.BigEndian.AppendUint32(c.buf[:0], securityFailed)
				out = binary.BigEndian.AppendUint32(out, uint32(len(reason)))
				out = append(out, reason...)
				if _, werr := c.w.Write(out); werr == nil {
					c.w.Flush()
				}
			}
			return err
		}
		// 3.7 sends no SecurityResult for None; 3.8 does.
		if minor >= 8 {
			b := binary.BigEndian.AppendUint32(c.buf[:0], securityResultOK)
			if _, err := c.w.Write(b); err != nil {
				return fmt.Errorf("rfb: write security result: %w", err)
			}
		}
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("rfb: write security: %w", err)
	}

	// ClientInit carries the shared flag, which does not matter here: every
	// connection has its own view of the same unchanging screen.
	if _, err := c.readFull(1); err != nil {
		return fmt.Errorf("rfb: read ClientInit: %w", err)
	}
	out := binary.BigEndian.AppendUint16(c.buf[:0], Width)
	out = binary.BigEndian.AppendUint16(out, Height)
	out = serverFormat.appendTo(out)
	out = binary.BigEndian.AppendUint32(out, uint32(len(name)))
	if _, err := c.w.Write(out); err != nil {
		return fmt.Errorf("rfb: write ServerInit: %w", err)
	}
	if _, err := io.WriteString(c.w, name); err != nil {
		return fmt.Errorf("rfb: write ServerInit: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("rfb: write ServerInit: %w", err)
	}
	return nil
}

// parseVersion parses the client's ProtocolVersion message and returns the
// minor version to speak: 3, 7 or 8. As RFC 6143 section 7.1.1 advises, an
// unknown minor version below 7 is treated as 3.3 and one above 8 (such as
// Apple's 3.889) as 3.8, the highest the server offered.
func parseVersion(b []byte) (minor int, err error) {
	if string(b[:4]) != "RFB " || b[7] != '.' || b[11] != '\n' {
		return 0, fmt.Errorf("rfb: %w: bad client protocol version %q", ErrProtocol, b)
	}
	major, err1 := strconv.ParseUint(string(b[4:7]), 10, 16)
	minor64, err2 := strconv.ParseUint(string(b[8:11]), 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("rfb: %w: bad client protocol version %q", ErrProtocol, b)
	}
	if major != 3 {
		return 0, fmt.Errorf("rfb: client protocol version %q: %w", b, errors.ErrUnsupported)
	}
	switch {
	case minor64 < 7:
		return 3, nil
	case minor64 == 7:
		return 7, nil
	default:
		return 8, nil
	}
}

// serve reads and answers client messages until the client goes away.
func (c *conn) serve() error {
	for {
		t, err := c.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("rfb: read message: %w", err)
		}
		switch t {
		case msgSetPixelFormat:
			err = c.setPixelFormat()
		case msgSetEncodings:
			err = c.setEncodings()
		case msgFramebufferUpdateRequest:
			err = c.framebufferUpdateRequest()
		case msgKeyEvent:
			_, err = c.readFull(7)
		case msgPointerEvent:
			_, err = c.readFull(5)
		case msgClientCutText:
			err = c.clientCutText()
		default:
			return fmt.Errorf("rfb: %w: unknown client message type %d", ErrProtocol, t)
		}
		if err != nil {
			return fmt.Errorf("rfb: message type %d: %w", t, err)
		}
	}
}

func (c *conn) setPixelFormat() error {
	b, err := c.readFull(3 + pixelFormatLen)
	if err != nil {
		return err
	}
	pf := parsePixelFormat(b[3:])
	if err := pf.check(); err != nil {
		return fmt.Errorf("SetPixelFormat: %w: %w", err, errors.ErrUnsupported)
	}
	if pf.key() != c.pf.key() {
		c.fb = nil
		c.dirty = fullScreen
	}
	c.pf = pf
	return nil
}

func (c *conn) setEncodings() error {
	b, err := c.readFull(3)
	if err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(b[1:]))
	c.encodings = c.encodings[:0]
	for n > 0 {
		k := min(n, len(c.buf)/4)
		b, err := c.readFull(4 * k)
		if err != nil {
			return err
		}
		for i := range k {
			c.encodings = append(c.encodings, int32(binary.BigEndian.Uint32(b[4*i:])))
		}
		n -= k
	}
	return nil
}

func (c *conn) clientCutText() error {
	b, err := c.readFull(7)
	if err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(b[3:])
	if n > MaxCutText {
		return fmt.Errorf("%w: cut text of %d bytes exceeds %d", ErrProtocol, n, MaxCutText)
	}
	m, err := io.CopyN(io.Discard, c.r, int64(n))
	if err == io.EOF && m < int64(n) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (c *conn) framebufferUpdateRequest() error {
	b, err := c.readFull(9)
	if err != nil {
		return err
	}
	incremental := b[0] != 0
	r := rect{
		x: int(binary.BigEndian.Uint16(b[1:])),
		y: int(binary.BigEndian.Uint16(b[3:])),
		w: int(binary.BigEndian.Uint16(b[5:])),
		h: int(binary.BigEndian.Uint16(b[7:])),
	}.intersect(fullScreen)
	if incremental {
		r = r.intersect(c.dirty)
		if r.empty() {
			// Nothing has changed for the client and nothing ever will: a
			// real server would answer once the screen changes, so leave
			// the request pending.
			return nil
		}
	}
	if err := c.sendUpdate(r); err != nil {
		return err
	}
	if r.contains(c.dirty) {
		c.dirty = rect{}
	}
	return nil
}

// sendUpdate sends a FramebufferUpdate with r, in Raw encoding, or with no
// rectangle if r is empty.
func (c *conn) sendUpdate(r rect) error {
	out := append(c.buf[:0], 0, 0) // message type, padding
	if r.empty() {
		out = binary.BigEndian.AppendUint16(out, 0)
		if _, err := c.w.Write(out); err != nil {
			return err
		}
		return c.w.Flush()
	}
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(r.x))
	out = binary.BigEndian.AppendUint16(out, uint16(r.y))
	out = binary.BigEndian.AppendUint16(out, uint16(r.w))
	out = binary.BigEndian.AppendUint16(out, uint16(r.h))
	out = binary.BigEndian.AppendUint32(out, encodingRaw)
	if _, err := c.w.Write(out); err != nil {
		return err
	}
	if c.fb == nil {
		c.fb = frame(c.pf)
	}
	bpp := c.pf.bytesPerPixel()
	if r.x == 0 && r.w == Width {
		// Whole rows are contiguous in the frame: one write.
		if _, err := c.w.Write(c.fb[r.y*Width*bpp : (r.y+r.h)*Width*bpp]); err != nil {
			return err
		}
	} else {
		for y := r.y; y < r.y+r.h; y++ {
			off := (y*Width + r.x) * bpp
			if _, err := c.w.Write(c.fb[off : off+r.w*bpp]); err != nil {
				return err
			}
		}
	}
	return c.w.Flush()
}

// rect is a rectangle of pixels.
type rect struct{ x, y, w, h int }

var fullScreen = rect{0, 0, Width, Height}

func (r rect) empty() bool { return r.w <= 0 || r.h <= 0 }

// intersect returns the part of r inside s, which may be empty.
func (r rect) intersect(s rect) rect {
	x0, y0 := max(r.x, s.x), max(r.y, s.y)
	x1, y1 := min(r.x+r.w, s.x+s.w), min(r.y+r.h, s.y+s.h)
	if x1 <= x0 || y1 <= y0 {
		return rect{}
	}
	return rect{x0, y0, x1 - x0, y1 - y0}
}

// contains reports whether s lies inside r. Every rectangle contains an
// empty one.
func (r rect) contains(s rect) bool {
	if s.empty() {
		return true
	}
	return s.x >= r.x && s.y >= r.y && s.x+s.w <= r.x+r.w && s.y+s.h <= r.y+r.h
}
