package xapitest

import (
	"bufio"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Host is one host of a simulated pool: an HTTPS server on a loopback
// port with its own certificate, serving XML-RPC on POST and consoles on
// CONNECT /console.
type Host struct {
	pool     *Pool
	index    int
	ref      string
	uuid     string
	hostname string
	label    string // name_label when set apart from hostname; guarded by pool.mu
	addr     string // "127.0.0.1:PORT" or "[::1]:PORT"
	cert     *hostCert
	ln       net.Listener
	dom0     *vm // the control domain; guarded by pool.mu like every vm
}

// Index returns the host's index in the pool (0 is the first master).
func (h *Host) Index() int { return h.index }

// Ref returns the host's opaque reference.
func (h *Host) Ref() string { return h.ref }

// UUID returns the host's UUID.
func (h *Host) UUID() string { return h.uuid }

// Hostname returns the host's hostname, "host-N", which is also its
// name_label unless SetNameLabel changed that.
func (h *Host) Hostname() string { return h.hostname }

// SetNameLabel gives the host a name_label apart from its hostname, as
// host.set_name_label does (the control domain keeps its name).
func (h *Host) SetNameLabel(label string) {
	h.pool.mu.Lock()
	h.label = label
	h.pool.mu.Unlock()
}

// nameLabel returns the host's name_label; the caller holds pool.mu.
func (h *Host) nameLabel() string { return cmp.Or(h.label, h.hostname) }

// Address returns the host's "127.0.0.1:PORT" (or "[::1]:PORT"). The
// simulator reports this, port included, wherever xapi reports a host's
// address (host.address, HOST_IS_SLAVE, console locations): a real host
// is on port 443 and xapi sends its bare IP address.
func (h *Host) Address() string { return h.addr }

// URL returns "https://" + Address().
func (h *Host) URL() string { return "https://" + h.addr }

// Fingerprint returns the SHA-256 fingerprint of the host's certificate as
// xapi prints it: uppercase hex bytes separated by colons.
func (h *Host) Fingerprint() string { return fingerprint(h.cert.leaf.Raw) }

// Certificate returns the host's self-signed certificate.
func (h *Host) Certificate() *x509.Certificate { return h.cert.leaf }

// CertPEM returns the host's certificate, PEM encoded.
func (h *Host) CertPEM() []byte { return append([]byte(nil), h.cert.pem...) }

// IsMaster reports whether the host is the pool master now.
func (h *Host) IsMaster() bool { return h.pool.Master() == h }

// Limits on what a client may send.
const (
	maxHeaderBytes = 64 << 10
	maxBodyBytes   = 16 << 20
	headerTimeout  = 30 * time.Second // for the TLS handshake and the first request
)

// serve accepts connections until the listener is closed.
func (h *Host) serve() {
	p := h.pool
	cfg := serverTLSConfig(h.cert.tls)
	for {
		c, err := h.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Error("accept failed", "host", h.hostname, "err", err)
			}
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Go(func() {
			defer p.untrack(c)
			defer c.Close()
			tc := tls.Server(c, cfg)
			h.serveConn(tc)
			_ = tc.Close() // sends close_notify when it can
		})
	}
}

// serveConn serves HTTP requests on one TLS connection: XML-RPC calls
// while the client keeps the connection alive, or one CONNECT.
func (h *Host) serveConn(c *tls.Conn) {
	log := h.pool.log.With("host", h.hostname, "conn", c.RemoteAddr().String())
	_ = c.SetDeadline(time.Now().Add(headerTimeout))
	if err := c.Handshake(); err != nil {
		log.Debug("TLS handshake failed", "err", err)
		return
	}
	br := bufio.NewReader(c)
	for {
		// Like xapi, only the first request has a deadline: a client
		// may keep a connection idle between calls as long as it likes.
		req, err := readRequest(br)
		if err != nil {
			if errors.Is(err, errBadRequest) {
				log.Debug("bad HTTP request", "err", err)
				writeInternalError(c, nil, "The HTTP headers could not be parsed.")
			}
			return
		}
		_ = c.SetDeadline(time.Time{})
		log.Debug("request", "method", req.method, "uri", req.uri)
		switch req.method {
		case "CONNECT":
			h.serveConnect(c, br, req, log)
			return
		case "POST":
			if !h.serveRPC(c, br, req, log) {
				return
			}
		case "GET", "PUT", "OPTIONS":
			// xapi answers paths it has no handler for with its
			// default handler, which writes HTTP/1.1 whatever the
			// request's version.
			writeForbidden(c, nil)
			return
		default:
			writeErrorHTML(c, returnVersion(req), "501", "Method not implemented", nil,
				"<html><body><h1>HTTP 501 Method Not Implemented</h1><p>Unknown "+httpEscaper.Replace(req.method)+" not supported.<br /></p></body></html>")
			return
		}
	}
}

// serveRPC answers one XML-RPC call and reports whether the connection may
// carry another request.
func (h *Host) serveRPC(c net.Conn, br *bufio.Reader, req *request, log *slog.Logger) bool {
	cl, ok := req.headers["content-length"]
	n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64)
	if !ok || err != nil || n < 0 || n > maxBodyBytes {
		writeInternalError(c, req, "Failure(&quot;We require a content-length: HTTP header&quot;)")
		return false
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return false
	}
	method, params, err := parseMethodCall(body)
	if err != nil {
		log.Debug("malformed XML-RPC call", "err", err)
		writeInternalError(c, req, httpEscaper.Replace(err.Error()))
		return false
	}
	reply := h.pool.dispatch(h, method, params)
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/%s 200 OK\r\n", returnVersion(req))
	fmt.Fprintf(&b, "content-length: %d\r\n", len(reply))
	if req.close {
		b.WriteString("connection: close\r\n")
	} else {
		b.WriteString("connection: keep-alive\r\n")
	}
	b.WriteString("cache-control: no-cache, no-store\r\ncontent-type: text/xml\r\n\r\n")
	b.Write(reply)
	if _, err := io.WriteString(c, b.String()); err != nil {
		return false
	}
	return !req.close
}

// request is an HTTP/1.x request header as xapi's http_svr reads it.
type request struct {
	method  string
	uri     string            // as sent
	path    string            // uri's path, unescaped
	version string            // "1.0", "1.1"
	query   map[string]string // first value of each key
	headers map[string]string // lower-case names, last value wins
	cookies map[string]string
	close   bool // HTTP/1.0 without keep-alive, or Connection: close
}

// errBadRequest is wrapped by readRequest's errors for requests that are
// not HTTP; other errors are the connection's.
var errBadRequest = errors.New("malformed HTTP request")

// readRequest reads a request line and headers, each line ended by CRLF,
// up to the empty line.
func readRequest(br *bufio.Reader) (*request, error) {
	total := 0
	readLine := func() (string, error) {
		var line []byte
		for {
			frag, err := br.ReadSlice('\n')
			line = append(line, frag...)
			total += len(frag)
			if total > maxHeaderBytes {
				return "", fmt.Errorf("%w: header too large", errBadRequest)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if len(line) > 0 && err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return "", err
			}
			break
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return "", fmt.Errorf("%w: line not ended by CRLF", errBadRequest)
		}
		return string(line[:len(line)-2]), nil
	}

	line, err := readLine()
	if err != nil {
		return nil, err
	}
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/") {
		return nil, fmt.Errorf("%w: request line %q", errBadRequest, line)
	}
	req := &request{
		method:  f[0],
		uri:     f[1],
		version: strings.TrimPrefix(f[2], "HTTP/"),
		query:   map[string]string{},
		headers: map[string]string{},
		cookies: map[string]string{},
	}
	req.close = req.version == "1.0"
	rawPath, rawQuery, _ := strings.Cut(req.uri, "?")
	if req.path, err = unescape(rawPath, false); err != nil {
		return nil, fmt.Errorf("%w: path %q", errBadRequest, rawPath)
	}
	parsePairs(rawQuery, "&", req.query)

	for {
		line, err := readLine()
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		req.headers[k] = v
		switch k {
		case "cookie":
			parsePairs(v, ";&", req.cookies)
		case "connection":
			switch strings.ToLower(v) {
			case "close":
				req.close = true
			case "keep-alive":
				req.close = false
			}
		}
	}
	return req, nil
}

// parsePairs adds the k=v pairs of s, separated by any of seps and
// URL-decoded, to m; the first value of a key wins.
func parsePairs(s, seps string, m map[string]string) {
	for _, kv := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		k, err1 := unescape(k, true)
		v, err2 := unescape(v, true)
		if err1 != nil || err2 != nil || k == "" {
			continue
		}
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
}

// unescape decodes %XX escapes, and '+' as a space when plus is set.
func unescape(s string, plus bool) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+' && plus:
			b.WriteByte(' ')
		case c == '%':
			if i+2 >= len(s) {
				return "", errBadRequest
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", errBadRequest
			}
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// returnVersion is xapi's get_return_version: "1.0" if the request was
// HTTP/1.0, else "1.1".
func returnVersion(req *request) string {
	if req != nil && req.version == "1.0" {
		return "1.0"
	}
	return "1.1"
}
