package bastion

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
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

// deadlineConn records the deadlines set on it; before, if set, runs once
// as the first deadline is being set, before it is.
type deadlineConn struct {
	fakeNetConn
	set    []time.Time
	before func()
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if f := c.before; f != nil {
		c.before = nil
		f()
	}
	c.set = append(c.set, t)
	return nil
}

// newDeadlineConn returns a tracked connection, not yet logged in, over a
// deadlineConn, and its handshake deadline.
func newDeadlineConn() (*trackedConn, *deadlineConn, time.Time) {
	s := &Server{}
	s.init()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	dc := &deadlineConn{fakeNetConn: fakeNetConn{remote}}
	handshake := time.Now().Add(time.Minute)
	tc := &trackedConn{Conn: dc, srv: s, st: &connState{id: "c", remote: remote.String()}, deadline: handshake}
	return tc, dc, handshake
}

// TestDeadlineAfterAuthentication: until the login, every deadline
// gliderlabs sets is held to the handshake deadline; after it, clearing a
// deadline that is not set does not reach the connection (gliderlabs
// clears it before every read and write), while a deadline that is set,
// and clearing it, do.
func TestDeadlineAfterAuthentication(t *testing.T) {
	t.Parallel()
	tc, dc, handshake := newDeadlineConn()
	var zero time.Time
	later := handshake.Add(time.Hour)

	tc.SetDeadline(zero)
	tc.SetDeadline(later)
	tc.authenticated()
	tc.SetDeadline(zero)
	tc.SetDeadline(zero)
	tc.SetDeadline(later)
	tc.SetDeadline(zero)
	tc.SetDeadline(zero)

	want := []time.Time{handshake, handshake, zero, later, zero}
	if len(dc.set) != len(want) {
		t.Fatalf("deadlines set on the connection: %v, want %v", dc.set, want)
	}
	for i := range want {
		if !dc.set[i].Equal(want[i]) {
			t.Fatalf("deadlines set on the connection: %v, want %v", dc.set, want)
		}
	}
}

// TestDeadlineLoginRace: the reader resets the deadline (to the handshake
// deadline, before the login) just as the login lifts it, and its reset
// reaches the socket last. The next clearing must then reach the socket,
// or the logged-in connection would time out at the handshake deadline.
func TestDeadlineLoginRace(t *testing.T) {
	t.Parallel()
	tc, dc, handshake := newDeadlineConn()
	dc.before = func() { tc.authenticated() } // lifts the deadline before the reader's reset lands

	tc.SetDeadline(time.Time{})
	if n := len(dc.set); n != 2 || !dc.set[1].Equal(handshake) {
		t.Fatalf("deadlines set on the connection: %v, want the login's clearing, then the handshake deadline", dc.set)
	}
	tc.SetDeadline(time.Time{})
	if last := dc.set[len(dc.set)-1]; !last.IsZero() {
		t.Fatalf("deadlines set on the connection: %v: the handshake deadline stayed after the login", dc.set)
	}
}

// TestReloadBetweenVerifyAndLogin: a reload that revokes a key lands after
// x/crypto verified the key (with the old policy) but before the login
// completes (AuthLogCallback). SetPolicy looks through the authenticated
// connections, which this one has not joined yet; the login itself must
// then close it.
func TestReloadBetweenVerifyAndLogin(t *testing.T) {
	key := pubKey(t)
	set := keys.NewKeySet([]keys.AuthorizedKey{{Key: key}})
	users := []User{{Name: "alice", Keys: set, Allow: []Rule{{Pattern: "*"}}}}
	p1, err := NewPolicy(users, nil)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := keys.ParseRevocationList(gossh.MarshalAuthorizedKey(key), "test")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := NewPolicy(users, nil, WithRevoked(rl))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Policy: p1}
	s.init()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	st := &connState{id: "c", remote: remote.String()}
	st.conn = &trackedConn{Conn: fakeNetConn{remote}, srv: s, st: st}
	cfg := s.authConfig(st)
	meta := fakeConnMeta{"alice", remote}

	if _, err := cfg.VerifiedPublicKeyCallback(meta, key, nil, ""); err != nil {
		t.Fatal(err)
	}
	s.SetPolicy(p2) // kill -HUP with the key revoked
	cfg.AuthLogCallback(meta, "publickey", nil)

	s.count.mu.Lock()
	_, open := s.count.conns[st.conn]
	s.count.mu.Unlock()
	if open {
		t.Errorf("the connection of a key revoked by the reload stays logged in and open")
	}
}

// newTestServer returns a server with policy p and an audit log in a
// temporary directory, whose path it also returns.
func newTestServer(t *testing.T, p *Policy) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	audit, err := OpenAuditLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	s := &Server{Policy: p, Audit: audit}
	s.init()
	return s, path
}

// TestLongUserName: a configured user whose name is longer than the audit
// record keeps of it (maxAuditTarget). The console is decided, and its slot
// taken and given back, under the whole name, not the record's.
func TestLongUserName(t *testing.T) {
	name := strings.Repeat("a", 300)
	p, err := NewPolicy([]User{{Name: name, Keys: keys.NewKeySet(), Allow: []Rule{{Pattern: "*"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestServer(t, p)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	st := &connState{id: "c", remote: remote.String(), user: name}
	st.conn = &trackedConn{Conn: fakeNetConn{remote}, srv: s, st: st}
	vm := xapi.VM{Pool: "lab", Name: "web-1", UUID: "11111111-2222-3333-4444-555555555555", PowerState: "Running"}
	if !p.Decide(name, vm, xapi.RFB).Allowed {
		t.Fatal("policy does not allow web-1")
	}
	if !s.takeConsoleSlot(name) {
		t.Fatal("no slot")
	}
	cs, err := s.begin(context.Background(), st, vm, xapi.RFB, "forward")
	if err != nil {
		t.Errorf("begin: %v (allowed user refused)", err)
	} else {
		cs.end("client closed")
	}
	if n := s.count.userConsoles[name]; n != 0 {
		t.Errorf("console slots still counted for the user after the session: %d", n)
	}
}

type fakeGliderCtx struct {
	gliderssh.Context
	vals map[any]any
}

func (c *fakeGliderCtx) SetValue(k, v any) { c.vals[k] = v }

// TestShutdownBetweenVerifyAndLogin: closeHandshakes closes a connection
// whose key x/crypto has just verified (before the shutdown began) but
// whose AuthLogCallback has not run yet. The connection is counted out
// once, is left in no count, and gets one record (auth.failure).
func TestShutdownBetweenVerifyAndLogin(t *testing.T) {
	key := pubKey(t)
	set := keys.NewKeySet([]keys.AuthorizedKey{{Key: key}})
	p, err := NewPolicy([]User{{Name: "alice", Keys: set, Allow: []Rule{{Pattern: "*"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, path := newTestServer(t, p)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	tc := s.trackConn(&fakeGliderCtx{vals: map[any]any{}}, fakeNetConn{remote}).(*trackedConn)
	st := tc.st
	cfg := s.authConfig(st)
	meta := fakeConnMeta{"alice", remote}
	if _, err := cfg.VerifiedPublicKeyCallback(meta, key, nil, ""); err != nil {
		t.Fatal(err)
	}
	// Shutdown begins here (Shutdown and Close do these two).
	s.beginClose()
	s.closeHandshakes()
	// x/crypto goes on to AuthLogCallback: no I/O in between.
	cfg.AuthLogCallback(meta, "publickey", nil)

	s.count.mu.Lock()
	unauth, conns := s.count.unauth, len(s.count.conns)
	s.count.mu.Unlock()
	if unauth != 0 {
		t.Errorf("count.unauth = %d after the only connection ended, want 0", unauth)
	}
	if conns != 0 {
		t.Errorf("%d closed connection(s) left in count.conns (drainConns waits closeGrace for them)", conns)
	}
	data, _ := os.ReadFile(path)
	fail, ok := strings.Count(string(data), EventAuthFailure), strings.Count(string(data), EventAuthSuccess)
	if fail+ok != 1 {
		t.Errorf("one login got %d auth.failure and %d auth.success records", fail, ok)
	}
}
