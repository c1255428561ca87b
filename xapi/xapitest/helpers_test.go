package xapitest_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kolo/xmlrpc"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// fastOpts are pool options for tests: failed logins return at once.
var fastOpts = xapitest.Options{AuthFailureDelay: time.Millisecond}

// clientTLS is a client configuration that xapi's policy accepts and that
// verifies the pool's certificates through CertPool.
func clientTLS(p *xapitest.Pool) *tls.Config {
	return &tls.Config{
		RootCAs:          p.CertPool(),
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.CurveP384},
	}
}

// reply is the envelope of every XAPI reply, decoded with kolo/xmlrpc into
// typed fields as the xapi client does.
type reply[T any] struct {
	Status           string   `xmlrpc:"Status"`
	Value            T        `xmlrpc:"Value"`
	ErrorDescription []string `xmlrpc:"ErrorDescription"`
}

// post sends an XML-RPC body to base and returns the HTTP status and body.
func post(t *testing.T, p *xapitest.Pool, base string, body []byte) (int, []byte) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(p)}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Post(base+"/", "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return resp.StatusCode, data
}

// call makes an XML-RPC call to base and decodes the reply's Value into T.
// It returns the ErrorDescription of a failure, nil on success.
func call[T any](t *testing.T, p *xapitest.Pool, base, method string, args ...any) (T, []string) {
	t.Helper()
	body, err := xmlrpc.EncodeMethodCall(method, args...)
	if err != nil {
		t.Fatal(err)
	}
	status, data := post(t, p, base, body)
	if status != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", method, status, data)
	}
	var r reply[T]
	if err := xmlrpc.Response(data).Unmarshal(&r); err != nil {
		t.Fatalf("%s: decode %s: %v", method, data, err)
	}
	switch r.Status {
	case "Success":
		return r.Value, nil
	case "Failure":
		return r.Value, r.ErrorDescription
	}
	t.Fatalf("%s: status %q in %s", method, r.Status, data)
	return r.Value, nil
}

// mustCall is call that fails the test on a XAPI failure.
func mustCall[T any](t *testing.T, p *xapitest.Pool, method string, args ...any) T {
	t.Helper()
	v, fail := call[T](t, p, p.URL(), method, args...)
	if fail != nil {
		t.Fatalf("%s: %v", method, fail)
	}
	return v
}

// login logs in at the master and returns the session.
func login(t *testing.T, p *xapitest.Pool) string {
	t.Helper()
	return mustCall[string](t, p, "session.login_with_password", p.Username(), p.Password(), "1.1", "xapitest")
}

// dial opens a TLS connection to addr with the pool's client configuration.
func dial(t *testing.T, p *xapitest.Pool, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, clientTLS(p))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connect sends a raw request to addr and returns the connection and a
// reader positioned after what the test has read.
func connect(t *testing.T, p *xapitest.Pool, addr, request string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c := dial(t, p, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return c, bufio.NewReader(c)
}

// readAllReply sends request and returns all the server sends until it
// closes the connection.
func readAllReply(t *testing.T, p *xapitest.Pool, addr, request string) string {
	t.Helper()
	_, br := connect(t, p, addr, request)
	data, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return string(data)
}

// readHeader reads a reply header up to and including the empty line.
func readHeader(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			t.Fatalf("read header %q: %v", b.String(), err)
		}
		if line == "\r\n" {
			return b.String()
		}
	}
}

// readN reads exactly n bytes.
func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatalf("read %d bytes, got %q: %v", n, buf, err)
	}
	return string(buf)
}

// xapiFingerprint is the SHA-256 fingerprint of a DER certificate as xapi
// prints it, computed here independently of the package.
func xapiFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
