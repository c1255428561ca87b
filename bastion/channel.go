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
// default, with the requests it would wrongly accept refused.
func (s *Server) handleSessionChannel(srv *gliderssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx gliderssh.Context) {
	done, ok := s.openChannel(stateOf(ctx))
	if !ok {
		newChan.Reject(gossh.ResourceShortage, "too many channels on this connection")
		return
	}
	defer done()
	gliderssh.DefaultSessionHandler(srv, conn, filteredChannel{newChan}, ctx)
}

type filteredChannel struct{ gossh.NewChannel }

func (c filteredChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := c.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		for r := range reqs {
			if refusedSessionRequests[r.Type] {
				if r.WantReply {
					r.Reply(false, nil)
				}
				continue
			}
			out <- r
		}
	}()
	return ch, out, nil
}
