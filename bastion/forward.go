package bastion

import (
	"fmt"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/xapi"
)

// VNCPort is the only forward port the bastion serves: a VM's rfb console.
const VNCPort = 5900

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254 7.2).
type directTCPIP struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// handleDirectTCPIP serves "ssh -L", "-W" and "-D": the destination host
// names a VM and the port must be 5900, its rfb console. Nothing is dialled
// but a console location that XAPI returns.
func (s *Server) handleDirectTCPIP(_ *gliderssh.Server, _ *gossh.ServerConn, newChan gossh.NewChannel, ctx gliderssh.Context) {
	if !s.enter() {
		newChan.Reject(gossh.ConnectionFailed, "the bastion is shutting down")
		return
	}
	defer s.handlers.Done()
	defer s.recoverPanic("forward")

	st := stateOf(ctx)
	done, ok := s.openChannel(st)
	if !ok {
		newChan.Reject(gossh.ResourceShortage, "too many channels on this connection")
		return
	}
	defer done()
	var d directTCPIP
	if err := gossh.Unmarshal(newChan.ExtraData(), &d); err != nil {
		newChan.Reject(gossh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	target := d.DestAddr
	if d.DestPort != VNCPort {
		dn := &denial{
			msg:    fmt.Sprintf("only port %d (a VM's VNC console) is served; forward to VM:%d", VNCPort, VNCPort),
			reason: fmt.Sprintf("port %d not served", d.DestPort),
			code:   gossh.Prohibited,
		}
		s.refuse(st, target, xapi.RFB, "forward", dn)
		newChan.Reject(dn.code, dn.msg)
		return
	}
	cs, conn, dn := s.open(ctx, st, target, xapi.RFB, "forward")
	if dn != nil {
		newChan.Reject(dn.code, dn.msg)
		return
	}
	ch, reqs, err := newChan.Accept()
	if err != nil {
		conn.Close()
		cs.end(EndDisconnected)
		return
	}
	go gossh.DiscardRequests(reqs)
	cs.run(ch, channelReader{ch}, conn, forwardMode)
}

// recoverPanic logs a handler's panic instead of crashing the server: one
// bad connection never takes the others down.
func (s *Server) recoverPanic(what string) {
	if r := recover(); r != nil {
		s.log.Error("handler panic", "handler", what, "panic", r)
	}
}
