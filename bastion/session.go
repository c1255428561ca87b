package bastion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/xenbastion/xenbastion/xapi"
)

// Exit statuses of commands.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const helpText = `xenbastion: VM consoles over SSH

Commands:
  list [--json]     the VMs you may open: POOL NAME POWER CONSOLES UUID
  console VM        attach to VM's text (vt100) console; with a terminal
                    (ssh -t), type Ctrl-] to detach
  help              this text

VM is a name (spaces allowed), POOL/NAME, a UUID, or host:NAME for a
host's control domain.

VNC: forward a local port to a VM's VNC console and point any VNC client at it:
  ssh -N -L 5900:VM:5900 USER@BASTION     then connect to localhost:5900
  (a control domain in brackets: -L 5901:[host:NAME]:5900)

With a terminal and no command, a prompt takes the same commands and "exit".
`

// session is one SSH session channel.
type session struct {
	srv  *Server
	sess gliderssh.Session
	// closed is closed once the session's channel is: gliderlabs ends
	// the session's context only with its connection (watchClose).
	closed <-chan struct{}
	st     *connState
	user   string
	pty    bool
	// out is where output goes: the channel itself, with "\n" written as
	// "\r\n" under a PTY. raw is the channel without that translation, for
	// console bytes.
	out io.Writer
	raw io.Writer
	in  *input

	mu   sync.Mutex       // guards win and term
	win  gliderssh.Window // the terminal's size, as the client last said
	term *term.Terminal   // the prompt's line editor, once there is one
}

// followWindow takes the window changes of a PTY session until the session
// ends. gliderlabs queues each on winCh, which holds one: a change nobody
// took blocked the session's requests, and a few more the whole
// connection. The prompt's line editor follows the size; a console has
// none to set.
func (ss *session) followWindow(winCh <-chan gliderssh.Window) {
	for w := range winCh {
		ss.mu.Lock()
		ss.win = w
		t := ss.term
		ss.mu.Unlock()
		if t != nil {
			fitTerminal(t, w)
		}
	}
}

// fitTerminal gives the line editor the terminal's size, if the client
// said one: a client without a terminal of its own ("ssh -tt" from a pipe)
// asks for a PTY of 0x0, which would make the editor break every line
// after each character.
func fitTerminal(t *term.Terminal, w gliderssh.Window) {
	if w.Width > 0 && w.Height > 0 {
		t.SetSize(w.Width, w.Height)
	}
}

// handleSession is gliderlabs' Handler: it runs the session's command, or
// the prompt.
func (s *Server) handleSession(sess gliderssh.Session) {
	if !s.enter() {
		if vm, ok := consoleTarget(sess.RawCommand()); ok && vm != "" {
			s.refuse(stateOf(sess.Context()), vm, xapi.VT100, "command", &denial{msg: msgShuttingDown, reason: EndShutdown})
		}
		fmt.Fprintln(sess.Stderr(), "xenbastion: "+msgShuttingDown)
		sess.Exit(exitError)
		return
	}
	defer s.handlers.Done()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("handler panic", "handler", "session", "panic", r)
			sess.Exit(exitError)
		}
	}()

	pty, winCh, isPty := sess.Pty()
	st := stateOf(sess.Context())
	ss := &session{
		srv:  s,
		sess: sess,
		st:   st,
		user: st.userName(), // the verified login name
		pty:  isPty,
		out:  sess,
		raw:  rawChannel(sess),
		// The size asked for with the PTY; followWindow takes the
		// changes (sess.Pty() read again would race with gliderlabs'
		// writes of them).
		win: pty.Window,
	}
	ss.closed = s.sessionClosed(ss.raw)
	if w, ok := s.heldWindow(ss.raw); ok && isPty {
		// Resized after the PTY request, before the shell: the size
		// gliderlabs queued with the PTY is stale.
		ss.win = w
		select {
		case <-winCh:
		default:
		}
	}
	// The prompt stops reading when the session ends or the server shuts
	// down.
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	defer context.AfterFunc(s.base, cancel)()
	stdin, ok := ss.raw.(ctxReader)
	if !ok {
		// rawChannel found no x/crypto channel in gliderlabs' session:
		// a dependency has changed under the bastion.
		s.log.Error("session channel cannot be read with a context", "conn", st.id)
		fmt.Fprintln(sess.Stderr(), "xenbastion: internal error")
		sess.Exit(exitError)
		return
	}
	ss.in = &input{ctx: ctx, ch: stdin}
	if isPty {
		go ss.followWindow(winCh)
	}
	code := ss.run()
	sess.Exit(code)
}

// rawChannel returns the session's underlying channel. gliderlabs'
// Session.Write turns "\n" into "\r\n" when a PTY was requested, which would
// change a console's bytes; the embedded channel writes them as they are.
func rawChannel(sess gliderssh.Session) io.Writer {
	v := reflect.ValueOf(sess)
	if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("Channel"); f.IsValid() && f.CanInterface() {
			if ch, ok := f.Interface().(gossh.Channel); ok && ch != nil {
				return ch
			}
		}
	}
	return sess
}

func (ss *session) run() int {
	line := ss.sess.RawCommand()
	if strings.TrimSpace(line) == "" {
		if !ss.pty {
			fmt.Fprint(ss.sess.Stderr(), helpText)
			return exitUsage
		}
		return ss.prompt()
	}
	return ss.command(line, ss.out)
}

// command runs one command line, writing its output to out.
func (ss *session) command(line string, out io.Writer) int {
	args := strings.Fields(line)
	switch args[0] {
	case "help", "--help", "-h":
		fmt.Fprint(out, helpText)
		return exitOK
	case "list":
		switch {
		case len(args) == 1:
			return ss.list(out, false)
		case len(args) == 2 && args[1] == "--json":
			return ss.list(out, true)
		}
		return ss.usage("usage: list [--json]")
	case "console":
		vm, _ := consoleTarget(line)
		if vm == "" {
			return ss.usage("usage: console VM")
		}
		return ss.console(vm)
	}
	return ss.usage(fmt.Sprintf("unknown command %q; try \"help\"", truncate(args[0], 64)))
}

// consoleTarget returns the VM that a "console VM" command line names
// (maybe empty); ok is false for another command.
func consoleTarget(line string) (vm string, ok bool) {
	if args := strings.Fields(line); len(args) == 0 || args[0] != "console" {
		return "", false
	}
	// The VM is the rest of the line: name labels may have spaces.
	return unquote(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "console"))), true
}

func (ss *session) usage(msg string) int {
	ss.errorf("%s", msg)
	return exitUsage
}

// errorf tells the user what went wrong, on stderr.
func (ss *session) errorf(format string, args ...any) {
	msg := "xenbastion: " + fmt.Sprintf(format, args...) + "\n"
	if ss.pty {
		msg = strings.ReplaceAll(msg, "\n", "\r\n")
	}
	io.WriteString(ss.sess.Stderr(), msg)
}

// prompt reads commands at a "xenbastion> " prompt until "exit" or EOF.
func (ss *session) prompt() int {
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{promptInput{ss.in}, ss.raw}, "xenbastion> ")
	ss.mu.Lock()
	ss.term = t
	fitTerminal(t, ss.win)
	ss.mu.Unlock()
	fmt.Fprintf(t, "Welcome, %s. Type \"help\" for the commands, \"exit\" to leave.\n", ss.user)
	for {
		line, err := t.ReadLine()
		if err != nil {
			if ss.srv.base.Err() != nil {
				ss.errorf("the bastion is shutting down")
				return exitError
			}
			return exitOK
		}
		args := strings.Fields(line)
		switch {
		case len(args) == 0:
			continue
		case args[0] == "exit" || args[0] == "quit":
			return exitOK
		}
		ss.command(line, t)
		if ss.sess.Context().Err() != nil || ss.srv.base.Err() != nil {
			return exitError
		}
	}
}

// ListEntry is a VM as "list" shows it; "list --json" prints an array of
// them.
type ListEntry struct {
	Pool       string   `json:"pool"`
	Name       string   `json:"name"`
	UUID       string   `json:"uuid"`
	PowerState string   `json:"power_state"`
	Consoles   []string `json:"consoles"`
	// rules are the rules that allow the consoles, for "check --user".
	rules []string
}

// Rules returns the policy rules that allow the entry's consoles.
func (e ListEntry) Rules() []string {
	var out []string
	for _, r := range e.rules {
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func (ss *session) list(out io.Writer, asJSON bool) int {
	wctx, _, release := ss.watchClose()
	defer release()
	ctx, cancel := context.WithTimeout(wctx, ss.srv.consoleTimeout())
	defer cancel()
	entries, failed := ss.srv.visibleVMs(ctx, ss.user)
	if errors.Is(context.Cause(wctx), errShutdown) {
		ss.errorf("%s", msgShuttingDown)
		return exitError
	}
	if asJSON {
		b, _ := json.MarshalIndent(entries, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
	} else {
		WriteVMTable(out, entries, false)
	}
	if len(failed) > 0 {
		ss.errorf("pool %s is unavailable; its VMs are not listed", strings.Join(failed, ", "))
		return exitError
	}
	return exitOK
}

// WriteVMTable writes entries as "list" does: a header, then one aligned
// line per VM. withRules adds a RULE column: the rules that allow each.
func WriteVMTable(w io.Writer, entries []ListEntry, withRules bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "POOL\tNAME\tPOWER\tCONSOLES\tUUID"
	if withRules {
		header += "\tRULE"
	}
	fmt.Fprintln(tw, header)
	for _, e := range entries {
		cons := strings.Join(e.Consoles, ",")
		if cons == "" {
			cons = "-"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", e.Pool, shown(e.Name), shown(e.PowerState), cons, shown(e.UUID))
		if withRules {
			line += "\t" + strings.Join(e.Rules(), "; ")
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// VisibleVMs lists the VMs the named user may open, for "xenbastion check",
// and the pools that could not be asked.
func (s *Server) VisibleVMs(ctx context.Context, user string) ([]ListEntry, []string) {
	s.init()
	return s.visibleVMs(ctx, user)
}

// visibleVMs lists the VMs u may open in every pool, and the pools that
// could not be asked.
func (s *Server) visibleVMs(ctx context.Context, user string) (entries []ListEntry, failed []string) {
	entries = []ListEntry{}
	policy := s.currentPolicy()
	// Every pool is asked at once: one that is slow to answer must not
	// hold up the others' rows by the time it takes.
	type answer struct {
		vms []xapi.VM
		err error
	}
	answers := make([]answer, len(s.Pools))
	var wg sync.WaitGroup
	for i, p := range s.Pools {
		wg.Go(func() {
			defer s.recoverPanic("list")
			answers[i].err = errors.New("list failed") // what a panic leaves
			answers[i].vms, answers[i].err = p.VMs(ctx)
		})
	}
	wg.Wait()
	for i, p := range s.Pools {
		vms, err := answers[i].vms, answers[i].err
		if err != nil {
			if !errors.Is(ctx.Err(), context.Canceled) || errors.As(err, new(*xapi.FingerprintError)) {
				// Not the client leaving or the shutdown: the pool failed.
				s.poolError(ctx, p.Name(), "xapi list failed", err)
			}
			failed = append(failed, p.Name())
			continue
		}
		for _, vm := range vms {
			if !policy.Visible(user, vm) {
				continue
			}
			e := ListEntry{Pool: vm.Pool, Name: vm.Name, UUID: vm.UUID, PowerState: vm.PowerState, Consoles: []string{}}
			if vm.IsControlDomain {
				e.Name = "host:" + vm.Host // what "console" takes
			}
			for _, proto := range vm.Protocols() {
				if d := policy.Decide(user, vm, proto); d.Allowed {
					e.Consoles = append(e.Consoles, string(proto))
					e.rules = append(e.rules, d.Rule)
				}
			}
			if len(e.Consoles) == 0 { // no console records (e.g. halted): say why it is listed
				e.rules = append(e.rules, policy.Decide(user, vm, xapi.RFB).Rule, policy.Decide(user, vm, xapi.VT100).Rule)
			}
			entries = append(entries, e)
		}
	}
	slices.SortFunc(entries, func(a, b ListEntry) int {
		return strings.Compare(a.Pool+"\x00"+a.Name+"\x00"+a.UUID, b.Pool+"\x00"+b.Name+"\x00"+b.UUID)
	})
	return entries, failed
}

// watchClose returns a context that ends with the session's connection,
// and also, before unwatch is called, with cause errClientClosed if the
// client closes the session's channel, or errShutdown if the bastion shuts
// down: an open or a list then stops at once, not when the pool answers or
// times out. gliderlabs ends a session's context only with its
// connection, but a client that multiplexes sessions over one connection
// (OpenSSH's ControlMaster) closes one alone. release unwatches and ends
// the context.
func (ss *session) watchClose() (ctx context.Context, unwatch, release func()) {
	ctx, cancel := context.WithCancelCause(ss.sess.Context())
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ss.closed:
			cancel(errClientClosed)
		case <-ss.srv.base.Done():
			// A shutdown does not wait for a slow pool.
			cancel(errShutdown)
		case <-stop:
		case <-ctx.Done():
		}
	}()
	var once sync.Once
	unwatch = func() { once.Do(func() { close(stop); <-done }) }
	return ctx, unwatch, func() { unwatch(); cancel(nil) }
}

// console attaches the session to a VM's vt100 console.
func (ss *session) console(target string) int {
	s := ss.srv
	ctx, unwatch, release := ss.watchClose()
	defer release()
	cs, conn, d := s.open(ctx, ss.st, target, xapi.VT100, "command")
	// The relay sees the channel close itself (its input ends) and says
	// how the session ended: the watch would race it.
	unwatch()
	if d != nil {
		ss.errorf("%s", d.msg)
		return exitError
	}
	vm := cs.vm
	mode := commandMode
	if ss.pty {
		mode = ptyMode
		ss.errorf("connected to %s (%s); press Enter for a prompt, Ctrl-] to detach", shown(vm.Name), vm.Pool)
	}
	reason := cs.run(ss.raw, ss.in, conn, mode)
	switch reason {
	case EndDetached, EndInputDone:
		if ss.pty {
			ss.errorf("detached from %s", shown(vm.Name))
		}
		return exitOK
	case EndConsoleClosed:
		ss.errorf("the pool closed the console of %s", shown(vm.Name))
	case EndShutdown:
		ss.errorf("the bastion is shutting down; console of %s closed", shown(vm.Name))
	case EndIdle, EndMaxDuration, EndRevoked, EndInternalError:
		ss.errorf("console of %s closed: %s", shown(vm.Name), reason)
	}
	return exitError
}

// unquote strips one pair of matching quotes around s, as a user might
// write console "Windows Server 2019".
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
