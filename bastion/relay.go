package bastion

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenbastion/xenbastion/xapi"
)

// Reasons a console session ends, as written in console.end.
const (
	EndClientClosed  = "client closed"    // the SSH client closed the channel or its input
	EndDisconnected  = "client vanished"  // the SSH connection went away
	EndConsoleClosed = "console closed"   // the pool closed the console connection
	EndDetached      = "detached"         // the user typed the escape key
	EndInputDone     = "input ended"      // no PTY: input ended and the output went quiet
	EndShutdown      = "server shutdown"  // the bastion is shutting down
	EndAuditFailed   = "audit log failed" // (never relayed: console.start could not be written)
)

// EscapeKey detaches from a console with a PTY: Ctrl-], as in telnet.
const EscapeKey = 0x1d

// halfCloseWait is how long a forward waits for the console to close after
// the client's side ended.
const halfCloseWait = 5 * time.Second

// copyBufSize is the relay buffer: one SSH packet's worth and more.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// ctxReader reads the client's input; ReadContext returns when ctx is done
// if the reader can stop waiting ([input] can; an SSH channel is closed
// instead).
type ctxReader interface {
	ReadContext(ctx context.Context, p []byte) (int, error)
}

// channelReader reads a forward's channel, which relay closes to stop it.
type channelReader struct{ io.Reader }

func (r channelReader) ReadContext(_ context.Context, p []byte) (int, error) { return r.Read(p) }

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
	ev    Event // the console.start record, reused for console.end

	bytesIn, bytesOut atomic.Int64
	lastOut           atomic.Int64 // unix nanos of the last console output
}

// begin writes console.start, synced, before any byte is relayed. If it
// cannot be written the console is not relayed.
func (s *Server) begin(st *connState, vm xapi.VM, p xapi.Protocol, via string) (*consoleSession, error) {
	cs := &consoleSession{srv: s, id: newID(), start: time.Now()}
	ev := st.event(EventConsoleStart)
	ev.SessionID, ev.Pool, ev.VM, ev.VMUUID, ev.Protocol, ev.Via = cs.id, vm.Pool, vm.Name, vm.UUID, string(p), via
	cs.ev = ev
	if err := s.audit(ev, true); err != nil {
		return nil, err
	}
	s.log.Info("console start", "conn", ev.ConnID, "session", cs.id, "user", ev.User, "pool", vm.Pool, "vm", vm.Name, "protocol", p, "via", via)
	return cs, nil
}

// end writes console.end.
func (cs *consoleSession) end(reason string) {
	ev := cs.ev
	ev.Event = EventConsoleEnd
	in, out, ms := cs.bytesIn.Load(), cs.bytesOut.Load(), time.Since(cs.start).Milliseconds()
	ev.BytesIn, ev.BytesOut, ev.DurationMS, ev.Reason = &in, &out, &ms, reason
	cs.srv.audit(ev, false)
	cs.srv.log.Info("console end", "conn", ev.ConnID, "session", cs.id, "user", ev.User, "vm", ev.VM,
		"bytes_in", in, "bytes_out", out, "duration_ms", ms, "reason", reason)
}

// relay copies between the client and the console until one side ends, the
// connection goes (ctx done) or the server shuts down, and returns why it
// ended. It reads the client's input from in, writes the console's output
// to client, and closes console; the caller closes the client side.
func (cs *consoleSession) relay(ctx context.Context, client io.Writer, in ctxReader, console net.Conn, mode relayMode) string {
	s := cs.srv
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.base, func() { cancel(errShutdown) })
	defer stop()

	var once sync.Once
	var reason string
	finish := func(r string) {
		once.Do(func() { reason = r })
		cancel(nil)
	}
	cs.lastOut.Store(time.Now().UnixNano())

	var wg sync.WaitGroup
	inputDone := make(chan struct{})
	wg.Add(2)
	go func() { // client -> console
		defer wg.Done()
		defer close(inputDone)
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
	go func() { // console -> client
		defer wg.Done()
		buf := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(buf)
		for {
			n, rerr := console.Read(*buf)
			if n > 0 {
				cs.lastOut.Store(time.Now().UnixNano())
				if _, werr := client.Write((*buf)[:n]); werr != nil {
					finish(EndClientClosed)
					return
				}
				cs.bytesOut.Add(int64(n))
			}
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

	if mode != forwardMode {
		go func() {
			select {
			case <-inputDone:
			case <-ctx.Done():
				return
			}
			cs.drain(ctx, finish)
		}()
	}

	<-ctx.Done()
	if cause := context.Cause(ctx); errors.Is(cause, errShutdown) {
		once.Do(func() { reason = EndShutdown })
	} else {
		once.Do(func() { reason = EndDisconnected })
	}
	console.Close()
	if c, ok := client.(io.Closer); ok && mode == forwardMode {
		// Wake the client->console copy, which may be blocked reading
		// the channel; a command's input stops with ctx.
		c.Close()
	}
	wg.Wait()
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
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		n, rerr := in.ReadContext(ctx, *buf)
		if n > 0 {
			p := (*buf)[:n]
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
				if _, werr := console.Write(p); werr != nil {
					return werr
				}
				cs.bytesIn.Add(int64(len(p)))
			}
			if detach {
				return errDetach
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
