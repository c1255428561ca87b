package bastion

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/keys"
)

type fakeConnMeta struct {
	user   string
	remote net.Addr
}

func (m fakeConnMeta) User() string          { return m.user }
func (m fakeConnMeta) SessionID() []byte     { return nil }
func (m fakeConnMeta) ClientVersion() []byte { return nil }
func (m fakeConnMeta) ServerVersion() []byte { return nil }
func (m fakeConnMeta) RemoteAddr() net.Addr  { return m.remote }
func (m fakeConnMeta) LocalAddr() net.Addr   { return m.remote }

func pubKey(t *testing.T) gossh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVerifiedKeyDecides: the decision is made for the login name of the
// signed request. A client may ask "would alice's key do for alice?" and
// then sign the request as bob; the key must then be judged for bob.
func TestVerifiedKeyDecides(t *testing.T) {
	t.Parallel()
	aliceKey, bobKey := pubKey(t), pubKey(t)
	set := func(k gossh.PublicKey) keys.KeySet { return keys.NewKeySet([]keys.AuthorizedKey{{Key: k}}) }
	p, err := NewPolicy([]User{{Name: "alice", Keys: set(aliceKey)}, {Name: "bob", Keys: set(bobKey)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Policy: p, Limits: Limits{MaxConnectionsPerUser: 1}}
	s.init()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	newState := func() *connState {
		st := &connState{id: "c", remote: remote.String()}
		st.conn = &trackedConn{Conn: fakeNetConn{remote}, srv: s, st: st}
		return st
	}
	st := newState()
	cfg := s.authConfig(st)
	if _, err := cfg.VerifiedPublicKeyCallback(fakeConnMeta{"bob", remote}, aliceKey, nil, ""); err == nil {
		t.Fatal("alice's key was accepted for bob")
	}
	if !strings.Contains(st.failure, "key not authorized") || st.user != "bob" {
		t.Errorf("state after the attempt: user %q, failure %q", st.user, st.failure)
	}
	if _, err := cfg.VerifiedPublicKeyCallback(fakeConnMeta{"alice", remote}, aliceKey, nil, ""); err != nil {
		t.Fatalf("alice's key for alice: %v", err)
	}
	// The connection slot is taken at verification: a second connection
	// of alice's is refused, even before the first finishes logging in.
	st2 := newState()
	if _, err := s.authConfig(st2).VerifiedPublicKeyCallback(fakeConnMeta{"alice", remote}, aliceKey, nil, ""); err == nil ||
		!strings.Contains(err.Error(), "too many connections") {
		t.Errorf("second connection: %v, want the connection limit", err)
	}
	st.conn.Close()
	if _, err := s.authConfig(st2).VerifiedPublicKeyCallback(fakeConnMeta{"alice", remote}, aliceKey, nil, ""); err != nil {
		t.Errorf("after the first closed: %v", err)
	}
}

type fakeNetConn struct{ remote net.Addr }

func (c fakeNetConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (c fakeNetConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c fakeNetConn) Close() error                     { return nil }
func (c fakeNetConn) LocalAddr() net.Addr              { return c.remote }
func (c fakeNetConn) RemoteAddr() net.Addr             { return c.remote }
func (c fakeNetConn) SetDeadline(time.Time) error      { return nil }
func (c fakeNetConn) SetReadDeadline(time.Time) error  { return nil }
func (c fakeNetConn) SetWriteDeadline(time.Time) error { return nil }
