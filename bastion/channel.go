package bastion

import (
	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// refusedSessionRequests are session requests the bastion refuses before
// gliderlabs sees them: it would accept agent forwarding and environment
// variables, which a console bastion has no use for.
var refusedSessionRequests = map[string]bool{
	"auth-agent-req@openssh.com": true,
	"x11-req":                    true,
	"env":                        true,
}

// handleSessionChannel is the "session" channel handler: gliderlabs'
// default, with the requests it would wrongly accept refused, and the
// channel's close made known to the session (see sessionClosed).
func (s *Server) handleSessionChannel(srv *gliderssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx gliderssh.Context) {
	done, ok := s.openChannel(stateOf(ctx))
	if !ok {
		newChan.Reject(gossh.ResourceShortage, "too many channels on this connection")
		return
	}
	defer done()
	fc := &filteredChannel{NewChannel: newChan, srv: s, closed: make(chan struct{})}
	// gliderlabs returns once the channel's requests end (it has closed);
	// a session that looks for it afterwards finds it closed.
	defer func() {
		if fc.ch != nil {
			s.sessionChannels.Delete(fc.ch)
		}
	}()
	gliderssh.DefaultSessionHandler(srv, conn, fc, ctx)
}

// filteredChannel is a session channel whose refused requests gliderlabs
// never sees, and whose close (the end of its requests) closes closed.
type filteredChannel struct {
	gossh.NewChannel
	srv    *Server
	ch     gossh.Channel // once accepted
	closed chan struct{}
	// win is the size of the PTY's last window change before shell or
	// exec, if any; it is not written once either has been passed on.
	win *gliderssh.Window
}

// maxWindow bounds a window change's columns and rows, as a terminal's.
const maxWindow = 1 << 16

func (c *filteredChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := c.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	c.ch = ch
	c.srv.sessionChannels.Store(ch, c)
	out := make(chan *gossh.Request)
	go func() {
		defer close(c.closed)
		defer close(out)
		// gliderlabs queues a PTY's window changes for the session's
		// handler in a channel that holds one, the PTY's first size, and
		// starts the handler only at shell or exec: a window change
		// before then blocked its requests for good, and the
		// connection's end could not free them. Such changes stop here;
		// the handler starts at the last one's size (heldWindow).
		started := false
		for r := range reqs {
			switch {
			case refusedSessionRequests[r.Type]:
				if r.WantReply {
					r.Reply(false, nil)
				}
				continue
			case r.Type == "window-change" && !started:
				var w struct{ Cols, Rows, Width, Height uint32 }
				ok := gossh.Unmarshal(r.Payload, &w) == nil && w.Cols > 0 && w.Rows > 0 && w.Cols <= maxWindow && w.Rows <= maxWindow
				if ok {
					c.win = &gliderssh.Window{Width: int(w.Cols), Height: int(w.Rows)}
				}
				if r.WantReply { // RFC 4254 says it never does
					r.Reply(ok, nil)
				}
				continue
			}
			if r.Type == "shell" || r.Type == "exec" {
				started = true // c.win is the handler's from here on
			}
			out <- r
		}
	}()
	return ch, out, nil
}

// sessionClosed returns a channel that is closed once the session channel
// ch (rawChannel of a gliderlabs session) has been closed. gliderlabs ends
// a session's context only with its connection, but a client that
// multiplexes sessions over one connection (OpenSSH's ControlMaster) closes
// one alone.
func (s *Server) sessionClosed(ch any) <-chan struct{} {
	if c, ok := s.sessionChannels.Load(ch); ok {
		return c.(*filteredChannel).closed
	}
	// Every session channel is registered from its Accept until
	// handleSessionChannel returns, after it has closed.
	closed := make(chan struct{})
	close(closed)
	return closed
}

// heldWindow returns the PTY size of the last window change that came
// before the session channel ch's shell or exec, if any (see
// filteredChannel.Accept). It is for the session's handler, which gliderlabs
// starts after passing on the shell or exec.
func (s *Server) heldWindow(ch any) (gliderssh.Window, bool) {
	if c, ok := s.sessionChannels.Load(ch); ok {
		if w := c.(*filteredChannel).win; w != nil {
			return *w, true
		}
	}
	return gliderssh.Window{}, false
}
