package xapi

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
)

// dialTLS connects to hostport and completes the TLS handshake, checking
// the host's certificate for that address (see tlsConfigFor). Every TLS
// connection of the client, XML-RPC and console alike, is made here. The
// dial and handshake take at most the client's timeout; the returned conn
// has no deadline.
func (c *Client) dialTLS(ctx context.Context, hostport string) (*tls.Conn, error) {
	tc, err := c.handshake(ctx, hostport, c.tlsConfigFor(hostport))
	if err != nil || c.known == nil {
		return tc, err
	}
	// A host met for the first time is recorded only now that it has
	// proved that it holds its certificate's key: a handshake that fails
	// (a borrowed certificate, a connection cut) must not pin anything.
	if err := c.verifyFirstUse(hostport, tc.ConnectionState(), true); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// handshake dials hostport and does a TLS handshake with cfg.
func (c *Client) handshake(ctx context.Context, hostport string, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	raw, err := c.dialer.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(&batchConn{Conn: raw}, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		c.tls12.Delete(hostport)
		return nil, err
	}
	if tc.ConnectionState().Version == tls.VersionTLS12 {
		c.tls12.Store(hostport, true)
	} else {
		c.tls12.Delete(hostport)
	}
	return tc, nil
}

// tlsConfigFor returns the TLS configuration for dialling hostport: the
// client's base configuration with a VerifyConnection that knows which
// host it checks. It runs on resumed sessions too, with the certificate
// of the session's first handshake.
func (c *Client) tlsConfigFor(hostport string) *tls.Config {
	cfg := c.tls.Clone()
	setServerName(cfg, hostport)
	if _, ok := c.tls12.Load(hostport); ok {
		cfg.MaxVersion = tls.VersionTLS12
	}
	switch verify := cfg.VerifyConnection; {
	case c.known != nil:
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return c.verifyFirstUse(hostport, cs, false)
		}
	case verify != nil:
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			err := verify(cs)
			var fe *FingerprintError
			if errors.As(err, &fe) && fe.Host == "" {
				named := *fe
				named.Host = hostport
				return &named
			}
			return err
		}
	}
	return cfg
}

// setServerName sets cfg.ServerName to hostport's host. Go sends SNI only
// for DNS names; xapi needs no special SNI.
func setServerName(cfg *tls.Config, hostport string) {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		cfg.ServerName = h
	}
}

// verifyDone checks the certificate of a finished handshake with hostport
// as the handshake does (tlsConfigFor), and records a host met for the
// first time, as one may be once the handshake is done.
func (c *Client) verifyDone(hostport string, cs tls.ConnectionState) error {
	if c.known != nil {
		return c.verifyFirstUse(hostport, cs, true)
	}
	if verify := c.tlsConfigFor(hostport).VerifyConnection; verify != nil {
		return verify(cs)
	}
	return nil
}

// verifyFirstUse checks the certificate of the host at hostport against
// the known-hosts file, and, if record is set, records it when the host
// has none there.
func (c *Client) verifyFirstUse(hostport string, cs tls.ConnectionState, record bool) error {
	if len(cs.PeerCertificates) == 0 {
		return errNoCertificate
	}
	fp := Fingerprint(cs.PeerCertificates[0].Raw)
	if !record {
		return c.known.Verify(c.cfg.Name, hostport, fp)
	}
	recorded, err := c.known.Check(c.cfg.Name, hostport, fp)
	if recorded {
		c.log.Info("recorded xapi host certificate on first use", "host", hostport, "fingerprint", fp, "file", c.known.Path())
	}
	return err
}

// HostCert is the certificate of one host of a pool, as
// [Client.HostFingerprints] read it.
type HostCert struct {
	Name string // the host's name_label
	// Address is the HOST:PORT dialled: the host's address from XAPI,
	// port 443 unless it names one. This is the address that console
	// connections, and the lines of a known-hosts file, use.
	Address string
	// Fingerprint is the SHA-256 fingerprint of the host's certificate,
	// in xapi's format; empty when Err is set.
	Fingerprint string
	// Err says why the certificate could not be read.
	Err error
}

// maxParallelCertReads bounds the hosts HostFingerprints dials at once.
const maxParallelCertReads = 8

// HostFingerprints reads the certificate of every host of the pool and
// returns their fingerprints, sorted by host name, so that an
// administrator can compare them with the hosts' own ([FingerprintHowTo])
// and pin them. The host list comes from XAPI, over the client's checked
// connection to the master; the hosts' certificates are read without
// being verified, and are not recorded in a known-hosts file. It fails
// only if the host list cannot be read: a host that cannot be reached has
// Err set.
func (c *Client) HostFingerprints(ctx context.Context) ([]HostCert, error) {
	var hosts map[string]hostRecord
	if err := call(ctx, c, "host.get_all_records", &hosts); err != nil {
		return nil, err
	}
	out := make([]HostCert, 0, len(hosts))
	for _, h := range hosts {
		hc := HostCert{Name: h.NameLabel}
		if h.Address != "" {
			hc.Address = hostPort(h.Address, "443")
		}
		out = append(out, hc)
	}
	slices.SortFunc(out, func(a, b HostCert) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Address, b.Address))
	})
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelCertReads)
	for i := range out {
		hc := &out[i]
		if hc.Address == "" {
			hc.Err = errors.New("xapi: host has no address")
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			hc.Fingerprint, hc.Err = c.readFingerprint(ctx, hc.Address)
		})
	}
	wg.Wait()
	return out, nil
}

// readFingerprint returns the fingerprint of the certificate that the host
// at hostport presents, without verifying it.
func (c *Client) readFingerprint(ctx context.Context, hostport string) (string, error) {
	// Same versions, suites and curves as the client's connections, no
	// verification, and no session cache: a resumed session would not
	// show what the host presents now, and this unverified session must
	// not be offered by later, checked connections.
	cfg := c.tls.Clone()
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = nil
	cfg.VerifyPeerCertificate = nil
	cfg.ClientSessionCache = nil
	setServerName(cfg, hostport)
	tc, err := c.handshake(ctx, hostport, cfg)
	if err != nil {
		return "", err
	}
	defer tc.Close()
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", errNoCertificate
	}
	return Fingerprint(certs[0].Raw), nil
}

// batchConn is the TCP connection under a TLS client. crypto/tls writes
// each record of at most 16 KiB with its own system call; while batching,
// batchConn gathers the records of one large Write and sends them with one.
// Outside a batch it writes straight through.
type batchConn struct {
	net.Conn
	mu  sync.Mutex // guards buf
	buf *[]byte    // non-nil while batching
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf != nil {
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

// batch runs write (a tls.Conn Write) with its records gathered, then
// sends them.
func (b *batchConn) batch(write func() (int, error)) (int, error) {
	b.mu.Lock()
	b.buf = batchBufs.Get().(*[]byte)
	b.mu.Unlock()
	n, err := write()
	b.mu.Lock()
	buf := b.buf
	b.buf = nil
	if len(*buf) > 0 {
		if _, werr := b.Conn.Write(*buf); werr != nil && err == nil {
			n, err = 0, werr
		}
	}
	b.mu.Unlock()
	*buf = (*buf)[:0]
	batchBufs.Put(buf)
	return n, err
}
