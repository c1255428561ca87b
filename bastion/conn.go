package bastion

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
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
	ip     netip.Addr
	conn   *trackedConn

	mu            sync.Mutex // guards the fields below
	user          string     // login name asked for
	key           string     // fingerprint of the last key offered, or of the key that authenticated
	pubKey        gossh.PublicKey
	authenticated bool
	failure       string // why the last authentication attempt failed
}

func (st *connState) event(name string) Event {
	st.mu.Lock()
	defer st.mu.Unlock()
	return Event{Event: name, ConnID: st.id, User: st.user, KeyFingerprint: st.key, RemoteAddr: st.remote}
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
	st := &connState{id: newID(), remote: c.RemoteAddr().String(), ip: sourceIP(c.RemoteAddr())}
	if s.count.blocked(st.ip, now) {
		s.log.Debug("refused connection from a blocked source", "remote", st.remote)
		return nil
	}
	s.count.mu.Lock()
	if max := s.limits.MaxUnauthenticated; max > 0 && s.count.unauth >= max {
		s.count.mu.Unlock()
		s.log.Warn("refused connection: too many unauthenticated connections", "remote", st.remote, "limit", max)
		return nil
	}
	s.count.unauth++
	s.count.mu.Unlock()
	tc := &trackedConn{Conn: c, srv: s, st: st}
	st.conn = tc
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
	once     sync.Once
}

// SetDeadline keeps the handshake deadline until the connection has
// authenticated: gliderlabs resets the deadline before every read and
// write.
func (c *trackedConn) SetDeadline(t time.Time) error {
	if !c.authDone.Load() && !c.deadline.IsZero() && (t.IsZero() || t.After(c.deadline)) {
		t = c.deadline
	}
	return c.Conn.SetDeadline(t)
}

// authenticated is called once the connection has authenticated: it lifts
// the handshake deadline and moves the connection from the unauthenticated
// count to its user's.
func (c *trackedConn) authenticated(user string) {
	c.authDone.Store(true)
	c.Conn.SetDeadline(time.Time{})
	cnt := &c.srv.count
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	cnt.unauth--
	if cnt.userConns == nil {
		cnt.userConns = map[string]int{}
		cnt.conns = map[*trackedConn]struct{}{}
	}
	cnt.userConns[user]++
	cnt.conns[c] = struct{}{}
}

func (c *trackedConn) Close() error {
	c.once.Do(c.account)
	return c.Conn.Close()
}

// account updates the counts for a closing connection, and audits a
// connection that ends without having authenticated.
func (c *trackedConn) account() {
	s, st := c.srv, c.st
	st.mu.Lock()
	ok, user, reason := st.authenticated, st.user, st.failure
	st.mu.Unlock()
	s.count.mu.Lock()
	if ok {
		s.count.userConns[user]--
		if s.count.userConns[user] <= 0 {
			delete(s.count.userConns, user)
		}
		delete(s.count.conns, c)
	} else {
		s.count.unauth--
	}
	s.count.mu.Unlock()
	if ok {
		return
	}
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
	if s.count.authFailed(st.ip, s.limits, now) {
		ev := st.event(EventAuthBlocked)
		ev.Reason = fmt.Sprintf("more than %d failed logins a minute; blocked for %s", s.limits.AuthFailuresPerMinute, s.limits.AuthBlock)
		s.audit(ev, false)
		s.log.Warn("source blocked after failed logins", "remote", ev.RemoteAddr, "for", s.limits.AuthBlock)
	}
}

// serverConfig is gliderlabs' ServerConfigCallback: the base x/crypto
// config of one connection.
func (s *Server) serverConfig(ctx gliderssh.Context) *gossh.ServerConfig {
	st := stateOf(ctx)
	return &gossh.ServerConfig{
		MaxAuthTries: 6,
		// Runs only for the key whose signature was checked, so the
		// recorded key is the one that authenticated.
		VerifiedPublicKeyCallback: func(_ gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			st.mu.Lock()
			st.key = keyFingerprint(key)
			st.pubKey = key
			st.mu.Unlock()
			return perms, nil
		},
		// Called with the final result of every attempt, after the
		// signature is checked: the place to record a success.
		AuthLogCallback: func(cm gossh.ConnMetadata, method string, err error) {
			st.mu.Lock()
			st.user = cm.User()
			switch {
			case err == nil:
				st.authenticated = true
			case method != "publickey" && method != "none":
				st.failure = method + " authentication is not offered"
			case method == "none" && st.failure == "":
				st.failure = "no key offered"
			}
			ok := st.authenticated
			st.mu.Unlock()
			if !ok {
				return
			}
			st.conn.authenticated(cm.User())
			ev := st.event(EventAuthSuccess)
			s.audit(ev, false)
			s.log.Info("authenticated", "conn", st.id, "user", ev.User, "remote", ev.RemoteAddr, "key", ev.KeyFingerprint)
		},
	}
}

// authPublicKey is gliderlabs' PublicKeyHandler: Policy.Authenticate
// decides, and the user must be under their connection limit.
func (s *Server) authPublicKey(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	st := stateOf(ctx)
	user := ctx.User()
	perms, err := s.currentPolicy().Authenticate(user, key, ctx.RemoteAddr(), time.Now())
	failure := ""
	switch {
	case err != nil:
		failure = err.Error()
	case s.limits.MaxConnectionsPerUser > 0 && s.userConns(user) >= s.limits.MaxConnectionsPerUser:
		failure = fmt.Sprintf("too many connections (limit %d)", s.limits.MaxConnectionsPerUser)
	default:
		// x/crypto enforces a certificate's source-address again from these.
		ctx.Permissions().CriticalOptions = perms.CriticalOptions
		ctx.Permissions().Extensions = perms.Extensions
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.user = user
	st.key = keyFingerprint(key)
	if failure != "" {
		st.failure = failure
	}
	return failure == ""
}

func (s *Server) userConns(user string) int {
	s.count.mu.Lock()
	defer s.count.mu.Unlock()
	return s.count.userConns[user]
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
