package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/kolo/xmlrpc"

	"github.com/xenbastion/xenbastion/xapi"
	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// simPool is the simulated XAPI pool, in this process: the bastion
// process talks to it over loopback, and so do the direct and sshd paths.
//
// It has a single host, master and console host at once. With two hosts
// on one IP address, a TLS client's session cache (keyed by address)
// would offer one host's tickets to the other, a slowdown that real pools,
// whose hosts have their own addresses, do not have.
type simPool struct {
	*xapitest.Pool
	host    *xapitest.Host
	driver  driver // speaks to the rfb consoles' back end
	session string // this harness's own XAPI session, for direct CONNECTs
}

// VM names. Every VM has an rfb and a vt100 console.
const tputVM = "tput" // throughput runs

func vmName(i int) string { return fmt.Sprintf("vm-%04d", i) }

// newSimPool starts the pool with n numbered VMs and the throughput VM.
// backend is "rfb" (the test-pattern VNC server) or "bench"/"auto"
// (xapitest.BenchBackend).
func newSimPool(n int, backend string) (*simPool, error) {
	p, err := xapitest.NewPool(xapitest.Options{Members: -1, AuthFailureDelay: -1, PoolName: "bench"})
	if err != nil {
		return nil, err
	}
	sp := &simPool{Pool: p, host: p.Host(0), driver: rfbDriver{}}
	add := func(name string) error {
		spec := xapitest.VMSpec{Name: name, Host: 0}
		if backend != "rfb" {
			spec.Backend = xapitest.BenchBackend
			sp.driver = benchDriver{}
		}
		p.AddVM(spec)
		return nil
	}
	if err := add(tputVM); err != nil {
		p.Close()
		return nil, err
	}
	for i := range n {
		add(vmName(i))
	}
	if err := sp.login(); err != nil {
		p.Close()
		return nil, err
	}
	return sp, nil
}

// clientTLS is what a direct console client offers: xapi's policy (TLS 1.2,
// ECDHE-RSA-AES-GCM, P-384), the pool's certificates trusted. cache nil
// means every handshake is a full one.
func (sp *simPool) clientTLS(cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		RootCAs:    sp.CertPool(),
		ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		},
		CurvePreferences:   []tls.CurveID{tls.CurveP384},
		ClientSessionCache: cache,
	}
}

// login opens the harness's own session (after ExpireSessions too). It
// counts in Logins, so callers take counters after it.
func (sp *simPool) login() error {
	body, err := xmlrpc.EncodeMethodCall("session.login_with_password", sp.Username(), sp.Password(), "1.1", "bench")
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: sp.clientTLS(nil)}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(sp.URL(), "text/xml", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("pool login: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("pool login: %w", err)
	}
	var reply struct {
		Status string `xmlrpc:"Status"`
		Value  string `xmlrpc:"Value"`
	}
	if err := xmlrpc.Response(data).Unmarshal(&reply); err != nil || reply.Status != "Success" {
		return fmt.Errorf("pool login: %s %v", reply.Status, err)
	}
	sp.session = reply.Value
	return nil
}

// location returns the location of VM name's console of protocol.
func (sp *simPool) location(name, protocol string) (string, error) {
	vm, ok := sp.VM(name)
	if !ok {
		return "", fmt.Errorf("no VM %s", name)
	}
	c, ok := vm.Console(protocol)
	if !ok || c.Location == "" {
		return "", fmt.Errorf("VM %s has no %s console location", name, protocol)
	}
	return c.Location, nil
}

// stream is an open console: raw console bytes both ways, the CONNECT
// reply already read. r may hold console bytes that came with the reply.
type stream struct {
	net.Conn
	r *bufio.Reader
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// rawStream wraps a connection that carries console bytes from its start,
// as a bastion forward does.
func rawStream(c net.Conn) *stream { return &stream{Conn: c, r: bufio.NewReaderSize(c, 64<<10)} }

// connectOver speaks TLS and CONNECT over raw, a connection to the
// console's host (directly, or through an sshd forward), as a direct
// console client does, and returns the console stream.
func (sp *simPool) connectOver(ctx context.Context, raw net.Conn, location string, cfg *tls.Config) (*stream, error) {
	u, err := url.Parse(location)
	if err != nil {
		raw.Close()
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	if d, ok := ctx.Deadline(); ok {
		tc.SetDeadline(d)
	}
	fail := func(err error) (*stream, error) {
		tc.Close()
		return nil, fmt.Errorf("console CONNECT: %w", err)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(err)
	}
	q := u.Query()
	q.Set("session_id", sp.session)
	if _, err := io.WriteString(tc, "CONNECT "+u.EscapedPath()+"?"+q.Encode()+" HTTP/1.0\r\n\r\n"); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(tc, 64<<10)
	if err := xapi.ReadConnectReply(br); err != nil {
		return fail(err)
	}
	tc.SetDeadline(time.Time{})
	return &stream{Conn: tc, r: br}, nil
}

// dialDirect opens a console the direct way: TCP to the host named in
// location, TLS, CONNECT.
func (sp *simPool) dialDirect(ctx context.Context, location string, cfg *tls.Config) (*stream, error) {
	u, err := url.Parse(location)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	return sp.connectOver(ctx, raw, location, cfg)
}

// counters is a snapshot of the pool's call counters.
type counters struct {
	calls, logins int
	methods       map[string]int
}

// xapiMethods are the methods whose counts the report breaks down: those
// the bastion is known to call.
var xapiMethods = []string{
	"session.login_with_password", "session.logout",
	"VM.get_by_name_label", "VM.get_by_uuid", "VM.get_record", "VM.get_all_records",
	"console.get_record", "console.get_all_records", "host.get_address",
}

func (sp *simPool) counters() counters {
	c := counters{calls: sp.Calls(), logins: sp.Logins(), methods: map[string]int{}}
	for _, m := range xapiMethods {
		c.methods[m] = sp.CallCount(m)
	}
	return c
}

// since returns the per-method calls made since before, the non-zero ones.
func (c counters) since(before counters) map[string]int {
	out := map[string]int{}
	for m, n := range c.methods {
		if d := n - before.methods[m]; d != 0 {
			out[m] = d
		}
	}
	return out
}
