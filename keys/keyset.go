package keys

import "golang.org/x/crypto/ssh"

// KeySet is a set of authorized keys, for checking the key a client offers.
// The zero KeySet is empty. A KeySet is not changed after NewKeySet returns
// it, so it may be used by many goroutines at once.
type KeySet struct {
	m map[string]AuthorizedKey // by the key's wire form
}

// NewKeySet returns the set of keys in lists. When a key appears more than
// once, the first occurrence is the one Lookup returns, as sshd uses the
// first line that matches.
func NewKeySet(lists ...[]AuthorizedKey) KeySet {
	s := KeySet{m: make(map[string]AuthorizedKey)}
	for _, keys := range lists {
		for _, k := range keys {
			w := string(k.Key.Marshal())
			if _, ok := s.m[w]; !ok {
				s.m[w] = k
			}
		}
	}
	return s
}

// Contains reports whether k is in s. Keys are compared by their wire form
// (ssh.PublicKey.Marshal), so comments and options do not matter, and a
// certificate does not match the key it certifies.
func (s KeySet) Contains(k ssh.PublicKey) bool {
	_, ok := s.Lookup(k)
	return ok
}

// Lookup returns the AuthorizedKey in s that equals k, with its comment,
// options and source line, and whether there is one.
func (s KeySet) Lookup(k ssh.PublicKey) (AuthorizedKey, bool) {
	if k == nil {
		return AuthorizedKey{}, false
	}
	ak, ok := s.m[string(k.Marshal())]
	return ak, ok
}

// Len returns the number of distinct keys in s.
func (s KeySet) Len() int { return len(s.m) }
