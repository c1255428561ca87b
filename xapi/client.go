package xapi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kolo/xmlrpc"
)

// Config configures a Client for one pool.
type Config struct {
	// Name is the pool's name in the bastion's configuration; it is put in
	// every VM the client returns and in log records.
	Name string
	// URL is https://HOST[:PORT] of any host of the pool; HOST_IS_SLAVE is
	// followed to the master.
	URL      string
	Username string
	Password string
	// Trust is how the hosts' certificates are checked; see [Trust].
	// NewClient builds the TLS configuration from it, and the client
	// checks every TLS connection, XML-RPC and console alike, knowing which
	// host it dialled. Either Trust or TLS is required, not both.
	Trust Trust
	// TLS, if not nil, is used instead of Trust: a client TLS
	// configuration such as [Trust.TLSConfig] returns. It cannot do trust
	// on first use. Its VerifyConnection, if any, runs for every host; a
	// *FingerprintError it returns gets its Host filled in.
	TLS *tls.Config
	// Timeout bounds every XML-RPC call and every console dial. Zero means
	// 30 seconds.
	Timeout time.Duration
	// Logger receives the client's diagnostics. Nil discards them.
	Logger *slog.Logger
	// CacheTTL is how long VM lookups are reused (console records are kept
	// until a dial finds them stale). Zero means 10 s; negative turns the
	// cache off.
	CacheTTL time.Duration
}

// maxReply bounds an XML-RPC reply body; get_all_records of a large pool is
// a few MiB.
const maxReply = 64 << 20

// maxMasterHops bounds how often one call follows HOST_IS_SLAVE.
const maxMasterHops = 3

// Client is a XAPI client for one pool. It is safe for concurrent use.
type Client struct {
	cfg    Config
	http   *http.Client
	dialer net.Dialer
	log    *slog.Logger
	tls    *tls.Config // the base of every connection's configuration; see tlsConfigFor
	known  *KnownHosts // with TrustOnFirstUse, else nil

	// home is the base URL of the configured host, where the client looks
	// for the master again when the one it followed stops answering (a
	// failover may have made another host master; HOST_IS_SLAVE from a
	// live host names it, a dead master names nothing).
	home string

	now func() time.Time // time.Now; tests move it

	// mu guards the fields from here to pending.
	mu      sync.Mutex
	master  string // base URL of the pool master (or of the configured host until HOST_IS_SLAVE says otherwise)
	session string // session ref, "" when logged out
	closes  int    // calls to Close: a login under way at one logs out when it ends
	// hosts are the other hosts of the pool seen so far, as base URLs:
	// where login asks for the master when neither the master nor the
	// configured host answers (noteHost, fallback).
	hosts []string
	// refused is the last login's error when xapi refused the
	// credentials; until retryAt, callers get it without a new attempt,
	// and the wait doubles with each refusal (authBackoff).
	refused     error
	retryAt     time.Time
	authBackoff time.Duration
	// pending is the login under way, if any: callers that find no
	// session wait for it instead of each logging in (a failed login
	// costs xapi's 5 s delay and may count towards a lock-out).
	pending *login
	// poolUUID is the pool's UUID, as the first login found it: every
	// later login must find the same (checkPool).
	poolUUID string

	// cache holds lookups and console records for warm opens.
	cache *lookupCache
	// spare holds pre-dialled console connections.
	spare spares
	// tls12 holds the hosts ("host:port") whose last handshake chose TLS
	// 1.2, as xapi's policy does: later ClientHellos to them offer only
	// 1.2, which spares the TLS 1.3 key share that Go would otherwise make
	// for every dial (an X25519 key generation, most of a resumed
	// handshake's CPU). A failed handshake drops the memo; a host upgraded
	// to 1.3 is offered 1.2 until then or until the process restarts.
	tls12 sync.Map
}

// errClosed is what the callers of a login that Close overtook get.
var errClosed = errors.New("xapi: client closed during login")

// login is one login attempt that several callers may wait for.
type login struct {
	done            chan struct{} // closed when the fields below are set
	session, master string
	err             error
}

// NewClient checks cfg and returns a client. It does no network I/O: the
// first call logs in.
//
// With [Trust.TrustOnFirstUse], NewClient reads the known-hosts file
// (see [OpenKnownHosts]), and cfg.Name must have no spaces: it is the
// first field of the file's lines.
func NewClient(cfg Config) (*Client, error) {
	base, known := cfg.TLS, (*KnownHosts)(nil)
	switch {
	case cfg.TLS != nil && cfg.Trust.choices() > 0:
		return nil, errors.New("set either Config.Trust or Config.TLS, not both")
	case cfg.TLS == nil:
		var err error
		if base, known, err = cfg.Trust.build(); err != nil {
			return nil, err
		}
		if known != nil {
			if err := checkPoolName(cfg.Name); err != nil {
				return nil, fmt.Errorf("tls.trust_on_first_use: %w", err)
			}
		}
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("pool url %q: want https://HOST[:PORT]", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:    cfg,
		log:    cfg.Logger.With("pool", cfg.Name),
		now:    time.Now,
		home:   baseURL(u.Host),
		master: baseURL(u.Host),
		tls:    base,
		known:  known,
		cache:  newLookupCache(cmp.Or(cfg.CacheTTL, defaultCacheTTL)),
	}
	c.dialer.Timeout = cfg.Timeout
	c.dialer.KeepAlive = 30 * time.Second
	tr := &http.Transport{
		// Every XML-RPC connection is checked by dialTLS, for the host
		// it is to (the transport then ignores TLSClientConfig and
		// TLSHandshakeTimeout).
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			tc, err := c.dialTLS(ctx, addr)
			if err != nil {
				return nil, err // not a nil *tls.Conn in a non-nil net.Conn
			}
			return tc, nil
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	c.http = &http.Client{
		Transport: tr,
		// xapi never redirects. Following one would post the call again,
		// the password or session with it, wherever Location points,
		// over plain HTTP too (dialTLS checks only https): a 3xx is an
		// error, as any reply but 200 is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Name returns the pool's configured name.
func (c *Client) Name() string { return c.cfg.Name }

// Master returns the base URL of the host the client currently takes for the
// pool master.
func (c *Client) Master() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.master
}

// reply is the envelope of every XAPI reply. kolo/xmlrpc cannot decode a
// bare <value> into an interface{}, so each call decodes into its own T.
type reply[T any] struct {
	Status           string   `xmlrpc:"Status"`
	Value            T        `xmlrpc:"Value"`
	ErrorDescription []string `xmlrpc:"ErrorDescription"`
}

// bareValue matches a value written without a type tag, as xapi writes
// strings, refs, enums and 64-bit ints.
var bareValue = regexp.MustCompile(`<value>([^<]*)</value>`)

// decodeReply decodes an XML-RPC reply body into out (a pointer), returning
// *Error for a XAPI failure.
func decodeReply[T any](body []byte, out *T) error {
	// kolo/xmlrpc mishandles an empty bare value (<value></value>): it
	// consumes the closing tag itself and its caller then skips past the
	// rest of the enclosing struct or array. It also trims bare text.
	// Tagging every bare value as a <string> avoids both.
	body = bareValue.ReplaceAll(body, []byte("<value><string>$1</string></value>"))
	var r reply[T]
	if err := xmlrpc.Response(body).Unmarshal(&r); err != nil {
		return fmt.Errorf("malformed XML-RPC reply: %w", err)
	}
	switch r.Status {
	case "Success":
		*out = r.Value
		return nil
	case "Failure":
		if len(r.ErrorDescription) == 0 {
			return &Error{Code: "UNKNOWN_ERROR"}
		}
		return &Error{Code: r.ErrorDescription[0], Params: r.ErrorDescription[1:]}
	default:
		return fmt.Errorf("malformed XML-RPC reply: status %q", r.Status)
	}
}

// rpc makes one XML-RPC call to base (a host's base URL), following no
// redirects and retrying nothing.
func rpc[T any](ctx context.Context, c *Client, base, method string, out *T, args ...any) error {
	body, err := xmlrpc.EncodeMethodCall(method, args...)
	if err != nil {
		return fmt.Errorf("encode %s: %w", method, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode != http.StatusOK && resp.Header.Get("Location") != "":
		err = fmt.Errorf("HTTP %s to %q (not followed)", resp.Status, resp.Header.Get("Location"))
	case resp.StatusCode != http.StatusOK:
		err = fmt.Errorf("HTTP %s", resp.Status)
	case len(data) > maxReply:
		err = fmt.Errorf("reply larger than %d bytes", maxReply)
	default:
		err = decodeReply(data, out)
	}
	var xe *Error
	if err != nil && !errors.As(err, &xe) && ctx.Err() != nil {
		// net/http hands over a response that raced the cancellation,
		// such as one a server wrote as the connection was being closed
		// (its close_notify read as the client going away): the call
		// ran out of time, whatever that response was.
		return ctx.Err()
	}
	return err
}

// call makes a session call: the session ref is passed as the first
// argument. It logs in when there is no session, logs in again once on
// SESSION_INVALID, and follows HOST_IS_SLAVE to the master.
func call[T any](ctx context.Context, c *Client, method string, out *T, args ...any) error {
	retried, wentHome := false, false
	for hops := 0; ; {
		session, master, err := c.sessionRef(ctx)
		if err != nil {
			return err
		}
		err = rpc(ctx, c, master, method, out, append([]any{session}, args...)...)
		var xe *Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &xe) && xe.Code == CodeSessionInvalid && !retried:
			c.log.Info("xapi session expired, logging in again")
			c.dropSession(session)
			retried = true
			continue
		case !wentHome && silent(ctx, err) && c.leaveMaster(master, session, err):
			// Every call here reads; one that reached the host before
			// the failure is safe to make again.
			wentHome = true
			continue
		case errors.As(err, &xe) && xe.Code == CodeHostIsSlave && masterURL(xe.Params) != "" && hops < maxMasterHops:
			hops++
			c.moveMaster(master, masterURL(xe.Params))
			c.dropSession(session)
			continue
		}
		return fmt.Errorf("xapi: %s: %w", method, stripPrefix(err))
	}
}

// stripPrefix hides the "xapi: " of an *Error's message when it is wrapped
// in another xapi error, so messages do not say "xapi:" twice.
func stripPrefix(err error) error {
	if xe, ok := err.(*Error); ok {
		return bareError{x: xe}
	}
	return err
}

// bareError is an *Error printed without its "xapi: " prefix.
type bareError struct{ x *Error }

func (e bareError) Error() string { return strings.TrimPrefix(e.x.Error(), "xapi: ") }
func (e bareError) Unwrap() error { return e.x }

// sessionRef returns a valid session and the master's URL, logging in if
// there is no session. Only one login runs at a time; callers that come
// meanwhile wait for its outcome, each no longer than its own ctx.
func (c *Client) sessionRef(ctx context.Context) (session, master string, err error) {
	c.mu.Lock()
	if c.session != "" {
		session, master = c.session, c.master
		c.mu.Unlock()
		return session, master, nil
	}
	l := c.pending
	if l == nil && c.refused != nil && c.now().Before(c.retryAt) {
		err := fmt.Errorf("%w (after the pool refused the credentials, the next login is at %s)", c.refused, c.retryAt.UTC().Format(time.TimeOnly))
		c.mu.Unlock()
		return "", "", err
	}
	if l == nil {
		l = &login{done: make(chan struct{})}
		c.pending = l
		closes := c.closes
		// The login outlives a caller that gives up: the others may
		// still want it.
		go func() {
			s, m, err := c.login(context.WithoutCancel(ctx))
			c.mu.Lock()
			closed := c.closes != closes && err == nil
			if closed {
				err = errClosed
			}
			l.session, l.master, l.err = s, m, err
			if err == nil {
				c.session, c.master = s, m
			}
			c.noteRefusal(err)
			c.pending = nil
			c.mu.Unlock()
			close(l.done)
			if closed {
				// Close ran meanwhile and logged out what it found:
				// this session too, or the pool keeps it.
				var void struct{}
				_ = rpc(context.Background(), c, m, "session.logout", &void, s)
			}
		}()
	}
	c.mu.Unlock()
	select {
	case <-l.done:
		return l.session, l.master, l.err
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

// Backoff after the pool refuses the credentials: each login is an attempt
// that a directory (AD, LDAP) behind xapi may count towards locking the
// account out, and a wrong or changed password would otherwise be tried
// again by every console open, one every 5 s (xapi's delay).
const (
	firstAuthBackoff = 30 * time.Second
	maxAuthBackoff   = 5 * time.Minute
)

// noteRefusal records the outcome of a login: a refusal of the credentials
// starts or doubles the wait before the next attempt, anything else ends
// it. c.mu must be held.
func (c *Client) noteRefusal(err error) {
	if !IsCode(err, CodeSessionAuthenticationFailed) {
		c.refused, c.authBackoff = nil, 0
		return
	}
	c.authBackoff = min(max(2*c.authBackoff, firstAuthBackoff), maxAuthBackoff)
	c.refused, c.retryAt = err, c.now().Add(c.authBackoff)
	c.log.Error("the pool refused the credentials; waiting before the next login", "err", err, "wait", c.authBackoff)
}

// login logs in at the current master, following HOST_IS_SLAVE, and from
// the configured host if that master does not answer.
func (c *Client) login(ctx context.Context) (session, master string, err error) {
	master = c.Master()
	tried := map[string]bool{}
	for hops := 0; ; {
		tried[master] = true
		err = rpc(ctx, c, master, "session.login_with_password", &session,
			c.cfg.Username, c.cfg.Password, "1.1", "xenbastion")
		var xe *Error
		if errors.As(err, &xe) && xe.Code == CodeHostIsSlave && masterURL(xe.Params) != "" && hops < maxMasterHops {
			hops++
			next := masterURL(xe.Params)
			c.log.Info("following HOST_IS_SLAVE to the pool master", "from", master, "master", next)
			master = next
			continue
		}
		if next := c.fallback(tried); next != "" && silent(ctx, err) {
			c.log.Warn("the pool master does not answer; asking another host of the pool", "master", master, "host", next, "err", err)
			master = next
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("xapi: login to %s as %s: %w", master, c.cfg.Username, stripPrefix(err))
		}
		if session == "" {
			return "", "", fmt.Errorf("xapi: login to %s: empty session reference", master)
		}
		if err := c.checkPool(ctx, master, session); err != nil {
			var void struct{}
			_ = rpc(ctx, c, master, "session.logout", &void, session)
			// The host that named it has left the pool, or a call's
			// HOST_IS_SLAVE led here: look on, from the configured
			// host, for the pool's own master.
			if next := c.fallback(tried); next != "" {
				c.log.Warn("asking another host of the pool for its master", "refused", master, "host", next)
				master = next
				continue
			}
			return "", "", err
		}
		c.log.Info("logged in to xapi", "master", master)
		c.noteHost(master)
		return session, master, nil
	}
}

// checkPool makes sure that master, just logged in to, is the master of
// the pool that the client first logged in to. A failover sends login to
// hosts the client remembers (console hosts, earlier masters); one that
// has since joined another pool would name that pool's master, and its
// VMs would be served under this pool's name and access rules, with this
// pool's credentials sent there.
func (c *Client) checkPool(ctx context.Context, master, session string) error {
	var pools map[string]struct {
		UUID string `xmlrpc:"uuid"`
	}
	if err := rpc(ctx, c, master, "pool.get_all_records", &pools, session); err != nil {
		return fmt.Errorf("xapi: pool.get_all_records at %s: %w", master, stripPrefix(err))
	}
	if len(pools) != 1 {
		return fmt.Errorf("xapi: %s has %d pool records, not 1", master, len(pools))
	}
	var uuid string
	for _, p := range pools {
		uuid = p.UUID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.poolUUID {
	case "":
		c.poolUUID = uuid
	case uuid:
	default:
		c.log.Error("a host named as the master belongs to another pool; not logging in there", "master", master, "pool_uuid", uuid, "want", c.poolUUID)
		return fmt.Errorf("xapi: %s is the master of another pool (uuid %s, not %s)", master, uuid, c.poolUUID)
	}
	return nil
}

// dropSession forgets session if it is still the current one.
func (c *Client) dropSession(session string) {
	c.mu.Lock()
	if c.session == session {
		c.session = ""
	}
	c.mu.Unlock()
}

// silent says whether err, from a call that ctx did not end, is the host
// not answering: no connection could be made to it. A slow or odd reply
// is not: the host is there, and dropping its session would only cost a
// login and leave the session open on the pool.
func silent(ctx context.Context, err error) bool {
	var oe *net.OpError
	return ctx.Err() == nil && errors.As(err, &oe) && oe.Op == "dial"
}

// leaveMaster is for a master that did not answer (err): session is
// dropped, and the next login starts from the configured host (login then
// asks the other hosts it knows if that does not answer either). It says
// whether a call should log in and try again.
func (c *Client) leaveMaster(master, session string, err error) bool {
	c.mu.Lock()
	// Not if another caller has moved the master meanwhile, or logged in
	// again (the session now in use goes with the master it came from).
	moved := c.master == master && master != c.home && (c.session == session || c.session == "")
	if moved {
		c.master = c.home
	}
	if c.session == session {
		c.session = ""
	}
	c.mu.Unlock()
	if moved {
		c.log.Warn("the pool master does not answer; looking for it from the configured host", "master", master, "host", c.home, "err", err)
	}
	return true
}

// fallback returns the next host to ask for the master when the one asked
// did not answer: the configured host, then the hosts seen since (console
// hosts and masters), in the order seen; "" when all are in tried.
func (c *Client) fallback(tried map[string]bool) string {
	if !tried[c.home] {
		return c.home
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.hosts {
		if !tried[h] {
			return h
		}
	}
	return ""
}

// maxKnownHosts bounds the hosts kept for fallback (a pool has at most 64).
const maxKnownHosts = 64

// noteHost remembers a host of the pool (HOST:PORT, or a base URL) to ask
// for the master if the master stops answering.
func (c *Client) noteHost(host string) {
	u := baseURL(strings.TrimPrefix(host, "https://"))
	c.mu.Lock()
	defer c.mu.Unlock()
	if u == c.home || slices.Contains(c.hosts, u) || len(c.hosts) >= maxKnownHosts {
		return
	}
	c.hosts = append(c.hosts, u)
}

// moveMaster records that the master is at next (a base URL), if the
// master is still from.
func (c *Client) moveMaster(from, next string) {
	c.mu.Lock()
	if c.master == from {
		c.master = next
	}
	c.mu.Unlock()
	c.log.Info("following HOST_IS_SLAVE to the pool master", "from", from, "master", next)
}

// Login logs in now if there is no valid session, so that a caller learns at
// start-up whether the credentials and the TLS trust work.
func (c *Client) Login(ctx context.Context) error {
	_, _, err := c.sessionRef(ctx)
	return err
}

// Close logs out, if logged in, and closes idle connections. A login under
// way logs out when it ends (its callers get an error); a later call logs
// in again.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	session, master := c.session, c.master
	c.session = ""
	c.closes++
	c.mu.Unlock()
	var err error
	if session != "" {
		var void struct{}
		err = rpc(ctx, c, master, "session.logout", &void, session)
	}
	c.http.CloseIdleConnections()
	c.spare.close()
	return err
}

// hostURL turns an address from XAPI (HOST_IS_SLAVE's master address,
// host.address) into a base URL. XAPI sends bare addresses, IPv4 or IPv6
// (port 443 implied); "host:port" and "[v6]:port" are accepted too.
func hostURL(addr string) string {
	// A zone ("fe80::1%eth0") is written %25 in a URL.
	return baseURL(strings.Replace(hostPort(addr, ""), "%", "%25", 1))
}

// masterURL is the base URL of the master that HOST_IS_SLAVE's params
// name, or "" if they name no host: one reply with an empty or garbled
// address must not leave the client posting to nowhere.
func masterURL(params []string) string {
	if len(params) == 0 {
		return ""
	}
	next := hostURL(params[0])
	u, err := url.Parse(next)
	if err != nil || u.Hostname() == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return ""
	}
	return next
}

// baseURL is the base URL of the host at hostport (a URL's host), written
// one way whatever way it came (":443" left out), so that the client can
// tell a host it knows from the same host named again.
func baseURL(hostport string) string {
	return "https://" + strings.TrimSuffix(hostport, ":443")
}

// hostPort returns addr as a URL host: IPv6 addresses bracketed, and port
// added when addr has none and port is not empty.
func hostPort(addr, port string) string {
	addr = strings.TrimSpace(addr)
	if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		addr = addr[1 : len(addr)-1] // "[v6]" without a port, as in a URL's host
	}
	if ip, err := netip.ParseAddr(addr); err == nil {
		if port != "" {
			return net.JoinHostPort(ip.String(), port)
		}
		if ip.Is6() {
			return "[" + ip.String() + "]"
		}
		return ip.String()
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	if port != "" {
		return net.JoinHostPort(addr, port)
	}
	return addr
}
