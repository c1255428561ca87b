package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

func TestLoadOrCreateHostKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "etc", "xenbastion")
	path := filepath.Join(dir, "host_ed25519_key")

	signer, created, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first call: created = false, want true")
	}
	if got := signer.PublicKey().Type(); got != ssh.KeyAlgoED25519 {
		t.Errorf("new key type = %s, want %s", got, ssh.KeyAlgoED25519)
	}
	for _, c := range []struct {
		path string
		want fs.FileMode
	}{{path, 0o600}, {dir, 0o700 | fs.ModeDir}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.want {
			t.Errorf("%s has mode %v, want %v", c.path, fi.Mode(), c.want)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
		t.Errorf("key file starts with %q, want the OpenSSH format", data[:min(len(data), 40)])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%s holds %d files, want only the key", dir, len(entries))
	}

	again, created, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("second call: created = true, want false")
	}
	if !bytes.Equal(again.PublicKey().Marshal(), signer.PublicKey().Marshal()) {
		t.Error("second call loaded another key")
	}

	t.Run("ssh-keygen reads it", func(t *testing.T) {
		out, err := exec.Command(testtool.NeedTool(t, "ssh-keygen"), "-y", "-f", path).Output()
		if err != nil {
			t.Fatalf("ssh-keygen -y: %v", err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(out)
		if err != nil {
			t.Fatalf("ssh-keygen -y printed %q: %v", out, err)
		}
		if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
			t.Error("ssh-keygen -y shows another public key")
		}
	})
}

// TestLoadOrCreateHostKeyRace starts several loaders at once on a missing
// key: exactly one must create it and all must get the same key.
func TestLoadOrCreateHostKeyRace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "host_key")
	const n = 8
	var (
		wg      sync.WaitGroup
		signers [n]ssh.Signer
		created [n]bool
		errs    [n]error
	)
	for i := range n {
		wg.Go(func() { signers[i], created[i], errs[i] = LoadOrCreateHostKey(path) })
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("loader %d: %v", i, errs[i])
		}
		if created[i] {
			creators++
		}
		if !bytes.Equal(signers[i].PublicKey().Marshal(), signers[0].PublicKey().Marshal()) {
			t.Errorf("loader %d got another key than loader 0", i)
		}
	}
	if creators != 1 {
		t.Errorf("%d loaders created the key, want 1", creators)
	}
}

// writeKey writes a private key file with mode perm, and returns its path.
func writeKey(t *testing.T, data []byte, perm fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "host_key")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Chmod, as WriteFile's mode is subject to the umask.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// openSSHKey returns priv in the OpenSSH private key format.
func openSSHKey(t *testing.T, priv crypto.PrivateKey) []byte {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func TestHostKeyModes(t *testing.T) {
	t.Parallel()
	key := openSSHKey(t, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)))
	tests := []struct {
		name   string
		perm   fs.FileMode
		refuse bool
	}{
		{name: "0600", perm: 0o600},
		{name: "0400", perm: 0o400},
		{name: "0700", perm: 0o700},
		{name: "0640 group read", perm: 0o640, refuse: true},
		{name: "0604 other read", perm: 0o604, refuse: true},
		{name: "0620 group write", perm: 0o620, refuse: true},
		{name: "0601 other execute", perm: 0o601, refuse: true},
		{name: "0644", perm: 0o644, refuse: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeKey(t, key, tt.perm)
			signer, created, err := LoadOrCreateHostKey(path)
			if created {
				t.Error("created = true for an existing file")
			}
			if !tt.refuse {
				if err != nil {
					t.Fatal(err)
				}
				if signer == nil {
					t.Fatal("no signer and no error")
				}
				return
			}
			var me *ModeError
			if !errors.As(err, &me) {
				t.Fatalf("LoadOrCreateHostKey = %v, want a *ModeError", err)
			}
			if me.Path != path || me.Mode.Perm() != tt.perm {
				t.Errorf("ModeError{%s, %v}, want {%s, %v}", me.Path, me.Mode, path, tt.perm)
			}
			for _, want := range []string{path, fmt.Sprintf("%#o", tt.perm), "chmod 600 " + path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// The file must be left alone.
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tt.perm {
				t.Errorf("after refusal: %v, %v", fi.Mode(), err)
			}
		})
	}
}

// TestHostKeyTypes checks that keys not made by LoadOrCreateHostKey load
// too, and that unusable files are refused with a clear error.
func TestHostKeyTypes(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	encrypted, err := ssh.MarshalPrivateKeyWithPassphrase(edKey, "test", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		data     []byte
		wantPub  crypto.PublicKey // nil if loading must fail
		wantText string           // in the error if it fails
	}{
		{name: "rsa openssh", data: openSSHKey(t, rsaKey), wantPub: &rsaKey.PublicKey},
		{
			name:    "rsa pkcs1",
			data:    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
			wantPub: &rsaKey.PublicKey,
		},
		{name: "ecdsa openssh", data: openSSHKey(t, ecKey), wantPub: &ecKey.PublicKey},
		{name: "ed25519 openssh", data: openSSHKey(t, edKey), wantPub: edKey.Public()},
		{name: "encrypted", data: pem.EncodeToMemory(encrypted), wantText: "passphrase"},
		{name: "garbage", data: []byte("not a key\n"), wantText: "host_key"},
		{name: "empty", data: nil, wantText: "host_key"},
		{name: "public key", data: []byte(aliceLine + "\n"), wantText: "host_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeKey(t, tt.data, 0o600)
			signer, created, err := LoadOrCreateHostKey(path)
			if created {
				t.Error("created = true for an existing file")
			}
			if tt.wantPub == nil {
				if err == nil {
					t.Fatal("LoadOrCreateHostKey succeeded, want an error")
				}
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("error %q does not contain %q", err, tt.wantText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := ssh.NewPublicKey(tt.wantPub)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(signer.PublicKey().Marshal(), want.Marshal()) {
				t.Error("loaded another key than the one written")
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, tt.data) {
				t.Error("the key file was changed")
			}
		})
	}
}

func TestHostKeyNotAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{name: "directory", path: dir},
		{name: "parent is a file", path: filepath.Join(notDir, "host_key")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := LoadOrCreateHostKey(tt.path); err == nil {
				t.Fatal("LoadOrCreateHostKey succeeded, want an error")
			}
		})
	}
}
