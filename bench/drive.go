package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
	"github.com/xenbastion/xenbastion/xapi/xapitest/rfb"
)

// driver speaks to an rfb console's back end from the client side: the
// same bytes whether the console comes through the bastion or through sshd
// with TLS and CONNECT done here.
type driver interface {
	// Name is what the report calls the back end.
	Name() string
	// Greet reads the back end's greeting (the first console bytes) and
	// does whatever handshake Pull and Push need.
	Greet(s *stream) error
	// Pull has the back end send at least n bytes and reads them all. It
	// returns how many bytes crossed the forward.
	Pull(s *stream, n int64) (int64, error)
	// Push sends n bytes to the back end and waits for it to say it has
	// read them all. It returns how many bytes crossed the forward.
	Push(s *stream, n int64) (int64, error)
}

// ioChunk is how much the harness reads or writes at a time: large, so
// that the harness's own system calls stay small next to the path's work.
const ioChunk = 1 << 20

// zeros is what Push sends. Content makes no difference: compression is
// off on every path.
var zeros = make([]byte, ioChunk)

// drain reads exactly n bytes from r.
func drain(r io.Reader, n int64) error {
	buf := make([]byte, 256<<10)
	for n > 0 {
		k, err := r.Read(buf[:min(n, int64(len(buf)))])
		n -= int64(k)
		if err != nil && n > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// benchDriver drives xapitest.BenchBackend: "S n", "R n", then the bytes.
type benchDriver struct{}

func (benchDriver) Name() string { return "xapitest.BenchBackend" }

func (benchDriver) Greet(s *stream) error {
	line, err := s.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("bench banner: %w", err)
	}
	if line != xapitest.BenchBanner {
		return fmt.Errorf("bench banner %q, want %q", line, xapitest.BenchBanner)
	}
	return nil
}

func (benchDriver) Pull(s *stream, n int64) (int64, error) {
	if _, err := io.WriteString(s, "S "+strconv.FormatInt(n, 10)+"\n"); err != nil {
		return 0, err
	}
	return n, drain(s, n)
}

func (benchDriver) Push(s *stream, n int64) (int64, error) {
	if _, err := io.WriteString(s, "R "+strconv.FormatInt(n, 10)+"\n"); err != nil {
		return 0, err
	}
	for left := n; left > 0; {
		k := min(left, ioChunk)
		if _, err := s.Write(zeros[:k]); err != nil {
			return 0, err
		}
		left -= k
	}
	ack, err := s.r.ReadByte()
	if err != nil {
		return 0, fmt.Errorf("waiting for the ack: %w", err)
	}
	if ack != xapitest.BenchAck {
		return 0, fmt.Errorf("ack %q, want %q", ack, xapitest.BenchAck)
	}
	return n, nil
}

// rfbDriver drives the simulator's test-pattern VNC server, the default rfb
// back end, which needs no hook: Pull asks for whole-screen updates (raw,
// 32 bpp) and Push sends ClientCutText messages, which the server reads and
// drops, followed by a 1x1 update request whose reply is the ack.
type rfbDriver struct{}

func (rfbDriver) Name() string { return "xapitest/rfb (test-pattern VNC server)" }

const (
	rfbFrame      = 4 + 12 + rfb.Width*rfb.Height*4 // FramebufferUpdate with one raw rectangle
	rfbPixelReply = 4 + 12 + 4                      // the same for 1x1
)

func (rfbDriver) Greet(s *stream) error {
	buf := make([]byte, 64)
	read := func(n int) ([]byte, error) { _, err := io.ReadFull(s, buf[:n]); return buf[:n], err }
	if b, err := read(12); err != nil || string(b[:4]) != "RFB " {
		return fmt.Errorf("rfb banner %q: %v", b, err)
	}
	if _, err := io.WriteString(s, "RFB 003.008\n"); err != nil {
		return err
	}
	if b, err := read(2); err != nil || b[0] != 1 || b[1] != 1 {
		return fmt.Errorf("rfb security types %v: %v", b, err)
	}
	if _, err := s.Write([]byte{1}); err != nil { // None
		return err
	}
	if b, err := read(4); err != nil || binary.BigEndian.Uint32(b) != 0 {
		return fmt.Errorf("rfb security result %v: %v", b, err)
	}
	if _, err := s.Write([]byte{1}); err != nil { // ClientInit, shared
		return err
	}
	b, err := read(24) // ServerInit
	if err != nil {
		return fmt.Errorf("rfb ServerInit: %w", err)
	}
	return drain(s, int64(binary.BigEndian.Uint32(b[20:])))
}

// updateRequest is a non-incremental FramebufferUpdateRequest for w x h at
// the origin.
func updateRequest(w, h int) []byte {
	return []byte{3, 0, 0, 0, 0, 0, byte(w >> 8), byte(w), byte(h >> 8), byte(h)}
}

func (rfbDriver) Pull(s *stream, n int64) (int64, error) {
	frames := (n + rfbFrame - 1) / rfbFrame
	req := updateRequest(rfb.Width, rfb.Height)
	reqs := make([]byte, 0, int(frames)*len(req))
	for range frames {
		reqs = append(reqs, req...)
	}
	// Every request at once: the server answers them in turn, so the
	// forward never waits for a request.
	errc := make(chan error, 1)
	go func() { _, err := s.Write(reqs); errc <- err }()
	if err := drain(s, frames*rfbFrame); err != nil {
		return 0, err
	}
	return frames * rfbFrame, <-errc
}

func (rfbDriver) Push(s *stream, n int64) (int64, error) {
	msg := make([]byte, 8+rfb.MaxCutText)
	msg[0] = 6 // ClientCutText
	var sent int64
	for left := n; left > 0; {
		k := min(left, rfb.MaxCutText)
		binary.BigEndian.PutUint32(msg[4:8], uint32(k))
		if _, err := s.Write(msg[:8+k]); err != nil {
			return 0, err
		}
		left -= k
		sent += 8 + k
	}
	if _, err := s.Write(updateRequest(1, 1)); err != nil {
		return 0, err
	}
	if err := drain(s, rfbPixelReply); err != nil {
		return 0, fmt.Errorf("waiting for the ack: %w", err)
	}
	return sent + 10, nil
}
