package xapitest_test

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

const connectOK = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"

// errorPage is the reply xapi's response_error_html writes.
func errorPage(version, status string, extra []string, body string) string {
	s := fmt.Sprintf("HTTP/%s %s\r\ncontent-length: %d\r\ncontent-type: text/html\r\nconnection: close\r\ncache-control: no-cache, no-store\r\n", version, status, len(body))
	for _, h := range extra {
		s += h + "\r\n"
	}
	return s + "\r\n" + body
}

const (
	body401 = "<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and retry.</body></html>"
	body403 = "<html><body><h1>HTTP 403 forbidden</h1>Access to the requested resource is forbidden.</body></html>"
	body500 = "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative.<h1> Additional information </h1>Console.Failure</body></html>"
	realm   = `WWW-Authenticate: Basic realm="connect_console"`
)

func TestConnectOK(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	s := login(t, p)
	web1, web2 := vms[0], vms[1]
	rfb1, _ := web1.Console("rfb")
	vt1, _ := web1.Console("vt100")
	rfb2, _ := web2.Console("rfb")
	basic := base64.StdEncoding.EncodeToString([]byte("root:xenroot"))
	tests := []struct {
		name    string
		addr    string
		request string
		banner  bool // an RFB banner follows
	}{
		{name: "uuid and session in query, HTTP/1.0", addr: p.Host(0).Address(),
			request: "CONNECT /console?uuid=" + rfb1.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n", banner: true},
		{name: "session in cookie, HTTP/1.1, no Host", addr: p.Host(0).Address(),
			request: "CONNECT /console?uuid=" + rfb1.UUID + " HTTP/1.1\r\nCookie: foo=bar; session_id=" + s + "\r\n\r\n", banner: true},
		{name: "cookie pairs separated by &", addr: p.Host(0).Address(),
			request: "CONNECT /console?ref=" + rfb1.Ref + " HTTP/1.1\r\nCookie: foo=bar&session_id=" + s + "\r\n\r\n", banner: true},
		{name: "VM uuid picks the rfb console", addr: p.Host(0).Address(),
			request: "CONNECT /console?uuid=" + web1.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n", banner: true},
		{name: "Basic credentials", addr: p.Host(0).Address(),
			request: "CONNECT /console?uuid=" + rfb1.UUID + " HTTP/1.0\r\nAuthorization: Basic " + basic + "\r\n\r\n", banner: true},
		{name: "on a member", addr: p.Host(1).Address(),
			request: "CONNECT /console?uuid=" + rfb2.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n", banner: true},
		{name: "vt100 sends nothing", addr: p.Host(0).Address(),
			request: "CONNECT /console?uuid=" + vt1.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := connect(t, p, tt.addr, tt.request)
			// The reply and the banner come in one TLS record, so one
			// Read returns both.
			buf := make([]byte, 4096)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			want := connectOK
			if tt.banner {
				want += "RFB 003.008\n"
			}
			if got := string(buf[:n]); got != want {
				t.Fatalf("first read %q, want %q", got, want)
			}
			if !tt.banner {
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if n, err := c.Read(buf); !isTimeout(err) {
					t.Errorf("vt100 sent %q, %v; want nothing", buf[:n], err)
				}
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestConnectFailures(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	rdp := p.AddVM(xapitest.VMSpec{Name: "win-1", Consoles: []string{"rfb", "rdp"}})
	broken := p.AddVM(xapitest.VMSpec{Name: "broken", NoBackend: true})
	paused := p.AddVM(xapitest.VMSpec{Name: "paused", PowerState: "Paused"})
	s := login(t, p)
	rfb1, _ := vms[0].Console("rfb")
	build, _ := vms[3].Console("rfb")
	rdpCon, _ := rdp.Console("rdp")
	brokenCon, _ := broken.Console("vt100")
	pausedCon, _ := paused.Console("rfb")
	master, member := p.Host(0).Address(), p.Host(1).Address()
	basicBad := base64.StdEncoding.EncodeToString([]byte("root:wrong"))

	tests := []struct {
		name    string
		addr    string
		request string
		want    string
	}{
		{name: "no session, HTTP/1.0", addr: master,
			request: "CONNECT /console?uuid=" + rfb1.UUID + " HTTP/1.0\r\n\r\n",
			want:    errorPage("1.0", "401 Unauthorised", []string{realm}, body401)},
		{name: "invalid session, HTTP/1.1", addr: master,
			request: "CONNECT /console?uuid=" + rfb1.UUID + "&session_id=OpaqueRef:bad HTTP/1.1\r\n\r\n",
			want:    errorPage("1.1", "401 Unauthorised", []string{realm}, body401)},
		{name: "wrong Basic credentials", addr: master,
			request: "CONNECT /console?uuid=" + rfb1.UUID + " HTTP/1.0\r\nAuthorization: Basic " + basicBad + "\r\n\r\n",
			want:    errorPage("1.0", "401 Unauthorised", []string{realm}, body401)},
		{name: "path not /console", addr: master,
			request: "CONNECT /foo?uuid=" + rfb1.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n",
			want:    errorPage("1.1", "403 Forbidden", nil, body403)},
		{name: "VM runs on another host", addr: member,
			request: "CONNECT /console?uuid=" + rfb1.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n",
			want:    errorPage("1.0", "500 Internal Error", nil, body500)},
		{name: "VM halted", addr: master,
			request: "CONNECT /console?uuid=" + build.UUID + "&session_id=" + s + " HTTP/1.1\r\n\r\n",
			want:    errorPage("1.1", "500 Internal Error", nil, body500)},
		{name: "VM paused", addr: master,
			request: "CONNECT /console?uuid=" + pausedCon.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n",
			want:    errorPage("1.0", "500 Internal Error", nil, body500)},
		{name: "unknown ref", addr: master,
			request: "CONNECT /console?ref=OpaqueRef:nope&session_id=" + s + " HTTP/1.0\r\n\r\n",
			want:    errorPage("1.0", "500 Internal Error", nil, body500)},
		{name: "neither ref nor uuid", addr: master,
			request: "CONNECT /console?session_id=" + s + " HTTP/1.0\r\n\r\n",
			want:    errorPage("1.0", "500 Internal Error", nil, body500)},
		{name: "unknown uuid", addr: master,
			request: "CONNECT /console?uuid=nope&session_id=" + s + " HTTP/1.0\r\n\r\n",
			want:    errorPage("1.0", "500 Internal Error", nil, strings.Replace(body500, "Console.Failure", "UUID_INVALID: [ console; nope ]", 1))},
		{name: "unknown authorization scheme", addr: master,
			request: "CONNECT /console?uuid=" + rfb1.UUID + " HTTP/1.0\r\nAuthorization: Bearer x\r\n\r\n",
			want:    errorPage("1.0", "500 Internal Error", nil, strings.Replace(body500, "Console.Failure", "Failure(&quot;Unknown authorization header: Bearer x&quot;)", 1))},
		{name: "header lines not ended by CRLF", addr: master,
			request: "CONNECT /console?uuid=" + rfb1.UUID + "&session_id=" + s + " HTTP/1.0\n\n",
			want:    errorPage("1.1", "500 Internal Error", nil, strings.Replace(body500, "Console.Failure", "The HTTP headers could not be parsed.", 1))},
		{name: "GET", addr: master,
			request: "GET / HTTP/1.0\r\n\r\n",
			want:    errorPage("1.1", "403 Forbidden", nil, body403)},
		{name: "unknown method", addr: master,
			request: "DELETE / HTTP/1.0\r\n\r\n",
			want:    errorPage("1.0", "501 Method not implemented", nil, "<html><body><h1>HTTP 501 Method Not Implemented</h1><p>Unknown DELETE not supported.<br /></p></body></html>")},
		{name: "rdp console has no back end", addr: master,
			request: "CONNECT /console?uuid=" + rdpCon.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n",
			want:    "HTTP/1.1 404 Not Found\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n\r\n"},
		{name: "no back end", addr: master,
			request: "CONNECT /console?uuid=" + brokenCon.UUID + "&session_id=" + s + " HTTP/1.1\r\n\r\n",
			want:    "HTTP/1.1 404 Not Found\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := readAllReply(t, p, tt.addr, tt.request); got != tt.want {
				t.Errorf("\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestConnectLimit(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	s := login(t, p)
	rfb, _ := vms[0].Console("rfb")
	vt, _ := vms[0].Console("vt100")
	req := func(uuid, version string) string {
		return "CONNECT /console?uuid=" + uuid + "&session_id=" + s + " HTTP/" + version + "\r\n\r\n"
	}

	// Without the limit, two clients may share a console.
	_, br1 := connect(t, p, p.Host(0).Address(), req(vt.UUID, "1.1"))
	c2, br2 := connect(t, p, p.Host(0).Address(), req(vt.UUID, "1.1"))
	for _, br := range []io.Reader{br1, br2} {
		if got := readN(t, br, len(connectOK)); got != connectOK {
			t.Fatalf("reply %q", got)
		}
	}
	if got := p.ActiveConsoles(); got != 2 {
		t.Errorf("ActiveConsoles() = %d, want 2", got)
	}
	c2.Close()

	p.SetConsoleLimit(true)
	waitFor(t, func() bool { return p.ActiveConsoles() == 1 })
	body := "<html><body><h1>Connection Limit Exceeded</h1><p>User 'root' is currently connected to this console. No new connections are allowed. Please check the limit_console_sessions config and try again later.</p></body></html>"
	// Another console of the same VM counts too.
	if got, want := readAllReply(t, p, p.Host(0).Address(), req(rfb.UUID, "1.0")), errorPage("1.0", "503 Connection Limit Exceeded", nil, body); got != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	// Another VM does not.
	web2, _ := vms[1].Console("rfb")
	_, br3 := connect(t, p, p.Host(1).Address(), req(web2.UUID, "1.0"))
	if got := readN(t, br3, len(connectOK)); got != connectOK {
		t.Errorf("other VM: %q", got)
	}
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

func TestVT100Broadcast(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	s := login(t, p)
	vt, _ := vms[0].Console("vt100")
	req := "CONNECT /console?uuid=" + vt.UUID + "&session_id=" + s + " HTTP/1.0\r\n\r\n"
	a, bra := connect(t, p, p.Host(0).Address(), req)
	_, brb := connect(t, p, p.Host(0).Address(), req)
	for _, br := range []io.Reader{bra, brb} {
		if got := readN(t, br, len(connectOK)); got != connectOK {
			t.Fatalf("reply %q", got)
		}
	}
	steps := []struct {
		typed, want string
	}{
		{"\r", "\r\nroot@web-1:~# "},
		{"echo  hello   world\r", "echo  hello   world\r\nhello world\r\nroot@web-1:~# "},
		{"hostname\r\n", "hostname\r\nweb-1\r\nroot@web-1:~# "},
		{"lsx\x7f\r", "lsx\b \b\r\nsh: ls: command not found\r\nroot@web-1:~# "},
	}
	for _, st := range steps {
		if _, err := io.WriteString(a, st.typed); err != nil {
			t.Fatal(err)
		}
		for i, br := range []io.Reader{bra, brb} {
			if got := readN(t, br, len(st.want)); got != st.want {
				t.Errorf("typed %q: client %d got %q, want %q", st.typed, i, got, st.want)
			}
		}
	}
}

func TestPowerOffClosesConsoles(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	s := login(t, p)
	for _, proto := range []string{"vt100", "rfb"} {
		c, _ := vms[1].Console(proto)
		_, br := connect(t, p, p.Host(1).Address(), "CONNECT /console?uuid="+c.UUID+"&session_id="+s+" HTTP/1.0\r\n\r\n")
		readN(t, br, len(connectOK))
	}
	waitFor(t, func() bool { return p.ActiveConsoles() == 2 })
	if err := p.PowerOff("web-2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return p.ActiveConsoles() == 0 })
}

func TestCloseEndsConsoles(t *testing.T) {
	t.Parallel()
	p, err := xapitest.NewPool(fastOpts)
	if err != nil {
		t.Fatal(err)
	}
	vms := p.AddDemoVMs()
	s := login(t, p)
	c, _ := vms[0].Console("vt100")
	conn, br := connect(t, p, p.Host(0).Address(), "CONNECT /console?uuid="+c.UUID+"&session_id="+s+" HTTP/1.0\r\n\r\n")
	readN(t, br, len(connectOK))
	idle := dial(t, p, p.Host(1).Address()) // an idle connection
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("console connection after Close: %v", err)
	}
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("idle connection after Close: %v", err)
	}
	p.Close() // again
}

func TestTLSPolicy(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	fps := p.Fingerprints()
	if len(fps) != 2 || fps[0] == fps[1] {
		t.Fatalf("Fingerprints() = %q, want two distinct", fps)
	}
	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{name: "TLS 1.2 with P-384", cfg: clientTLS(p), ok: true},
		{name: "TLS 1.3 only", cfg: &tls.Config{RootCAs: p.CertPool(), MinVersion: tls.VersionTLS13}},
		{name: "TLS 1.2 without P-384", cfg: &tls.Config{RootCAs: p.CertPool(), MaxVersion: tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}},
		{name: "TLS 1.2 CBC suites only", cfg: &tls.Config{RootCAs: p.CertPool(), MaxVersion: tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.CurveP384},
			CipherSuites:     []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}},
		{name: "default client", cfg: &tls.Config{RootCAs: p.CertPool()}, ok: true},
		{name: "AES-128-GCM", cfg: &tls.Config{RootCAs: p.CertPool(), MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for i, h := range p.Hosts() {
				c, err := tls.Dial("tcp", h.Address(), tt.cfg)
				if (err == nil) != tt.ok {
					t.Fatalf("host %d: err %v, want ok %v", i, err, tt.ok)
				}
				if err != nil {
					continue
				}
				st := c.ConnectionState()
				c.Close()
				if st.Version != tls.VersionTLS12 || st.CurveID != tls.CurveP384 {
					t.Errorf("host %d: version %x curve %v", i, st.Version, st.CurveID)
				}
				if got := xapiFingerprint(st.PeerCertificates[0].Raw); got != fps[i] || got != h.Fingerprint() {
					t.Errorf("host %d: fingerprint %s, want %s", i, got, fps[i])
				}
			}
		})
	}
}

// TestRPCOverRawHTTP checks the HTTP framing of XML-RPC replies and that a
// connection carries several calls.
func TestRPCOverRawHTTP(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	call := `<?xml version="1.0"?><methodCall><methodName>session.login_with_password</methodName><params><param><value>root</value></param><param><value>wrong</value></param></params></methodCall>`
	reply := `<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>SESSION_AUTHENTICATION_FAILED</value><value>root</value><value>Authentication failure</value></data></array></value></member></struct></value></param></params></methodResponse>`
	post := func(version string) string {
		return fmt.Sprintf("POST / HTTP/%s\r\ncontent-length: %d\r\n\r\n%s", version, len(call), call)
	}
	head := func(version, conn string) string {
		return fmt.Sprintf("HTTP/%s 200 OK\r\ncontent-length: %d\r\nconnection: %s\r\ncache-control: no-cache, no-store\r\ncontent-type: text/xml\r\n\r\n", version, len(reply), conn)
	}

	c, br := connect(t, p, p.Host(0).Address(), post("1.1")+post("1.1"))
	for range 2 {
		if got, want := readHeader(t, br), head("1.1", "keep-alive"); got != want {
			t.Errorf("header %q, want %q", got, want)
		}
		if got := readN(t, br, len(reply)); got != reply {
			t.Errorf("reply %q", got)
		}
	}
	c.Close()

	if got, want := readAllReply(t, p, p.Host(0).Address(), post("1.0")), head("1.0", "close")+reply; got != want {
		t.Errorf("HTTP/1.0:\n got %q\nwant %q", got, want)
	}
}
