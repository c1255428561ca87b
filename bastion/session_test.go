package bastion_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/internal/testtool"
	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// promptSession opens a session with a PTY of width columns on a new
// connection as alice, resizes it to each of resizes columns before the
// shell, and waits for the prompt.
func promptSession(t *testing.T, b *bastiontest.Bastion, width int, resizes ...int) (*gossh.Client, *gossh.Session, io.Writer, *testtool.SyncBuffer) {
	t.Helper()
	c := b.Dial(t, "alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.RequestPty("xterm", 50, width, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range resizes {
		if err := s.WindowChange(50, w); err != nil {
			t.Fatal(err)
		}
	}
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out testtool.SyncBuffer
	s.Stdout, s.Stderr = &out, &out
	shell := make(chan error, 1)
	go func() { shell <- s.Shell() }()
	select {
	case err := <-shell:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shell request got no answer")
	}
	waitFor(t, &out, "xenbastion> ")
	return c, s, in, &out
}

// TestWindowChanges: a user dragging the terminal's corner sends a stream
// of window changes. The console, the connection's other sessions and a
// shutdown all go on; none used to once the first change was not taken.
func TestWindowChanges(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	c, s, in, out := promptSession(t, b, 80)
	io.WriteString(in, "console web-1\r")
	waitFor(t, out, "Ctrl-] to detach")
	for i := range 40 {
		if err := s.WindowChange(24+i%10, 80+i); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(in, "echo after-resize\r")
	waitFor(t, out, "after-resize\r\nroot@web-1")
	helped := make(chan string, 1)
	go func() {
		other, err := c.NewSession()
		if err != nil {
			helped <- err.Error()
			return
		}
		got, err := other.Output("help")
		helped <- fmt.Sprint(string(got), err)
	}()
	select {
	case got := <-helped:
		if !strings.Contains(got, "console VM") {
			t.Errorf("another session on the connection: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("another session on the connection hangs")
	}
	io.WriteString(in, "\x1d")
	waitFor(t, out, "detached from web-1")

	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Server.Shutdown(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown (5 s context) has not returned after 15 s")
	}
}

// TestWindowChangeBeforeShell: window changes sent between the PTY request
// and the shell (a terminal resized while the session starts) neither hang
// the session, as they did in gliderlabs, nor get lost: the prompt takes
// the last size.
func TestWindowChangeBeforeShell(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	_, _, in, out := promptSession(t, b, 80, 120, 160, 200)
	if echo, wrapped := typeLine(t, in, out, 150); wrapped {
		t.Errorf("150 characters on a terminal resized to 200 columns wrapped: %q", echo)
	}
}

// TestPromptFollowsWidth: the prompt's line editor wraps lines at the
// terminal's width, not at 80 columns.
func TestPromptFollowsWidth(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	_, _, in, out := promptSession(t, b, 200)
	if echo, wrapped := typeLine(t, in, out, 100); wrapped {
		t.Errorf("100 characters on a 200-column terminal wrapped: %q", echo)
	}
}

// typeLine types n characters at the prompt and returns their echo, and
// whether the line editor wrapped it.
func typeLine(t *testing.T, in io.Writer, out *testtool.SyncBuffer, n int) (echo string, wrapped bool) {
	t.Helper()
	mark := len(out.String())
	io.WriteString(in, strings.Repeat("a", n))
	for deadline := time.Now().Add(10 * time.Second); strings.Count(out.String()[mark:], "a") < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the echo did not come: %q", out.String()[mark:])
		}
	}
	echo = out.String()[mark:]
	return echo, strings.Contains(echo, "\r\n")
}

// TestNamesShownEscaped: a name label with control characters (anyone with
// rights on the pool can set one) reaches the user's terminal escaped, in
// list and in messages: no escape sequence, no forged row of list.
func TestNamesShownEscaped(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	// XML-RPC carries no C0 control but tab, newline and carriage
	// return; C1 controls (CSI is U+009B) it does.
	const name = "evil\u009b2J\nlab  web-9  Running  rfb,vt100  00000000-0000-0000-0000-000000000000"
	vm := b.Sim.AddVM(xapitest.VMSpec{Name: name, Consoles: []string{"rfb"}})
	c := b.Dial(t, "alice")
	run := func(cmd string) string {
		t.Helper()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, _ := s.CombinedOutput(cmd)
		return string(out)
	}
	list := run("list")
	if strings.ContainsRune(list, '\u009b') || strings.Contains(list, "\nlab  web-9") {
		t.Errorf("list prints a name label's control characters:\n%q", list)
	}
	if !strings.Contains(list, `evil\x9b2J\x0alab  web-9`) {
		t.Errorf("list does not show the name escaped:\n%q", list)
	}
	if msg := run("console " + vm.UUID); strings.ContainsRune(msg, '\u009b') || !strings.Contains(msg, `evil\x9b2J\x0alab`) {
		t.Errorf("console of a VM without vt100: %q", msg)
	}
}

// TestPromptTypeAhead: a line typed (or pasted) after "console VM" in the
// same packet goes to the console, not back to the prompt.
func TestPromptTypeAhead(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	_, _, in, out := promptSession(t, b, 80)
	io.WriteString(in, "console web-1\rhostname\r") // one write: one channel data packet
	waitFor(t, out, "web-1\r\nroot@web-1")
	io.WriteString(in, "\x1d")
	waitFor(t, out, "detached from web-1")
	io.WriteString(in, "help\r")
	waitFor(t, out, "console VM")
	if strings.Contains(out.String(), `unknown command "hostname"`) {
		t.Errorf("the line typed after console went to the prompt:\n%q", out.String())
	}
}

// TestPromptCtrlC: Ctrl-C drops the line being typed and the prompt goes
// on; it used to end the session as if the input had ended.
func TestPromptCtrlC(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	_, s, in, out := promptSession(t, b, 80)
	io.WriteString(in, "lis\x03")
	io.WriteString(in, "help\r")
	waitFor(t, out, "console VM")
	io.WriteString(in, "exit\r")
	if err := s.Wait(); err != nil {
		t.Errorf("exit after Ctrl-C: %v", err)
	}
	if strings.Contains(out.String(), "lishelp") {
		t.Errorf("Ctrl-C did not drop the line: %q", out.String())
	}
}

// TestPromptWithoutSize: a client without a terminal of its own ("ssh -tt"
// from a pipe) asks for a PTY of 0x0; the prompt keeps its default width
// instead of breaking the line after every character.
func TestPromptWithoutSize(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{})
	_, _, in, out := promptSession(t, b, 0)
	io.WriteString(in, "help\r")
	waitFor(t, out, "console VM")
	if strings.Contains(out.String(), "h\r\ne\r\n") {
		t.Errorf("the prompt breaks every character: %q", out.String())
	}
}
