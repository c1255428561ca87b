package bastion

import (
	"fmt"
	"net"

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
	defer s.recoverPanic("forward")
	st := stateOf(ctx)
	var d directTCPIP
	err := gossh.Unmarshal(newChan.ExtraData(), &d)
	target := d.DestAddr
	refuse := func(dn *denial) {
		s.refuse(st, target, xapi.RFB, "forward", dn)
		newChan.Reject(dn.code, dn.msg)
	}
	if err != nil {
		refuse(&denial{msg: "malformed direct-tcpip request", reason: "malformed target", code: gossh.ConnectionFailed, err: err})
		return
	}
	if !s.enter() {
		refuse(&denial{msg: msgShuttingDown, reason: EndShutdown, code: gossh.ConnectionFailed})
		return
	}
	defer s.handlers.Done()

	done, ok := s.openChannel(st)
	if !ok {
		refuse(&denial{msg: "too many channels on this connection", reason: "channel limit", code: gossh.ResourceShortage})
		return
	}
	defer done()
	if !st.permits("permit-port-forwarding") {
		refuse(&denial{msg: "your certificate does not permit port forwarding", reason: "certificate forbids forwarding", code: gossh.Prohibited})
		return
	}
	if d.DestPort != VNCPort {
		refuse(&denial{
			msg:    fmt.Sprintf("only port %d (a VM's VNC console) is served; forward to VM:%d", VNCPort, VNCPort),
			reason: fmt.Sprintf("port %d not served", d.DestPort),
			code:   gossh.Prohibited,
		})
		return
	}
	cs, conn, dn := s.open(ctx, st, target, xapi.RFB, "forward")
	if dn != nil {
		newChan.Reject(dn.code, dn.msg)
		return
	}
	// Until the relay runs (which ends the session itself), a failure here
	// ends it; a panic in accept leaves EndInternalError.
	unrelayed := EndInternalError
	defer func() {
		if unrelayed != "" {
			conn.Close()
			cs.logStart()
			cs.end(unrelayed)
		}
	}()
	ch, reqs, err := accept(newChan, cs, conn)
	if err != nil {
		unrelayed = EndDisconnected
		return
	}
	unrelayed = ""
	go gossh.DiscardRequests(reqs)
	cs.run(ch, channelReader{ch}, conn, forwardMode)
}

// maxFirstBytes bounds the console output sent with a channel's
// confirmation: one SSH packet's worth.
const maxFirstBytes = 32 << 10

// accept accepts a forward's channel. The console's first bytes, when they
// came with the CONNECT reply (an rfb console's banner, usually), go out in
// the same write as the confirmation, as far as the client's window allows;
// what is left is sent first by the relay.
func accept(newChan gossh.NewChannel, cs *consoleSession, console net.Conn) (gossh.Channel, <-chan *gossh.Request, error) {
	type acceptWithData interface {
		AcceptWithData(data []byte) (gossh.Channel, <-chan *gossh.Request, int, error)
	}
	a, ok := newChan.(acceptWithData)
	b, buffered := console.(interface{ Buffered() int })
	if !ok || !buffered || b.Buffered() == 0 {
		return newChan.Accept()
	}
	// A read of what is buffered returns at once.
	first := make([]byte, min(b.Buffered(), maxFirstBytes))
	n, _ := console.Read(first) // a failed connection fails the relay's reads too
	if n == 0 {
		return newChan.Accept()
	}
	first = first[:n]
	ch, reqs, sent, err := a.AcceptWithData(first)
	if err != nil {
		return nil, nil, err
	}
	cs.bytesOut.Add(int64(sent))
	cs.pending = first[sent:]
	return ch, reqs, nil
}

// recoverPanic logs a handler's panic instead of crashing the server: one
// bad connection never takes the others down.
func (s *Server) recoverPanic(what string) {
	if r := recover(); r != nil {
		s.log.Error("handler panic", "handler", what, "panic", r)
	}
}
