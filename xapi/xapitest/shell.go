package xapitest

import (
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// shell is the guest behind a vt100 console: a line-editing shell that
// echoes what it is typed. One shell serves every client of its console,
// like a serial line: every client's input goes to it, and its output goes
// to every client. It sends nothing until it is typed at.
//
// Commands: "echo ARGS" prints ARGS, "hostname" prints the VM's name, an
// empty line prints only the prompt, anything else prints
// "sh: CMD: command not found". CR or LF ends a line (CR LF counts once),
// DEL and BS erase a character ("\b \b"), ^C drops the line.
type shell struct {
	name string // the VM's name, for the prompt and hostname

	// mu guards line, lastCR and clients, and orders output: a chunk is
	// queued to every client before the next input is processed.
	mu      sync.Mutex
	line    []byte
	lastCR  bool
	clients map[*shellClient]struct{}
}

// shellClient is one connection to the shell. The shell queues output to
// it without blocking: when a slow client has shellQueue chunks pending,
// further output to it is dropped (other clients are not held up), as a
// console's ring buffer overflows.
type shellClient struct {
	out chan []byte // closed when the client detaches
}

const (
	shellQueue   = 256
	maxShellLine = 4096
)

func newShell(name string) *shell {
	return &shell{name: name, clients: make(map[*shellClient]struct{})}
}

func (s *shell) prompt() string { return "root@" + s.name + ":~# " }

// attach adds a client, which gets the output of every input from now on.
// Pass it to serve.
func (s *shell) attach() *shellClient {
	cl := &shellClient{out: make(chan []byte, shellQueue)}
	s.mu.Lock()
	s.clients[cl] = struct{}{}
	s.mu.Unlock()
	return cl
}

// detach removes a client.
func (s *shell) detach(cl *shellClient) {
	s.mu.Lock()
	delete(s.clients, cl)
	close(cl.out)
	s.mu.Unlock()
}

// serve runs an attached client: it feeds what r reads to the shell and
// writes the shell's output to w, until r fails. Then it detaches the
// client, calls hangUp, which must make a pending write to w fail, and
// returns once the writer has ended. hangUp may be called twice.
func (s *shell) serve(cl *shellClient, w io.Writer, r io.Reader, hangUp func()) {
	written := make(chan struct{})
	go func() {
		defer close(written)
		for b := range cl.out {
			if _, err := w.Write(b); err != nil {
				hangUp() // ends the read loop below
				for range cl.out {
				}
				return
			}
		}
	}()

	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.input(buf[:n])
		}
		if err != nil {
			break
		}
	}
	s.detach(cl)
	hangUp()
	<-written
}

// input processes typed bytes and sends the output to every client.
func (s *shell) input(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []byte
	for _, c := range p {
		if s.lastCR && c == '\n' {
			s.lastCR = false
			continue
		}
		s.lastCR = c == '\r'
		switch {
		case c == '\r' || c == '\n':
			out = append(out, "\r\n"...)
			out = append(out, s.run(string(s.line))...)
			out = append(out, s.prompt()...)
			s.line = s.line[:0]
		case c == 0x7f || c == '\b':
			if len(s.line) > 0 {
				_, size := utf8.DecodeLastRune(s.line)
				s.line = s.line[:len(s.line)-size]
				out = append(out, "\b \b"...)
			}
		case c == 0x03: // ^C
			out = append(out, "^C\r\n"...)
			out = append(out, s.prompt()...)
			s.line = s.line[:0]
		case c < 0x20:
			// other control characters are ignored
		default:
			if len(s.line) < maxShellLine {
				s.line = append(s.line, c)
				out = append(out, c)
			}
		}
	}
	if len(out) == 0 {
		return
	}
	for cl := range s.clients {
		select {
		case cl.out <- out:
		default: // the client is too slow: it misses this output
		}
	}
}

// run returns the output of one command line.
func (s *shell) run(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	switch f[0] {
	case "echo":
		return strings.Join(f[1:], " ") + "\r\n"
	case "hostname":
		return s.name + "\r\n"
	}
	return "sh: " + f[0] + ": command not found\r\n"
}
