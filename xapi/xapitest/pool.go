package xapitest

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
)

// Options configures a simulated pool. The zero Options gives a master and
// one member on 127.0.0.1, user "root" with password "xenroot", and xapi's
// 5 s delay on failed logins.
type Options struct {
	// Members is the number of member hosts besides the master. Zero means
	// one; a negative number means none (a pool of one host).
	Members int
	// Username and Password are the credentials the pool accepts. Empty
	// means "root" and "xenroot".
	Username string
	Password string
	// AuthFailureDelay is how long a failed login waits before it returns
	// SESSION_AUTHENTICATION_FAILED. Zero means 5 s, as xapi; a negative
	// value means no delay. Tests set it small.
	AuthFailureDelay time.Duration
	// PoolName is the pool's name_label. Empty means "xapitest".
	PoolName string
	// IPv6 makes the hosts listen on [::1] instead of 127.0.0.1.
	IPv6 bool
	// LimitConsoleSessions starts the pool with limit_console_sessions on
	// (see [Pool.SetConsoleLimit]).
	LimitConsoleSessions bool
	// Logger receives the simulator's diagnostics. Nil discards them.
	Logger *slog.Logger
}

// defaultAuthFailureDelay is xapi's delay before a failed login returns.
const defaultAuthFailureDelay = 5 * time.Second

func (o Options) withDefaults() Options {
	switch {
	case o.Members == 0:
		o.Members = 1
	case o.Members < 0:
		o.Members = 0
	}
	if o.Username == "" {
		o.Username = "root"
	}
	if o.Password == "" {
		o.Password = "xenroot"
	}
	switch {
	case o.AuthFailureDelay == 0:
		o.AuthFailureDelay = defaultAuthFailureDelay
	case o.AuthFailureDelay < 0:
		o.AuthFailureDelay = 0
	}
	if o.PoolName == "" {
		o.PoolName = "xapitest"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Pool is a simulated XAPI pool: a master and member hosts, each its own
// HTTPS server on a loopback port with its own self-signed certificate,
// sharing one database of VMs, consoles and sessions. Its methods are safe
// for concurrent use.
type Pool struct {
	opts  Options
	log   *slog.Logger
	ref   string
	uuid  string
	hosts []*Host // fixed by NewPool; hosts[i].index == i

	done chan struct{}  // closed by Close; ends login delays
	wg   sync.WaitGroup // accept loops and connection goroutines

	// mu guards the database and the counters: every field below, and
	// every field of every *vm and *console (control domains included).
	mu            sync.Mutex
	master        int                      // index of the master in hosts
	sessions      map[string]string        // session ref -> user name
	vms           []*vm                    // in creation order, control domains first
	vmByRef       map[string]*vm           // every VM by ref
	consoleByRef  map[string]*console      // every current console by ref
	consoleUsers  map[string][]consoleUser // VM ref -> open console connections, tracked even with the limit off
	limitConsoles bool                     // pool.limit_console_sessions
	holdConnects  bool                     // CONNECTs are never answered (SetHoldConnects)
	refLocations  bool                     // guest console locations use ?ref= (after a master change)
	nextDomid     int64
	logins        int
	calls         int
	callCount     map[string]int

	// connMu guards conns and closed.
	connMu sync.Mutex
	conns  map[net.Conn]struct{} // every open client connection
	closed bool
}

// consoleUser is one open console connection, as xapi's connection limit
// tracks it.
type consoleUser struct {
	user    string
	session string
}

// NewPool starts a simulated pool with the control domains of its hosts and
// no guest VMs (see [Pool.AddVM] and [Pool.AddDemoVMs]). Close it when done.
func NewPool(opts Options) (*Pool, error) {
	opts = opts.withDefaults()
	p := &Pool{
		opts:          opts,
		log:           opts.Logger.With("pool", opts.PoolName),
		ref:           newRef(),
		uuid:          newUUID(),
		done:          make(chan struct{}),
		sessions:      make(map[string]string),
		vmByRef:       make(map[string]*vm),
		consoleByRef:  make(map[string]*console),
		consoleUsers:  make(map[string][]consoleUser),
		limitConsoles: opts.LimitConsoleSessions,
		nextDomid:     1,
		callCount:     make(map[string]int),
		conns:         make(map[net.Conn]struct{}),
	}

	n := 1 + opts.Members
	certs := make([]*hostCert, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { certs[i], errs[i] = certificateFor(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	ip := "127.0.0.1"
	if opts.IPv6 {
		ip = "::1"
	}
	for i := range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			for _, h := range p.hosts {
				h.ln.Close()
			}
			return nil, fmt.Errorf("xapitest: host %d: %w", i, err)
		}
		h := &Host{
			pool:     p,
			index:    i,
			ref:      newRef(),
			uuid:     newUUID(),
			hostname: "host-" + strconv.Itoa(i),
			addr:     ln.Addr().String(),
			cert:     certs[i],
			ln:       ln,
		}
		p.hosts = append(p.hosts, h)
		p.addControlDomain(h)
	}
	for _, h := range p.hosts {
		p.wg.Go(func() { h.serve() })
	}
	p.log.Info("xapitest pool started", "master", p.hosts[0].URL(), "hosts", n)
	return p, nil
}

// Close stops every host, closes every client connection, console
// connections included, and waits for the simulator's goroutines. It may be
// called more than once.
func (p *Pool) Close() {
	p.connMu.Lock()
	if p.closed {
		p.connMu.Unlock()
		p.wg.Wait()
		return
	}
	p.closed = true
	close(p.done)
	for _, h := range p.hosts {
		h.ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.connMu.Unlock()
	p.wg.Wait()
}

// track records an accepted connection so that Close can close it. It
// returns false, having closed c, when the pool is closed.
func (p *Pool) track(c net.Conn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Pool) untrack(c net.Conn) {
	p.connMu.Lock()
	delete(p.conns, c)
	p.connMu.Unlock()
}

// Hosts returns the pool's hosts; index 0 is the first master, the others
// are members (until [Pool.MoveMaster]).
func (p *Pool) Hosts() []*Host { return append([]*Host(nil), p.hosts...) }

// Host returns host i (0 is the first master), or nil if there is none.
func (p *Pool) Host(i int) *Host {
	if i < 0 || i >= len(p.hosts) {
		return nil
	}
	return p.hosts[i]
}

// Master returns the current pool master.
func (p *Pool) Master() *Host {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hosts[p.master]
}

// URL returns the base URL of the current master, "https://127.0.0.1:PORT",
// like httptest.Server.URL.
func (p *Pool) URL() string { return p.Master().URL() }

// MasterURL is the same as URL.
func (p *Pool) MasterURL() string { return p.URL() }

// MemberURLs returns the base URLs of the hosts that are not the master.
func (p *Pool) MemberURLs() []string {
	master := p.Master()
	var urls []string
	for _, h := range p.hosts {
		if h != master {
			urls = append(urls, h.URL())
		}
	}
	return urls
}

// Username returns the user name the pool accepts.
func (p *Pool) Username() string { return p.opts.Username }

// Password returns the password the pool accepts.
func (p *Pool) Password() string { return p.opts.Password }

// Name returns the pool's name_label.
func (p *Pool) Name() string { return p.opts.PoolName }

// Fingerprints returns the SHA-256 fingerprints of every host's
// certificate, in xapi's format, in host order.
func (p *Pool) Fingerprints() []string {
	fps := make([]string, len(p.hosts))
	for i, h := range p.hosts {
		fps[i] = h.Fingerprint()
	}
	return fps
}

// CertPool returns a pool of every host's certificate, for tls.Config's
// RootCAs: the certificates are self-signed CA certificates valid for
// 127.0.0.1, ::1 and localhost.
func (p *Pool) CertPool() *x509.CertPool {
	cp := x509.NewCertPool()
	for _, h := range p.hosts {
		cp.AddCert(h.Certificate())
	}
	return cp
}

// CertsPEM returns every host's certificate, PEM encoded, as a CA file
// holds them.
func (p *Pool) CertsPEM() []byte {
	var b []byte
	for _, h := range p.hosts {
		b = append(b, h.cert.pem...)
	}
	return b
}

// Logins returns how many sessions have been opened: successful
// session.login_with_password calls and CONNECTs with Basic credentials.
func (p *Pool) Logins() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logins
}

// Calls returns how many XML-RPC calls the pool has received, on any host,
// failed ones included.
func (p *Pool) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// CallCount returns how many calls of method (e.g. "VM.get_all_records")
// the pool has received.
func (p *Pool) CallCount(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.callCount[method]
}

// Sessions returns how many sessions are valid.
func (p *Pool) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// ActiveConsoles returns how many console connections are open: accepted
// (from just before their 200 reply) and not yet closed.
func (p *Pool) ActiveConsoles() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, us := range p.consoleUsers {
		n += len(us)
	}
	return n
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newRef returns a fresh opaque reference, as xapi makes them.
func newRef() string { return "OpaqueRef:" + newUUID() }

// nullRef is xapi's null reference.
const nullRef = "OpaqueRef:NULL"
