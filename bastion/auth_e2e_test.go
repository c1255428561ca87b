package bastion_test

import (
	"crypto/dsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/keys"
)

func newSigner(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certify signs key's public key as a user certificate; edit changes it
// before signing.
func certify(t *testing.T, ca, key gossh.Signer, edit func(*gossh.Certificate)) (*gossh.Certificate, gossh.Signer) {
	t.Helper()
	cert := &gossh.Certificate{
		Key: key.PublicKey(), CertType: gossh.UserCert, KeyId: "test", Serial: 7,
		ValidPrincipals: []string{"carol"},
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
		Permissions:     gossh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if edit != nil {
		edit(cert)
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, signer
}

// TestCertificatesAndKeyOptions: SSH user certificates from a trusted CA,
// revocation, and authorized_keys options, as OpenSSH and x/crypto clients
// meet them.
func TestCertificatesAndKeyOptions(t *testing.T) {
	t.Parallel()
	ca, otherCA, revokedCA := newSigner(t), newSigner(t), newSigner(t)
	users := []bastiontest.User{
		{Name: "carol", Allow: []string{"*"}, NoKey: true},
		{Name: "dave", Allow: []string{"*"}, KeyOptions: `from="10.0.0.0/8,!127.0.0.1"`},
		{Name: "erin", Allow: []string{"*"}, KeyOptions: `expiry-time="20200101"`},
		{Name: "frank", Allow: []string{"*"}},
		{Name: "gina", Allow: []string{"*"}, KeyOptions: `from="127.0.0.0/8"`},
	}
	b := bastiontest.Start(t, bastiontest.Options{Users: users,
		// Many refusals from one address: no blocking here.
		Configure: func(s *bastion.Server) { s.Limits.AuthFailuresPerMinute = -1 }})
	revoked, err := keys.ParseRevocationList([]byte(
		string(gossh.MarshalAuthorizedKey(b.Signer("frank").PublicKey()))+
			gossh.FingerprintSHA256(revokedCA.PublicKey())+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	b.Server.SetPolicy(b.NewPolicy(t, users, nil,
		bastion.WithUserCAs(keys.NewCASet(ca.PublicKey(), revokedCA.PublicKey())), bastion.WithRevoked(revoked)))

	carolKey := b.Signer("carol")
	tests := []struct {
		name   string
		user   string
		signer func() gossh.Signer
		reason string // "" for success; else a substring of auth.failure's reason
	}{
		{"certificate", "carol", func() gossh.Signer { _, s := certify(t, ca, carolKey, nil); return s }, ""},
		{"plain key of a certificate-only user", "carol", func() gossh.Signer { return carolKey }, "key not authorized"},
		{"expired certificate", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.ValidBefore = uint64(time.Now().Add(-time.Minute).Unix()) })
			return s
		}, "expired"},
		{"certificate not yet valid", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.ValidAfter = uint64(time.Now().Add(time.Hour).Unix()) })
			return s
		}, "not yet valid"},
		{"certificate for another principal", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.ValidPrincipals = []string{"root"} })
			return s
		}, `principal "carol" not in the certificate`},
		{"certificate without principals", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.ValidPrincipals = nil })
			return s
		}, "principal"},
		{"certificate from an untrusted CA", "carol", func() gossh.Signer { _, s := certify(t, otherCA, carolKey, nil); return s }, "untrusted CA"},
		{"certificate from a revoked CA", "carol", func() gossh.Signer { _, s := certify(t, revokedCA, carolKey, nil); return s }, "key revoked"},
		{"unknown critical option", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"force-command": "/bin/sh"} })
			return s
		}, "unsupported critical option"},
		{"source-address elsewhere", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"source-address": "10.0.0.0/8"} })
			return s
		}, "source-address"},
		{"source-address here", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"source-address": "127.0.0.0/8"} })
			return s
		}, ""},
		{"source-address with a pattern", "carol", func() gossh.Signer {
			// OpenSSH takes only addresses and CIDR networks here, unlike from=.
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"source-address": "127.0.0.*"} })
			return s
		}, `source-address lists "127.0.0.*"`},
		{"source-address with a negation", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) {
				c.CriticalOptions = map[string]string{"source-address": "127.0.0.0/8,!10.0.0.0/8"}
			})
			return s
		}, `source-address lists "!10.0.0.0/8"`},
		{"source-address with a host name", "carol", func() gossh.Signer {
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) {
				c.CriticalOptions = map[string]string{"source-address": "127.0.0.1,bastion.example.com"}
			})
			return s
		}, `source-address lists "bastion.example.com"`},
		{"source-address with host bits set", "carol", func() gossh.Signer {
			// sshd: "inconsistent mask length". The reason must name the
			// entry: the network does cover the client's address.
			_, s := certify(t, ca, carolKey, func(c *gossh.Certificate) {
				c.CriticalOptions = map[string]string{"source-address": "127.0.0.1/8"}
			})
			return s
		}, `source-address lists "127.0.0.1/8", a network with host bits set`},
		{"key from= elsewhere", "dave", func() gossh.Signer { return b.Signer("dave") }, "not allowed from this address"},
		{"key from= here", "gina", func() gossh.Signer { return b.Signer("gina") }, ""},
		{"expired key", "erin", func() gossh.Signer { return b.Signer("erin") }, "expired"},
		{"revoked key", "frank", func() gossh.Signer { return b.Signer("frank") }, "key revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialFromErr(b, "127.0.0.1", tt.user, tt.signer())
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				defer c.Close()
				if out, err := newSessionOutput(t, c, "list"); err != nil || !strings.Contains(out, "web-1") {
					t.Errorf("list: %v %q", err, out)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			b.WaitEvent(t, func(ev bastion.Event) bool {
				return ev.Event == bastion.EventAuthFailure && ev.User == tt.user && strings.Contains(ev.Reason, tt.reason)
			})
		})
	}

	// OpenSSH picks up ID-cert.pub beside the identity file by itself.
	t.Run("openssh with a certificate", func(t *testing.T) {
		cert, _ := certify(t, ca, carolKey, nil)
		if err := os.WriteFile(b.Identity("carol")+"-cert.pub", gossh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runSSH(t, b, "carol", "", nil, "list")
		if r.code != 0 || !strings.Contains(r.stdout, "web-1") {
			t.Fatalf("list with a certificate: %+v", r)
		}
		// The audit names the certified key, as OpenSSH logs it.
		b.WaitEvent(t, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventAuthSuccess && ev.User == "carol" && ev.KeyFingerprint == gossh.FingerprintSHA256(carolKey.PublicKey())
		})
		expired, _ := certify(t, ca, carolKey, func(c *gossh.Certificate) { c.ValidBefore = uint64(time.Now().Add(-time.Minute).Unix()) })
		os.WriteFile(b.Identity("carol")+"-cert.pub", gossh.MarshalAuthorizedKey(expired), 0o644)
		if r := runSSH(t, b, "carol", "", nil, "list"); r.code != 255 {
			t.Errorf("an expired certificate got in: %+v", r)
		}
	})
}

// TestCertificateExtensions: as with sshd, a certificate grants forwarding
// and a terminal only with its permit-port-forwarding and permit-pty
// extensions; without permit-pty the session goes on without a terminal.
func TestCertificateExtensions(t *testing.T) {
	t.Parallel()
	ca := newSigner(t)
	users := []bastiontest.User{{Name: "carol", Allow: []string{"*"}, NoKey: true}}
	b := bastiontest.Start(t, bastiontest.Options{Users: users})
	b.Server.SetPolicy(b.NewPolicy(t, users, nil, bastion.WithUserCAs(keys.NewCASet(ca.PublicKey()))))
	login := func(t *testing.T, extensions ...string) *gossh.Client {
		t.Helper()
		ext := map[string]string{}
		for _, e := range extensions {
			ext[e] = ""
		}
		_, s := certify(t, ca, b.Signer("carol"), func(c *gossh.Certificate) { c.Extensions = ext })
		c, err := dialFromErr(b, "127.0.0.1", "carol", s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	forward := func(c *gossh.Client) error {
		conn, err := c.Dial("tcp", "web-1:5900")
		if err != nil {
			return err
		}
		defer conn.Close()
		banner := make([]byte, 12)
		_, err = io.ReadFull(conn, banner)
		return err
	}
	pty := func(c *gossh.Client) error {
		s, err := c.NewSession()
		if err != nil {
			return err
		}
		defer s.Close()
		return s.RequestPty("xterm", 24, 80, gossh.TerminalModes{})
	}

	t.Run("with both", func(t *testing.T) {
		c := login(t, "permit-port-forwarding", "permit-pty")
		if err := forward(c); err != nil {
			t.Errorf("forward: %v", err)
		}
		if err := pty(c); err != nil {
			t.Errorf("pty: %v", err)
		}
	})
	t.Run("with neither", func(t *testing.T) {
		c := login(t)
		if err := forward(c); err == nil || !strings.Contains(err.Error(), "does not permit port forwarding") {
			t.Errorf("forward: %v, want it refused", err)
		}
		b.WaitEvent(t, func(ev bastion.Event) bool {
			return ev.Event == bastion.EventConsoleDenied && ev.Reason == "certificate forbids forwarding"
		})
		if err := pty(c); err == nil {
			t.Error("pty granted")
		}
		// Without a terminal, commands still run.
		if out, err := newSessionOutput(t, c, "list"); err != nil || !strings.Contains(out, "web-1") {
			t.Errorf("list: %v %q", err, out)
		}
	})
}

// TestLegacySignaturesRefused: as sshd (since OpenSSH 7.0 and 8.8), a DSA
// key and an RSA key's SHA-1 signature (ssh-rsa) do not log in, while the
// same RSA key signing with rsa-sha2-256 or -512 does.
func TestLegacySignaturesRefused(t *testing.T) {
	t.Parallel()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, err := gossh.NewSignerFromKey(rk)
	if err != nil {
		t.Fatal(err)
	}
	var dk dsa.PrivateKey
	if err := dsa.GenerateParameters(&dk.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&dk, rand.Reader); err != nil {
		t.Fatal(err)
	}
	dsaSigner, err := gossh.NewSignerFromKey(&dk)
	if err != nil {
		t.Fatal(err)
	}
	b := bastiontest.Start(t, bastiontest.Options{})
	ks, err := keys.ParseAuthorizedKeys(append(gossh.MarshalAuthorizedKey(rsaSigner.PublicKey()), gossh.MarshalAuthorizedKey(dsaSigner.PublicKey())...), "test")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := bastion.NewPolicy([]bastion.User{{Name: "alice", Keys: keys.NewKeySet(ks), Allow: []bastion.Rule{{Pattern: "*"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Server.SetPolicy(policy)
	only := func(algo string) gossh.Signer {
		s, err := gossh.NewSignerWithAlgorithms(rsaSigner.(gossh.AlgorithmSigner), []string{algo})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tt := range []struct {
		name   string
		signer gossh.Signer
		ok     bool
	}{
		{"rsa-sha2-256", only(gossh.KeyAlgoRSASHA256), true},
		{"rsa-sha2-512", only(gossh.KeyAlgoRSASHA512), true},
		{"ssh-rsa (SHA-1)", only(gossh.KeyAlgoRSA), false},
		{"ssh-dss", dsaSigner, false},
	} {
		c, err := dialFromErr(b, "127.0.0.1", "alice", tt.signer)
		if err == nil {
			c.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("%s: logged in %v, want %v (%v)", tt.name, err == nil, tt.ok, err)
		}
		if !tt.ok {
			// The audit record says why, not "no key offered".
			b.WaitEvent(t, func(ev bastion.Event) bool {
				return ev.Event == bastion.EventAuthFailure && strings.Contains(ev.Reason, "key algorithm not accepted") &&
					strings.Contains(ev.Reason, strings.Fields(tt.name)[0])
			})
		}
	}
}
