package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// newSigner returns a new ed25519 key.
func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newCert returns a user certificate for key, signed by ca.
func newCert(t *testing.T, key ssh.PublicKey, ca ssh.Signer) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          7,
		CertType:        ssh.UserCert,
		KeyId:           "alice",
		ValidPrincipals: []string{"alice"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// authorizedLine returns k as a line of an authorized_keys file.
func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n")
}

// writeFile writes data to a new file and returns its path.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadRevocationList(t *testing.T) {
	t.Parallel()
	r, err := LoadRevocationList(filepath.Join("testdata", "revoked_keys"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 2 {
		t.Errorf("Len = %d, want 2 (bob and carol)", r.Len())
	}
	tests := []struct {
		name string
		key  ssh.PublicKey
		want bool
	}{
		{name: "listed key", key: readPublicKey(t, "rsa.pub"), want: true},
		{name: "listed fingerprint", key: readPublicKey(t, "ecdsa.pub"), want: true},
		{name: "not listed", key: readPublicKey(t, "ed25519.pub"), want: false},
		{name: "nil key", key: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := r.IsRevoked(tt.key); got != tt.want {
				t.Errorf("IsRevoked = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestIsRevokedCertificates revokes a certificate by itself, by its key and
// by its CA, each by key and by fingerprint.
func TestIsRevokedCertificates(t *testing.T) {
	t.Parallel()
	ca, otherCA := newSigner(t), newSigner(t)
	user, otherUser := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	cert := newCert(t, user, ca)
	certAgain := newCert(t, user, ca) // another nonce, so another certificate
	otherUsersCert := newCert(t, otherUser, ca)
	otherCAsCert := newCert(t, user, otherCA)

	tests := []struct {
		name    string
		list    string
		revoked []ssh.PublicKey
		kept    []ssh.PublicKey
	}{
		{
			name:    "user key",
			list:    authorizedLine(user),
			revoked: []ssh.PublicKey{user, cert, certAgain, otherCAsCert},
			kept:    []ssh.PublicKey{otherUser, otherUsersCert, ca.PublicKey()},
		},
		{
			name:    "user key fingerprint",
			list:    Fingerprint(user) + " alice",
			revoked: []ssh.PublicKey{user, cert, certAgain, otherCAsCert},
			kept:    []ssh.PublicKey{otherUser, otherUsersCert, ca.PublicKey()},
		},
		{
			name:    "CA key",
			list:    "# the CA's key was stolen\n" + authorizedLine(ca.PublicKey()) + " ca",
			revoked: []ssh.PublicKey{cert, certAgain, otherUsersCert, ca.PublicKey()},
			kept:    []ssh.PublicKey{user, otherUser, otherCAsCert, otherCA.PublicKey()},
		},
		{
			name:    "CA fingerprint",
			list:    Fingerprint(ca.PublicKey()),
			revoked: []ssh.PublicKey{cert, certAgain, otherUsersCert},
			kept:    []ssh.PublicKey{user, otherCAsCert},
		},
		{
			name:    "certificate",
			list:    authorizedLine(cert),
			revoked: []ssh.PublicKey{cert},
			kept:    []ssh.PublicKey{user, certAgain, otherUsersCert, otherCAsCert, ca.PublicKey()},
		},
		{
			name:    "certificate fingerprint",
			list:    Fingerprint(cert),
			revoked: []ssh.PublicKey{cert},
			kept:    []ssh.PublicKey{user, certAgain, ca.PublicKey()},
		},
		{
			name: "other keys",
			list: authorizedLine(otherUser) + "\n" + Fingerprint(otherCA.PublicKey()),
			revoked: []ssh.PublicKey{
				otherUser, otherUsersCert, otherCAsCert, otherCA.PublicKey(),
			},
			kept: []ssh.PublicKey{user, cert, ca.PublicKey()},
		},
		{
			name: "empty",
			list: "# nothing revoked yet\n",
			kept: []ssh.PublicKey{user, cert, ca.PublicKey()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := LoadRevocationList(writeFile(t, "revoked", tt.list+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.revoked {
				if !r.IsRevoked(k) {
					t.Errorf("IsRevoked(%s %s) = false, want true", k.Type(), Fingerprint(k))
				}
			}
			for _, k := range tt.kept {
				if r.IsRevoked(k) {
					t.Errorf("IsRevoked(%s %s) = true, want false", k.Type(), Fingerprint(k))
				}
			}
		})
	}
}

func TestNilRevocationList(t *testing.T) {
	t.Parallel()
	var r *RevocationList
	if r.IsRevoked(readPublicKey(t, "ed25519.pub")) || r.Len() != 0 {
		t.Error("a nil *RevocationList revokes something")
	}
}

func TestRevocationListErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		data     string
		wantLine int    // the *ParseError's line
		wantText string // in the error
	}{
		{
			name:     "bad base64",
			data:     "# revoked\n" + aliceLine + "\nssh-ed25519 AAAA!!!! dave\n",
			wantLine: 3,
			wantText: "revoked:3: not a valid revoked key or fingerprint: ssh-ed25519 key: illegal base64 data",
		},
		{name: "options", data: `from="10.0.0.1" ` + aliceLine, wantLine: 1, wantText: `options are not allowed here: from="10.0.0.1"`},
		{name: "cert-authority", data: "\n@cert-authority " + aliceLine, wantLine: 2, wantText: "options are not allowed here: @cert-authority"},
		{name: "one word", data: "garbage", wantLine: 1},
		{name: "short fingerprint", data: carolFingerprint[:len("SHA256:")+40], wantLine: 1, wantText: "has 30 bytes, not 32"},
		{name: "truncated fingerprint", data: carolFingerprint[:len(carolFingerprint)-1], wantLine: 1, wantText: "illegal base64 data"},
		{name: "bad fingerprint", data: "SHA256:CDW64LR7K5pIqpgRcmD09f7cNpKsmclNsCStmii!p9E", wantLine: 1, wantText: "illegal base64 data"},
		{name: "empty fingerprint", data: "SHA256:", wantLine: 1, wantText: "has 0 bytes"},
		{name: "MD5 fingerprint", data: "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", wantLine: 1, wantText: "MD5 fingerprints are not supported"},
		{name: "ssh-keygen -l line", data: "256 " + aliceFingerprint + " alice (ED25519)", wantLine: 1},
		{
			name:     "binary KRL",
			data:     "SSHKRL\n\x00\x00\x00\x00\x01",
			wantLine: 1,
			wantText: "revoked:1: not a valid revoked key or fingerprint: this is an OpenSSH binary KRL, which is not supported",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, "revoked", tt.data)
			r, err := LoadRevocationList(path)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Source != path || pe.Line != tt.wantLine {
				t.Fatalf("LoadRevocationList = %v, want a *ParseError for line %d", err, tt.wantLine)
			}
			if r != nil {
				t.Errorf("LoadRevocationList returned %d keys with its error", r.Len())
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		_, err := LoadRevocationList(filepath.Join("testdata", "nothing"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v, want %v", err, fs.ErrNotExist)
		}
	})
}

// TestRevocationListKRL checks the error for a KRL made by ssh-keygen -k.
func TestRevocationListKRL(t *testing.T) {
	t.Parallel()
	keygen := testtool.NeedTool(t, "ssh-keygen")
	krl := filepath.Join(t.TempDir(), "revoked.krl")
	if out, err := exec.Command(keygen, "-k", "-f", krl, filepath.Join("testdata", "ed25519.pub")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -k: %v: %s", err, out)
	}
	_, err := LoadRevocationList(krl)
	if err == nil || !strings.Contains(err.Error(), "KRL, which is not supported") {
		t.Errorf("LoadRevocationList of a KRL = %v, want an error saying KRLs are not supported", err)
	}
}

// TestRevocationListFingerprints checks that the fingerprints of the
// fixtures, as ssh-keygen prints them, revoke the keys.
func TestRevocationListFingerprints(t *testing.T) {
	t.Parallel()
	fps := sshKeygenFingerprints(t, filepath.Join("testdata", "authorized_keys"))
	r, err := ParseRevocationList([]byte(strings.Join(fps, "\n")), "inline")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ed25519.pub", "rsa.pub", "ecdsa.pub"} {
		if !r.IsRevoked(readPublicKey(t, name)) {
			t.Errorf("%s is not revoked by ssh-keygen's fingerprints %q", name, fps)
		}
	}
}

// TestFingerprintForms checks the forms of a fingerprint that are accepted.
func TestFingerprintForms(t *testing.T) {
	t.Parallel()
	_, b64, _ := strings.Cut(aliceFingerprint, ":")
	tests := []struct {
		name string
		line string
	}{
		{name: "as printed", line: aliceFingerprint},
		{name: "padded", line: aliceFingerprint + "="},
		{name: "lower-case prefix", line: "sha256:" + b64},
		{name: "comment", line: aliceFingerprint + " alice's old laptop"},
		{name: "tab", line: aliceFingerprint + "\talice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := ParseRevocationList([]byte(tt.line+"\r\n"), "inline")
			if err != nil {
				t.Fatal(err)
			}
			if !r.IsRevoked(readPublicKey(t, "ed25519.pub")) || r.Len() != 1 {
				t.Errorf("%q does not revoke alice's key alone", tt.line)
			}
		})
	}
}

func FuzzParseRevocationList(f *testing.F) {
	for _, name := range []string{"revoked_keys", "authorized_keys", "trusted_user_ca_keys"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("SHA256:\nMD5:aa\nSSHKRL\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocationList(data, "fuzz")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Source != "fuzz" || r != nil {
				t.Fatalf("ParseRevocationList error %v, list %v", err, r)
			}
			return
		}
		if r.Len() > strings.Count(string(data), "\n")+1 {
			t.Fatalf("%d keys in %d lines", r.Len(), strings.Count(string(data), "\n")+1)
		}
	})
}
