package keys

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"
)

// LoadCAKeys reads and parses the file of trusted CA keys at path, as
// ParseCAKeys does with path as the source.
func LoadCAKeys(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ParseCAKeys(data, path)
}

// ParseCAKeys parses keys of certificate authorities trusted to sign user
// certificates, in the form of sshd's TrustedUserCAKeys file: one public
// key a line in the authorized_keys form without options (ssh-ed25519
// AAAA... comment). Blank lines and lines starting with '#' are skipped.
// The keys are returned in the order of the lines.
//
// An invalid line gives a *ParseError naming source and the line; so does
// a certificate, which cannot be a CA key, and an option such as
// cert-authority, which this file does not need.
func ParseCAKeys(data []byte, source string) ([]ssh.PublicKey, error) {
	var cas []ssh.PublicKey
	for n, line := range lines(data) {
		k, err := parsePlainKey(line)
		if err == nil {
			if _, ok := k.(*ssh.Certificate); ok {
				err = errors.New("a certificate cannot be a CA key")
			}
		}
		if err != nil {
			return nil, &ParseError{Source: source, Line: n, Kind: "CA key", Err: err}
		}
		cas = append(cas, k)
	}
	return cas, nil
}

// CASet is a set of trusted CA keys. The zero CASet is empty. A CASet is
// not changed after NewCASet returns it, so it may be used by many
// goroutines at once.
type CASet struct {
	m map[string]struct{} // by the key's wire form
}

// NewCASet returns the set of keys in cas.
func NewCASet(cas ...ssh.PublicKey) CASet {
	s := CASet{m: make(map[string]struct{})}
	for _, k := range cas {
		if k != nil {
			s.m[string(k.Marshal())] = struct{}{}
		}
	}
	return s
}

// IsCA reports whether k is one of the CA keys in s, comparing wire forms
// (ssh.PublicKey.Marshal). It has the type of ssh.CertChecker's
// IsUserAuthority, which calls it with the key that signed a certificate.
// IsCA of a nil key is false.
func (s CASet) IsCA(k ssh.PublicKey) bool {
	if k == nil {
		return false
	}
	_, ok := s.m[string(k.Marshal())]
	return ok
}

// Len returns the number of distinct keys in s.
func (s CASet) Len() int { return len(s.m) }
