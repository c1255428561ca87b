package bastion

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"sync"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

type ctxKey int

const connStateKey ctxKey = iota

// connState is what the bastion knows of one SSH connection.
type connState struct {
	id     string
	remote string

	mu            sync.Mutex // guards the fields below
	user          string     // login name asked for
	key           string     // fingerprint of the last key offered, or of the key that authenticated
	authenticated bool
	failure       string // why the last authentication attempt failed
}

func (st *connState) event(name string) Event {
	st.mu.Lock()
	defer st.mu.Unlock()
	return Event{Event: name, ConnID: st.id, User: st.user, KeyFingerprint: st.key, RemoteAddr: st.remote}
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

// trackConn is gliderlabs' ConnCallback: it gives the connection an ID and
// state, and wraps it so that a connection that closes without having
// authenticated leaves an auth.failure record.
func (s *Server) trackConn(ctx gliderssh.Context, c net.Conn) net.Conn {
	st := &connState{id: newID(), remote: c.RemoteAddr().String()}
	ctx.SetValue(connStateKey, st)
	return &trackedConn{Conn: c, srv: s, st: st}
}

type trackedConn struct {
	net.Conn
	srv  *Server
	st   *connState
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.st.mu.Lock()
		failed, tried, reason := !c.st.authenticated, c.st.user != "", c.st.failure
		c.st.mu.Unlock()
		if failed && tried {
			if reason == "" {
				reason = "disconnected before authenticating"
			}
			ev := c.st.event(EventAuthFailure)
			ev.Reason = reason
			c.srv.audit(ev, false)
			c.srv.log.Info("authentication failed", "conn", c.st.id, "user", ev.User, "remote", ev.RemoteAddr, "reason", reason)
		}
	})
	return c.Conn.Close()
}

// serverConfig is gliderlabs' ServerConfigCallback: the base x/crypto
// config of one connection.
func (s *Server) serverConfig(ctx gliderssh.Context) *gossh.ServerConfig {
	st := stateOf(ctx)
	return &gossh.ServerConfig{
		MaxAuthTries: 6,
		// Runs only for the key whose signature was checked, so the
		// recorded fingerprint is the one that authenticated.
		VerifiedPublicKeyCallback: func(_ gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			st.mu.Lock()
			st.key = gossh.FingerprintSHA256(key)
			st.mu.Unlock()
			return perms, nil
		},
		// Called with the final result of every attempt, after the
		// signature is checked: the place to record a success.
		AuthLogCallback: func(cm gossh.ConnMetadata, method string, err error) {
			st.mu.Lock()
			st.user = cm.User()
			if err == nil {
				st.authenticated = true
			} else if method != "publickey" && method != "none" {
				st.failure = method + " authentication is not offered"
			} else if method == "none" && st.failure == "" {
				st.failure = "no key offered"
			}
			ok := st.authenticated
			st.mu.Unlock()
			if ok {
				ev := st.event(EventAuthSuccess)
				s.audit(ev, false)
				s.log.Info("authenticated", "conn", st.id, "user", ev.User, "remote", ev.RemoteAddr, "key", ev.KeyFingerprint)
			}
		},
	}
}

// authPublicKey is gliderlabs' PublicKeyHandler: the login name must be a
// configured user and key one of that user's keys.
func (s *Server) authPublicKey(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	st := stateOf(ctx)
	u := s.currentPolicy().User(ctx.User())
	ok := u.Authorized(key)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.user = ctx.User()
	st.key = gossh.FingerprintSHA256(key)
	switch {
	case u == nil:
		st.failure = "unknown user"
	case !ok:
		st.failure = "key not authorized for user"
	}
	return ok
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
