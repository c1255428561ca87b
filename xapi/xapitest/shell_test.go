package xapitest

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestShellInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		typed []string // separate inputs
		want  string
	}{
		{name: "nothing typed", want: ""},
		{name: "enter", typed: []string{"\r"}, want: "\r\nroot@vm:~# "},
		{name: "LF", typed: []string{"\n"}, want: "\r\nroot@vm:~# "},
		{name: "CR LF counts once, even split", typed: []string{"echo a\r", "\n"}, want: "echo a\r\na\r\nroot@vm:~# "},
		{name: "CR CR is two lines", typed: []string{"\r\r"}, want: "\r\nroot@vm:~# \r\nroot@vm:~# "},
		{name: "echo", typed: []string{"echo hi there\r"}, want: "echo hi there\r\nhi there\r\nroot@vm:~# "},
		{name: "hostname", typed: []string{"hostname\r"}, want: "hostname\r\nvm\r\nroot@vm:~# "},
		{name: "unknown", typed: []string{"  ls -l\r"}, want: "  ls -l\r\nsh: ls: command not found\r\nroot@vm:~# "},
		{name: "backspace", typed: []string{"ecx\x08ho b\x7f\x7f\x7fz\r"}, want: "ecx\b \bho b\b \b\b \b\b \bz\r\nsh: echz: command not found\r\nroot@vm:~# "},
		{name: "backspace on empty line", typed: []string{"\x7f\r"}, want: "\r\nroot@vm:~# "},
		{name: "backspace erases a rune", typed: []string{"é\x7f\r"}, want: "é\b \b\r\nroot@vm:~# "},
		{name: "ctrl-c", typed: []string{"echo x\x03\r"}, want: "echo x^C\r\nroot@vm:~# \r\nroot@vm:~# "},
		{name: "other controls ignored", typed: []string{"\x1b\x01echo\x02 y\r"}, want: "echo y\r\ny\r\nroot@vm:~# "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newShell("vm")
			cl := s.attach()
			for _, in := range tt.typed {
				s.input([]byte(in))
			}
			s.detach(cl)
			var got strings.Builder
			for b := range cl.out {
				got.Write(b)
			}
			if got.String() != tt.want {
				t.Errorf("got %q, want %q", got.String(), tt.want)
			}
		})
	}
}

// blockedWriter blocks every Write until released.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return 0, io.ErrClosedPipe
}

// TestShellSlowClient checks that a client that does not read holds up
// neither the shell nor the other clients.
func TestShellSlowClient(t *testing.T) {
	t.Parallel()
	s := newShell("vm")
	slow := blockedWriter{release: make(chan struct{})}
	slowIn, slowInW := io.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() {
		s.serve(s.attach(), slow, slowIn, sync.OnceFunc(func() { close(slow.release); slowInW.Close() }))
	})

	var fast bytes.Buffer
	fastCl := s.attach()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The fast client reads each batch before the next is typed; the
		// slow one reads nothing and overflows its queue.
		const batch = shellQueue / 2
		for range 8 {
			for range batch {
				s.input([]byte("x"))
			}
			for range batch {
				fast.Write(<-fastCl.out)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("input blocked by a slow client")
	}
	s.detach(fastCl)
	if fast.Len() != 4*shellQueue {
		t.Errorf("fast client got %d bytes, want %d", fast.Len(), 4*shellQueue)
	}
	slowInW.Close() // the slow client hangs up
	wg.Wait()
}
