package xapi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// These tests run the client against the simulated pool of package
// xapitest and check what a user of the client sees. A test that changes its
// pool (fault switches, counters) starts its own; pools are cheap, since
// xapitest caches the hosts' keys.

// rfbBanner is what an RFB 3.8 server sends first.
const rfbBanner = "RFB 003.008\n"

// newPool starts a pool with the demo VMs and no delay on failed logins.
func newPool(t *testing.T, opts xapitest.Options) *xapitest.Pool {
	t.Helper()
	if opts.AuthFailureDelay == 0 {
		opts.AuthFailureDelay = -1
	}
	p := xapitest.NewTestPool(t, opts)
	p.AddDemoVMs()
	return p
}

// newClient returns a client, named "lab", of p that pins every host's
// fingerprint; opts change the Config before NewClient.
// The client is closed when the test ends, before the pool is.
func newClient(t *testing.T, p *xapitest.Pool, opts ...func(*Config)) *Client {
	t.Helper()
	tlsConf, err := Trust{Fingerprints: p.Fingerprints()}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name:     "lab",
		URL:      p.URL(),
		Username: p.Username(),
		Password: p.Password(),
		TLS:      tlsConf,
		Timeout:  5 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func withURL(u string) func(*Config) { return func(c *Config) { c.URL = u } }

func withTrust(t *testing.T, tr Trust) func(*Config) {
	t.Helper()
	tlsConf, err := tr.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) { c.TLS = tlsConf }
}

// findVM returns the VM that target means.
func findVM(t *testing.T, c *Client, target string) VM {
	t.Helper()
	vms, err := c.FindVMs(t.Context(), target)
	if err != nil {
		t.Fatalf("FindVMs(%q): %v", target, err)
	}
	vm, err := Choose(target, vms)
	if err != nil {
		t.Fatalf("Choose(%q): %v", target, err)
	}
	return vm
}

// dial opens vm's console of protocol p and closes it when the test ends.
func dial(t *testing.T, c *Client, vm VM, p Protocol) net.Conn {
	t.Helper()
	conn, err := c.DialConsole(t.Context(), vm, p)
	if err != nil {
		t.Fatalf("DialConsole(%s, %s): %v", vm.Name, p, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// expectBanner reads the first bytes of an rfb console and checks they are
// the RFB banner.
func expectBanner(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(rfbBanner))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("reading the RFB banner: %v", err)
	}
	if string(buf) != rfbBanner {
		t.Fatalf("first bytes %q, want %q", buf, rfbBanner)
	}
	_ = conn.SetReadDeadline(time.Time{})
}

// expectEcho types a command on a vt100 console and reads until its output
// appears. The shell echoes what is typed, so "hi" alone would match the
// echo of the command line: wait for the output line.
func expectEcho(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "echo hi\r"); err != nil {
		t.Fatalf("typing: %v", err)
	}
	const want = "\r\nhi\r\n"
	var got []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(got, []byte(want)) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read %q, then: %v", got, err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
}

// checkConsole checks that conn carries a console of protocol p.
func checkConsole(t *testing.T, conn net.Conn, p Protocol) {
	t.Helper()
	switch p {
	case RFB:
		expectBanner(t, conn)
	case VT100:
		expectEcho(t, conn)
	default:
		t.Fatalf("no check for protocol %s", p)
	}
}

func TestSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts xapitest.Options
		// url picks the configured URL; nil means the master's.
		url func(p *xapitest.Pool) string
		// between runs after a first call.
		between    func(t *testing.T, p *xapitest.Pool)
		wantLogins int
		wantMaster int // index of the host Master() must name at the end
	}{
		{name: "login once and reuse the session", wantLogins: 1},
		{name: "configured URL is a member",
			url:        func(p *xapitest.Pool) string { return p.Host(1).URL() },
			wantLogins: 1},
		{name: "master moves after login",
			between:    func(t *testing.T, p *xapitest.Pool) { must(t, p.MoveMaster(1)) },
			wantLogins: 2, wantMaster: 1},
		{name: "sessions expire",
			between:    func(t *testing.T, p *xapitest.Pool) { p.ExpireSessions() },
			wantLogins: 2},
		{name: "master moves and sessions expire",
			between: func(t *testing.T, p *xapitest.Pool) {
				must(t, p.MoveMaster(1))
				p.ExpireSessions()
			},
			wantLogins: 2, wantMaster: 1},
		{name: "IPv6 pool, configured URL is a member",
			opts:       xapitest.Options{IPv6: true},
			url:        func(p *xapitest.Pool) string { return p.Host(1).URL() },
			wantLogins: 1},
		{name: "IPv6 pool, master moves",
			opts:       xapitest.Options{IPv6: true},
			between:    func(t *testing.T, p *xapitest.Pool) { must(t, p.MoveMaster(1)) },
			wantLogins: 2, wantMaster: 1},
		{name: "configured URL is a member that becomes master",
			url:        func(p *xapitest.Pool) string { return p.Host(1).URL() },
			between:    func(t *testing.T, p *xapitest.Pool) { must(t, p.MoveMaster(1)) },
			wantLogins: 2, wantMaster: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, tt.opts)
			var opts []func(*Config)
			if tt.url != nil {
				opts = append(opts, withURL(tt.url(p)))
			}
			c := newClient(t, p, opts...)
			ctx := t.Context()

			if err := c.Login(ctx); err != nil {
				t.Fatalf("Login: %v", err)
			}
			if got := findVM(t, c, "web-1"); got.Pool != "lab" || !got.Running() {
				t.Errorf("web-1 = %+v", got)
			}
			if tt.between != nil {
				tt.between(t, p)
			}
			for range 3 {
				if got := findVM(t, c, "web-2"); got.Name != "web-2" {
					t.Errorf("found %q", got.Name)
				}
			}
			vms, err := c.VMs(ctx)
			if err != nil || len(vms) == 0 {
				t.Fatalf("VMs: %d, %v", len(vms), err)
			}
			// A console of a VM on the (first) master, whose location
			// uses ?ref= once the master has moved.
			checkConsole(t, dial(t, c, findVM(t, c, "web-1"), RFB), RFB)

			if got := p.Logins(); got != tt.wantLogins {
				t.Errorf("Logins() = %d, want %d", got, tt.wantLogins)
			}
			if got, want := c.Master(), p.Host(tt.wantMaster).URL(); got != want {
				t.Errorf("Master() = %q, want %q", got, want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCloseLogsOut(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p)
	ctx := t.Context()
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Sessions(); got != 1 {
		t.Fatalf("Sessions() = %d after login, want 1", got)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := p.Sessions(); got != 0 {
		t.Errorf("Sessions() = %d after Close, want 0", got)
	}
	// A closed client logs in again when used.
	findVM(t, c, "web-1")
	if got := p.Logins(); got != 2 {
		t.Errorf("Logins() = %d, want 2", got)
	}
}

// TestSingleFlight checks that concurrent callers share one login: from a
// cold client, and again after the sessions expire.
func TestSingleFlight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		callers    int
		warm       bool // log in and expire the session before the callers run
		wantLogins int
	}{
		{name: "cold client", callers: 200, wantLogins: 1},
		{name: "expired session", callers: 100, warm: true, wantLogins: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, xapitest.Options{})
			c := newClient(t, p)
			ctx := t.Context()
			web2, _ := p.VM("web-2")
			if tt.warm {
				if err := c.Login(ctx); err != nil {
					t.Fatal(err)
				}
				p.ExpireSessions()
			}

			start := make(chan struct{})
			errs := make(chan error, tt.callers)
			var wg sync.WaitGroup
			for range tt.callers {
				wg.Go(func() {
					<-start
					vms, err := c.FindVMs(ctx, web2.UUID)
					if err == nil && (len(vms) != 1 || vms[0].UUID != web2.UUID) {
						err = fmt.Errorf("found %+v", vms)
					}
					errs <- err
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("FindVMs: %v", err)
				}
			}
			if got := p.Logins(); got != tt.wantLogins {
				t.Errorf("Logins() = %d, want %d", got, tt.wantLogins)
			}
			if got := p.CallCount("session.login_with_password"); got != tt.wantLogins {
				t.Errorf("%d login calls, want %d", got, tt.wantLogins)
			}
		})
	}
}

func TestAuthenticationFailure(t *testing.T) {
	t.Parallel()
	const password = "s3cret-Wrong-pa55word"
	tests := []struct {
		name string
		url  func(p *xapitest.Pool) string
		call func(ctx context.Context, c *Client) error
	}{
		{name: "Login", call: func(ctx context.Context, c *Client) error { return c.Login(ctx) }},
		{name: "FindVMs", call: func(ctx context.Context, c *Client) error {
			_, err := c.FindVMs(ctx, "web-1")
			return err
		}},
		{name: "VMs via a member", url: func(p *xapitest.Pool) string { return p.Host(1).URL() },
			call: func(ctx context.Context, c *Client) error {
				_, err := c.VMs(ctx)
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, xapitest.Options{AuthFailureDelay: time.Millisecond})
			opts := []func(*Config){func(c *Config) { c.Password = password }}
			if tt.url != nil {
				opts = append(opts, withURL(tt.url(p)))
			}
			c := newClient(t, p, opts...)
			for i := range 2 { // a failed login is not remembered as a session
				err := tt.call(t.Context(), c)
				var xe *Error
				if !errors.As(err, &xe) || xe.Code != CodeSessionAuthenticationFailed {
					t.Fatalf("call %d: err = %v, want *Error %s", i, err, CodeSessionAuthenticationFailed)
				}
				if !IsCode(err, CodeSessionAuthenticationFailed) {
					t.Errorf("IsCode does not see %v", err)
				}
				if strings.Contains(err.Error(), password) {
					t.Errorf("the error shows the password: %v", err)
				}
			}
			if got := p.Logins(); got != 0 {
				t.Errorf("Logins() = %d, want 0", got)
			}
		})
	}
}

// TestLoginWaitHonoursContext: a caller waiting for another caller's login
// must give up when its own context ends, not when that login does.
func TestLoginWaitHonoursContext(t *testing.T) {
	t.Parallel()
	const delay = 500 * time.Millisecond
	p := newPool(t, xapitest.Options{AuthFailureDelay: delay})
	c := newClient(t, p, func(c *Config) { c.Password = "wrong" })

	first := make(chan error, 1)
	go func() { first <- c.Login(context.Background()) }()
	// Wait until the first login is in the pool's failure delay.
	for deadline := time.Now().Add(5 * time.Second); p.CallCount("session.login_with_password") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the first login never reached the pool")
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.FindVMs(ctx, "web-1")
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if err := <-first; !IsCode(err, CodeSessionAuthenticationFailed) {
		t.Errorf("first login: %v", err)
	}
	if elapsed > delay/2 {
		t.Errorf("regression: sessionRef waits on loginMu without watching ctx: "+
			"FindVMs with a 100ms deadline returned after %v, when the other caller's login failed", elapsed)
	}
}

// emptyValueIssue explains the failures of the tests for the decoding bug of
// kolo/xmlrpc described at TestDecodeEmptyValues.
const emptyValueIssue = "regression: an empty bare <value></value> (xapi's empty string) in a known field " +
	"makes kolo/xmlrpc skip the rest of the enclosing struct and misalign what follows"

// TestFailedLoginShared: callers that wait for a login that fails should
// get its error, not queue up to fail one after the other, each after
// xapi's 5 s delay (and each an attempt that may count towards a lockout).
func TestFailedLoginShared(t *testing.T) {
	t.Parallel()
	const callers = 8
	const delay = 20 * time.Millisecond
	p := newPool(t, xapitest.Options{AuthFailureDelay: delay})
	c := newClient(t, p, func(c *Config) { c.Password = "wrong" })
	var wg sync.WaitGroup
	start := time.Now()
	for range callers {
		wg.Go(func() {
			if err := c.Login(t.Context()); !IsCode(err, CodeSessionAuthenticationFailed) {
				t.Errorf("Login: %v", err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	attempts := p.CallCount("session.login_with_password")
	t.Logf("%d concurrent callers: %d login attempts in %v", callers, attempts, elapsed)
	if attempts > 1 {
		t.Errorf("regression: a failed login is not shared with the callers waiting on loginMu: "+
			"%d callers made %d attempts, one after the other", callers, attempts)
	}
}

func TestVMs(t *testing.T) {
	t.Parallel()
	type wantVM struct {
		name      string
		protocols []Protocol
		running   bool
		host      int    // index of the host the VM runs on, if running
		dom0      bool   // a control domain, Host set to its host's name
		skip      string // what a failure means
	}
	// Control domains are listed, with Host set; templates and
	// snapshots (the demo's "web-1" ones) are not.
	base := []wantVM{
		{name: "Control domain on host: host-0", protocols: []Protocol{RFB, VT100}, running: true, host: 0, dom0: true},
		{name: "Control domain on host: host-1", protocols: []Protocol{RFB, VT100}, running: true, host: 1, dom0: true},
		{name: "build-1", protocols: []Protocol{RFB, VT100}, skip: emptyValueIssue + " (its consoles' locations are empty)"},
		{name: "db-1", protocols: []Protocol{RFB}, running: true, host: 1},
		{name: "novnc", running: true, host: 1},
		{name: "web-1", protocols: []Protocol{RFB, VT100}, running: true, host: 0},
		{name: "web-2", protocols: []Protocol{RFB, VT100}, running: true, host: 1},
	}
	with := func(w wantVM) []wantVM {
		all := append([]wantVM{w}, base...)
		slices.SortFunc(all, func(a, b wantVM) int { return strings.Compare(a.name, b.name) })
		return all
	}
	tests := []struct {
		name  string
		setup func(p *xapitest.Pool) // before the demo VMs are added
		want  []wantVM               // sorted by name
		skip  string                 // what a failure means
	}{
		{name: "demo", want: base},
		{name: "halted VM first",
			setup: func(p *xapitest.Pool) { p.AddVM(xapitest.VMSpec{Name: "aaa-halted", PowerState: Halted}) },
			want:  with(wantVM{name: "aaa-halted", protocols: []Protocol{RFB, VT100}}),
			skip:  emptyValueIssue + ": every console record after the halted VM's is lost"},
		{name: "VM with an empty name",
			setup: func(p *xapitest.Pool) { p.AddVM(xapitest.VMSpec{Name: "", Host: 0}) },
			want:  with(wantVM{name: "", protocols: []Protocol{RFB, VT100}, running: true, host: 0}),
			skip:  emptyValueIssue + ": every VM record after the unnamed VM's is lost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := xapitest.NewTestPool(t, xapitest.Options{AuthFailureDelay: -1})
			if tt.setup != nil {
				tt.setup(p)
			}
			p.AddDemoVMs()
			p.AddVM(xapitest.VMSpec{Name: "novnc", Host: 1, DisablePVVNC: true})
			c := newClient(t, p)

			vms, err := c.VMs(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var names, want []string
			for _, v := range vms {
				names = append(names, v.Name)
			}
			for _, w := range tt.want {
				want = append(want, w.name)
			}
			if !slices.Equal(names, want) {
				if tt.skip != "" {
					t.Errorf("%s: VMs() names = %q, want %q", tt.skip, names, want)
				}
				t.Fatalf("VMs() names = %q, want %q (sorted, control domains, no templates or snapshots)", names, want)
			}
			for i, w := range tt.want {
				t.Run(w.name, func(t *testing.T) {
					v := vms[i]
					if got := v.Protocols(); !slices.Equal(got, w.protocols) {
						if skip := cmp.Or(w.skip, tt.skip); skip != "" {
							t.Errorf("%s: Protocols() = %q, want %q", skip, got, w.protocols)
						}
					}
					info, _ := p.VM(w.name)
					if v.Pool != "lab" || v.UUID != info.UUID || v.Ref != info.Ref {
						t.Errorf("VM = %+v, want pool lab, uuid %s, ref %s", v, info.UUID, info.Ref)
					}
					wantHost := ""
					if w.dom0 {
						wantHost = p.Host(w.host).Hostname()
					}
					if v.IsControlDomain != w.dom0 || v.Host != wantHost {
						t.Errorf("IsControlDomain %v, Host %q; want %v, %q", v.IsControlDomain, v.Host, w.dom0, wantHost)
					}
					if v.Running() != w.running || (v.ResidentOn != "") != w.running {
						t.Errorf("power %s, resident on %q; want running %v", v.PowerState, v.ResidentOn, w.running)
					}
					if w.running && v.ResidentOn != p.Host(w.host).Ref() {
						t.Errorf("resident on %q, want host %d (%s)", v.ResidentOn, w.host, p.Host(w.host).Ref())
					}
					if got := v.Protocols(); !slices.Equal(got, w.protocols) {
						t.Errorf("Protocols() = %q, want %q", got, w.protocols)
					}
					for _, con := range v.Consoles {
						want, _ := info.Console(string(con.Protocol))
						if con.Ref != want.Ref || con.UUID != want.UUID || con.Location != want.Location {
							t.Errorf("console %+v, want %+v", con, want)
						}
						host := p.Host(w.host).Address()
						if w.running != strings.HasPrefix(con.Location, "https://"+host+"/console?") {
							t.Errorf("location %q; running %v on %s", con.Location, w.running, host)
						}
					}
				})
			}
		})
	}
}

// TestControlDomains: a host's control domain is found by the host's name
// label or hostname, with both set, and its consoles open like a guest's
// (at ?ref= locations).
func TestControlDomains(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	p.Host(1).SetNameLabel("xs-one")
	c := newClient(t, p)
	label := func(i int) string { return []string{"host-0", "xs-one"}[i] }
	tests := []struct {
		name  string
		host  string
		want  int // index of the host, -1 for none
		proto Protocol
	}{
		{name: "master rfb", host: "host-0", want: 0, proto: RFB},
		{name: "member vt100 by hostname", host: "host-1", want: 1, proto: VT100},
		{name: "member by name label", host: "xs-one", want: 1, proto: RFB},
		{name: "unknown host", host: "host-9", want: -1},
		{name: "guest name", host: "web-1", want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vms, err := c.ControlDomains(t.Context(), tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want < 0 {
				if len(vms) != 0 {
					t.Fatalf("ControlDomains(%q) = %+v, want none", tt.host, vms)
				}
				return
			}
			if len(vms) != 1 {
				t.Fatalf("ControlDomains(%q) = %+v, want one", tt.host, vms)
			}
			vm, h := vms[0], p.Host(tt.want)
			if !vm.IsControlDomain || vm.Host != label(tt.want) || vm.HostName != h.Hostname() || !vm.Running() || vm.ResidentOn != h.Ref() || vm.Pool != "lab" {
				t.Errorf("control domain %+v, want one running on %s (%s)", vm, label(tt.want), h.Hostname())
			}
			con, err := c.Console(t.Context(), vm, tt.proto)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(con.Location, h.URL()+"/console?ref=") {
				t.Errorf("location %q, want %s/console?ref=...", con.Location, h.URL())
			}
			checkConsole(t, dial(t, c, vm, tt.proto), tt.proto)
		})
	}
	t.Run("listed", func(t *testing.T) {
		t.Parallel()
		vms, err := c.VMs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var found int
		for _, vm := range vms {
			if vm.IsControlDomain && vm.ResidentOn == p.Host(1).Ref() {
				found++
				if vm.Host != "xs-one" || vm.HostName != "host-1" {
					t.Errorf("listed control domain has Host %q, HostName %q; want xs-one, host-1", vm.Host, vm.HostName)
				}
			}
		}
		if found != 1 {
			t.Errorf("VMs lists %d control domains of host 1, want 1", found)
		}
	})
}

// TestDecodeEmptyValues: xapi writes an empty string as a bare
// <value></value>. kolo/xmlrpc's decodeValue consumes that </value> itself,
// and its caller then Skip()s twice more (for "</value>" and "</member>"),
// which eats the </member> and then the rest of the enclosing <struct>; in
// an array the same happens to the rest of the <data>.
func TestDecodeEmptyValues(t *testing.T) {
	t.Parallel()
	env := func(value string) []byte {
		return []byte(`<?xml version="1.0"?><methodResponse><params><param><value><struct>` +
			`<member><name>Status</name><value>Success</value></member>` +
			`<member><name>Value</name>` + value + `</member>` +
			`</struct></value></param></params></methodResponse>`)
	}
	member := func(name, value string) string {
		return `<member><name>` + name + `</name>` + value + `</member>`
	}
	str := func(s string) string { return `<value>` + s + `</value>` }
	strct := func(members ...string) string {
		return `<value><struct>` + strings.Join(members, "") + `</struct></value>`
	}
	array := func(values ...string) string {
		return `<value><array><data>` + strings.Join(values, "") + `</data></array></value>`
	}
	halted := strct(member("uuid", str("c1")), member("protocol", str("rfb")), member("location", str("")),
		member("VM", str("OpaqueRef:vm")), member("other_config", strct()))
	running := strct(member("uuid", str("c2")), member("protocol", str("vt100")),
		member("location", str("https://192.0.2.1/console?uuid=c2")), member("VM", str("OpaqueRef:vm2")))

	tests := []struct {
		name   string
		body   []byte
		decode func(body []byte) (any, error)
		want   any
	}{
		{name: "console with an empty location",
			body: env(halted),
			decode: func(b []byte) (any, error) {
				var r consoleRecord
				err := decodeReply(b, &r)
				return r, err
			},
			want: consoleRecord{UUID: "c1", Protocol: "rfb", VM: "OpaqueRef:vm"}},
		{name: "get_all_records with an empty location first",
			body: env(strct(member("OpaqueRef:c1", halted), member("OpaqueRef:c2", running))),
			decode: func(b []byte) (any, error) {
				var m map[string]consoleRecord
				err := decodeReply(b, &m)
				return m, err
			},
			want: map[string]consoleRecord{
				"OpaqueRef:c1": {UUID: "c1", Protocol: "rfb", VM: "OpaqueRef:vm"},
				"OpaqueRef:c2": {UUID: "c2", Protocol: "vt100", Location: "https://192.0.2.1/console?uuid=c2", VM: "OpaqueRef:vm2"},
			}},
		{name: "VM with an empty name",
			body: env(strct(member("uuid", str("u1")), member("name_label", str("")), member("power_state", str("Running")),
				member("resident_on", str("OpaqueRef:h1")))),
			decode: func(b []byte) (any, error) {
				var r vmRecord
				err := decodeReply(b, &r)
				return r, err
			},
			want: vmRecord{UUID: "u1", PowerState: "Running", ResidentOn: "OpaqueRef:h1"}},
		{name: "other_config with an empty value",
			body: env(strct(member("uuid", str("u1")),
				member("other_config", strct(member("a", str("")), member("b", str("2")))),
				member("power_state", str("Halted")))),
			decode: func(b []byte) (any, error) {
				var r vmRecord
				err := decodeReply(b, &r)
				return r, err
			},
			want: vmRecord{UUID: "u1", PowerState: "Halted", OtherConfig: map[string]string{"a": "", "b": "2"}}},
		{name: "set with an empty string",
			body: env(array(str("a"), str(""), str("c"))),
			decode: func(b []byte) (any, error) {
				var s []string
				err := decodeReply(b, &s)
				return s, err
			},
			want: []string{"a", "", "c"}},
		{name: "empty string in a failure",
			body: []byte(`<methodResponse><params><param><value><struct>` +
				member("Status", str("Failure")) +
				member("ErrorDescription", array(str("HANDLE_INVALID"), str(""), str("OpaqueRef:x"))) +
				`</struct></value></param></params></methodResponse>`),
			decode: func(b []byte) (any, error) {
				var s string
				err := decodeReply(b, &s)
				var xe *Error
				if errors.As(err, &xe) {
					return *xe, nil
				}
				return nil, err
			},
			want: Error{Code: "HANDLE_INVALID", Params: []string{"", "OpaqueRef:x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.decode(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				// Turn this into t.Errorf once decodeReply is fixed.
				t.Errorf("%s: decoded\n%#v\nwant\n%#v", emptyValueIssue, got, tt.want)
			}
		})
	}
}

func TestFindVMs(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	twinA := p.AddVM(xapitest.VMSpec{Name: "twin", Host: 0})
	twinB := p.AddVM(xapitest.VMSpec{Name: "twin", Host: 1})
	p.AddVM(xapitest.VMSpec{Name: "twin", PowerState: Halted})
	p.AddVM(xapitest.VMSpec{Name: "pair", PowerState: Halted})
	pairRunning := p.AddVM(xapitest.VMSpec{Name: "pair", Host: 1})
	c := newClient(t, p)

	web1, _ := p.VM("web-1")
	// The pool describes guests only: read the template's and the
	// snapshot's UUIDs with the client's own calls.
	template, snapshot := demoTemplateAndSnapshot(t, c)
	dom0 := controlDomainUUID(t, c)

	tests := []struct {
		name   string
		target string
		want   []string // UUIDs, in any order
		// chosen is the UUID Choose picks; ambiguous the UUIDs of its
		// *AmbiguousError.
		chosen    string
		ambiguous []string
	}{
		{name: "name leaves out template and snapshot", target: "web-1", want: []string{web1.UUID}, chosen: web1.UUID},
		{name: "uuid", target: web1.UUID, want: []string{web1.UUID}, chosen: web1.UUID},
		{name: "upper-case uuid", target: strings.ToUpper(web1.UUID), want: []string{web1.UUID}, chosen: web1.UUID},
		{name: "unknown name", target: "no-such-vm"},
		{name: "unknown uuid", target: "00000000-0000-4000-8000-000000000000"},
		{name: "template uuid", target: template.UUID},
		{name: "snapshot uuid", target: snapshot.UUID},
		{name: "control domain uuid", target: dom0},
		{name: "control domain name", target: "Control domain on host: host-0"},
		{name: "two running, one halted", target: "twin",
			want:      []string{twinA.UUID, twinB.UUID, ""}, // "" : the halted one, any UUID
			ambiguous: sorted(twinA.UUID, twinB.UUID)},
		{name: "one running, one halted", target: "pair", want: []string{pairRunning.UUID, ""}, chosen: pairRunning.UUID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vms, err := c.FindVMs(t.Context(), tt.target)
			if err != nil {
				t.Fatalf("FindVMs(%q): %v", tt.target, err)
			}
			if len(vms) != len(tt.want) {
				t.Fatalf("FindVMs(%q) found %d VMs (%+v), want %d", tt.target, len(vms), vms, len(tt.want))
			}
			for _, u := range tt.want {
				if u != "" && !slices.ContainsFunc(vms, func(v VM) bool { return v.UUID == u }) {
					t.Errorf("FindVMs(%q) lacks %s", tt.target, u)
				}
			}
			for _, v := range vms {
				if v.Pool != "lab" || v.IsControlDomain || len(v.Consoles) != 0 {
					t.Errorf("VM %+v: want pool lab, a guest, no console records", v)
				}
			}
			vm, err := Choose(tt.target, vms)
			var amb *AmbiguousError
			switch {
			case tt.ambiguous != nil:
				if !errors.As(err, &amb) || !slices.Equal(amb.UUIDs, tt.ambiguous) || amb.Name != tt.target {
					t.Fatalf("Choose: %v, want *AmbiguousError listing %q", err, tt.ambiguous)
				}
				for _, u := range tt.ambiguous {
					if !strings.Contains(err.Error(), u) {
						t.Errorf("%q does not name %s", err, u)
					}
				}
			case tt.chosen == "":
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Choose: %v, %v; want ErrNotFound", vm, err)
				}
			case err != nil || vm.UUID != tt.chosen:
				t.Fatalf("Choose: %s, %v; want %s", vm.UUID, err, tt.chosen)
			}
		})
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// demoTemplateAndSnapshot returns the demo template and snapshot named
// web-1, read with the client's own calls.
func demoTemplateAndSnapshot(t *testing.T, c *Client) (template, snapshot xapitest.VMInfo) {
	t.Helper()
	var refs []string
	if err := call(t.Context(), c, "VM.get_by_name_label", &refs, "web-1"); err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		var r vmRecord
		if err := call(t.Context(), c, "VM.get_record", &r, ref); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.IsATemplate:
			template = xapitest.VMInfo{Name: r.NameLabel, UUID: r.UUID, Ref: ref}
		case r.IsASnapshot:
			snapshot = xapitest.VMInfo{Name: r.NameLabel, UUID: r.UUID, Ref: ref}
		}
	}
	if template.UUID == "" || snapshot.UUID == "" {
		t.Fatalf("no template or snapshot among %q", refs)
	}
	return template, snapshot
}

// controlDomainUUID returns the UUID of a control domain.
func controlDomainUUID(t *testing.T, c *Client) string {
	t.Helper()
	var all map[string]vmRecord
	if err := call(t.Context(), c, "VM.get_all_records", &all); err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.IsControlDomain {
			return r.UUID
		}
	}
	t.Fatal("no control domain")
	return ""
}

func TestConsole(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	p.AddVM(xapitest.VMSpec{Name: "novnc", Host: 1, DisablePVVNC: true})
	c := newClient(t, p)
	vms, err := c.VMs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byName := func(name string) VM {
		for _, v := range vms {
			if v.Name == name {
				return v
			}
		}
		t.Fatalf("no VM %s", name)
		return VM{}
	}

	tests := []struct {
		name    string
		vm      VM
		proto   Protocol
		wantErr error
		host    int // where the console is served
	}{
		{name: "pv rfb on master", vm: findVM(t, c, "web-1"), proto: RFB, host: 0},
		{name: "pv vt100 on master", vm: findVM(t, c, "web-1"), proto: VT100, host: 0},
		{name: "pv vt100 on member", vm: findVM(t, c, "web-2"), proto: VT100, host: 1},
		{name: "hvm rfb from VMs", vm: byName("db-1"), proto: RFB, host: 1},
		{name: "halted", vm: findVM(t, c, "build-1"), proto: RFB, wantErr: ErrNotRunning},
		{name: "halted from VMs", vm: byName("build-1"), proto: VT100, wantErr: ErrNotRunning},
		{name: "hvm vt100", vm: findVM(t, c, "db-1"), proto: VT100, wantErr: ErrNoConsole},
		{name: "rdp", vm: findVM(t, c, "web-1"), proto: RDP, wantErr: ErrNoConsole},
		{name: "disable_pv_vnc", vm: findVM(t, c, "novnc"), proto: RFB, wantErr: ErrNoConsole},
		{name: "zero VM", vm: VM{Name: "ghost", PowerState: Running}, proto: RFB, wantErr: ErrNoConsole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			con, err := c.Console(t.Context(), tt.vm, tt.proto)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Console: %+v, %v; want %v", con, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.vm.Name) {
					t.Errorf("%q does not name the VM", err)
				}
				_, err := c.DialConsole(t.Context(), tt.vm, tt.proto)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DialConsole: %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Console: %v", err)
			}
			info, _ := p.VM(tt.vm.Name)
			want, _ := info.Console(string(tt.proto))
			if con.Protocol != tt.proto || con.Ref != want.Ref || con.UUID != want.UUID || con.Location != want.Location {
				t.Errorf("Console = %+v, want %+v", con, want)
			}
			if !strings.HasPrefix(con.Location, p.Host(tt.host).URL()+"/console?") {
				t.Errorf("location %q is not on host %d", con.Location, tt.host)
			}
		})
	}
}

func TestDialConsole(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	p.AddVM(xapitest.VMSpec{Name: "pv-member", Host: 1})
	c := newClient(t, p)

	// Each vt100 console is used by one case only: the shell behind it
	// is shared by its clients, and concurrent typing would interleave.
	tests := []struct {
		name  string
		vm    string
		proto Protocol
	}{
		{name: "rfb on master", vm: "web-1", proto: RFB},
		{name: "rfb on member", vm: "web-2", proto: RFB},
		{name: "hvm rfb on member", vm: "db-1", proto: RFB},
		{name: "vt100 on master", vm: "web-1", proto: VT100},
		{name: "vt100 on member", vm: "pv-member", proto: VT100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn := dial(t, c, findVM(t, c, tt.vm), tt.proto)
			if tt.proto == RFB {
				// The simulator sends the banner in the TLS record of
				// the 200 header (as xapi may); then the client's
				// buffered reader holds it.
				if cc, ok := conn.(*consoleConn); !ok {
					t.Fatalf("conn is %T", conn)
				} else if cc.r == nil {
					t.Log("the banner came after the header: the buffered path is not exercised this time")
				}
			}
			checkConsole(t, conn, tt.proto)
			if cw, ok := conn.(interface{ CloseWrite() error }); !ok {
				t.Errorf("%T has no CloseWrite", conn)
			} else if err := cw.CloseWrite(); err != nil {
				t.Errorf("CloseWrite: %v", err)
			}
		})
	}
}

// TestDialConsoleEmptyLocationHost: a location "https:///console?ref=..."
// is served by the VM's resident host, found with host.get_address.
func TestDialConsoleEmptyLocationHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  xapitest.Options
		vm    string
		proto Protocol
	}{
		{name: "rfb on member", vm: "web-2", proto: RFB},
		{name: "vt100 on master", vm: "web-1", proto: VT100},
		{name: "IPv6 rfb on member", opts: xapitest.Options{IPv6: true}, vm: "web-2", proto: RFB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, tt.opts)
			must(t, p.SetEmptyLocationHost(tt.vm, true))
			c := newClient(t, p)
			vm := findVM(t, c, tt.vm)
			con, err := c.Console(t.Context(), vm, tt.proto)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(con.Location, "https:///console?ref=") {
				t.Fatalf("location %q has a host", con.Location)
			}
			checkConsole(t, dial(t, c, vm, tt.proto), tt.proto)
			if p.CallCount("host.get_address") == 0 {
				t.Error("host.get_address was not called")
			}
		})
	}
}

// expireAfterNext is a transport that makes the pool's sessions expire
// right after the next XML-RPC reply, once armed, or after every reply
// when always is set.
type expireAfterNext struct {
	base   http.RoundTripper
	pool   *xapitest.Pool
	armed  atomic.Bool
	always atomic.Bool
}

func (e *expireAfterNext) RoundTrip(r *http.Request) (*http.Response, error) {
	login := false
	if body, err := r.GetBody(); err == nil {
		b, _ := io.ReadAll(body)
		login = bytes.Contains(b, []byte("<methodName>session.login_with_password</methodName>"))
	}
	resp, err := e.base.RoundTrip(r)
	// always: each session dies as soon as it has been used once, after
	// the login's own check of the pool (checkPool).
	if e.armed.CompareAndSwap(true, false) || e.always.Load() && !login {
		e.pool.ExpireSessions()
	}
	return resp, err
}

func (e *expireAfterNext) CloseIdleConnections() {
	if c, ok := e.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func TestDialConsoleSessionExpired(t *testing.T) {
	t.Parallel()

	t.Run("CONNECT gets 401", func(t *testing.T) {
		t.Parallel()
		p := newPool(t, xapitest.Options{})
		c := newClient(t, p)
		vm := findVM(t, c, "web-2")
		con, err := c.Console(t.Context(), vm, RFB)
		if err != nil {
			t.Fatal(err)
		}
		session, _, err := c.sessionRef(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		p.ExpireSessions()
		conn, err := c.dialLocation(t.Context(), vm, con, session)
		if err == nil {
			conn.Close()
		}
		if !errors.Is(err, errUnauthorised) {
			t.Fatalf("dialLocation with an expired session: %v, want errUnauthorised", err)
		}
	})

	t.Run("expired before DialConsole", func(t *testing.T) {
		t.Parallel()
		p := newPool(t, xapitest.Options{})
		c := newClient(t, p)
		vm := findVM(t, c, "web-2")
		p.ExpireSessions()
		checkConsole(t, dial(t, c, vm, RFB), RFB)
		if got := p.Logins(); got != 2 {
			t.Errorf("Logins() = %d, want 2", got)
		}
	})

	// The session expires between console.get_record and CONNECT: the
	// CONNECT gets 401, and DialConsole logs in again and retries.
	t.Run("expired between lookup and CONNECT", func(t *testing.T) {
		t.Parallel()
		p := newPool(t, xapitest.Options{})
		c := newClient(t, p)
		tr := &expireAfterNext{base: c.http.Transport, pool: p}
		c.http.Transport = tr
		vm := findVM(t, c, "web-2")
		records := p.CallCount("console.get_record")
		tr.armed.Store(true)
		checkConsole(t, dial(t, c, vm, RFB), RFB)
		if tr.armed.Load() {
			t.Fatal("the transport never expired the sessions")
		}
		if got := p.CallCount("console.get_record") - records; got != 1 {
			t.Errorf("%d console.get_record calls, want 1 (no XML-RPC saw the expiry)", got)
		}
		if got := p.Logins(); got != 2 {
			t.Errorf("Logins() = %d, want 2", got)
		}
	})
}

// TestDialConsoleUnauthorisedTwice: when the CONNECT is refused with 401
// even after a new login, the caller should see the refusal as a
// *ConnectError, like every other status.
func TestDialConsoleUnauthorisedTwice(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p)
	tr := &expireAfterNext{base: c.http.Transport, pool: p}
	c.http.Transport = tr
	vm := findVM(t, c, "web-2")
	tr.always.Store(true) // every session dies as soon as XAPI has answered
	conn, err := c.DialConsole(t.Context(), vm, RFB)
	if err == nil {
		conn.Close()
		t.Fatal("DialConsole worked with sessions that expire at once")
	}
	if got := p.Logins(); got != 2 {
		t.Errorf("Logins() = %d, want 2 (one retry after the first 401)", got)
	}
	t.Logf("DialConsole: %v", err)
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.StatusCode != 401 {
		t.Errorf("regression: a second 401 is returned as the bare errUnauthorised (%q), not as *ConnectError 401", err)
	}
}

func TestConsoleLimit(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	p.SetConsoleLimit(true)
	c := newClient(t, p)
	vm := findVM(t, c, "web-2")

	first, err := c.DialConsole(t.Context(), vm, RFB)
	if err != nil {
		t.Fatal(err)
	}
	expectBanner(t, first)

	for _, proto := range []Protocol{RFB, VT100} {
		conn, err := c.DialConsole(t.Context(), vm, proto)
		if err == nil {
			conn.Close()
		}
		var ce *ConnectError
		if !errors.As(err, &ce) || ce.StatusCode != 503 {
			t.Fatalf("second %s console: %v, want *ConnectError 503", proto, err)
		}
		if !strings.Contains(ce.Status, "Connection Limit Exceeded") {
			t.Errorf("Status = %q", ce.Status)
		}
	}

	// Once the first console is closed, the VM's console is free again.
	first.Close()
	waitConsolesClosed(t, p)
	checkConsole(t, dial(t, c, vm, VT100), VT100)
}

// waitConsolesClosed waits until the pool has seen every console
// connection close: it learns of a close the client made only when its
// relay reads the end.
func waitConsolesClosed(t *testing.T, p *xapitest.Pool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); p.ActiveConsoles() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d consoles still open", p.ActiveConsoles())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStaleVM: a VM value fetched before its VM was rebooted, migrated or
// shut down.
func TestStaleVM(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(t *testing.T, p *xapitest.Pool)
		refetch bool  // look the VM up again after the change
		wantErr error // nil: the console opens
		skip    string
	}{
		{name: "powered off", wantErr: ErrNotRunning,
			change: func(t *testing.T, p *xapitest.Pool) { must(t, p.PowerOff("web-1")) }},
		{name: "rebooted, looked up again", refetch: true,
			change: func(t *testing.T, p *xapitest.Pool) {
				must(t, p.PowerOff("web-1"))
				_, err := p.PowerOn("web-1", 1)
				must(t, err)
			}},
		{name: "rebooted",
			skip: "regression: Console() reads only the console refs of the VM value; after a reboot they are gone (HANDLE_INVALID) and it returns ErrNoConsole",
			change: func(t *testing.T, p *xapitest.Pool) {
				must(t, p.PowerOff("web-1"))
				_, err := p.PowerOn("web-1", 0)
				must(t, err)
			}},
		{name: "migrated",
			skip: "regression: Console() reads only the console refs of the VM value; after a migration they are gone (HANDLE_INVALID) and it returns ErrNoConsole",
			change: func(t *testing.T, p *xapitest.Pool) {
				_, err := p.PowerOn("web-1", 1)
				must(t, err)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, xapitest.Options{})
			c := newClient(t, p)
			vm := findVM(t, c, "web-1")
			checkConsole(t, dial(t, c, vm, RFB), RFB)
			tt.change(t, p)
			if tt.refetch {
				vm = findVM(t, c, "web-1")
			}
			conn, err := c.DialConsole(t.Context(), vm, RFB)
			if tt.wantErr != nil {
				if err == nil {
					conn.Close()
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DialConsole: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if tt.skip != "" && errors.Is(err, ErrNoConsole) {
				t.Errorf("%s: %v", tt.skip, err)
			}
			if err != nil {
				t.Fatalf("DialConsole: %v", err)
			}
			t.Cleanup(func() { conn.Close() })
			checkConsole(t, conn, RFB)
		})
	}
}

// writeCAFile writes PEM certificates to a file in a temporary directory.
func writeCAFile(t *testing.T, pemData []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func TestTrustAgainstPool(t *testing.T) {
	t.Parallel()
	// A certificate that is no host's.
	other := httptest.NewUnstartedServer(http.NotFoundHandler())
	other.StartTLS()
	otherCert := other.Certificate()
	other.Close()
	wrongPin := Fingerprint(otherCert.Raw)

	tests := []struct {
		name  string
		trust func(t *testing.T, p *xapitest.Pool) Trust
		// loginErr checks the error of Login; nil: Login must work.
		loginErr func(t *testing.T, p *xapitest.Pool, err error)
		// memberErr checks the error of a console on a member; nil: it
		// must open.
		memberErr func(t *testing.T, p *xapitest.Pool, err error)
	}{
		{name: "every host pinned", trust: func(t *testing.T, p *xapitest.Pool) Trust { return Trust{Fingerprints: p.Fingerprints()} }},
		{name: "pins in openssl format", trust: func(t *testing.T, p *xapitest.Pool) Trust {
			var fps []string
			for _, f := range p.Fingerprints() {
				fps = append(fps, "sha256 Fingerprint="+strings.ToLower(f))
			}
			return Trust{Fingerprints: fps}
		}},
		{name: "wrong pin only",
			trust:    func(t *testing.T, p *xapitest.Pool) Trust { return Trust{Fingerprints: []string{wrongPin}} },
			loginErr: wantFingerprintError(0)},
		{name: "master pinned only",
			trust:     func(t *testing.T, p *xapitest.Pool) Trust { return Trust{Fingerprints: p.Fingerprints()[:1]} },
			memberErr: wantFingerprintError(1)},
		{name: "CA file", trust: func(t *testing.T, p *xapitest.Pool) Trust {
			return Trust{CAFile: writeCAFile(t, p.CertsPEM())}
		}},
		{name: "CA file of another CA",
			trust: func(t *testing.T, p *xapitest.Pool) Trust { return Trust{CAFile: writeCAFile(t, certPEM(otherCert))} },
			loginErr: func(t *testing.T, p *xapitest.Pool, err error) {
				var ve *tls.CertificateVerificationError
				if !errors.As(err, &ve) {
					t.Fatalf("err = %v, want a certificate verification error", err)
				}
			}},
		{name: "insecure", trust: func(t *testing.T, p *xapitest.Pool) Trust { return Trust{InsecureSkipVerify: true} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, xapitest.Options{})
			c := newClient(t, p, withTrust(t, tt.trust(t, p)))
			err := c.Login(t.Context())
			if tt.loginErr != nil {
				tt.loginErr(t, p, err)
				if p.Logins() != 0 {
					t.Errorf("Logins() = %d: the password went to an untrusted host", p.Logins())
				}
				return
			}
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			checkConsole(t, dial(t, c, findVM(t, c, "web-1"), RFB), RFB)
			conn, err := c.DialConsole(t.Context(), findVM(t, c, "web-2"), RFB)
			if err == nil {
				t.Cleanup(func() { conn.Close() })
			}
			if tt.memberErr != nil {
				tt.memberErr(t, p, err)
				return
			}
			if err != nil {
				t.Fatalf("console on a member: %v", err)
			}
			checkConsole(t, conn, RFB)
		})
	}
}

// wantFingerprintError checks that err is a *FingerprintError for host i.
func wantFingerprintError(i int) func(t *testing.T, p *xapitest.Pool, err error) {
	return func(t *testing.T, p *xapitest.Pool, err error) {
		t.Helper()
		var fe *FingerprintError
		if !errors.As(err, &fe) {
			t.Fatalf("err = %v, want *FingerprintError", err)
		}
		if want := p.Host(i).Fingerprint(); fe.Fingerprint != want {
			t.Errorf("FingerprintError names %s, want host %d's %s", fe.Fingerprint, i, want)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name string
		warm bool
		call func(ctx context.Context, c *Client, vm VM) error
	}{
		{name: "cold Login", call: func(ctx context.Context, c *Client, _ VM) error { return c.Login(ctx) }},
		{name: "cold FindVMs", call: func(ctx context.Context, c *Client, _ VM) error {
			_, err := c.FindVMs(ctx, "web-1")
			return err
		}},
		{name: "warm FindVMs", warm: true, call: func(ctx context.Context, c *Client, _ VM) error {
			_, err := c.FindVMs(ctx, "web-1")
			return err
		}},
		{name: "warm VMs", warm: true, call: func(ctx context.Context, c *Client, _ VM) error {
			_, err := c.VMs(ctx)
			return err
		}},
		{name: "warm Console", warm: true, call: func(ctx context.Context, c *Client, vm VM) error {
			_, err := c.Console(ctx, vm, RFB)
			return err
		}},
		{name: "warm DialConsole", warm: true, call: func(ctx context.Context, c *Client, vm VM) error {
			conn, err := c.DialConsole(ctx, vm, RFB)
			if err == nil {
				conn.Close()
			}
			return err
		}},
		{name: "warm dialLocation", warm: true, call: func(ctx context.Context, c *Client, vm VM) error {
			con, err := c.Console(context.Background(), vm, RFB)
			if err != nil {
				return err
			}
			session, _, err := c.sessionRef(context.Background())
			if err != nil {
				return err
			}
			conn, err := c.dialLocation(ctx, vm, con, session)
			if err == nil {
				conn.Close()
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, p)
			var vm VM
			if tt.warm {
				vm = findVM(t, c, "web-2")
			}
			start := time.Now()
			err := tt.call(cancelled, c, vm)
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("returned after %v", elapsed)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
	}
}

// TestTimeout: Config.Timeout bounds a call to a host that never answers
// and a console dial to a host that never speaks TLS.
func TestTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond

	t.Run("XML-RPC", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The request's context ends when the client goes away
			// only once the body has been read.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}))
		t.Cleanup(srv.Close)
		c := newFakeClient(t, srv, func(c *Config) { c.Timeout = timeout })
		start := time.Now()
		err := c.Login(t.Context())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
		if elapsed := time.Since(start); elapsed > 10*timeout {
			t.Errorf("returned after %v with a timeout of %v", elapsed, timeout)
		}
	})

	// A response that net/http hands over after the deadline (one that
	// raced the connection's close) is the timeout, not a bad reply. Seen
	// in CI: the server above answered 200 with no body as it read the
	// client's close_notify.
	t.Run("XML-RPC reply after the deadline", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		c := newFakeClient(t, srv, func(c *Config) { c.Timeout = timeout })
		c.http.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Body: http.NoBody, Request: r}, nil
		})
		if err := c.Login(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("console", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var held sync.WaitGroup
		t.Cleanup(func() {
			ln.Close()
			held.Wait()
		})
		held.Go(func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				held.Go(func() {
					defer conn.Close()
					_, _ = io.Copy(io.Discard, conn) // says nothing
				})
			}
		})
		p := newPool(t, xapitest.Options{})
		c := newClient(t, p, func(c *Config) { c.Timeout = timeout })
		vm := findVM(t, c, "web-1")
		con := Console{Protocol: RFB, Location: "https://" + ln.Addr().String() + "/console?uuid=" + vm.UUID}
		session, _, err := c.sessionRef(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conn, err := c.dialLocation(t.Context(), vm, con, session)
		if err == nil {
			conn.Close()
		}
		// The TLS conn's deadline is the context's: whichever fires
		// first, the error wraps context.DeadlineExceeded.
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want a deadline error", err)
		}
		if elapsed := time.Since(start); elapsed > 10*timeout {
			t.Errorf("returned after %v with a timeout of %v", elapsed, timeout)
		}
	})
}

// fakeXAPI is a tiny XAPI master for replies the simulator never gives: it
// answers login and VM.get_by_name_label correctly, or misbehaves as mode
// says.
type fakeXAPI struct {
	mode  atomic.Int32
	calls atomic.Int32
}

const (
	fakeOK           = iota
	fakeHTML500      // xapi's 500 page
	fakeNotXML       // 200 with a body that is no XML-RPC reply
	fakeReset        // the connection is closed without a reply
	fakeTruncated    // 200, then the connection ends before the body does
	fakeSlaveNoAddr  // HOST_IS_SLAVE without a master address
	fakeSlaveBadAddr // HOST_IS_SLAVE with a master address that is none
)

var methodNameRE = regexp.MustCompile(`<methodName>([^<]*)</methodName>`)

func (f *fakeXAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	switch f.mode.Load() {
	case fakeHTML500:
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again.</body></html>")
		return
	case fakeNotXML:
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, "<html><body>this is not XML-RPC</body></html>")
		return
	case fakeReset:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case fakeTruncated:
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err == nil {
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<?xml version=\"1.0\"?><methodResponse><params>")
			bw.Flush()
			conn.Close()
		}
		return
	}
	if mode := f.mode.Load(); mode == fakeSlaveNoAddr || mode == fakeSlaveBadAddr {
		addr := "<value></value>"
		if mode == fakeSlaveBadAddr {
			addr = "<value>192.0.2.1/pool</value>"
		}
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, `<?xml version="1.0"?><methodResponse><params><param><value><struct>`+
			`<member><name>Status</name><value>Failure</value></member>`+
			`<member><name>ErrorDescription</name><value><array><data><value>HOST_IS_SLAVE</value>`+addr+`</data></array></value></member>`+
			`</struct></value></param></params></methodResponse>`)
		return
	}
	m := methodNameRE.FindSubmatch(body)
	value := ""
	switch {
	case m == nil:
		http.Error(w, "malformed call", http.StatusInternalServerError)
		return
	case string(m[1]) == "session.login_with_password":
		value = "<value>OpaqueRef:fake-session</value>"
	case string(m[1]) == "VM.get_by_name_label":
		value = "<value><array><data></data></array></value>"
	case string(m[1]) == "pool.get_all_records":
		value = "<value><struct><member><name>OpaqueRef:fake-pool</name><value><struct>" +
			"<member><name>uuid</name><value>0d5e5c6a-2a27-4d0f-9a4b-5f5b0b0c1f3e</value></member>" +
			"</struct></value></member></struct></value>"
	case string(m[1]) == "session.logout":
		value = "<value></value>"
	default:
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<?xml version="1.0"?><methodResponse><params><param><value><struct>`+
			`<member><name>Status</name><value>Failure</value></member>`+
			`<member><name>ErrorDescription</name><value><array><data><value>MESSAGE_METHOD_UNKNOWN</value><value>%s</value></data></array></value></member>`+
			`</struct></value></param></params></methodResponse>`, m[1])
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	io.WriteString(w, `<?xml version="1.0"?><methodResponse><params><param><value><struct>`+
		`<member><name>Status</name><value>Success</value></member>`+
		`<member><name>Value</name>`+value+`</member>`+
		`</struct></value></param></params></methodResponse>`)
}

// newFakeClient returns a client of an httptest TLS server, pinning its
// certificate.
func newFakeClient(t *testing.T, srv *httptest.Server, opts ...func(*Config)) *Client {
	t.Helper()
	tlsConf, err := Trust{Fingerprints: []string{Fingerprint(srv.Certificate().Raw)}}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	// No cache: each call must reach the fake server.
	cfg := Config{Name: "fake", URL: srv.URL, Username: "root", Password: "pw", TLS: tlsConf, Timeout: 5 * time.Second, CacheTTL: -1}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// TestBadReplies: a reply that is not XAPI's, or a HOST_IS_SLAVE that names
// no master, gives an error, and the client works again once the server
// behaves: no error poisons it (as one does kolo/xmlrpc's net/rpc client:
// "connection is shut down"), and none moves its master.
func TestBadReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mode       int32
		afterLogin bool   // misbehave only after a good login
		wantText   string // in the error
		wantCode   string // the error's XAPI code; none if empty
	}{
		{name: "HTML 500 at login", mode: fakeHTML500, wantText: "HTTP 500"},
		{name: "HTML 500 after login", mode: fakeHTML500, afterLogin: true, wantText: "HTTP 500"},
		{name: "not XML-RPC at login", mode: fakeNotXML, wantText: "malformed XML-RPC reply"},
		{name: "not XML-RPC after login", mode: fakeNotXML, afterLogin: true, wantText: "malformed XML-RPC reply"},
		{name: "reset at login", mode: fakeReset, wantText: "EOF"},
		{name: "reset after login", mode: fakeReset, afterLogin: true, wantText: "EOF"},
		{name: "truncated after login", mode: fakeTruncated, afterLogin: true, wantText: "EOF"},
		{name: "HOST_IS_SLAVE without an address at login", mode: fakeSlaveNoAddr, wantText: "HOST_IS_SLAVE", wantCode: CodeHostIsSlave},
		{name: "HOST_IS_SLAVE without an address after login", mode: fakeSlaveNoAddr, afterLogin: true, wantText: "HOST_IS_SLAVE", wantCode: CodeHostIsSlave},
		{name: "HOST_IS_SLAVE with a path at login", mode: fakeSlaveBadAddr, wantText: "HOST_IS_SLAVE", wantCode: CodeHostIsSlave},
		{name: "HOST_IS_SLAVE with a path after login", mode: fakeSlaveBadAddr, afterLogin: true, wantText: "HOST_IS_SLAVE", wantCode: CodeHostIsSlave},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeXAPI{}
			srv := httptest.NewTLSServer(fake)
			t.Cleanup(srv.Close)
			c := newFakeClient(t, srv)
			ctx := t.Context()
			if tt.afterLogin {
				if _, err := c.FindVMs(ctx, "web-1"); err != nil {
					t.Fatalf("with a good server: %v", err)
				}
			}
			master := c.Master()
			fake.mode.Store(tt.mode)
			for i := range 2 {
				vms, err := c.FindVMs(ctx, "web-1")
				if err == nil {
					t.Fatalf("call %d: no error, found %v", i, vms)
				}
				if !strings.Contains(err.Error(), tt.wantText) || !strings.HasPrefix(err.Error(), "xapi: ") {
					t.Errorf("call %d: err = %q, want it to start with \"xapi: \" and mention %q", i, err, tt.wantText)
				}
				code := ""
				if xe := (*Error)(nil); errors.As(err, &xe) {
					code = xe.Code
				}
				if code != tt.wantCode {
					t.Errorf("call %d: %v has XAPI code %q, want %q", i, err, code, tt.wantCode)
				}
			}
			if got := c.Master(); got != master {
				t.Errorf("master moved to %q", got)
			}
			fake.mode.Store(fakeOK)
			for i := range 2 {
				if vms, err := c.FindVMs(ctx, "web-1"); err != nil || len(vms) != 0 {
					t.Fatalf("call %d once the server behaves: %v, %v", i, vms, err)
				}
			}
		})
	}
}

// TestNoRedirects: xapi never redirects, and a host that does (or a proxy
// in front of it) gets no second copy of the call: the login's password
// and the session would go wherever Location says, over plain HTTP too.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			var reached atomic.Int32
			elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached.Add(1)
				http.Error(w, "no", http.StatusInternalServerError)
			}))
			t.Cleanup(elsewhere.Close)
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.URL+"/", code)
			}))
			t.Cleanup(srv.Close)
			err := newFakeClient(t, srv).Login(t.Context())
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", code)) || !strings.Contains(err.Error(), elsewhere.URL) {
				t.Errorf("Login: %v, want an HTTP %d error naming where it pointed", err, code)
			}
			if n := reached.Load(); n != 0 {
				t.Errorf("the redirect was followed: %d requests reached %s", n, elsewhere.URL)
			}
		})
	}
}

// TestHostPort covers console location hosts as xapi may write them.
func TestHostPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, location, want string
		skip                 string
	}{
		{name: "IPv4", location: "https://192.0.2.10/console?uuid=x", want: "192.0.2.10:443"},
		{name: "IPv4 with port", location: "https://192.0.2.10:8443/console?uuid=x", want: "192.0.2.10:8443"},
		{name: "DNS name", location: "https://xs1.example.com/console?uuid=x", want: "xs1.example.com:443"},
		{name: "IPv6 with port", location: "https://[2001:db8::10]:8443/console?uuid=x", want: "[2001:db8::10]:8443"},
		// xapi brackets IPv6 literals in URLs (maybe_wrap_IPv6_literal).
		{name: "IPv6", location: "https://[2001:db8::10]/console?uuid=x", want: "[2001:db8::10]:443",
			skip: "regression: hostPort(\"[2001:db8::10]\", \"443\") gives \"[[2001:db8::10]]:443\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.Parse(tt.location)
			if err != nil {
				t.Fatal(err)
			}
			// As dialLocation computes the address to dial.
			got := hostPort(u.Host, "443")
			if got != tt.want && tt.skip != "" {
				t.Error(tt.skip)
			}
			if got != tt.want {
				t.Errorf("hostPort(%q, 443) = %q, want %q", u.Host, got, tt.want)
			}
		})
	}
}

// TestTLS12Memo: once a host has chosen TLS 1.2, as xapi does, the next
// ClientHello to it offers only 1.2 (no TLS 1.3 key share to compute); a
// host that speaks 1.3 keeps being offered it.
func TestTLS12Memo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		serverMax  uint16
		wantSecond uint16 // the highest version the second hello offers
	}{
		{"host speaks 1.2", tls.VersionTLS12, tls.VersionTLS12},
		{"host speaks 1.3", tls.VersionTLS13, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var offered []uint16
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.TLS = &tls.Config{MaxVersion: tc.serverMax, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				mu.Lock()
				defer mu.Unlock()
				offered = append(offered, slices.Max(h.SupportedVersions))
				return nil, nil
			}}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			c := newFakeClient(t, srv)
			for range 2 {
				conn, err := c.dialTLS(t.Context(), srv.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if want := []uint16{tls.VersionTLS13, tc.wantSecond}; !slices.Equal(offered, want) {
				t.Errorf("highest versions offered: %#x, want %#x", offered, want)
			}
		})
	}
}

// TestMasterFailover: host 0, the master, dies and HA makes host 1 master.
// A dead master names no new one, so the client looks for it again: from
// its configured host when that is a member, else from the hosts it has
// met (here host 1, where it opened a console). Calls go on working after
// one login.
func TestMasterFailover(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		home int // the configured host
	}{
		{"configured host is a member", 1},
		{"configured host is the dead master", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, xapitest.Options{})
			c := newClient(t, p, withURL(p.Host(tt.home).URL()))
			var down atomic.Bool
			dead := p.Host(0).Address()
			c.dialer.Control = func(_, address string, _ syscall.RawConn) error {
				if down.Load() && address == dead {
					return errors.New("host 0 is down")
				}
				return nil
			}
			// Logs in at host 0 (via HOST_IS_SLAVE from a member) and
			// opens a console on host 1, where web-2 runs.
			dial(t, c, findVM(t, c, "web-2"), RFB).Close()
			if got, want := c.Master(), p.Host(0).URL(); got != want {
				t.Fatalf("Master() = %s, want host 0 (%s)", got, want)
			}

			down.Store(true)
			must(t, p.MoveMaster(1))
			p.ExpireSessions()            // the new master does not know the old one's sessions
			c.http.CloseIdleConnections() // nor do the dead host's connections survive it
			logins := p.Logins()
			findVM(t, c, "db-1")
			if got, want := c.Master(), p.Host(1).URL(); got != want {
				t.Errorf("Master() = %s after the failover, want host 1 (%s)", got, want)
			}
			if got := p.Logins() - logins; got != 1 {
				t.Errorf("%d logins after the failover, want 1", got)
			}
		})
	}
}

// TestCloseDuringLogin: a login under way when Close runs logs its session
// out when it ends, so that the pool keeps none; its callers get an error.
func TestCloseDuringLogin(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p)
	dialling := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	c.dialer.Control = func(string, string, syscall.RawConn) error {
		once.Do(func() { close(dialling); <-release })
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- c.Login(context.Background()) }()
	<-dialling
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err == nil {
		t.Error("the login that Close overtook succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Sessions(); n != 0 || c.hasSession() {
		t.Errorf("after Close: the pool has %d sessions, the client has one: %v", n, c.hasSession())
	}
}

func (c *Client) hasSession() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session != ""
}

// TestErrorHidesSessionRef: SESSION_INVALID's parameter is the session
// reference; an error's text, which logs show, leaves it out.
func TestErrorHidesSessionRef(t *testing.T) {
	err := &Error{Code: CodeSessionInvalid, Params: []string{"OpaqueRef:0c2ae800-5a2d-4e0b-9d0f-8f3f0c6e1a11"}}
	if msg := err.Error(); strings.Contains(msg, "OpaqueRef") || msg != "xapi: SESSION_INVALID" {
		t.Errorf("Error() = %q", msg)
	}
	other := &Error{Code: CodeHandleInvalid, Params: []string{"VM", "OpaqueRef:x"}}
	if msg := other.Error(); msg != "xapi: HANDLE_INVALID: VM, OpaqueRef:x" {
		t.Errorf("Error() = %q: other codes keep their parameters", msg)
	}
}

// TestLoginBackoff: after the pool refuses the credentials, calls get that
// error without a new attempt for 30 s, then 60 s after the next refusal,
// and so on up to 5 minutes: a wrong password must not be tried by every
// console open (a directory behind xapi may lock the account). A login
// that works ends the wait.
func TestLoginBackoff(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{AuthFailureDelay: time.Millisecond})
	c := newClient(t, p, func(c *Config) { c.Password = "wrong" })
	var mu sync.Mutex
	now := time.Now()
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	attempts := func() int { return p.CallCount("session.login_with_password") }
	try := func(wantAttempts int) {
		t.Helper()
		if err := c.Login(t.Context()); !IsCode(err, CodeSessionAuthenticationFailed) {
			t.Fatalf("Login: %v, want %s", err, CodeSessionAuthenticationFailed)
		}
		if got := attempts(); got != wantAttempts {
			t.Fatalf("%d login attempts, want %d", got, wantAttempts)
		}
	}
	try(1)
	try(1) // refused again at once, from memory
	advance(29 * time.Second)
	try(1)
	advance(time.Second)
	try(2) // 30 s on: tried again, refused again
	advance(59 * time.Second)
	try(2)
	advance(time.Second)
	try(3)
	for range 5 { // 120 s, 240 s, then 300 s at most
		advance(maxAuthBackoff)
		try(attempts() + 1)
	}
	advance(maxAuthBackoff - time.Second)
	try(attempts())

	c.cfg.Password = p.Password() // say the pool's password was changed back
	advance(time.Second)
	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("Login with the right password: %v", err)
	}
}

// TestFindVMNamedLikeAUUID: a name label in the form of a UUID that no VM
// has finds the VM of that name, as list shows it; a VM's real UUID still
// finds that VM.
func TestFindVMNamedLikeAUUID(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	const name = "0badc0de-0000-4000-8000-000000000001"
	named := p.AddVM(xapitest.VMSpec{Name: name})
	c := newClient(t, p)
	if vm := findVM(t, c, name); vm.UUID != named.UUID {
		t.Errorf("FindVMs(%q) found %s (%s), want the VM of that name", name, vm.Name, vm.UUID)
	}
	if vm := findVM(t, c, strings.ToUpper(named.UUID)); vm.Name != name {
		t.Errorf("FindVMs(its UUID) found %q", vm.Name)
	}
}

// slowOnce delays the first request whose body holds method until its
// context ends: a live master that is slow to answer one call.
type slowOnce struct {
	next   http.RoundTripper
	method string
	done   atomic.Bool
}

func (s *slowOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(body, []byte(s.method)) && s.done.CompareAndSwap(false, true) {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return s.next.RoundTrip(r)
}

// TestSlowCallKeepsSession: a call that outlasts cfg.Timeout on a live
// master fails, and that is all: the master is not taken for dead, and its
// session is neither dropped (left open on the pool) nor replaced.
func TestSlowCallKeepsSession(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p, func(cfg *Config) { cfg.Timeout = 300 * time.Millisecond })
	must(t, c.Login(t.Context()))
	c.http.Transport = &slowOnce{next: c.http.Transport, method: "VM.get_all_records"}
	logins := p.Logins()
	if _, err := c.VMs(t.Context()); err == nil {
		t.Fatal("the slow call succeeded")
	}
	if n := p.Logins() - logins; n != 0 {
		t.Errorf("%d new login(s) after one slow reply from a live master", n)
	}
	if n := p.Sessions(); n != 1 {
		t.Errorf("the pool holds %d sessions of the client, want 1 (one was dropped without a logout)", n)
	}
}

// TestFailoverIntoAnotherPool: a host the client met in its pool (as a
// console host) has since joined another pool. When the pool's master and
// the configured host stop answering, login asks that host, which names
// the other pool's master. The client must not log in there and serve the
// other pool's VMs under this pool's name and access rules.
func TestFailoverIntoAnotherPool(t *testing.T) {
	t.Parallel()
	a := newPool(t, xapitest.Options{Members: -1})
	b, namesB := otherPool(t)
	b.AddVM(xapitest.VMSpec{Name: "other-pool-vm"})
	// With trust on first use, each new host is taken at its word (and
	// xapitest's hosts share certificates across pools anyway): only the
	// pool check stands in the way.
	c := newTOFUClient(t, a, filepath.Join(t.TempDir(), "known_hosts"))
	if _, err := c.FindVMs(t.Context(), "web-1"); err != nil {
		t.Fatal(err)
	}
	c.noteHost(namesB) // met as a console host
	a.Close()
	c.http.CloseIdleConnections() // the next call dials, and finds a gone
	vms, err := c.FindVMs(t.Context(), "other-pool-vm")
	if err == nil || !strings.Contains(err.Error(), "master of another pool") {
		t.Errorf("FindVMs: %v, %v; want an error about another pool", vms, err)
	}
	if n := b.Sessions(); n != 0 {
		t.Errorf("the other pool holds %d sessions of the client, want 0 (logged out)", n)
	}
}

// otherPool starts another pool, with the same credentials, and a host
// that has joined it: it answers every call with HOST_IS_SLAVE naming that
// pool's master (namesB, its HOST:PORT).
func otherPool(t *testing.T) (b *xapitest.Pool, namesB string) {
	t.Helper()
	b = newPool(t, xapitest.Options{Members: -1})
	ex := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<?xml version="1.0"?><methodResponse><params><param><value><struct>`+
			`<member><name>Status</name><value>Failure</value></member>`+
			`<member><name>ErrorDescription</name><value><array><data><value>HOST_IS_SLAVE</value><value>%s</value></data></array></value></member>`+
			`</struct></value></param></params></methodResponse>`, b.Master().Address())
	}))
	t.Cleanup(ex.Close)
	return b, strings.TrimPrefix(ex.URL, "https://")
}

// TestFailoverPastAnotherPool: a login that meets another pool's master
// looks on, from the configured host and the other hosts it knows, for
// its own pool's master, and the client serves its pool again. Once
// through a remembered host that has joined another pool during an HA
// failover, once with the master itself moved there (a call's
// HOST_IS_SLAVE naming another pool's master).
func TestFailoverPastAnotherPool(t *testing.T) {
	t.Parallel()
	t.Run("HA failover", func(t *testing.T) {
		t.Parallel()
		a := newPool(t, xapitest.Options{})
		b, namesB := otherPool(t)
		c := newTOFUClient(t, a, filepath.Join(t.TempDir(), "known_hosts"))
		var down atomic.Bool
		dead := a.Host(0).Address()
		c.dialer.Control = func(_, address string, _ syscall.RawConn) error {
			if down.Load() && address == dead {
				return errors.New("host 0 is down")
			}
			return nil
		}
		findVM(t, c, "web-1")
		c.noteHost(namesB)                             // asked first
		dial(t, c, findVM(t, c, "web-2"), RFB).Close() // host 1, as a console host
		down.Store(true)
		must(t, a.MoveMaster(1))
		a.ExpireSessions()
		c.http.CloseIdleConnections()
		findVM(t, c, "db-1")
		if got, want := c.Master(), a.Host(1).URL(); got != want {
			t.Errorf("Master() = %s after the failover, want host 1 (%s)", got, want)
		}
		if n := b.Sessions(); n != 0 {
			t.Errorf("the other pool holds %d sessions of the client, want 0", n)
		}
	})
	t.Run("master moved to another pool", func(t *testing.T) {
		t.Parallel()
		a := newPool(t, xapitest.Options{Members: -1})
		b, _ := otherPool(t)
		c := newTOFUClient(t, a, filepath.Join(t.TempDir(), "known_hosts"))
		findVM(t, c, "web-1")
		home := c.Master()
		c.moveMaster(home, b.Master().URL())
		c.dropSession(c.session)
		findVM(t, c, "db-1") // not cached: it calls, and logs in
		if got := c.Master(); got != home {
			t.Errorf("Master() = %s, want the configured host %s", got, home)
		}
		if n := b.Sessions(); n != 0 {
			t.Errorf("the other pool holds %d sessions of the client, want 0", n)
		}
	})
}

// TestDeadMasterAskedOnce: xapi names a master by bare address
// (HOST_IS_SLAVE), a console location's host comes with ":443": the client
// knows them for one host, and a login asks a dead one once, not twice
// (each up to cfg.Timeout for a host that drops packets).
func TestDeadMasterAskedOnce(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p) // home: host 0
	must(t, p.MoveMaster(1))
	const dead = "192.0.2.7:443"
	var mu sync.Mutex
	dials := map[string]int{}
	home := p.Host(0).Address()
	c.dialer.Control = func(_, address string, _ syscall.RawConn) error {
		mu.Lock()
		dials[address]++
		mu.Unlock()
		if address == dead || address == home {
			return errors.New("down")
		}
		return nil
	}
	c.mu.Lock()
	c.master = hostURL("192.0.2.7") // as HOST_IS_SLAVE named it
	c.mu.Unlock()
	c.noteHost("192.0.2.7:443")     // as dialLocation noted its console host
	c.noteHost(p.Host(1).Address()) // a live member
	if err := c.Login(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := dials[dead]; n != 1 {
		t.Errorf("one login dialled the dead master %d times (hosts %q)", n, c.hosts)
	}
}

// TestLeaveMasterKeepsOtherSession: a call with an old session fails to
// reach master M after another caller has logged in again at M. The
// master stays M, with the new session that goes with it; moving it home
// sent that session to a member, which refused it, and cost a login.
func TestLeaveMasterKeepsOtherSession(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	c := newClient(t, p) // home: host 0, a member after the move
	must(t, p.MoveMaster(1))
	must(t, c.Login(t.Context()))
	m := c.Master()
	c.leaveMaster(m, "OpaqueRef:an-older-session", errors.New("context deadline exceeded"))
	logins := p.Logins()
	findVM(t, c, "db-1")
	if n := p.Logins() - logins; n != 0 {
		t.Errorf("%d login(s) after a stale caller's timeout; master %s", n, c.Master())
	}
	if n := p.Sessions(); n != 1 {
		t.Errorf("the pool holds %d sessions of the client, want 1", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
