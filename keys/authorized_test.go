package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// Lines of testdata/ed25519.pub and testdata/rsa.pub.
const (
	aliceLine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC9RDlu1hFTWNgt67bh+ggGmx1R68U4437IKwBPLmq81 alice@example.com"
	bobLine   = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDJ8fuHcqLZU8rnrbz3tpH1qEuKUDfnqqjnOwIAwt6mw0aQR5VmIc5cLxPe3PXzMRS3hXEcK7O3IB5AtMcd1XS58P31pj0w7L/BTBYEGJIwj0+gN5qHZ9utASc3RlCneOzxA96VZBrNYDhMEQIBc0kH6BC53mkIoPycu+YHaqU9z94KV80m9Ckp7CZkEkZY3hUlUhYAgFcp2TBYRY9Hn5K1a9ClZLwU34D5/R5ZHBWrCUAXKpt0McxR6ThD8j213SiNAaLqRRvxEUkkjthcpTZeUTTFqS75wZvCPQdcryZllva2CPbCjGuWWXFJ8qipPS/IzsyuHQJub5zZYTAqT3mb bob@example.com"
)

// Fingerprints of the fixtures, as printed by ssh-keygen -lf.
const (
	aliceFingerprint = "SHA256:V8QfWxiYf78vTrFV5K56fC2h2j5lujFAaDtA3bcpZ7I"
	bobFingerprint   = "SHA256:KAhCZwkBQtTjr/qQEH7t3jVKl1zq9joaR7b7fO7E7lQ"
	carolFingerprint = "SHA256:CDW64LR7K5pIqpgRcmD09f7cNpKsmclNsCStmiiGp9E"
)

// readPublicKey parses the public key file testdata/name.
func readPublicKey(t *testing.T, name string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return k
}

// sshKeygenFingerprints returns the fingerprints ssh-keygen -lf prints for
// file, one per key.
func sshKeygenFingerprints(t *testing.T, file string) []string {
	t.Helper()
	out, err := exec.Command(testtool.NeedTool(t, "ssh-keygen"), "-l", "-E", "sha256", "-f", file).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -lf %s: %v", file, err)
	}
	var fps []string
	for line := range strings.Lines(string(out)) {
		// "256 SHA256:... comment (ED25519)"
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("ssh-keygen -lf %s printed %q", file, line)
		}
		fps = append(fps, f[1])
	}
	return fps
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
		want string
	}{
		{name: "ed25519", file: "ed25519.pub", want: aliceFingerprint},
		{name: "rsa", file: "rsa.pub", want: bobFingerprint},
		{name: "ecdsa", file: "ecdsa.pub", want: carolFingerprint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Fingerprint(readPublicKey(t, tt.file))
			if got != tt.want {
				t.Errorf("Fingerprint = %q, want %q", got, tt.want)
			}
			t.Run("ssh-keygen", func(t *testing.T) {
				fps := sshKeygenFingerprints(t, filepath.Join("testdata", tt.file))
				if want := []string{got}; !slices.Equal(fps, want) {
					t.Errorf("ssh-keygen -lf = %q, Fingerprint = %q", fps, want)
				}
			})
		})
	}
}

// keyLine is what a test expects of an AuthorizedKey.
type keyLine struct {
	fingerprint string
	comment     string
	options     []string
	line        int
}

func checkKeys(t *testing.T, got []AuthorizedKey, source string, want []keyLine) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if fp := Fingerprint(g.Key); fp != w.fingerprint || g.Comment != w.comment ||
			!slices.Equal(g.Options, w.options) || g.Line != w.line || g.Source != source {
			t.Errorf("key %d = {%s %q %q %s:%d}, want {%s %q %q %s:%d}", i,
				fp, g.Comment, g.Options, g.Source, g.Line,
				w.fingerprint, w.comment, w.options, source, w.line)
		}
	}
}

func TestParseAuthorizedKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		want    []keyLine
		badLine int    // if not 0, want a *ParseError for this line
		errText string // if not "", in the message of the *ParseError
	}{
		{name: "empty"},
		{name: "comments and blank lines", data: "# nobody\n\n   \t\n  # still nobody\n"},
		{
			name: "one key without newline",
			data: aliceLine,
			want: []keyLine{{aliceFingerprint, "alice@example.com", nil, 1}},
		},
		{
			name: "CRLF",
			data: "# keys\r\n" + aliceLine + "\r\n\r\n" + bobLine + "\r\n",
			want: []keyLine{
				{aliceFingerprint, "alice@example.com", nil, 2},
				{bobFingerprint, "bob@example.com", nil, 4},
			},
		},
		{
			name: "options",
			data: `from="10.0.0.0/8,::1",expiry-time="20300101Z" ` + aliceLine + "\n" +
				`expiry-time="20300101" ` + bobLine + "\n",
			want: []keyLine{
				{aliceFingerprint, "alice@example.com", []string{`from="10.0.0.0/8,::1"`, `expiry-time="20300101Z"`}, 1},
				{bobFingerprint, "bob@example.com", []string{`expiry-time="20300101"`}, 2},
			},
		},
		{
			name:    "unsupported option",
			data:    aliceLine + "\n" + `from="10.0.0.0/8",command="echo a, b" ` + bobLine + "\n",
			badLine: 2,
			errText: `inline:2: not a valid authorized key: unsupported option "command"`,
		},
		{
			name: "no comment",
			data: strings.TrimSuffix(aliceLine, " alice@example.com"),
			want: []keyLine{{aliceFingerprint, "", nil, 1}},
		},
		{
			name:    "bad base64",
			data:    aliceLine + "\n\nssh-ed25519 AAAA!!!! dave\n" + bobLine,
			badLine: 3,
			errText: "inline:3: not a valid authorized key: ssh-ed25519 key: illegal base64 data",
		},
		{name: "one word", data: "# x\ngarbage\n", badLine: 2},
		{
			name:    "type mismatch",
			data:    "ssh-rsa" + strings.TrimPrefix(aliceLine, "ssh-ed25519"),
			badLine: 1,
			errText: "key type ssh-rsa does not match the key, which is ssh-ed25519",
		},
		{name: "unknown key type", data: "ssh-foo AAAAB3NzaC1yc2E= x", badLine: 1},
		{name: "truncated key", data: aliceLine[:60], badLine: 1},
		{name: "unterminated quote", data: `from="10.0.0.1 ` + aliceLine, badLine: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAuthorizedKeys([]byte(tt.data), "inline")
			if tt.badLine != 0 {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("ParseAuthorizedKeys = %v, want a *ParseError", err)
				}
				if pe.Source != "inline" || pe.Line != tt.badLine {
					t.Errorf("ParseError at %s:%d, want inline:%d", pe.Source, pe.Line, tt.badLine)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("error %q does not contain %q", err, tt.errText)
				}
				if got != nil {
					t.Errorf("ParseAuthorizedKeys returned %d keys with its error", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkKeys(t, got, "inline", tt.want)
		})
	}
}

func TestLoadAuthorizedKeysFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "authorized_keys")
	got, err := LoadAuthorizedKeysFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, got, path, []keyLine{
		{aliceFingerprint, "alice@example.com", nil, 2},
		{bobFingerprint, "bob@example.com", []string{`from="10.0.0.0/8,192.168.1.1"`, `Expiry-Time="20991231235959Z"`}, 5},
		{carolFingerprint, "carol   laptop", nil, 6},
	})
	bob := got[1]
	if bob.From.String() != "10.0.0.0/8,192.168.1.1" {
		t.Errorf("bob's From = %q", bob.From)
	}
	if want := time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC); !bob.ExpiresAt.Equal(want) {
		t.Errorf("bob's ExpiresAt = %v, want %v", bob.ExpiresAt, want)
	}
	if got[0].From != nil || !got[0].ExpiresAt.IsZero() {
		t.Errorf("alice has From %q, ExpiresAt %v; want none", got[0].From, got[0].ExpiresAt)
	}
	t.Run("ssh-keygen", func(t *testing.T) {
		t.Parallel()
		var fps []string
		for _, k := range got {
			fps = append(fps, Fingerprint(k.Key))
		}
		if want := sshKeygenFingerprints(t, path); !slices.Equal(fps, want) {
			t.Errorf("fingerprints = %q, ssh-keygen -lf says %q", fps, want)
		}
	})
}

func TestLoadAuthorizedKeysFileErrors(t *testing.T) {
	t.Parallel()
	bad := filepath.Join("testdata", "authorized_keys.bad")
	tests := []struct {
		name     string
		path     string
		wantIs   error  // if not nil, errors.Is(err, wantIs)
		wantLine int    // if not 0, a *ParseError for this line of path
		wantText string // in the error message
	}{
		{name: "bad line", path: bad, wantLine: 4, wantText: bad + ":4:"},
		{
			name:     "unsupported option",
			path:     filepath.Join("testdata", "authorized_keys.options"),
			wantIs:   ErrUnsupportedOption,
			wantLine: 3,
			wantText: `authorized_keys.options:3: not a valid authorized key: unsupported option "no-pty"`,
		},
		{name: "missing", path: filepath.Join("testdata", "nothing"), wantIs: fs.ErrNotExist, wantText: "nothing"},
		{name: "directory", path: "testdata", wantText: "testdata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys, err := LoadAuthorizedKeysFile(tt.path)
			if err == nil {
				t.Fatalf("LoadAuthorizedKeysFile = %d keys, want an error", len(keys))
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v, want %v", err, tt.wantIs)
			}
			if tt.wantLine != 0 {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Source != tt.path || pe.Line != tt.wantLine {
					t.Errorf("error %v, want a *ParseError at %s:%d", err, tt.path, tt.wantLine)
				}
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
		})
	}
}

func TestKeySet(t *testing.T) {
	t.Parallel()
	file, err := LoadAuthorizedKeysFile(filepath.Join("testdata", "authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	// alice again, with other options: the first line must win.
	inline, err := ParseAuthorizedKeys([]byte(`from="10.0.0.0/8" `+aliceLine+" again\n"), "inline")
	if err != nil {
		t.Fatal(err)
	}
	s := NewKeySet(file, inline)

	// A key not in the set, and a certificate of alice's key.
	other, err := ssh.NewPublicKey(ed25519.PublicKey(bytes.Repeat([]byte{7}, ed25519.PublicKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: readPublicKey(t, "ed25519.pub"), CertType: ssh.UserCert, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		set        KeySet
		key        ssh.PublicKey
		wantSource string // "" if the key should not be found
		wantLine   int
	}{
		{name: "first", set: s, key: readPublicKey(t, "ed25519.pub"), wantSource: "testdata/authorized_keys", wantLine: 2},
		{name: "with options", set: s, key: readPublicKey(t, "rsa.pub"), wantSource: "testdata/authorized_keys", wantLine: 5},
		{name: "ecdsa", set: s, key: readPublicKey(t, "ecdsa.pub"), wantSource: "testdata/authorized_keys", wantLine: 6},
		{name: "other key", set: s, key: other},
		{name: "certificate", set: s, key: cert},
		{name: "nil key", set: s, key: nil},
		{name: "zero set", set: KeySet{}, key: readPublicKey(t, "ed25519.pub")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ak, ok := tt.set.Lookup(tt.key)
			if want := tt.wantSource != ""; ok != want || tt.set.Contains(tt.key) != want {
				t.Fatalf("Lookup, Contains = %v, %v; want %v", ok, tt.set.Contains(tt.key), want)
			}
			if ok && (ak.Source != filepath.FromSlash(tt.wantSource) || ak.Line != tt.wantLine) {
				t.Errorf("Lookup found %s:%d, want %s:%d", ak.Source, ak.Line, tt.wantSource, tt.wantLine)
			}
		})
	}
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	for _, name := range []string{"authorized_keys", "authorized_keys.bad", "ed25519.pub", "rsa.pub", "ecdsa.pub"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`from="a,b",no-pty ` + aliceLine + "\r\n#\n\n"))
	f.Add([]byte(`"unterminated ` + aliceLine))
	f.Add([]byte(`from="10.0.0.0/8,!10.1.2.3,2001:db8::/32,192.168.*",expiry-time="20300101" ` + aliceLine + "\n"))
	f.Add([]byte(`FROM="::ffff:10.0.0.0/104",Expiry-Time="203001021530Z",expiry-time="20300101" ` + bobLine))
	f.Add([]byte(`from="10.0.0.1/8" ` + aliceLine))
	f.Add([]byte(`cert-authority,principals="a" ` + aliceLine))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseAuthorizedKeys(data, "fuzz")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Source != "fuzz" || keys != nil {
				t.Fatalf("ParseAuthorizedKeys error %v, keys %d", err, len(keys))
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		last := 0
		for _, k := range keys {
			if k.Key == nil || k.Source != "fuzz" || k.Line <= last || k.Line > lines {
				t.Fatalf("bad key %+v after line %d of %d", k, last, lines)
			}
			last = k.Line
			if _, err := ssh.ParsePublicKey(k.Key.Marshal()); err != nil {
				t.Fatalf("key at line %d does not round-trip: %v", k.Line, err)
			}
			// Only from= and expiry-time= load, and each is parsed.
			var from, expiry bool
			for _, o := range k.Options {
				name, _, _ := strings.Cut(o, "=")
				switch strings.ToLower(name) {
				case "from":
					from = true
				case "expiry-time":
					expiry = true
				default:
					t.Fatalf("key at line %d loaded with option %q", k.Line, o)
				}
			}
			if from != (k.From != nil) || expiry != !k.ExpiresAt.IsZero() {
				t.Fatalf("key at line %d: options %q give From %q, ExpiresAt %v", k.Line, k.Options, k.From, k.ExpiresAt)
			}
		}
	})
}
