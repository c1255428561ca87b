package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// hostKeyComment is the comment in host keys made by LoadOrCreateHostKey.
const hostKeyComment = "xenbastion host key"

// maxHostKeySize bounds the host key file read. The largest OpenSSH keys,
// 16384-bit RSA, take about 12 KiB.
const maxHostKeySize = 64 << 10

// ModeError reports a private key file that group or others may access.
type ModeError struct {
	Path string
	Mode fs.FileMode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("keys: %s has mode %#o, which lets group or others access a private key: run chmod 600 %s",
		e.Path, e.Mode.Perm(), e.Path)
}

// LoadOrCreateHostKey returns the SSH host key stored at path, creating it
// if the file does not exist; created reports whether it did.
//
// An existing file must hold an unencrypted private key in a format
// ssh.ParsePrivateKey reads (OpenSSH, PKCS#1, PKCS#8, SEC 1), of any type,
// and must not be accessible to group or others: with any such permission
// bit set, LoadOrCreateHostKey returns a *ModeError, as sshd refuses such a
// key.
//
// A new key is ed25519, written in the OpenSSH private key format with mode
// 0600, in a directory created with mode 0700 if it is missing. The key is
// written to a temporary file in the same directory and then linked into
// place, so a crash leaves either no key or a whole one, and two processes
// starting at once end up sharing one key instead of replacing each other's.
func LoadOrCreateHostKey(path string) (signer ssh.Signer, created bool, err error) {
	signer, err = loadHostKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return signer, false, err
	}
	if err := createHostKey(path); errors.Is(err, fs.ErrExist) {
		// Someone else created it first: use theirs.
		signer, err := loadHostKey(path)
		return signer, false, err
	} else if err != nil {
		return nil, false, err
	}
	signer, err = loadHostKey(path)
	return signer, err == nil, err
}

// loadHostKey loads the private key at path, checking its mode. It returns
// an error wrapping fs.ErrNotExist if there is no file.
func loadHostKey(path string) (ssh.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: host key %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &ModeError{Path: path, Mode: fi.Mode()}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxHostKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("keys: host key: %w", err)
	}
	if len(data) > maxHostKeySize {
		return nil, fmt.Errorf("keys: host key %s is larger than %d bytes", path, maxHostKeySize)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if _, ok := err.(*ssh.PassphraseMissingError); ok {
		return nil, fmt.Errorf("keys: host key %s is encrypted with a passphrase, which is not supported", path)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: host key %s: %w", path, err)
	}
	return signer, nil
}

// createHostKey writes a new ed25519 key to path. It returns an error
// wrapping fs.ErrExist if path exists by the time the key is written.
func createHostKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("keys: generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, hostKeyComment)
	if err != nil {
		return fmt.Errorf("keys: encode host key: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: create host key directory: %w", err)
	}
	// CreateTemp opens with O_EXCL and mode 0600.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("keys: create host key: %w", err)
	}
	defer os.Remove(tmp.Name()) // harmless once linked
	_, err = tmp.Write(pem.EncodeToMemory(block))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("keys: write host key: %w", err)
	}
	// Link, unlike rename, fails if path exists.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keys: create host key: %w", err)
		}
		// Some file systems have no hard links; there rename is the best
		// atomic operation left.
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("keys: create host key: %w", err)
		}
	}
	// Make the new directory entry durable.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
