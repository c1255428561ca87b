package keys

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// KeySet is a set of authorized keys, for checking the key a client offers.
// The zero KeySet is empty. A KeySet is not changed after NewKeySet returns
// it, so it may be used by many goroutines at once.
type KeySet struct {
	m map[string][]AuthorizedKey // by the key's wire form, in order
}

// NewKeySet returns the set of keys in lists. A key may appear more than
// once, with other options: Permit tries each of its lines in order, as
// sshd does, and Lookup returns the first.
func NewKeySet(lists ...[]AuthorizedKey) KeySet {
	s := KeySet{m: make(map[string][]AuthorizedKey)}
	for _, keys := range lists {
		for _, k := range keys {
			w := string(k.Key.Marshal())
			s.m[w] = append(s.m[w], k)
		}
	}
	return s
}

// Contains reports whether k is in s. Keys are compared by their wire form
// (ssh.PublicKey.Marshal), so comments and options do not matter, and a
// certificate does not match the key it certifies. Contains ignores the
// keys' options; to authorise a login, use Permit.
func (s KeySet) Contains(k ssh.PublicKey) bool {
	_, ok := s.Lookup(k)
	return ok
}

// Lookup returns the first AuthorizedKey in s that equals k, with its
// comment, options and source line, and whether there is one. Like
// Contains, it ignores options.
func (s KeySet) Lookup(k ssh.PublicKey) (AuthorizedKey, bool) {
	if k == nil {
		return AuthorizedKey{}, false
	}
	aks := s.m[string(k.Marshal())]
	if len(aks) == 0 {
		return AuthorizedKey{}, false
	}
	return aks[0], true
}

// Permit returns the first line for k in s whose options allow a login from
// remote at now (see AuthorizedKey.Permit). Like sshd, it goes on to the
// next line for the same key when a line's options refuse the login, so
// two lines for one key with different from= options allow both. If k is
// not in s, Permit returns an error wrapping ErrUnknownKey; if every line
// for k refuses, it returns their errors joined, so that errors.Is finds
// ErrFromRefused or ErrExpired.
func (s KeySet) Permit(k ssh.PublicKey, remote net.Addr, now time.Time) (AuthorizedKey, error) {
	if k == nil {
		return AuthorizedKey{}, fmt.Errorf("keys: no key: %w", ErrUnknownKey)
	}
	aks := s.m[string(k.Marshal())]
	if len(aks) == 0 {
		return AuthorizedKey{}, fmt.Errorf("keys: %s %s: %w", k.Type(), Fingerprint(k), ErrUnknownKey)
	}
	var errs []error
	for _, ak := range aks {
		err := ak.Permit(remote, now)
		if err == nil {
			return ak, nil
		}
		errs = append(errs, err)
	}
	return AuthorizedKey{}, errors.Join(errs...)
}

// Len returns the number of distinct keys in s.
func (s KeySet) Len() int { return len(s.m) }
