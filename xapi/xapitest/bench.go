package xapitest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The benchmark console protocol, spoken by [BenchBackend]. It carries no
// framing once a command has started, so that what a benchmark measures is
// the path between client and console, not the back end.
const (
	// BenchBanner is the line BenchBackend sends as soon as it is
	// connected, as a VNC server sends its banner: the first console byte
	// a client sees.
	BenchBanner = "XBENCH 1\n"
	// BenchAck is the byte BenchBackend writes when a sink command has
	// read all its bytes.
	BenchAck = 'K'
	// maxBenchCommand bounds a command line.
	maxBenchCommand = 64
)

// benchChunk is how much BenchBackend reads or writes at once: several TLS
// records, so that the back end is never what limits a throughput run.
const benchChunk = 256 << 10

// benchPattern is what a source command sends: fixed, so that a test can
// check the bytes, and not all zeros.
var benchPattern = func() []byte {
	b := make([]byte, benchChunk)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// BenchPatternByte returns byte i of what a source command sends, for
// clients that check it.
func BenchPatternByte(i int64) byte { return byte(i % 251) }

// ErrBenchCommand is wrapped by BenchBackend's error for a command line it
// does not understand.
var ErrBenchCommand = errors.New("xapitest: bad bench command")

// BenchBackend is a console back end for benchmarks, meant for a VM's
// consoles in place of the test-pattern VNC server (the proposed
// VMSpec.Backend hook; see bench/README.md). The client chooses what it
// does, so one back end serves every measurement and works the same behind
// the bastion and behind a plain TCP forward:
//
//   - On connect it sends [BenchBanner].
//   - "S n\n" (source): it sends n bytes of a fixed pattern
//     ([BenchPatternByte]), then reads the next command.
//   - "R n\n" (sink): it reads exactly n bytes, writes [BenchAck], then
//     reads the next command.
//   - "E\n" (echo): it writes back every byte it reads, as soon as it has
//     read it, until the connection ends.
//
// It returns nil when the client ends the connection between commands or
// while echoing, an error wrapping [ErrBenchCommand] for a malformed
// command, and an error wrapping rw's otherwise. It does not close rw.
func BenchBackend(rw io.ReadWriter) error {
	if _, err := io.WriteString(rw, BenchBanner); err != nil {
		return fmt.Errorf("xapitest: bench banner: %w", err)
	}
	br, ok := rw.(interface {
		io.Reader
		io.ByteReader
	})
	if !ok {
		br = bufio.NewReaderSize(rw, 4<<10)
	}
	// Taken by the first command that needs it: an idle console (the
	// benchmark holds 10,000) needs none, and 256 KiB each made the
	// harness clear gigabytes.
	var buf []byte
	chunk := func() []byte {
		if buf == nil {
			buf = make([]byte, benchChunk)
		}
		return buf
	}
	for {
		line, err := readBenchCommand(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		op, arg, _ := strings.Cut(line, " ")
		switch op {
		case "S":
			n, err := benchCount(line, arg)
			if err != nil {
				return err
			}
			if err := benchSource(rw, n); err != nil {
				return fmt.Errorf("xapitest: bench source: %w", err)
			}
		case "R":
			n, err := benchCount(line, arg)
			if err != nil {
				return err
			}
			if err := benchSink(br, chunk(), n); err != nil {
				return fmt.Errorf("xapitest: bench sink: %w", err)
			}
			if _, err := rw.Write([]byte{BenchAck}); err != nil {
				return fmt.Errorf("xapitest: bench ack: %w", err)
			}
		case "E":
			if arg != "" {
				return fmt.Errorf("%w: %q", ErrBenchCommand, line)
			}
			return benchEcho(rw, br, chunk())
		default:
			return fmt.Errorf("%w: %q", ErrBenchCommand, line)
		}
	}
}

// readBenchCommand reads one command line without its "\n". It returns
// io.EOF if the input ends before a command starts.
func readBenchCommand(r io.ByteReader) (string, error) {
	var b strings.Builder
	for {
		c, err := r.ReadByte()
		if err == io.EOF && b.Len() == 0 {
			return "", io.EOF
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", fmt.Errorf("xapitest: bench command: %w", err)
		}
		if c == '\n' {
			return b.String(), nil
		}
		if b.Len() >= maxBenchCommand {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrBenchCommand, maxBenchCommand)
		}
		b.WriteByte(c)
	}
}

func benchCount(line, arg string) (int64, error) {
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q", ErrBenchCommand, line)
	}
	return n, nil
}

// benchSource writes n bytes of benchPattern; every chunk starts where the
// pattern repeats, so the stream is BenchPatternByte(0), (1), ...
func benchSource(w io.Writer, n int64) error {
	const period = benchChunk - benchChunk%251 // whole pattern periods
	for n > 0 {
		k := min(n, period)
		if _, err := w.Write(benchPattern[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// benchSink reads and drops n bytes.
func benchSink(r io.Reader, buf []byte, n int64) error {
	for n > 0 {
		k, err := r.Read(buf[:min(n, int64(len(buf)))])
		n -= int64(k)
		if err != nil {
			if n > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if n > 0 {
				return err
			}
		}
	}
	return nil
}

// benchEcho writes back what it reads, each read at once, until the input
// ends.
func benchEcho(w io.Writer, r io.Reader, buf []byte) error {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("xapitest: bench echo: %w", werr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("xapitest: bench echo: %w", err)
		}
	}
}
