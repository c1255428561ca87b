package bastion

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/xapi"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown or
// Close.
var ErrServerClosed = gliderssh.ErrServerClosed

// Pool is the part of a XAPI client that the bastion uses;
// *xapi.Client implements it.
type Pool interface {
	// Name is the pool's configured name, as used in "POOL/name".
	Name() string
	// VMs returns every guest VM and control domain of the pool, with
	// their consoles.
	VMs(ctx context.Context) ([]xapi.VM, error)
	// FindVMs returns the guest VMs whose name label or UUID is target.
	FindVMs(ctx context.Context, target string) ([]xapi.VM, error)
	// ControlDomains returns the control domain of the host named host.
	ControlDomains(ctx context.Context, host string) ([]xapi.VM, error)
	// Console looks up the VM's console of protocol p.
	Console(ctx context.Context, vm xapi.VM, p xapi.Protocol) (xapi.Console, error)
	// DialConsole opens the VM's console of protocol p.
	DialConsole(ctx context.Context, vm xapi.VM, p xapi.Protocol) (net.Conn, error)
}

// Server is the SSH server of the bastion. Set its fields, then call Serve
// or ListenAndServe; do not change them afterwards. The zero value refuses
// everyone until a Policy is set.
type Server struct {
	// Addr is the address ListenAndServe listens on; ":2222" if empty.
	Addr string
	// HostKey is the server's host key. Nil means an ephemeral key, which
	// only tests should use.
	HostKey gossh.Signer
	// Pools are the pools whose consoles are served.
	Pools []Pool
	// Policy says who may log in and what they may open. Nil refuses
	// everyone. Use SetPolicy to change it while serving.
	Policy *Policy
	// Audit receives the audit events. Nil discards them.
	Audit *AuditLog
	// Logger receives operational logs. Nil discards them.
	Logger *slog.Logger
	// Version is announced in the SSH banner. Empty means "dev".
	Version string
	// ConsoleTimeout bounds finding and opening a console. Zero means 30 s.
	ConsoleTimeout time.Duration
	// Limits bound sources, users and sessions; see Limits for defaults.
	Limits Limits
	// Ciphers are the SSH ciphers offered to clients, by x/crypto's names
	// (gossh.SupportedAlgorithms). Empty means x/crypto's defaults.
	Ciphers []string
	// DrainQuiet and DrainMax bound how long a "console" command without a
	// PTY keeps relaying output after its input ended: until the console
	// has been quiet for DrainQuiet (zero: 1 s), at most DrainMax (zero:
	// 10 s).
	DrainQuiet, DrainMax time.Duration

	initOnce sync.Once
	policy   atomic.Pointer[Policy]
	limits   Limits // Limits with defaults
	count    counters
	// sessionChannels maps each open session channel to its
	// *filteredChannel (sessionClosed, heldWindow).
	sessionChannels sync.Map
	ssh             *gliderssh.Server
	log             *slog.Logger

	// base is cancelled, with cause errShutdown, when Shutdown or Close
	// begins; every console watches it.
	base       context.Context
	cancelBase context.CancelCauseFunc

	// handlers counts running session and forward handlers, so that
	// Shutdown can wait for their audit records.
	handlers  sync.WaitGroup
	mu        sync.Mutex // guards closing and listeners, and handlers.Add against Wait
	closing   bool
	listeners map[net.Listener]struct{}
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		if s.Policy != nil && s.policy.Load() == nil {
			s.policy.Store(s.Policy)
		}
		s.base, s.cancelBase = context.WithCancelCause(context.Background())
		s.limits = s.Limits.withDefaults()
		version := s.Version
		if version == "" {
			version = "dev"
		}
		s.ssh = &gliderssh.Server{
			Addr:    s.Addr,
			Version: "xenbastion_" + version,
			Handler: s.handleSession,
			// Public keys only: with no password or keyboard-interactive
			// handler, the server does not offer those methods.
			PublicKeyHandler:     s.authPublicKey,
			ConnCallback:         s.trackConn,
			ServerConfigCallback: s.serverConfig,
			// A certificate without permit-pty gets no terminal, as with
			// sshd; the session goes on without one.
			PtyCallback: func(ctx gliderssh.Context, _ gliderssh.Pty) bool {
				return stateOf(ctx).permits("permit-pty")
			},
			ChannelHandlers: map[string]gliderssh.ChannelHandler{
				"session":      s.handleSessionChannel,
				"direct-tcpip": s.handleDirectTCPIP,
			},
			// Non-nil and empty: every global request (tcpip-forward
			// included) and every subsystem is refused.
			RequestHandlers:   map[string]gliderssh.RequestHandler{},
			SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
		}
		if s.ssh.Addr == "" {
			s.ssh.Addr = ":2222"
		}
		if s.HostKey != nil {
			s.ssh.AddHostKey(s.HostKey)
		}
	})
}

// SetPolicy replaces the policy (a reload). New logins and console opens
// follow it at once. Open console sessions that it no longer allows end
// with reason "access revoked", and connections whose key it no longer
// accepts are closed; everything else carries on.
func (s *Server) SetPolicy(p *Policy) {
	s.init()
	s.policy.Store(p)

	now := time.Now()
	s.count.mu.Lock()
	var ends []*consoleSession
	for cs := range s.count.consoles {
		if !p.accepts(cs.st, now) || !p.Decide(cs.user, cs.vm, cs.proto).Allowed {
			ends = append(ends, cs)
		}
	}
	var closes []*trackedConn
	for tc := range s.count.conns {
		if !p.accepts(tc.st, now) {
			closes = append(closes, tc)
		}
	}
	s.count.mu.Unlock()
	// Consoles first, so that their records say why they ended.
	for _, cs := range ends {
		s.log.Info("reload revokes a console", "session", cs.id, "user", cs.ev.User, "vm", cs.vm.Name)
		cs.cancel(errRevoked)
	}
	for _, tc := range closes {
		s.log.Info("reload revokes a connection", "conn", tc.st.id, "user", tc.st.userName())
		tc.Close()
	}
}

// accepts says whether p lets the connection st's user log in with its key.
func (p *Policy) accepts(st *connState, now time.Time) bool {
	_, err := p.Authenticate(st.userName(), st.authKey(), st.conn.RemoteAddr(), now)
	return err == nil
}

func (s *Server) currentPolicy() *Policy {
	return s.policy.Load()
}

// Serve accepts SSH connections on l until Shutdown or Close, and returns
// ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	// Track l here, not only in gliderlabs: a Shutdown that comes before
	// gliderlabs' Serve has registered l must still close it, or both
	// would wait for ever.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	err := s.ssh.Serve(l)
	if errors.Is(err, net.ErrClosed) {
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			return ErrServerClosed
		}
	}
	return err
}

// ListenAndServe listens on Addr and serves.
func (s *Server) ListenAndServe() error {
	s.init()
	l, err := net.Listen("tcp", s.ssh.Addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Shutdown stops accepting connections, ends every console session (the
// user is told the server is shutting down, and each session gets its
// console.end record), waits for the sessions to finish or ctx to end, and
// closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	// gliderlabs' Shutdown closes the listeners at once, then waits for
	// every connection to close, which SSH clients do not do on their own:
	// it runs in the background and Close ends it below.
	done := make(chan error, 1)
	go func() { done <- s.ssh.Shutdown(context.Background()) }()
	s.beginClose()
	s.closeHandshakes()

	waited := make(chan struct{})
	go func() { s.handlers.Wait(); close(waited) }()
	var err error
	select {
	case <-waited:
		s.drainConns(ctx, closeGrace)
		s.ssh.Close()
	case <-ctx.Done():
		err = ctx.Err()
		s.ssh.Close()
		// Closing the connections unblocks what the context did not
		// end; give the handlers a moment to write their console.end
		// records before the caller closes the audit log.
		select {
		case <-waited:
		case <-time.After(2 * time.Second):
		}
	}
	<-done
	return err
}

// closeGrace bounds how long Shutdown waits for clients to close their
// connections once it has ended their streams.
const closeGrace = time.Second

// drainConns ends the stream of every authenticated connection (a TCP
// half-close) and waits, at most grace, for the clients to close them.
// Closing a connection outright while the client's last packets (its
// channel close, say) are unread resets it, and the client could lose
// what it had not yet read: the exit status of a console command ended by
// the shutdown (ssh then exits 255, not 1).
func (s *Server) drainConns(ctx context.Context, grace time.Duration) {
	s.count.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.count.conns))
	for c := range s.count.conns {
		conns = append(conns, c)
	}
	s.count.mu.Unlock()
	if len(conns) == 0 {
		return
	}
	for _, c := range conns {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.count.mu.Lock()
		n := len(s.count.conns)
		s.count.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Close closes the listeners and every connection at once. Console sessions
// still get their console.end records, written as their relays notice.
func (s *Server) Close() error {
	s.init()
	s.beginClose()
	s.closeHandshakes()
	return s.ssh.Close()
}

// closeHandshakes closes the connections still logging in, whose ends
// (an auth.failure record, for one that tried a name) are then written
// before the caller closes the audit log; gliderlabs closes only
// connections that have logged in, and a login finishing after the
// shutdown would be refused anyway, its record written to a closed log.
func (s *Server) closeHandshakes() {
	s.count.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.count.handshaking))
	for c := range s.count.handshaking {
		conns = append(conns, c)
	}
	s.count.mu.Unlock()
	for _, c := range conns {
		c.st.mu.Lock()
		if c.st.failure == "" {
			c.st.failure = "server shutting down"
		}
		c.st.mu.Unlock()
		c.Close()
	}
}

func (s *Server) consoleTimeout() time.Duration {
	if s.ConsoleTimeout > 0 {
		return s.ConsoleTimeout
	}
	return 30 * time.Second
}

func (s *Server) poolNames() []string {
	names := make([]string, len(s.Pools))
	for i, p := range s.Pools {
		names[i] = p.Name()
	}
	return names
}

// beginClose refuses new handlers and tells running consoles to end.
func (s *Server) beginClose() {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.cancelBase(errShutdown)
}

// enter registers a running handler; false once the server is closing.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.handlers.Add(1)
	return true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}
