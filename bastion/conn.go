package bastion

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

type ctxKey int

const connStateKey ctxKey = iota

// connState is what the bastion knows of one SSH connection.
type connState struct {
	id     string
	remote string
	source netip.Addr // what the per-source limits count it as (sourceOf)
	conn   *trackedConn

	channels atomic.Int32 // open channels, for Limits.MaxChannelsPerConnection

	mu            sync.Mutex // guards the fields below
	user          string     // login name asked for
	key           string     // fingerprint of the last key offered, or of the key that authenticated
	pubKey        gossh.PublicKey
	authenticated bool
	failure       string // why the last authentication attempt failed
	// validKey: a key's signature verified and the login was refused
	// for another reason (notAGuess). Once set, it stays: a connection
	// that proved a key is not guessing, whatever else it offered.
	validKey bool
}

func (st *connState) event(name string) Event {
	st.mu.Lock()
	defer st.mu.Unlock()
	// Before authentication the login name is whatever the client sent.
	return Event{Event: name, ConnID: st.id, User: truncate(st.user, maxAuditTarget), KeyFingerprint: st.key, RemoteAddr: st.remote}
}

// permits says whether the connection's login allows what the certificate
// extension ext grants: a certificate must carry it, as sshd requires; a
// plain key always allows it (authorized_keys options that would restrict
// it, such as no-port-forwarding, are refused when the file is loaded).
func (st *connState) permits(ext string) bool {
	cert, ok := st.authKey().(*gossh.Certificate)
	if !ok {
		return true
	}
	_, ok = cert.Extensions[ext]
	return ok
}

// authKey returns the key the connection authenticated with.
func (st *connState) authKey() gossh.PublicKey {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pubKey
}

func (st *connState) userName() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.user
}

func stateOf(ctx gliderssh.Context) *connState {
	st, _ := ctx.Value(connStateKey).(*connState)
	return st
}

// newID returns a random identifier for connections and console sessions.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// trackConn is gliderlabs' ConnCallback. It refuses blocked sources and
// connections past the cap of unauthenticated ones, gives the connection an
// ID, state and a handshake deadline, and wraps it so that its end is
// accounted for (and audited, if it never authenticated).
func (s *Server) trackConn(ctx gliderssh.Context, c net.Conn) net.Conn {
	now := time.Now()
	st := &connState{id: newID(), remote: c.RemoteAddr().String(), source: sourceOf(c.RemoteAddr())}
	if s.count.blocked(st.source, now) {
		s.log.Debug("refused connection from a blocked source", "remote", st.remote)
		return nil
	}
	s.count.mu.Lock()
	if max := s.limits.MaxUnauthenticated; max > 0 && s.count.unauth >= max {
		s.count.mu.Unlock()
		s.log.Warn("refused connection: too many unauthenticated connections", "remote", st.remote, "limit", max)
		return nil
	}
	if max := s.limits.MaxUnauthenticatedPerSource; max > 0 && s.count.unauthBy[st.source] >= max {
		s.count.mu.Unlock()
		s.log.Warn("refused connection: too many unauthenticated connections from this source", "remote", st.remote, "limit", max)
		return nil
	}
	if s.count.unauthBy == nil {
		s.count.unauthBy = map[netip.Addr]int{}
		s.count.handshaking = map[*trackedConn]struct{}{}
	}
	s.count.unauth++
	s.count.unauthBy[st.source]++
	tc := &trackedConn{Conn: c, srv: s, st: st}
	st.conn = tc
	s.count.handshaking[tc] = struct{}{}
	s.count.mu.Unlock()
	// Counted first, then checked: a shutdown either finds this
	// connection among the handshaking ones or has begun before this.
	if s.isClosing() {
		tc.Close()
		return nil
	}
	if d := s.limits.HandshakeTimeout; d > 0 {
		tc.deadline = now.Add(d)
		c.SetDeadline(tc.deadline)
	}
	ctx.SetValue(connStateKey, st)
	return tc
}

type trackedConn struct {
	net.Conn
	srv      *Server
	st       *connState
	deadline time.Time   // of the handshake; zero if none
	authDone atomic.Bool // authenticated: the handshake deadline is lifted
	// hasDeadline: a deadline was set after authentication (SetDeadline).
	hasDeadline atomic.Bool
	once        sync.Once

	// Guarded by srv.count.mu:
	slot   string // the user whose connection slot this holds, once verified
	authed bool   // authenticated: counted in srv.count.conns, not unauth
	ended  bool   // accounted for by Close: counted nowhere any more
}

// unauthenticatedGone uncounts an unauthenticated connection from ip.
// c.mu must be held.
func (c *counters) unauthenticatedGone(ip netip.Addr) {
	c.unauth--
	if n, ok := c.unauthBy[ip]; ok {
		if n <= 1 {
			delete(c.unauthBy, ip)
		} else {
			c.unauthBy[ip] = n - 1
		}
	}
}

// SetDeadline keeps the handshake deadline until the connection has
// authenticated: gliderlabs resets the deadline before every read and
// write. After that, with no deadline set, clearing it again is skipped:
// gliderlabs clears it (it has no idle or maximum timeout here) for every
// packet, and each clearing took the poller's locks for nothing (3% of the
// bastion's CPU in the keystroke benchmark's profile).
//
// The reader and writers call this concurrently. hasDeadline and the
// socket's deadline are not set together, which is safe only because
// nobody sets a deadline after the login other than to clear it.
func (c *trackedConn) SetDeadline(t time.Time) error {
	if c.authDone.Load() {
		if t.IsZero() && !c.hasDeadline.Load() {
			return nil
		}
		c.hasDeadline.Store(!t.IsZero())
		return c.Conn.SetDeadline(t)
	}
	if !c.deadline.IsZero() && (t.IsZero() || t.After(c.deadline)) {
		t = c.deadline
	}
	err := c.Conn.SetDeadline(t)
	if !t.IsZero() && c.authDone.Load() {
		// authenticated() ran meanwhile and cleared the deadline
		// before this set it again: let the next clearing through.
		c.hasDeadline.Store(true)
	}
	return err
}

// reserve takes one of user's connection slots, if the user is under the
// limit; false if not. Taking the slot when the key is verified, not when
// the login completes, keeps concurrent logins from passing the limit
// together.
func (c *trackedConn) reserve(user string) bool {
	cnt, max := &c.srv.count, c.srv.limits.MaxConnectionsPerUser
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	if cnt.userConns == nil {
		cnt.userConns = map[string]int{}
	}
	if c.slot == user {
		return true
	}
	if c.slot != "" {
		c.releaseLocked()
	}
	if max > 0 && cnt.userConns[user] >= max {
		return false
	}
	cnt.userConns[user]++
	c.slot = user
	return true
}

// releaseLocked gives back the connection slot. count.mu must be held.
func (c *trackedConn) releaseLocked() {
	cnt := &c.srv.count
	if c.slot == "" {
		return
	}
	if cnt.userConns[c.slot]--; cnt.userConns[c.slot] <= 0 {
		delete(cnt.userConns, c.slot)
	}
	c.slot = ""
}

// authenticated is called once the connection has authenticated: it lifts
// the handshake deadline and moves the connection from the unauthenticated
// count to the authenticated ones. It returns false if the connection has
// been closed meanwhile (a shutdown closes connections still logging in,
// from another goroutine): it is counted out and audited already.
func (c *trackedConn) authenticated() bool {
	c.authDone.Store(true)
	c.Conn.SetDeadline(time.Time{})
	cnt := &c.srv.count
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	if c.ended {
		return false
	}
	if c.authed {
		return true
	}
	c.authed = true
	cnt.unauthenticatedGone(c.st.source)
	delete(cnt.handshaking, c)
	if cnt.conns == nil {
		cnt.conns = map[*trackedConn]struct{}{}
	}
	cnt.conns[c] = struct{}{}
	return true
}

func (c *trackedConn) Close() error {
	c.once.Do(c.account)
	return c.Conn.Close()
}

// account updates the counts for a closing connection, and audits a
// connection that ends without having authenticated.
func (c *trackedConn) account() {
	s, st := c.srv, c.st
	s.count.mu.Lock()
	ok := c.authed
	c.ended = true
	c.releaseLocked()
	if ok {
		delete(s.count.conns, c)
	} else {
		s.count.unauthenticatedGone(st.source)
		delete(s.count.handshaking, c)
	}
	s.count.mu.Unlock()
	if ok {
		return
	}
	st.mu.Lock()
	user, reason, validKey := st.user, st.failure, st.validKey
	st.mu.Unlock()
	now := time.Now()
	timedOut := !c.deadline.IsZero() && !now.Before(c.deadline)
	if timedOut {
		reason = "handshake timeout"
	}
	if user == "" && !timedOut {
		return // a port probe: nothing was attempted
	}
	if reason == "" {
		reason = "disconnected before authenticating"
	}
	ev := st.event(EventAuthFailure)
	ev.Reason = reason
	s.audit(ev, false)
	s.log.Info("authentication failed", "conn", st.id, "user", ev.User, "remote", ev.RemoteAddr, "reason", reason)
	if !validKey && s.count.authFailed(st.source, s.limits, now) {
		ev := st.event(EventAuthBlocked)
		ev.Reason = fmt.Sprintf("more than %d failed logins a minute; blocked for %s", s.limits.AuthFailuresPerMinute, s.limits.AuthBlock)
		s.audit(ev, false)
		s.log.Warn("source blocked after failed logins", "remote", ev.RemoteAddr, "for", s.limits.AuthBlock)
	}
}

// serverConfig is gliderlabs' ServerConfigCallback: the base x/crypto
// config of one connection.
//
// The decision is made in VerifiedPublicKeyCallback, which x/crypto calls
// with the login name of the request whose signature it checked. The
// PublicKeyHandler only answers the client's queries ("would this key
// do?"), and sees the login name of the connection's first request: SSH
// lets a client change the name between requests, so deciding there would
// let one user's key log in as another.
func (s *Server) serverConfig(ctx gliderssh.Context) *gossh.ServerConfig {
	return s.authConfig(stateOf(ctx))
}

var pubKeyAuthAlgorithms = gossh.SupportedAlgorithms().PublicKeyAuths

// authConfig is the x/crypto config of the connection st.
func (s *Server) authConfig(st *connState) *gossh.ServerConfig {
	return &gossh.ServerConfig{
		Config:       gossh.Config{Ciphers: s.Ciphers},
		MaxAuthTries: 6,
		// x/crypto's secure list: not ssh-dss, nor ssh-rsa's SHA-1
		// signatures, which its default still takes and sshd refuses
		// (since OpenSSH 7.0 and 8.8). RSA keys sign with rsa-sha2-*.
		PublicKeyAuthAlgorithms: pubKeyAuthAlgorithms,
		// Nothing reads what a client sends as stderr.
		DiscardClientStderr: true,
		VerifiedPublicKeyCallback: func(cm gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			user := cm.User()
			perms, err := s.authorize(st, user, key)
			st.mu.Lock()
			st.user, st.key = user, keyFingerprint(key)
			if errors.As(err, new(notAGuess)) {
				st.validKey = true
			}
			if err != nil {
				st.failure = err.Error()
			} else {
				st.pubKey = key
			}
			st.mu.Unlock()
			return perms, err
		},
		// Called with the final result of every attempt: the place to
		// record a success.
		AuthLogCallback: func(cm gossh.ConnMetadata, method string, err error) {
			st.mu.Lock()
			st.user = cm.User()
			switch {
			case err == nil:
				st.authenticated = true
			case method != "publickey" && method != "none":
				st.failure = method + " authentication is not offered"
			case method == "publickey" && strings.Contains(err.Error(), "not accepted"):
				// Refused before any callback: a DSA key, or an RSA
				// key's SHA-1 signature (pubKeyAuthAlgorithms).
				st.failure = "key algorithm not accepted (" + strings.TrimPrefix(err.Error(), "ssh: ") + ")"
			case method == "none" && st.failure == "":
				st.failure = "no key offered"
			}
			ok := st.authenticated
			st.mu.Unlock()
			if !ok {
				return
			}
			if !st.conn.authenticated() {
				return
			}
			ev := st.event(EventAuthSuccess)
			s.audit(ev, false)
			s.log.Info("authenticated", "conn", st.id, "user", ev.User, "remote", ev.RemoteAddr, "key", ev.KeyFingerprint)
			// A reload since the key was checked looked for it among the
			// authenticated connections, which this has only now joined:
			// check it against the policy in force.
			if !s.currentPolicy().accepts(st, time.Now()) {
				s.log.Info("reload revokes a connection", "conn", st.id, "user", ev.User)
				st.conn.Close()
			}
		},
	}
}

// authorize decides a verified key for user: Policy.Authenticate, the
// server not closing, and a free connection slot for the user.
func (s *Server) authorize(st *connState, user string, key gossh.PublicKey) (*gossh.Permissions, error) {
	perms, err := s.currentPolicy().Authenticate(user, key, st.conn.RemoteAddr(), time.Now())
	switch {
	case err != nil:
		return nil, err
	case s.isClosing():
		return nil, notAGuess{errors.New("server shutting down")}
	case !st.conn.reserve(user):
		return nil, notAGuess{fmt.Errorf("too many connections (limit %d)", s.limits.MaxConnectionsPerUser)}
	}
	return perms, nil
}

// notAGuess is the refusal of a login whose key verified (its signature
// checked): the user's connection limit, or the shutdown. It is audited as
// a failed login, but the connection, whatever other keys it offered
// before or after, does not count towards the failed-login block, which is
// there to stop guessing: a script that retries over its user's limit, or
// a client whose agent offers more keys after the good one, would
// otherwise block everyone behind the same address.
type notAGuess struct{ error }

// authPublicKey is gliderlabs' PublicKeyHandler. It answers queries early
// (Policy.Authenticate for the login name gliderlabs knows) so clients try
// their next key; VerifiedPublicKeyCallback makes the decision.
func (s *Server) authPublicKey(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	st := stateOf(ctx)
	user := ctx.User()
	_, err := s.currentPolicy().Authenticate(user, key, ctx.RemoteAddr(), time.Now())
	st.mu.Lock()
	defer st.mu.Unlock()
	st.user = user
	st.key = keyFingerprint(key)
	if err != nil {
		st.failure = err.Error()
	}
	return err == nil
}

// audit writes ev, logging a failure. It returns the error so that callers
// that must not go on without a record can stop.
func (s *Server) audit(ev Event, sync bool) error {
	err := s.Audit.Write(ev, sync)
	if err != nil {
		s.log.Error("audit write failed", "err", err, "event", ev.Event, "conn", ev.ConnID)
	}
	return err
}

// openChannel counts a new channel of the connection; false if it is over
// the limit (the caller refuses the channel). Call the returned func when
// the channel ends.
func (s *Server) openChannel(st *connState) (done func(), ok bool) {
	n := st.channels.Add(1)
	if max := s.limits.MaxChannelsPerConnection; max > 0 && int(n) > max {
		st.channels.Add(-1)
		s.log.Warn("refused a channel: too many on one connection", "conn", st.id, "limit", max)
		return nil, false
	}
	return func() { st.channels.Add(-1) }, true
}
