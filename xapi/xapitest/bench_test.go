package xapitest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// startBench runs BenchBackend on one end of a pipe and returns the other
// end, its reader positioned after the banner, and the back end's result.
func startBench(t *testing.T) (net.Conn, *bufio.Reader, <-chan error) {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- BenchBackend(server)
		server.Close()
	}()
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	banner := make([]byte, len(BenchBanner))
	if _, err := io.ReadFull(br, banner); err != nil || string(banner) != BenchBanner {
		t.Fatalf("banner %q, %v; want %q", banner, err, BenchBanner)
	}
	return client, br, done
}

func TestBenchBackend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, c net.Conn, br *bufio.Reader)
	}{
		{name: "nothing", run: func(*testing.T, net.Conn, *bufio.Reader) {}},
		{name: "source", run: func(t *testing.T, c net.Conn, br *bufio.Reader) {
			for _, n := range []int64{0, 1, benchChunk - 1, 3*benchChunk + 17} {
				io.WriteString(c, "S "+strconv.FormatInt(n, 10)+"\n")
				got := make([]byte, n)
				if _, err := io.ReadFull(br, got); err != nil {
					t.Fatalf("S %d: %v", n, err)
				}
				for i, b := range got {
					if b != BenchPatternByte(int64(i)) {
						t.Fatalf("S %d: byte %d is %d, want %d", n, i, b, BenchPatternByte(int64(i)))
					}
				}
			}
		}},
		{name: "sink then source", run: func(t *testing.T, c net.Conn, br *bufio.Reader) {
			const n = 2*benchChunk + 5
			go func() {
				io.WriteString(c, "R "+strconv.Itoa(n)+"\n")
				c.Write(make([]byte, n))
				io.WriteString(c, "S 3\n")
			}()
			got := make([]byte, 4)
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatal(err)
			}
			if want := string([]byte{BenchAck, 0, 1, 2}); string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		}},
		{name: "echo, with bytes in the command's write", run: func(t *testing.T, c net.Conn, br *bufio.Reader) {
			go io.WriteString(c, "E\nab")
			for _, want := range []string{"ab", "c", "\x00\xff"} {
				if want != "ab" {
					go io.WriteString(c, want)
				}
				got := make([]byte, len(want))
				if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
					t.Fatalf("echo %q, %v; want %q", got, err, want)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, br, done := startBench(t)
			tt.run(t, c, br)
			c.Close()
			if err := <-done; err != nil {
				t.Errorf("BenchBackend: %v, want nil after the client closed", err)
			}
		})
	}
}

func TestBenchBackendBadCommand(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"X\n", "S\n", "S -1\n", "R x\n", "E 1\n", "S 111111111111111111111111111111111111111111111111111111111111111111111\n"} {
		t.Run(strconv.Quote(cmd), func(t *testing.T) {
			t.Parallel()
			c, _, done := startBench(t)
			go io.WriteString(c, cmd)
			if err := <-done; !errors.Is(err, ErrBenchCommand) {
				t.Errorf("BenchBackend: %v, want ErrBenchCommand", err)
			}
		})
	}
}

func TestBenchBackendCutShort(t *testing.T) {
	t.Parallel()
	c, _, done := startBench(t)
	io.WriteString(c, "R 10\nabc")
	c.Close()
	if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("BenchBackend: %v, want io.ErrUnexpectedEOF", err)
	}
}
