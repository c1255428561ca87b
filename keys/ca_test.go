package keys

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadCAKeys(t *testing.T) {
	t.Parallel()
	cas, err := LoadCAKeys(filepath.Join("testdata", "trusted_user_ca_keys"))
	if err != nil {
		t.Fatal(err)
	}
	want := []ssh.PublicKey{readPublicKey(t, "ed25519.pub"), readPublicKey(t, "ecdsa.pub")}
	if len(cas) != len(want) {
		t.Fatalf("got %d keys, want %d", len(cas), len(want))
	}
	for i := range want {
		if !bytes.Equal(cas[i].Marshal(), want[i].Marshal()) {
			t.Errorf("key %d is %s, want %s", i, Fingerprint(cas[i]), Fingerprint(want[i]))
		}
	}
}

func TestCAKeysErrors(t *testing.T) {
	t.Parallel()
	ca := newSigner(t)
	cert := newCert(t, newSigner(t).PublicKey(), ca)
	tests := []struct {
		name     string
		data     string
		wantLine int
		wantText string
	}{
		{name: "certificate", data: "# CAs\n" + authorizedLine(cert), wantLine: 2, wantText: "inline:2: not a valid CA key: a certificate cannot be a CA key"},
		{name: "cert-authority", data: "cert-authority " + aliceLine, wantLine: 1, wantText: "options are not allowed here: cert-authority"},
		{name: "options", data: aliceLine + "\n" + `from="10.0.0.1" ` + bobLine, wantLine: 2, wantText: "options are not allowed here"},
		{name: "fingerprint", data: aliceFingerprint, wantLine: 1},
		{name: "bad base64", data: "ssh-ed25519 AAAA!!!! ca", wantLine: 1, wantText: "illegal base64 data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cas, err := ParseCAKeys([]byte(tt.data), "inline")
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Source != "inline" || pe.Line != tt.wantLine {
				t.Fatalf("ParseCAKeys = %v, want a *ParseError for line %d", err, tt.wantLine)
			}
			if cas != nil {
				t.Errorf("ParseCAKeys returned %d keys with its error", len(cas))
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
		})
	}
}

func TestCASet(t *testing.T) {
	t.Parallel()
	cas, err := LoadCAKeys(filepath.Join("testdata", "trusted_user_ca_keys"))
	if err != nil {
		t.Fatal(err)
	}
	ca := newSigner(t)
	s := NewCASet(append(cas, ca.PublicKey(), ca.PublicKey(), nil)...)
	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
	tests := []struct {
		name string
		set  CASet
		key  ssh.PublicKey
		want bool
	}{
		{name: "from the file", set: s, key: readPublicKey(t, "ed25519.pub"), want: true},
		{name: "ecdsa from the file", set: s, key: readPublicKey(t, "ecdsa.pub"), want: true},
		{name: "added", set: s, key: ca.PublicKey(), want: true},
		{name: "not a CA", set: s, key: readPublicKey(t, "rsa.pub")},
		{name: "certificate of a CA key", set: s, key: newCert(t, ca.PublicKey(), ca)},
		{name: "nil", set: s, key: nil},
		{name: "zero set", set: CASet{}, key: ca.PublicKey()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.set.IsCA(tt.key); got != tt.want {
				t.Errorf("IsCA = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCertChecker checks CASet and RevocationList in an ssh.CertChecker,
// as the bastion uses them.
func TestCertChecker(t *testing.T) {
	t.Parallel()
	ca, revokedCA, unknownCA := newSigner(t), newSigner(t), newSigner(t)
	user, revokedUser := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	revoked, err := ParseRevocationList([]byte(authorizedLine(revokedCA.PublicKey())+"\n"+Fingerprint(revokedUser)), "inline")
	if err != nil {
		t.Fatal(err)
	}
	checker := &ssh.CertChecker{
		IsUserAuthority: NewCASet(ca.PublicKey(), revokedCA.PublicKey()).IsCA,
		IsRevoked:       func(c *ssh.Certificate) bool { return revoked.IsRevoked(c) },
	}
	tests := []struct {
		name     string
		cert     *ssh.Certificate
		wantText string // "" if the certificate is good
	}{
		{name: "good", cert: newCert(t, user, ca)},
		{name: "unknown CA", cert: newCert(t, user, unknownCA), wantText: "unrecognized authority"},
		{name: "revoked CA", cert: newCert(t, user, revokedCA), wantText: "revoked"},
		{name: "revoked key", cert: newCert(t, revokedUser, ca), wantText: "revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := checker.Authenticate(connMetadata("alice"), tt.cert)
			if tt.wantText == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Authenticate = %v, want an error containing %q", err, tt.wantText)
			}
		})
	}
}

// connMetadata is the ssh.ConnMetadata of a user; CertChecker.Authenticate
// only asks for the user.
type connMetadata string

func (c connMetadata) User() string { return string(c) }

func (connMetadata) SessionID() []byte     { return nil }
func (connMetadata) ClientVersion() []byte { return nil }
func (connMetadata) ServerVersion() []byte { return nil }
func (connMetadata) RemoteAddr() net.Addr  { return nil }
func (connMetadata) LocalAddr() net.Addr   { return nil }
