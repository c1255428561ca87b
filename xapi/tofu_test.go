package xapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// These tests cover trust on first use: the known-hosts file, and the
// client checking each host it dials against it. xapitest's hosts have one
// certificate per host index, the same in every pool of the process, so a
// "changed certificate" is simulated by editing the file: a host's line is
// given another host's fingerprint.

// withLog sends the client's log to buf.
func withLog(buf *testtool.SyncBuffer) func(*Config) {
	return func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(buf, nil)) }
}

// newTOFUClient returns a client, named "lab", of p that trusts hosts on
// first use, recording them in file.
func newTOFUClient(t *testing.T, p *xapitest.Pool, file string, opts ...func(*Config)) *Client {
	t.Helper()
	return newClient(t, p, append([]func(*Config){func(c *Config) {
		c.TLS = nil
		c.Trust = Trust{TrustOnFirstUse: true, KnownHostsFile: file}
	}}, opts...)...)
}

// entryLines returns the lines of a known-hosts file that are not comments.
func entryLines(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(data)) {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
			lines = append(lines, l)
		}
	}
	return lines
}

// line is a known-hosts line for host i of p in pool "lab".
func line(p *xapitest.Pool, i int) string {
	return "lab " + p.Host(i).Address() + " " + p.Host(i).Fingerprint()
}

// replaceFile replaces file's content as "sed -i" does: a new file renamed
// over it.
func replaceFile(t *testing.T, file string, data []byte) {
	t.Helper()
	tmp := file + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	dir := filepath.Join(t.TempDir(), "state")
	file := filepath.Join(dir, "xapi_known_hosts")
	var log testtool.SyncBuffer
	c := newTOFUClient(t, p, file, withLog(&log))

	if err := c.Login(t.Context()); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if got, want := entryLines(t, file), []string{line(p, 0)}; !slices.Equal(got, want) {
		t.Fatalf("after login the file holds %q, want %q", got, want)
	}
	// web-2 and db-1 run on the member: its certificate is recorded when
	// the first console there is opened, and trusted for the second.
	checkConsole(t, dial(t, c, findVM(t, c, "web-2"), RFB), RFB)
	checkConsole(t, dial(t, c, findVM(t, c, "db-1"), RFB), RFB)
	checkConsole(t, dial(t, c, findVM(t, c, "web-1"), RFB), RFB)
	if got, want := entryLines(t, file), []string{line(p, 0), line(p, 1)}; !slices.Equal(got, want) {
		t.Fatalf("the file holds %q, want %q", got, want)
	}
	if n := strings.Count(log.String(), "recorded xapi host certificate on first use"); n != 2 {
		t.Errorf("%d records logged, want 2:\n%s", n, log.String())
	}
	for i := range 2 {
		if want := "host=" + p.Host(i).Address() + " fingerprint=" + p.Host(i).Fingerprint(); !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log.String())
		}
	}
	if !strings.Contains(log.String(), "pool=lab") {
		t.Errorf("the log does not name the pool:\n%s", log.String())
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, file: 0o600} {
		if fi, err := os.Stat(path); err != nil {
			t.Error(err)
		} else if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the directory holds %d files, want 1 (no temporary files left)", len(ents))
	}

	// A second client with the file trusts both hosts and adds nothing.
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var log2 testtool.SyncBuffer
	c2 := newTOFUClient(t, p, file, withLog(&log2))
	checkConsole(t, dial(t, c2, findVM(t, c2, "web-2"), RFB), RFB)
	checkConsole(t, dial(t, c2, findVM(t, c2, "web-1"), RFB), RFB)
	after, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("a client that knew every host changed the file:\n%s\nto\n%s", before, after)
	}
	if strings.Contains(log2.String(), "recorded") {
		t.Errorf("the second client recorded a host:\n%s", log2.String())
	}
}

// TestFirstUseNeedsTheKey: a server that presents a host's certificate
// without its private key fails the handshake, and its certificate is not
// recorded: whoever answers first must prove the key before it is pinned.
func TestFirstUseNeedsTheKey(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{Members: -1})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		// TLS 1.2, as xapi: the key proves itself in ServerKeyExchange,
		// after the client has seen the certificate.
		Certificates: []tls.Certificate{{Certificate: [][]byte{p.Host(0).Certificate().Raw}, PrivateKey: key}},
		MaxVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	file := filepath.Join(t.TempDir(), "known_hosts")
	c, err := NewClient(Config{Name: "lab", URL: "https://" + ln.Addr().String(), Username: "u", Password: "p",
		Trust: Trust{TrustOnFirstUse: true, KnownHostsFile: file}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(t.Context()); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("Login: %v, want a handshake error about the signature", err)
	}
	if _, err := os.Stat(file); err == nil {
		t.Errorf("recorded after a failed handshake: %q", entryLines(t, file))
	}
}

// TestFirstUseMismatch: a host whose certificate is not the one recorded is
// refused, on the XML-RPC path (before the password is sent) and on the
// console path, with a *FingerprintError that says so.
func TestFirstUseMismatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// file returns the known-hosts file's lines.
		file      func(p *xapitest.Pool) []string
		badHost   int  // the host refused
		atLogin   bool // refused at login (the master), else at a console on the member
		wantLines int  // entry lines of the file afterwards
	}{
		{name: "master changed", atLogin: true, badHost: 0, wantLines: 1,
			file: func(p *xapitest.Pool) []string {
				return []string{"lab " + p.Host(0).Address() + " " + p.Host(1).Fingerprint()}
			}},
		{name: "member changed", badHost: 1, wantLines: 2,
			file: func(p *xapitest.Pool) []string {
				return []string{line(p, 0), "lab " + p.Host(1).Address() + " " + p.Host(0).Fingerprint()}
			}},
		{name: "member changed, unknown master recorded", badHost: 1, wantLines: 2,
			file: func(p *xapitest.Pool) []string {
				return []string{"lab " + p.Host(1).Address() + " " + p.Host(0).Fingerprint()}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, xapitest.Options{})
			file := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(file, []byte(strings.Join(tt.file(p), "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c := newTOFUClient(t, p, file)
			err := c.Login(t.Context())
			if !tt.atLogin {
				if err != nil {
					t.Fatalf("Login: %v", err)
				}
				var conn interface{ Close() error }
				conn, err = c.DialConsole(t.Context(), findVM(t, c, "web-2"), RFB)
				if err == nil {
					conn.Close()
				}
			}
			t.Logf("err: %v", err)
			wantFirstUseError(t, p, err, tt.badHost, file)
			var ue *url.Error
			if tt.atLogin {
				if !errors.As(err, &ue) {
					t.Errorf("the error did not come through the HTTP transport: %#v", err)
				}
				if p.Logins() != 0 {
					t.Errorf("Logins() = %d: the password went to a host whose certificate changed", p.Logins())
				}
			}
			if got := entryLines(t, file); len(got) != tt.wantLines {
				t.Errorf("the file holds %q, want %d lines", got, tt.wantLines)
			}
		})
	}
}

// wantFirstUseError checks that err is a *FingerprintError from first use
// for host i of p.
func wantFirstUseError(t *testing.T, p *xapitest.Pool, err error, i int, file string) {
	t.Helper()
	var fe *FingerprintError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want *FingerprintError", err)
	}
	if !fe.FirstUse || fe.Host != p.Host(i).Address() || fe.Fingerprint != p.Host(i).Fingerprint() ||
		!slices.Equal(fe.Want, []string{p.Host(1 - i).Fingerprint()}) || fe.File != file {
		t.Errorf("FingerprintError %+v, want FirstUse for host %d (%s) with %s, wanting %s, in %s",
			fe, i, p.Host(i).Address(), p.Host(i).Fingerprint(), p.Host(1-i).Fingerprint(), file)
	}
	if !strings.Contains(err.Error(), "recorded on first use") || !strings.Contains(err.Error(), file) {
		t.Errorf("message %q does not say what to do", err)
	}
}

// TestFirstUseFileEdited: the file is read at every check, so deleting a
// host's line while the client runs accepts the host's new certificate, and
// a line added while it runs is enforced.
func TestFirstUseFileEdited(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	file := filepath.Join(t.TempDir(), "known_hosts")
	c := newTOFUClient(t, p, file)
	if err := c.Login(t.Context()); err != nil {
		t.Fatal(err)
	}
	vm := findVM(t, c, "web-2")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// The member "changes its certificate" before its first console.
	replaceFile(t, file, fmt.Appendf(data, "lab %s %s\n", p.Host(1).Address(), p.Host(0).Fingerprint()))
	conn, err := c.DialConsole(t.Context(), vm, RFB)
	if err == nil {
		conn.Close()
	}
	wantFirstUseError(t, p, err, 1, file)
	// The administrator deletes its line.
	replaceFile(t, file, data)
	checkConsole(t, dial(t, c, vm, RFB), RFB)
	if got, want := entryLines(t, file), []string{line(p, 0), line(p, 1)}; !slices.Equal(got, want) {
		t.Errorf("the file holds %q, want %q", got, want)
	}
}

// TestFirstUseResumes: connections resume TLS sessions with trust on first
// use, and resumed sessions are checked too.
func TestFirstUseResumes(t *testing.T) {
	t.Parallel()
	p := newPool(t, xapitest.Options{})
	file := filepath.Join(t.TempDir(), "known_hosts")
	c := newTOFUClient(t, p, file)
	vm := findVM(t, c, "web-1")
	resumed := func() bool {
		conn := dial(t, c, vm, RFB)
		checkConsole(t, conn, RFB)
		return conn.(*consoleConn).ConnectionState().DidResume
	}
	resumed()
	if !resumed() {
		t.Error("the second console on the master did a full handshake")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, file, bytes.ReplaceAll(data, []byte(p.Host(0).Fingerprint()), []byte(p.Host(1).Fingerprint())))
	conn, err := c.DialConsole(t.Context(), vm, RFB)
	if err == nil {
		conn.Close()
	}
	var fe *FingerprintError
	if !errors.As(err, &fe) || !fe.FirstUse {
		t.Errorf("a resumable session to a host whose line changed: %v, want a FirstUse *FingerprintError", err)
	}
}

// TestFirstUseConcurrent: many clients sharing a file, and many goroutines
// checking, record each host once.
func TestFirstUseConcurrent(t *testing.T) {
	t.Parallel()

	t.Run("clients", func(t *testing.T) {
		t.Parallel()
		p := newPool(t, xapitest.Options{})
		file := filepath.Join(t.TempDir(), "known_hosts")
		var log testtool.SyncBuffer
		var wg sync.WaitGroup
		for range 8 {
			c := newTOFUClient(t, p, file, withLog(&log))
			wg.Go(func() {
				// Each client logs in (the master's first use), then
				// opens a console on the member (the member's).
				vms, err := c.FindVMs(t.Context(), "web-2")
				if err != nil {
					t.Error(err)
					return
				}
				conn, err := c.DialConsole(t.Context(), vms[0], RFB)
				if err != nil {
					t.Error(err)
					return
				}
				conn.Close()
			})
		}
		wg.Wait()
		if got, want := entryLines(t, file), []string{line(p, 0), line(p, 1)}; !slices.Equal(got, want) {
			t.Errorf("the file holds %q, want %q", got, want)
		}
		if n := strings.Count(log.String(), "recorded xapi host certificate on first use"); n != 2 {
			t.Errorf("%d records logged, want 2", n)
		}
	})

	t.Run("checks", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "known_hosts")
		k, err := OpenKnownHosts(file)
		if err != nil {
			t.Fatal(err)
		}
		fp := Fingerprint([]byte("cert"))
		const hosts, perHost = 20, 5
		var recorded [hosts]int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for h := range hosts {
			for range perHost {
				wg.Go(func() {
					// The same file under another name: the same
					// KnownHosts.
					k2, err := OpenKnownHosts(filepath.Join(filepath.Dir(file), ".", "known_hosts"))
					if err != nil || k2 != k {
						t.Errorf("OpenKnownHosts: %p, %v; want %p", k2, err, k)
						return
					}
					rec, err := k2.Check("lab", fmt.Sprintf("192.0.2.%d:443", h+1), fp)
					if err != nil {
						t.Error(err)
					}
					if rec {
						mu.Lock()
						recorded[h]++
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		for h, n := range recorded {
			if n != 1 {
				t.Errorf("host %d recorded %d times", h, n)
			}
		}
		if got := entryLines(t, file); len(got) != hosts {
			t.Errorf("the file has %d lines, want %d:\n%s", len(got), hosts, strings.Join(got, "\n"))
		}
	})
}

func TestKnownHostsFormat(t *testing.T) {
	t.Parallel()
	fpA := Fingerprint([]byte("a"))
	fpB := Fingerprint([]byte("b"))
	fpC := Fingerprint([]byte("c"))
	const head = "# hosts of the lab\n\n"
	content := head +
		"lab 192.0.2.10:443 " + fpA + "\n" +
		"   # an indented comment\r\n" +
		"lab 192.0.2.10:443 " + strings.ToLower(fpB) + "\r\n" + // a second certificate, lowercase, CRLF
		"lab [2001:DB8::10]:443 " + strings.ReplaceAll(fpC, ":", "") + "\n" +
		"other XS1.Example.COM:443 " + fpA // no final newline
	dir := t.TempDir()
	file := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := OpenKnownHosts(file)
	if err != nil {
		t.Fatal(err)
	}
	lookups := []struct {
		pool, host string
		want       []string
	}{
		{"lab", "192.0.2.10:443", []string{fpA, fpB}},
		{"lab", "[2001:db8::10]:443", []string{fpC}},
		{"lab", "[2001:db8:0::10]:443", []string{fpC}},
		{"other", "xs1.example.com:443", []string{fpA}},
		{"other", "192.0.2.10:443", nil},
		{"lab", "192.0.2.10:8443", nil},
	}
	for _, l := range lookups {
		got, err := k.Lookup(l.pool, l.host)
		if err != nil || !slices.Equal(got, l.want) {
			t.Errorf("Lookup(%s, %s) = %q, %v; want %q", l.pool, l.host, got, err, l.want)
		}
	}
	for _, fp := range []string{fpA, fpB} {
		if rec, err := k.Check("lab", "192.0.2.10:443", fp); rec || err != nil {
			t.Errorf("Check of a known fingerprint: %v, %v", rec, err)
		}
	}
	if _, err := k.Check("lab", "192.0.2.10:443", fpC); !errors.As(err, new(*FingerprintError)) {
		t.Errorf("Check of another fingerprint: %v, want *FingerprintError", err)
	}

	// A new host is appended after every line that was there.
	if rec, err := k.Check("lab", "[2001:DB8::11]:443", strings.ToLower(fpB)); !rec || err != nil {
		t.Fatalf("Check of a new host: %v, %v", rec, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := content + "\nlab [2001:db8::11]:443 " + fpB + "\n"; string(data) != want {
		t.Errorf("the file is\n%s\nwant\n%s", data, want)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the file's mode after a record: %v, %v; want 0600", fi.Mode(), err)
	}

	// What is written parses back to the same entries.
	got, err := parseKnownHosts(file, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || !slices.Equal(got[knownHost{"lab", "[2001:db8::11]:443"}], []string{fpB}) {
		t.Errorf("parsed back: %v", got)
	}

	// A new file starts with a comment that says what it is.
	file2 := filepath.Join(dir, "new", "known_hosts")
	k2, err := OpenKnownHosts(file2)
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := k2.Check("lab", "192.0.2.10:443", fpA); !rec || err != nil {
		t.Fatalf("first Check: %v, %v", rec, err)
	}
	data, err = os.ReadFile(file2)
	if err != nil {
		t.Fatal(err)
	}
	if want := knownHostsHeader + "lab 192.0.2.10:443 " + fpA + "\n"; string(data) != want {
		t.Errorf("a new file is\n%s\nwant\n%s", data, want)
	}
}

func TestKnownHostsBadFile(t *testing.T) {
	t.Parallel()
	fp := Fingerprint([]byte("a"))
	tests := []struct {
		name    string
		content string
		line    int
		want    string
	}{
		{name: "two fields", content: "# c\nlab 192.0.2.10:443\n", line: 2, want: "got 2 fields"},
		{name: "four fields", content: "lab 192.0.2.10:443 " + fp + " extra\n", line: 1, want: "fields"},
		{name: "no port", content: "\n\nlab 192.0.2.10 " + fp + "\n", line: 3, want: "HOST:PORT"},
		{name: "bad port", content: "lab 192.0.2.10:https " + fp + "\n", line: 1, want: "port"},
		{name: "short fingerprint", content: "lab 192.0.2.10:443 AB:CD\n", line: 1, want: "SHA-256"},
		{name: "after good lines", content: "lab 192.0.2.10:443 " + fp + "\nlab 192.0.2.11:443 " + fp + "\nlab 192.0.2.12:443 nothex\n", line: 3, want: "SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(file, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			at := fmt.Sprintf("%s:%d: ", file, tt.line)
			check := func(what string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), at) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: %v, want an error naming %q and %q", what, err, at, tt.want)
				}
			}
			_, err := OpenKnownHosts(file)
			check("OpenKnownHosts", err)
			check("Validate", Trust{TrustOnFirstUse: true, KnownHostsFile: file}.Validate())
			_, err = NewClient(Config{Name: "lab", URL: "https://192.0.2.10", Trust: Trust{TrustOnFirstUse: true, KnownHostsFile: file}})
			check("NewClient", err)
		})
	}

	// A file that goes bad while a client runs refuses every host.
	t.Run("while running", func(t *testing.T) {
		t.Parallel()
		p := newPool(t, xapitest.Options{})
		file := filepath.Join(t.TempDir(), "known_hosts")
		c := newTOFUClient(t, p, file)
		vm := findVM(t, c, "web-2")
		replaceFile(t, file, []byte("lab garbage\n"))
		conn, err := c.DialConsole(t.Context(), vm, RFB)
		if err == nil {
			conn.Close()
			t.Fatal("a console opened with a malformed known-hosts file")
		}
		if !strings.Contains(err.Error(), file+":1: ") {
			t.Errorf("err = %v, want it to name %s:1", err, file)
		}
	})
}

func TestTrustChoice(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "known_hosts")
	pin := strings.Repeat("AB:", 31) + "AB"
	tests := []struct {
		name    string
		trust   Trust
		wantErr string // "" means valid
		wantIs  error
	}{
		{name: "none", wantIs: ErrNoTrust, wantErr: "tls.trust_on_first_use"},
		{name: "first use", trust: Trust{TrustOnFirstUse: true, KnownHostsFile: file}},
		{name: "first use without a file", trust: Trust{TrustOnFirstUse: true}, wantErr: "known-hosts file"},
		{name: "a file alone", trust: Trust{KnownHostsFile: file}, wantIs: ErrNoTrust},
		{name: "pins and a file", trust: Trust{Fingerprints: []string{pin}, KnownHostsFile: file}},
		{name: "first use and pins", trust: Trust{TrustOnFirstUse: true, KnownHostsFile: file, Fingerprints: []string{pin}}, wantErr: "choose only one"},
		{name: "first use and CA", trust: Trust{TrustOnFirstUse: true, KnownHostsFile: file, CAFile: file}, wantErr: "choose only one"},
		{name: "first use and insecure", trust: Trust{TrustOnFirstUse: true, KnownHostsFile: file, InsecureSkipVerify: true}, wantErr: "choose only one"},
		{name: "pins and insecure", trust: Trust{Fingerprints: []string{pin}, InsecureSkipVerify: true}, wantErr: "choose only one"},
		{name: "insecure", trust: Trust{InsecureSkipVerify: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			check := func(what string, err error) {
				t.Helper()
				switch {
				case tt.wantErr == "" && tt.wantIs == nil:
					if err != nil {
						t.Errorf("%s: %v", what, err)
					}
				case tt.wantIs != nil && !errors.Is(err, tt.wantIs),
					err == nil || !strings.Contains(err.Error(), tt.wantErr):
					t.Errorf("%s: %v, want %v / %q", what, err, tt.wantIs, tt.wantErr)
				}
			}
			check("Validate", tt.trust.Validate())
			_, err := NewClient(Config{Name: "lab", URL: "https://192.0.2.10", Trust: tt.trust})
			check("NewClient", err)
		})
	}

	tofu := Trust{TrustOnFirstUse: true, KnownHostsFile: file}
	if _, err := tofu.TLSConfig(); err == nil || !strings.Contains(err.Error(), "Config.Trust") {
		t.Errorf("TLSConfig with trust on first use: %v, want an error pointing to Config.Trust", err)
	}
	tlsConf, err := Trust{InsecureSkipVerify: true}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(Config{Name: "lab", URL: "https://192.0.2.10", Trust: tofu, TLS: tlsConf}); err == nil {
		t.Error("NewClient accepted both Trust and TLS")
	}
	if _, err := NewClient(Config{Name: "my lab", URL: "https://192.0.2.10", Trust: tofu}); err == nil {
		t.Error("NewClient accepted a pool name with a space for a known-hosts file")
	}
}

// TestPinnedFingerprintErrorHost: pinned fingerprints name the host dialled
// too, through Config.Trust and through Config.TLS.
func TestPinnedFingerprintErrorHost(t *testing.T) {
	t.Parallel()
	for _, viaTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("TLS=%v", viaTLS), func(t *testing.T) {
			t.Parallel()
			p := newPool(t, xapitest.Options{})
			trust := Trust{Fingerprints: p.Fingerprints()[:1]}
			c := newClient(t, p, func(c *Config) { c.TLS, c.Trust = nil, trust })
			if viaTLS {
				c = newClient(t, p, withTrust(t, trust))
			}
			conn, err := c.DialConsole(t.Context(), findVM(t, c, "web-2"), RFB)
			if err == nil {
				conn.Close()
			}
			var fe *FingerprintError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FingerprintError", err)
			}
			if fe.FirstUse || fe.Host != p.Host(1).Address() || fe.Fingerprint != p.Host(1).Fingerprint() ||
				!slices.Equal(fe.Want, p.Fingerprints()[:1]) {
				t.Errorf("FingerprintError %+v, want host 1 (%s), not pinned", fe, p.Host(1).Address())
			}
			if !strings.Contains(err.Error(), p.Host(1).Address()) || !strings.Contains(err.Error(), "is not among the pinned fingerprints") {
				t.Errorf("message %q", err)
			}

			c = newClient(t, p, withTrust(t, Trust{Fingerprints: p.Fingerprints()[1:]}))
			err = c.Login(t.Context())
			var ue *url.Error
			if !errors.As(err, &fe) || fe.Host != p.Host(0).Address() || !errors.As(err, &ue) {
				t.Errorf("Login: %v, want a *FingerprintError for %s through *url.Error", err, p.Host(0).Address())
			}
		})
	}
}

func TestHostFingerprints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  xapitest.Options
		trust func(p *xapitest.Pool, file string) Trust
	}{
		{name: "pinned master only", trust: func(p *xapitest.Pool, _ string) Trust { return Trust{Fingerprints: p.Fingerprints()[:1]} }},
		{name: "first use", trust: func(_ *xapitest.Pool, file string) Trust {
			return Trust{TrustOnFirstUse: true, KnownHostsFile: file}
		}},
		{name: "IPv6, three hosts", opts: xapitest.Options{IPv6: true, Members: 2},
			trust: func(p *xapitest.Pool, _ string) Trust { return Trust{Fingerprints: p.Fingerprints()} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPool(t, tt.opts)
			file := filepath.Join(t.TempDir(), "known_hosts")
			c := newClient(t, p, func(c *Config) { c.TLS, c.Trust = nil, tt.trust(p, file) })
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			certs, err := c.HostFingerprints(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != len(p.Hosts()) {
				t.Fatalf("%d hosts, want %d: %+v", len(certs), len(p.Hosts()), certs)
			}
			for i, hc := range certs {
				h := p.Host(i) // host-0, host-1, ...: sorted by name
				if hc.Err != nil || hc.Name != h.Hostname() || hc.Address != h.Address() || hc.Fingerprint != h.Fingerprint() {
					t.Errorf("host %d: %+v, want %s %s %s", i, hc, h.Hostname(), h.Address(), h.Fingerprint())
				}
			}
			if tt.name == "first use" {
				// Reading the certificates records nothing: only the
				// master, reached to list the hosts, is in the file.
				if got, want := entryLines(t, file), []string{line(p, 0)}; !slices.Equal(got, want) {
					t.Errorf("the file holds %q, want %q", got, want)
				}
			}
		})
	}
}
