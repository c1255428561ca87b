package bastion

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/xapi"
)

// Reasons a console session ends, as written in console.end.
const (
	EndClientClosed  = "client closed"   // the SSH client closed the channel or its input
	EndDisconnected  = "client vanished" // the SSH connection went away
	EndConsoleClosed = "console closed"  // the pool closed the console connection
	EndDetached      = "detached"        // the user typed the escape key
	EndInputDone     = "input ended"     // no PTY: input ended and the output went quiet
	EndShutdown      = "server shutdown" // the bastion is shutting down
	EndIdle          = "idle timeout"    // no bytes either way for Limits.IdleTimeout
	EndMaxDuration   = "max session duration"
	EndRevoked       = "access revoked"   // a reload took the user's access away
	EndInternalError = "internal error"   // a bug: the relay panicked
	EndAuditFailed   = "audit log failed" // console.start could not be synced: nothing relayed
)

// Causes of a console's context, mapped to End reasons by endReason.
var (
	errShutdown    = errors.New(EndShutdown)
	errIdle        = errors.New(EndIdle)
	errMaxDuration = errors.New(EndMaxDuration)
	errRevoked     = errors.New(EndRevoked)
	// errClientClosed: the client closed the session's channel while its
	// console was being opened (watchClose).
	errClientClosed = errors.New(EndClientClosed)
)

func endReason(cause error) string {
	for _, e := range []error{errShutdown, errIdle, errMaxDuration, errRevoked, errClientClosed} {
		if errors.Is(cause, e) {
			return e.Error()
		}
	}
	return EndDisconnected
}

// EscapeKey detaches from a console with a PTY: Ctrl-], as in telnet.
const EscapeKey = 0x1d

// stallWait is how long an ending relay waits for its copies before it
// closes the client's connection to unblock them.
const stallWait = 2 * time.Second

// halfCloseWait is how long a forward waits for the console to close after
// the client's side ended.
const halfCloseWait = 5 * time.Second

// copyBufSize is the relay buffer while bulk data flows: one SSH packet's
// worth. smallBufSize is the one kept otherwise.
const (
	copyBufSize  = 32 << 10
	smallBufSize = 2 << 10
)

// The relay's buffers keep room around their data for the channel's
// WriteInPlace (gossh.ChannelDataHeadroom and ChannelDataTailroom), which
// seals the SSH packet around the data where it lies.
const (
	headroom = gossh.ChannelDataHeadroom
	tailroom = gossh.ChannelDataTailroom
)

// copyBufs holds the big buffers. With the room around it one takes 40 KiB
// of heap (a large object is whole 8 KiB pages), only while data flows.
// Its data part stays one SSH packet: a smaller one would split a pair
// of 16 KiB TLS records and send the rest as a packet of its own.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, headroom+copyBufSize+tailroom); return &b }}

// copyBuffer is one relay direction's buffer: a small one while the
// console is idle or interactive, and a pooled 32 KiB one only while bulk
// data flows, so that thousands of idle tunnels do not each hold 64 KiB.
type copyBuffer struct {
	small [headroom + smallBufSize + tailroom]byte
	big   *[]byte
}

// room is the whole buffer: the data with room around it.
func (b *copyBuffer) room() []byte {
	if b.big != nil {
		return *b.big
	}
	return b.small[:]
}

// bytes is where data is read into.
func (b *copyBuffer) bytes() []byte {
	r := b.room()
	return r[headroom : len(r)-tailroom]
}

// used adapts the buffer to a read of n bytes: a full small buffer means
// bulk data, a big one mostly empty means it has stopped.
func (b *copyBuffer) used(n int) {
	switch {
	case b.big == nil && n == smallBufSize:
		b.big = copyBufs.Get().(*[]byte)
	case b.big != nil && n < smallBufSize:
		b.release()
	}
}

func (b *copyBuffer) release() {
	if b.big != nil {
		copyBufs.Put(b.big)
		b.big = nil
	}
}

// inPlaceWriter is an SSH channel that sends data from a buffer with room
// around it without copying it ((*gossh.channel).WriteInPlace).
type inPlaceWriter interface {
	WriteInPlace(buf []byte) (int, error)
}

// sendFrom writes the n bytes read into buf to w, in place where w can,
// and returns how many were sent, some even when it fails (the channel's
// window had room for only part). It overwrites them.
func sendFrom(w io.Writer, buf *copyBuffer, n int) (int, error) {
	if iw, ok := w.(inPlaceWriter); ok {
		return iw.WriteInPlace(buf.room()[:headroom+n])
	}
	return w.Write(buf.bytes()[:n])
}

// ctxReader reads the client's input; ReadContext returns when ctx is done
// if the reader can stop waiting ([input] can; an SSH channel is closed
// instead).
type ctxReader interface {
	ReadContext(ctx context.Context, p []byte) (int, error)
}

// channelReader reads a forward's channel, which relay closes to stop it.
type channelReader struct{ io.Reader }

func (r channelReader) ReadContext(_ context.Context, p []byte) (int, error) { return r.Read(p) }

// consoleWriter writes a client's input to the console, counting it.
type consoleWriter struct {
	cs      *consoleSession
	console io.Writer
}

func (w consoleWriter) Write(p []byte) (int, error) {
	n, err := w.console.Write(p)
	w.cs.bytesIn.Add(int64(n))
	w.cs.lastActive.Store(time.Now().UnixNano())
	return n, err
}

// relayMode says how a relay treats the end of the client's input.
type relayMode int

const (
	// forwardMode half-closes the console when the client's input ends and
	// goes on until the console closes too (a TCP forward).
	forwardMode relayMode = iota
	// commandMode keeps the console open when the input ends and relays
	// its output until it has been quiet for a while ("console" without a
	// PTY).
	commandMode
	// ptyMode is commandMode, and the escape key detaches.
	ptyMode
)

// consoleSession is one open console: who, what, and the counters that
// console.end reports.
type consoleSession struct {
	srv   *Server
	id    string
	start time.Time
	ev    Event  // the console.start record, reused for console.end
	user  string // the user, whole (ev.User is cut short for the record)
	st    *connState
	vm    xapi.VM
	proto xapi.Protocol

	// ctx ends the session; cancel's cause says why (errShutdown,
	// errRevoked, ...).
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   func() bool // stops watching the server's shutdown

	bytesIn, bytesOut atomic.Int64
	lastOut           atomic.Int64 // unix nanos of the last console output
	lastActive        atomic.Int64 // unix nanos of the last byte either way

	// pending is console output already read but not yet sent to the
	// client: the relay sends it first.
	pending []byte
}

// begin registers the session, so that shutdowns and reloads can end it,
// and writes console.start (open syncs it; run logs the start). It expects
// the user's console slot to be taken (open does that) and gives it back
// if it fails. If the record cannot be written the console is not relayed.
func (s *Server) begin(ctx context.Context, st *connState, vm xapi.VM, p xapi.Protocol, via string) (*consoleSession, error) {
	cs := &consoleSession{srv: s, id: newID(), start: time.Now(), st: st, vm: vm, proto: p, user: st.userName()}
	ev := st.event(EventConsoleStart)
	ev.SessionID, ev.Pool, ev.VM, ev.VMUUID, ev.Protocol, ev.Via = cs.id, vm.Pool, vm.Name, vm.UUID, string(p), via
	cs.ev = ev
	cs.ctx, cs.cancel = context.WithCancelCause(ctx)
	cs.stop = context.AfterFunc(s.base, func() { cs.cancel(errShutdown) })
	s.count.mu.Lock()
	if s.count.consoles == nil {
		s.count.consoles = map[*consoleSession]struct{}{}
	}
	s.count.consoles[cs] = struct{}{}
	s.count.mu.Unlock()
	// Registered first, then checked: a reload either finds this session
	// in its scan or has already stored the policy checked here.
	var err error
	switch {
	case s.isClosing():
		err = errShutdown
	case !s.currentPolicy().Decide(cs.user, vm, p).Allowed:
		err = errRevoked
	default:
		err = s.Audit.Write(ev, false) // open syncs it, overlapped with the dial
	}
	if err != nil {
		if !errors.Is(err, errShutdown) && !errors.Is(err, errRevoked) {
			s.log.Error("audit write failed", "err", err, "event", ev.Event, "conn", ev.ConnID)
		}
		cs.unregister()
		return nil, err
	}
	return cs, nil
}

// takeConsoleSlot counts a console for user if they are under the limit.
func (s *Server) takeConsoleSlot(user string) bool {
	s.count.mu.Lock()
	defer s.count.mu.Unlock()
	if max := s.limits.MaxConsolesPerUser; max > 0 && s.count.userConsoles[user] >= max {
		return false
	}
	if s.count.userConsoles == nil {
		s.count.userConsoles = map[string]int{}
	}
	s.count.userConsoles[user]++
	return true
}

func (s *Server) releaseConsoleSlot(user string) {
	s.count.mu.Lock()
	defer s.count.mu.Unlock()
	if s.count.userConsoles[user]--; s.count.userConsoles[user] <= 0 {
		delete(s.count.userConsoles, user)
	}
}

// unregister forgets the session and gives back its console slot.
func (cs *consoleSession) unregister() {
	s := cs.srv
	cs.stop()
	cs.cancel(nil)
	s.count.mu.Lock()
	delete(s.count.consoles, cs)
	s.count.mu.Unlock()
	s.releaseConsoleSlot(cs.user)
}

// run relays the console until it ends and writes console.end, also if
// the relay panics (with reason "internal error"). It closes console.
func (cs *consoleSession) run(client io.Writer, in ctxReader, console net.Conn, mode relayMode) (reason string) {
	reason = EndInternalError
	defer func() {
		console.Close()
		cs.end(reason)
	}()
	// Logged here, not as console.start is written: the log's write is
	// then off the path to the console's first bytes, which a forward
	// has sent with its channel's confirmation.
	cs.logStart()
	return cs.relay(client, in, console, mode)
}

// logStart logs the start of the session in the operator's log.
func (cs *consoleSession) logStart() {
	ev := cs.ev
	cs.srv.log.Info("console start", "conn", ev.ConnID, "session", cs.id, "user", ev.User, "pool", ev.Pool, "vm", ev.VM, "protocol", ev.Protocol, "via", ev.Via)
}

// end writes console.end and unregisters the session.
func (cs *consoleSession) end(reason string) {
	cs.unregister()
	ev := cs.ev
	ev.Event = EventConsoleEnd
	in, out, ms := cs.bytesIn.Load(), cs.bytesOut.Load(), time.Since(cs.start).Milliseconds()
	ev.BytesIn, ev.BytesOut, ev.DurationMS, ev.Reason = &in, &out, &ms, reason
	cs.srv.audit(ev, false)
	cs.srv.log.Info("console end", "conn", ev.ConnID, "session", cs.id, "user", ev.User, "vm", ev.VM,
		"bytes_in", in, "bytes_out", out, "duration_ms", ms, "reason", reason)
}

// relay copies between the client and the console until one side ends, the
// connection goes, a limit or a reload ends it, or the server shuts down,
// and returns why it ended. It reads the client's input from in and writes
// the console's output to client. It closes console, and in forwardMode
// the client channel too; a command's session is closed by its handler.
func (cs *consoleSession) relay(client io.Writer, in ctxReader, console net.Conn, mode relayMode) string {
	s := cs.srv
	ctx, cancel := context.WithCancelCause(cs.ctx)
	defer cancel(nil)
	now := time.Now()
	cs.lastActive.Store(now.UnixNano())
	if d := s.limits.IdleTimeout; d > 0 {
		// Started with the timer assigned, since the function resets it.
		var idle *time.Timer
		idle = time.AfterFunc(math.MaxInt64, func() {
			if since := time.Since(time.Unix(0, cs.lastActive.Load())); since < d {
				idle.Reset(d - since)
				return
			}
			cancel(errIdle)
		})
		idle.Reset(d)
		defer idle.Stop()
	}
	if d := s.limits.MaxSessionDuration; d > 0 {
		t := time.AfterFunc(d, func() { cancel(errMaxDuration) })
		defer t.Stop()
	}

	var once sync.Once
	var reason string
	finish := func(r string) {
		once.Do(func() { reason = r })
		cancel(nil)
	}
	cs.lastOut.Store(time.Now().UnixNano())

	// contain ends the relay when one of its goroutines panics: a bug in
	// one session's copy must neither take the process, and every other
	// session, down with it nor skip this session's console.end.
	contain := func(what string) {
		if r := recover(); r != nil {
			s.log.Error("relay panic", "session", cs.id, "copy", what, "panic", r, "stack", string(debug.Stack()))
			finish(EndInternalError)
		}
	}

	var wg sync.WaitGroup
	inputDone := make(chan struct{})
	wg.Add(3)
	go func() { // client -> console
		defer wg.Done()
		defer close(inputDone)
		defer contain("client to console")
		err := cs.copyIn(ctx, console, in, mode)
		switch {
		case ctx.Err() != nil:
			// The relay is ending for another reason.
		case errors.Is(err, errDetach):
			finish(EndDetached)
		case err != nil:
			finish(EndClientClosed)
		case mode == forwardMode:
			if cw, ok := console.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			// Give the console a moment to close its side too.
			t := time.AfterFunc(halfCloseWait, func() { finish(EndClientClosed) })
			context.AfterFunc(ctx, func() { t.Stop() })
		}
	}()
	go func() {
		defer wg.Done()
		defer contain("drain")
		if mode == forwardMode {
			return
		}
		select {
		case <-inputDone:
		case <-ctx.Done():
			return
		}
		cs.drain(ctx, finish)
	}()

	// Started last, so that it runs first: a console open waits for the
	// console's first bytes, which have often come with the CONNECT reply
	// and are read at once.
	go func() { // console -> client
		defer wg.Done()
		defer contain("console to client")
		if p := cs.pending; len(p) > 0 {
			cs.pending = nil
			m, err := client.Write(p)
			cs.bytesOut.Add(int64(m))
			if err != nil {
				finish(EndClientClosed)
				return
			}
		}
		buf := new(copyBuffer)
		defer buf.release()
		for {
			p := buf.bytes()
			n, rerr := console.Read(p)
			if n > 0 {
				t := time.Now().UnixNano()
				cs.lastOut.Store(t)
				cs.lastActive.Store(t)
				m, werr := sendFrom(client, buf, n)
				cs.bytesOut.Add(int64(m))
				if werr != nil {
					finish(EndClientClosed)
					return
				}
			}
			buf.used(n)
			if rerr != nil {
				select {
				case <-inputDone:
					if mode == forwardMode {
						finish(EndClientClosed) // the console closed after the client's EOF
						return
					}
				default:
				}
				finish(EndConsoleClosed)
				return
			}
		}
	}()

	<-ctx.Done()
	once.Do(func() { reason = endReason(context.Cause(ctx)) })
	console.Close()
	if c, ok := client.(io.Closer); ok && mode == forwardMode {
		// Wake the client->console copy, which may be blocked reading
		// the channel; a command's input stops with ctx.
		c.Close()
	}
	copied := make(chan struct{})
	go func() { wg.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(stallWait):
		// A client that stops reading blocks the console->client copy
		// on SSH flow control, and closing a channel locally does not
		// wake it: only tearing down the connection does.
		s.log.Warn("client is not reading; closing its connection", "conn", cs.st.id, "session", cs.id)
		cs.st.conn.Close()
		<-copied
	}
	return reason
}

// drain waits, after a command's input ended, until the console has been
// quiet for DrainQuiet or DrainMax has passed, then finishes the relay.
func (cs *consoleSession) drain(ctx context.Context, finish func(string)) {
	quiet, max := cs.srv.DrainQuiet, cs.srv.DrainMax
	if quiet <= 0 {
		quiet = time.Second
	}
	if max <= 0 {
		max = 10 * time.Second
	}
	deadline := time.Now().Add(max)
	t := time.NewTimer(quiet)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		idle := now.Sub(time.Unix(0, cs.lastOut.Load()))
		if idle >= quiet || !now.Before(deadline) {
			finish(EndInputDone)
			return
		}
		t.Reset(min(quiet-idle, deadline.Sub(now)))
	}
}

var errDetach = errors.New("detach")

// copyIn copies the client's input to the console. It returns nil at the
// end of the input, errDetach when the escape key is typed in ptyMode, and
// another error when either side fails.
func (cs *consoleSession) copyIn(ctx context.Context, console io.Writer, in ctxReader, mode relayMode) error {
	if r, ok := in.(channelReader); ok && mode == forwardMode {
		// x/crypto's channel (patched: third_party/README.md) hands over
		// each packet's data where it was decrypted, saving a copy per
		// packet; it returns nil at EOF, as this does.
		if wt, ok := r.Reader.(io.WriterTo); ok {
			_, err := wt.WriteTo(consoleWriter{cs, console})
			return err
		}
	}
	buf := new(copyBuffer)
	defer buf.release()
	for {
		n, rerr := in.ReadContext(ctx, buf.bytes())
		if n > 0 {
			p := buf.bytes()[:n]
			detach := false
			if mode == ptyMode {
				for i, c := range p {
					if c == EscapeKey {
						p, detach = p[:i], true
						break
					}
				}
			}
			if len(p) > 0 {
				m, werr := console.Write(p)
				cs.bytesIn.Add(int64(m))
				if werr != nil {
					return werr
				}
				cs.lastActive.Store(time.Now().UnixNano())
			}
			if detach {
				// What came after the escape key is the prompt's.
				if u, ok := in.(unreader); ok {
					u.unread(buf.bytes()[len(p)+1 : n])
				}
				return errDetach
			}
		}
		buf.used(n)
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
