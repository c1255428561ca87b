package xapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxConnectHeader bounds the reply header of a console CONNECT.
const maxConnectHeader = 8 << 10

// DialConsole opens vm's console of protocol p: it reads the console's
// location from XAPI, connects over TLS to the host named there (port 443
// unless the location gives one; the address of the VM's resident host when
// the location's host is empty), sends CONNECT with the session, and
// requires a 200 reply. The returned conn carries the console's raw bytes,
// including any that arrived with the reply header. It implements
// CloseWrite.
func (c *Client) DialConsole(ctx context.Context, vm VM, p Protocol) (net.Conn, error) {
	vm, con, err := c.console(ctx, vm, p)
	if err != nil {
		return nil, err
	}
	conn, err := c.dialSession(ctx, vm, con)
	if errors.Is(err, errUnauthorised) {
		// The session expired between the lookup and the CONNECT: log in
		// again and retry once.
		conn, err = c.dialSession(ctx, vm, con)
	}
	if stale(err) && ctx.Err() == nil {
		// The VM may have stopped, rebooted or moved since its records
		// were read (or cached): read them again and retry once.
		if vm, err = c.refresh(ctx, vm); err == nil {
			if vm, con, err = c.console(ctx, vm, p); err == nil {
				conn, err = c.dialSession(ctx, vm, con)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("xapi: open %s console of %s: %w", p, vm.Name, err)
	}
	return conn, nil
}

// stale reports whether a dial error may come from out-of-date records: the
// host says the VM or console is not there (404, 500), or the host itself
// is gone.
func stale(err error) bool {
	var ce *ConnectError
	var oe *net.OpError
	return errors.As(err, &ce) && (ce.StatusCode == 404 || ce.StatusCode == 500) || errors.As(err, &oe) && oe.Op == "dial"
}

// dialSession dials the console with the current session, and drops that
// session if the host refuses it.
func (c *Client) dialSession(ctx context.Context, vm VM, con Console) (net.Conn, error) {
	session, _, err := c.sessionRef(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.dialLocation(ctx, vm, con, session)
	if errors.Is(err, errUnauthorised) {
		c.dropSession(session)
	}
	return conn, err
}

// errUnauthorised marks a CONNECT refused with 401: the session is no good.
var errUnauthorised = errors.New("session refused")

func (c *Client) dialLocation(ctx context.Context, vm VM, con Console, session string) (net.Conn, error) {
	u, err := parseLocation(con)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Hostname() == "" {
		// Seen in the field: https:///console?ref=... Use the address of
		// the host the VM runs on.
		if vm.ResidentOn == "" {
			return nil, fmt.Errorf("console location %q has no host and the VM runs nowhere", con.Location)
		}
		var addr string
		if err := call(ctx, c, "host.get_address", &addr, vm.ResidentOn); err != nil {
			return nil, err
		}
		if addr == "" {
			return nil, errors.New("the VM's host has no address")
		}
		host = addr
	}
	host = hostPort(host, "443")
	c.noteHost(host)

	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	reply, err := c.requestOnSpare(ctx, host, u, session)
	if err != nil {
		return nil, err
	}
	if reply != nil {
		conn, err := reply()
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, errSpareDropped) {
			return nil, err
		}
		// The host dropped the waiting connection: dial afresh.
	}
	tc, err := c.dialTLS(ctx, host)
	if err != nil {
		return nil, withContextErr(ctx, err)
	}
	conn, err := c.connect(ctx, tc, u, session)
	if err != nil {
		return nil, err
	}
	conn.afterFirst(func() { c.refillSpare(host) })
	return conn, nil
}

// parseLocation returns con's location, which must be an https URL.
func parseLocation(con Console) (*url.URL, error) {
	if con.Location == "" {
		return nil, fmt.Errorf("console has no address: %w", ErrNotRunning)
	}
	u, err := url.Parse(con.Location)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("console location %q is not an https URL", con.Location)
	}
	return u, nil
}

// errSpareDropped marks a CONNECT over a spare connection that failed
// because the connection was no good: the host had dropped it.
var errSpareDropped = errors.New("spare connection dropped")

// requestOnSpare sends the CONNECT for the console at u over the spare
// connection to host, if one is waiting, and returns the function that
// reads the reply; nil and no error if there is no spare. The reply's
// error wraps errSpareDropped if the host had dropped the connection. The
// next spare is dialled once the console's first bytes are through (see
// afterFirst), or at once if the host refuses the CONNECT.
func (c *Client) requestOnSpare(ctx context.Context, host string, u *url.URL, session string) (func() (*consoleConn, error), error) {
	tc := c.spare.take(host)
	if tc == nil {
		return nil, nil
	}
	// Checked again: the pins or the known-hosts file may have changed
	// since the spare's handshake.
	if err := c.verifyDone(host, tc.ConnectionState()); err != nil {
		tc.Close()
		return nil, err
	}
	reply, err := c.request(ctx, tc, u, session)
	if err != nil {
		return func() (*consoleConn, error) { return nil, fmt.Errorf("%w: %w", errSpareDropped, err) }, nil
	}
	return func() (*consoleConn, error) {
		conn, err := reply()
		var ce *ConnectError
		switch {
		case err == nil:
			conn.afterFirst(func() { c.refillSpare(host) })
			return conn, nil
		case errors.As(err, &ce) || errors.Is(err, errUnauthorised):
			c.refillSpare(host)
			return nil, err
		case ctx.Err() != nil:
			return nil, err // the host is slow, not gone: no second try
		}
		return nil, fmt.Errorf("%w: %w", errSpareDropped, err)
	}, nil
}

// ConnectNow sends the CONNECT for vm's console of protocol p at once, if
// it can: when the console's location and a session are known and a spare
// connection to the console's host is waiting. It then returns the
// function that reads the reply and returns what DialConsole would, to be
// called once; the host works on the request meanwhile, while the caller
// does something else (the bastion syncs its audit log). Otherwise it
// returns nil: use DialConsole.
func (c *Client) ConnectNow(ctx context.Context, vm VM, p Protocol) func() (net.Conn, error) {
	con, ok := c.cachedConsole(vm, p)
	if !ok {
		return nil
	}
	c.mu.Lock()
	session := c.session
	c.mu.Unlock()
	if session == "" {
		return nil
	}
	u, err := parseLocation(con)
	if err != nil || u.Hostname() == "" {
		return nil // DialConsole says what is wrong, or asks for the host
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	reply, err := c.requestOnSpare(dctx, hostPort(u.Host, "443"), u, session)
	if reply == nil && err == nil {
		cancel()
		return nil
	}
	return func() (net.Conn, error) {
		defer cancel()
		if err != nil {
			return nil, fmt.Errorf("xapi: open %s console of %s: %w", p, vm.Name, err)
		}
		conn, err := reply()
		if err == nil {
			return conn, nil
		}
		var ce *ConnectError
		switch {
		case errors.Is(err, errUnauthorised):
			c.dropSession(session)
		case stale(err):
			c.cache.forget(vm) // or DialConsole would try the same location first
		case errors.As(err, &ce) || !errors.Is(err, errSpareDropped):
			return nil, fmt.Errorf("xapi: open %s console of %s: %w", p, vm.Name, err)
		}
		// The spare had been dropped, or the session or the records were
		// out of date: DialConsole deals with each.
		return c.DialConsole(ctx, vm, p)
	}
}

// connect sends CONNECT for the console at u over tc and reads the reply.
// It closes tc on failure.
func (c *Client) connect(ctx context.Context, tc *tls.Conn, u *url.URL, session string) (*consoleConn, error) {
	reply, err := c.request(ctx, tc, u, session)
	if err != nil {
		return nil, err
	}
	return reply()
}

// request sends CONNECT for the console at u over tc and returns the
// function that reads the reply. Either closes tc on failure.
func (c *Client) request(ctx context.Context, tc *tls.Conn, u *url.URL, session string) (func() (*consoleConn, error), error) {
	// The deadline covers the request and the reply header, and so does
	// ctx: a caller that gives up (its client left, the bastion shuts
	// down) does not wait out the timeout for a host that never answers.
	if d, ok := ctx.Deadline(); ok {
		tc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(expired) })
	fail := func(err error) error {
		stop()
		tc.Close()
		return withContextErr(ctx, err)
	}
	q := u.Query()
	q.Set("session_id", session)
	req := "CONNECT " + u.EscapedPath() + "?" + q.Encode() + " HTTP/1.0\r\n\r\n"
	if _, err := io.WriteString(tc, req); err != nil {
		return nil, fail(err)
	}
	return func() (*consoleConn, error) {
		br := bufio.NewReaderSize(tc, 4<<10)
		if err := ReadConnectReply(br); err != nil {
			var ce *ConnectError
			if errors.As(err, &ce) && ce.StatusCode == 401 {
				return nil, fail(fmt.Errorf("%w: %w", errUnauthorised, err))
			}
			return nil, fail(err)
		}
		if !stop() {
			// ctx ended as the reply came, and may have expired the
			// deadline: the caller has given up.
			return nil, fail(ctx.Err())
		}
		tc.SetDeadline(noDeadline)
		cc := &consoleConn{Conn: tc}
		if br.Buffered() > 0 {
			cc.r = br // console bytes that came with the reply header
		}
		return cc, nil
	}, nil
}

// withContextErr adds ctx's error to err when ctx is done or err is a
// deadline: the connection's deadline is the context's, and whichever
// fires first, the error should say it was the deadline.
func withContextErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr == nil {
		cerr = context.DeadlineExceeded
	}
	if errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, cerr)
}

// ReadConnectReply reads the reply to a console CONNECT from br and returns
// nil for a 200, a *ConnectError for any other status, and an error for a
// reply that is not HTTP. On success, br holds any console bytes that came
// with the header; read them from br, not from the connection below it.
func ReadConnectReply(br *bufio.Reader) error {
	line, err := readLine(br, maxConnectHeader)
	if err != nil {
		return fmt.Errorf("reading CONNECT reply: %w", err)
	}
	proto, status, ok := strings.Cut(line, " ")
	if !ok || (proto != "HTTP/1.0" && proto != "HTTP/1.1") {
		return fmt.Errorf("CONNECT reply is not HTTP: %q", truncate(line, 64))
	}
	codeStr, _, _ := strings.Cut(status, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || len(codeStr) != 3 || code < 100 {
		return fmt.Errorf("CONNECT reply has a bad status line: %q", truncate(line, 64))
	}
	// Headers: read and drop them up to the blank line. The header block,
	// status line included, is bounded.
	budget := maxConnectHeader - len(line)
	for {
		h, err := readLine(br, budget)
		if err != nil {
			return fmt.Errorf("reading CONNECT reply header: %w", err)
		}
		budget -= len(h) + 2
		if h == "" {
			break
		}
	}
	if code != 200 {
		return &ConnectError{StatusCode: code, Status: strings.TrimSpace(status)}
	}
	return nil
}

// readLine reads one header line of at most max bytes and returns it without
// its line ending (CRLF, or a bare LF as lenient HTTP readers accept).
func readLine(br *bufio.Reader, max int) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return "", errors.New("header too long")
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

var noDeadline time.Time

// expired is a deadline already past.
var expired = time.Unix(1, 0)

// fillAfter is the smallest read after which Read looks for more records
// already received: a full record means bulk data. Smaller reads are
// keystrokes and screen updates, which gain nothing and would pay for
// the deadlines.
const fillAfter = 16 << 10

// consoleConn is a console connection whose first bytes may already sit in
// the buffered reader that read the CONNECT reply.
type consoleConn struct {
	*tls.Conn
	r *bufio.Reader

	// after runs once the caller has the console's first bytes: see
	// afterFirst.
	after     func()
	afterOnce sync.Once
	reads     int // calls of Read so far, up to 2
}

// afterFirst arranges for f to run once the caller is through with the
// console's first bytes: when it comes back to Read for more, when its
// first Read has nothing buffered to return at once, or when it closes
// the connection. DialConsole dials the next spare connection then, so
// that its TLS handshake does not compete for the CPU with relaying those
// bytes.
func (c *consoleConn) afterFirst(f func()) { c.after = f }

func (c *consoleConn) runAfter() {
	if c.after != nil {
		c.afterOnce.Do(c.after)
	}
}

// closeNotifyWait bounds how long Close waits to send its close_notify
// alert. crypto/tls waits up to 5 s, and a host that has stopped reading,
// with the connection's buffers full, would make it wait all of that: the
// session's end (its console.end record, its channel's close) with it.
const closeNotifyWait = 250 * time.Millisecond

// Close sends close_notify, waiting closeNotifyWait at most, and closes
// the connection.
func (c *consoleConn) Close() error {
	c.runAfter()
	return c.boundCloseNotify(c.Conn.Close)
}

// CloseWrite sends close_notify (a forward's client sent EOF), waiting
// closeNotifyWait at most; past that it closes the connection, since a
// host that does not read would never see the alert anyway.
func (c *consoleConn) CloseWrite() error {
	return c.boundCloseNotify(c.Conn.CloseWrite)
}

// boundCloseNotify runs send, a call that sends close_notify, and closes
// the connection under it if send has not returned after closeNotifyWait.
func (c *consoleConn) boundCloseNotify(send func() error) error {
	t := time.AfterFunc(closeNotifyWait, func() { c.Conn.NetConn().Close() })
	defer t.Stop()
	return send()
}

// Write sends a large write's TLS records in one system call.
func (c *consoleConn) Write(p []byte) (int, error) {
	if bc, ok := c.Conn.NetConn().(*batchConn); ok && len(p) > 16<<10 {
		return bc.batch(func() (int, error) { return c.Conn.Write(p) })
	}
	return c.Conn.Write(p)
}

// Buffered returns how many of the console's bytes that came with the
// reply header are waiting to be read: a Read of up to that many returns
// at once.
func (c *consoleConn) Buffered() int {
	if c.r == nil {
		return 0
	}
	return c.r.Buffered()
}

// readReceived adds to p[n:] the plaintext of records crypto/tls has
// already received, without waiting for more, and returns the new total
// and the error that stopped it, if it was not the deadline.
//
// A tls.Conn's Read returns at most one record, 16 KiB, so a relay reading
// into a 32 KiB buffer would send the SSH client two packets, two writes
// and two wake-ups, where sshd sends one. An expired read deadline makes
// the extra Reads stop at the first record not yet complete in
// crypto/tls's buffer without a system call (internal/poll checks the
// deadline before it reads), and crypto/tls keeps the part it has for the
// next Read: a timeout is not one of its sticky errors. Other errors are
// returned with the bytes read so far: not all of them are sticky (a
// post-handshake message crypto/tls refuses fails only its writes).
func (c *consoleConn) readReceived(p []byte, n int) (int, error) {
	if c.Conn.SetReadDeadline(expired) != nil {
		return n, nil
	}
	var err error
	for n < len(p) && err == nil {
		var m int
		m, err = c.Conn.Read(p[n:])
		n += m
	}
	c.Conn.SetReadDeadline(noDeadline)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return n, err
}

// Read drains the bytes buffered with the reply header first. Past those,
// a Read that got a full record also takes the records already received
// (readReceived).
func (c *consoleConn) Read(p []byte) (int, error) {
	if c.reads < 2 {
		c.reads++
		if c.reads == 2 || c.r == nil {
			c.runAfter()
		}
	}
	if c.r == nil {
		n, err := c.Conn.Read(p)
		if err == nil && n >= fillAfter && n < len(p) {
			n, err = c.readReceived(p, n)
		}
		return n, err
	}
	n, err := c.r.Read(p)
	if c.r.Buffered() == 0 {
		c.r = nil // drained: free the buffer, read the connection directly
	}
	return n, err
}
