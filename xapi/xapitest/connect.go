package xapitest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest/rfb"
)

// ConnectOK is xapi's reply to a console CONNECT that it accepts, whatever
// the request's HTTP version. The console's bytes follow it.
const ConnectOK = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"

// The reply texts below are xapi's (ocaml/libs/http-lib/http_svr.ml,
// http.ml, ocaml/xapi/console.ml).
const (
	body401 = "<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and retry.</body></html>"
	body403 = "<html><body><h1>HTTP 403 forbidden</h1>Access to the requested resource is forbidden.</body></html>"
	body500 = "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative."
	// reply404 is http_404_missing: always HTTP/1.1, no body.
	reply404 = "HTTP/1.1 404 Not Found\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n\r\n"
	// consoleRealm is the realm of the 401 to a console CONNECT: the name
	// of the HTTP action whose credentials check fails.
	consoleRealm = "connect_console"
	// consoleFailure is the text of the exception console.ml raises when
	// a console cannot be served here, as the 500 page shows it.
	consoleFailure = "Console.Failure"
)

// httpEscaper is http_svr.ml's escape, which 500 pages use for the
// exception they show.
var httpEscaper = strings.NewReplacer("<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;", "&", "&amp;")

// consoleEscaper is console.ml's html_escape, which the 503 page uses for
// user names.
var consoleEscaper = strings.NewReplacer("<", "&lt;", ">", "&gt;", "&", "&amp;", `"`, "&quot;", "'", "&#x27;")

// writeErrorHTML writes xapi's response_error_html: the status line, then
// content-length, content-type, connection and cache-control, then extra
// header lines, then body.
func writeErrorHTML(w io.Writer, version, code, message string, extra []string, body string) {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/%s %s %s\r\ncontent-length: %d\r\ncontent-type: text/html\r\nconnection: close\r\ncache-control: no-cache, no-store\r\n",
		version, code, message, len(body))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	_, _ = io.WriteString(w, b.String())
}

// writeUnauthorised writes 401 Unauthorised for the console realm.
func writeUnauthorised(w io.Writer, req *request) {
	writeErrorHTML(w, returnVersion(req), "401", "Unauthorised",
		[]string{`WWW-Authenticate: Basic realm="` + consoleRealm + `"`}, body401)
}

// writeForbidden writes 403 Forbidden. xapi's default handler, which
// answers paths nothing else claims, passes no request (req nil) and so
// always writes HTTP/1.1.
func writeForbidden(w io.Writer, req *request) {
	writeErrorHTML(w, returnVersion(req), "403", "Forbidden", nil, body403)
}

// writeInternalError writes 500 Internal Error with extra, already HTML,
// as the additional information.
func writeInternalError(w io.Writer, req *request, extra string) {
	body := body500
	if extra != "" {
		body += "<h1> Additional information </h1>" + extra
	}
	body += "</body></html>"
	writeErrorHTML(w, returnVersion(req), "500", "Internal Error", nil, body)
}

// writeLimitExceeded writes console.ml's 503 Connection Limit Exceeded,
// naming the users connected.
func writeLimitExceeded(w io.Writer, req *request, users []string) {
	esc := make([]string, len(users))
	for i, u := range users {
		esc[i] = consoleEscaper.Replace(u)
	}
	who := "Users '" + strings.Join(esc, ", ") + "' are"
	if len(esc) == 1 {
		who = "User '" + esc[0] + "' is"
	}
	writeErrorHTML(w, returnVersion(req), "503", "Connection Limit Exceeded", nil,
		"<html><body><h1>Connection Limit Exceeded</h1><p>"+who+" currently connected to this console. No new connections are allowed. Please check the limit_console_sessions config and try again later.</p></body></html>")
}

// serveConnect answers a CONNECT in the order xapi checks things: the path,
// the credentials, the console asked for, that its VM runs here, that it
// has a back end, the connection limit. Then it writes ConnectOK and
// proxies the console until either side closes.
func (h *Host) serveConnect(c *tls.Conn, br *bufio.Reader, req *request, log *slog.Logger) {
	p := h.pool
	p.mu.Lock()
	hold := p.holdConnects
	p.mu.Unlock()
	if hold {
		_, _ = io.Copy(io.Discard, br) // until the client closes
		return
	}
	// xapi picks the handler whose path is the longest prefix of the
	// request's; /console is the only CONNECT handler here.
	if !strings.HasPrefix(req.path, "/console") {
		writeForbidden(c, nil)
		return
	}

	session, user, temporary, ok := p.connectCredentials(c, req)
	if !ok {
		return
	}
	if temporary {
		defer p.logout(session)
	}

	// PowerOff and Close end the connection by closing the TCP
	// connection under it, which a blocked TLS write cannot delay.
	raw := c.NetConn()
	con, fail := p.openConsole(h, raw, req, session, user)
	if fail != nil {
		log.Debug("console CONNECT refused", "uri", req.uri, "status", fail.status)
		fail.write(c, req)
		return
	}
	defer p.closeConsole(con, raw, session)

	vmName := con.vmName
	log = log.With("vm", vmName, "protocol", con.protocol)
	log.Info("console connected", "user", user)
	defer log.Info("console disconnected")

	switch con.protocol {
	case protoRFB:
		w := newHeaderWriter(c, ConnectOK)
		rw := struct {
			io.Reader
			io.Writer
		}{br, w}
		var err error
		if con.backend != nil {
			err = con.backend(rw)
		} else {
			err = rfb.Serve(rw, vmName)
		}
		w.stop()
		if err != nil {
			log.Debug("rfb console ended", "err", err)
		}
	case protoVT100:
		// Attached before the reply, so that a client that has the
		// reply sees all output from then on.
		cl := con.shell.attach()
		if _, err := io.WriteString(c, ConnectOK); err != nil {
			con.shell.detach(cl)
			return
		}
		con.shell.serve(cl, c, br, func() { raw.Close() })
	}
}

// connectCredentials finds the session of a CONNECT as xapi does: a
// session_id cookie or query parameter, else Basic credentials (then a
// session is opened for this connection only, temporary true). It writes
// the failure reply itself and returns ok false on failure.
func (p *Pool) connectCredentials(w io.Writer, req *request) (session, user string, temporary, ok bool) {
	s, has := req.cookies["session_id"]
	if !has {
		s, has = req.query["session_id"]
	}
	if has {
		p.mu.Lock()
		user, valid := p.sessions[s]
		p.mu.Unlock()
		if !valid {
			writeUnauthorised(w, req)
			return "", "", false, false
		}
		return s, user, false, true
	}
	auth, has := req.headers["authorization"]
	if !has {
		writeUnauthorised(w, req)
		return "", "", false, false
	}
	u, pw, basic := parseBasic(auth)
	if !basic {
		writeInternalError(w, req, httpEscaper.Replace(`Failure("Unknown authorization header: `+auth+`")`))
		return "", "", false, false
	}
	s, err := p.login(u, pw)
	if err != nil {
		writeUnauthorised(w, req)
		return "", "", false, false
	}
	return s, u, true, true
}

// parseBasic parses "Basic base64(user:password)" as xapi does.
func parseBasic(auth string) (user, password string, ok bool) {
	enc, found := strings.CutPrefix(auth, "Basic ")
	if !found {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(dec), ":")
}

// openConsole is a console connection being served: what the proxy needs
// once the checks have passed, copied under the pool's lock.
type openConsole struct {
	c        *console
	vmRef    string
	vmName   string
	protocol string
	shell    *shell                    // vt100 only
	backend  func(io.ReadWriter) error // rfb only; nil: the test pattern
}

// connectFailure is a refused CONNECT, written by write.
type connectFailure struct {
	status int
	extra  string   // 500: the additional information, HTML
	users  []string // 503: the users connected
}

func (f *connectFailure) write(w io.Writer, req *request) {
	switch f.status {
	case 404:
		_, _ = io.WriteString(w, reply404)
	case 503:
		writeLimitExceeded(w, req, f.users)
	default:
		writeInternalError(w, req, f.extra)
	}
}

// openConsole finds the console a CONNECT to host h names, checks that it
// can be served here, and records the connection (for the limit, for
// ActiveConsoles, and so that PowerOff and Close can end it).
func (p *Pool) openConsole(h *Host, c net.Conn, req *request, session, user string) (*openConsole, *connectFailure) {
	p.mu.Lock()
	defer p.mu.Unlock()

	internal := &connectFailure{status: 500, extra: consoleFailure}
	uuid, byUUID := req.query["uuid"]
	ref, byRef := req.query["ref"]
	var con *console
	switch {
	case byUUID:
		// A VM's UUID names its default (rfb) console.
		if v := p.vmByUUID(uuid); v != nil {
			if con = v.defaultConsole(); con == nil {
				return nil, internal
			}
		} else if con = p.consoleByUUID(uuid); con == nil {
			return nil, &connectFailure{status: 500, extra: httpEscaper.Replace("UUID_INVALID: [ console; " + uuid + " ]")}
		}
	case byRef:
		if v := p.vmByRef[ref]; v != nil {
			con = v.defaultConsole()
		} else {
			con = p.consoleByRef[ref]
		}
		if con == nil {
			return nil, internal
		}
	default:
		return nil, internal
	}

	v := con.vm
	if v.powerState != powerRunning || v.residentOn != h {
		return nil, internal
	}
	if !v.controlDomain && (con.protocol == protoRDP || v.noBackend) {
		return nil, &connectFailure{status: 404}
	}
	users := p.consoleUsers[v.ref]
	if p.limitConsoles && len(users) > 0 {
		names := make([]string, len(users))
		for i, u := range users {
			names[i] = u.user
		}
		return nil, &connectFailure{status: 503, users: names}
	}
	p.consoleUsers[v.ref] = append(users, consoleUser{user: user, session: session})
	con.conns[c] = struct{}{}
	if con.protocol == protoVT100 && con.shell == nil {
		con.shell = newShell(v.shellName())
	}
	return &openConsole{c: con, vmRef: v.ref, vmName: v.name, protocol: con.protocol, shell: con.shell, backend: v.backend}, nil
}

// closeConsole forgets a console connection opened by openConsole.
func (p *Pool) closeConsole(oc *openConsole, c net.Conn, session string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(oc.c.conns, c)
	// xapi drops every entry of the session; this drops one, so that
	// two connections with one session are counted right.
	users := p.consoleUsers[oc.vmRef]
	for i, u := range users {
		if u.session == session {
			users = append(users[:i:i], users[i+1:]...)
			break
		}
	}
	if len(users) == 0 {
		delete(p.consoleUsers, oc.vmRef)
	} else {
		p.consoleUsers[oc.vmRef] = users
	}
}

// headerWriter writes a reply header together with the first bytes the
// console back end writes, in one Write and so in one TLS record, as a
// client may see from xapi. If the back end writes nothing within
// headerDelay, the header is written alone.
type headerWriter struct {
	mu     sync.Mutex // guards header and serialises writes
	w      io.Writer
	header []byte // not yet written; nil once written
	timer  *time.Timer
}

const headerDelay = 50 * time.Millisecond

func newHeaderWriter(w io.Writer, header string) *headerWriter {
	hw := &headerWriter{w: w, header: []byte(header)}
	hw.mu.Lock() // the timer's Write waits until timer is set
	hw.timer = time.AfterFunc(headerDelay, func() { _, _ = hw.Write(nil) })
	hw.mu.Unlock()
	return hw
}

func (hw *headerWriter) Write(p []byte) (int, error) {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	if hw.header == nil {
		if len(p) == 0 {
			return 0, nil
		}
		return hw.w.Write(p)
	}
	buf := append(hw.header, p...)
	hw.header = nil
	hw.timer.Stop()
	n, err := hw.w.Write(buf)
	n -= len(buf) - len(p)
	if n < 0 {
		n = 0
	}
	return n, err
}

// stop ends the timer; the header is then written only if the back end
// writes.
func (hw *headerWriter) stop() { hw.timer.Stop() }
