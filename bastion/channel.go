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
}

func (c *filteredChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := c.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	c.ch = ch
	c.srv.sessionChannels.Store(ch, c.closed)
	out := make(chan *gossh.Request)
	go func() {
		defer close(c.closed)
		defer close(out)
		// gliderlabs queues a PTY's window changes for the session's
		// handler in a channel that holds one, the PTY's first size, and
		// starts the handler only at shell or exec: a window change
		// before then blocked its requests for good, and the
		// connection's end could not free them. The last one waits here
		// and goes after the shell or exec.
		var winch *gossh.Request
		started := false
		for r := range reqs {
			switch {
			case refusedSessionRequests[r.Type]:
				if r.WantReply {
					r.Reply(false, nil)
				}
				continue
			case r.Type == "window-change" && !started:
				if r.WantReply { // RFC 4254 says it never does
					r.Reply(true, nil)
				}
				winch = &gossh.Request{Type: r.Type, Payload: r.Payload}
				continue
			}
			out <- r
			if r.Type == "shell" || r.Type == "exec" {
				started = true
				if winch != nil {
					out <- winch
					winch = nil
				}
			}
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
		return c.(chan struct{})
	}
	// Every session channel is registered from its Accept until
	// handleSessionChannel returns, after it has closed.
	closed := make(chan struct{})
	close(closed)
	return closed
}
