package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// krlMagic starts an OpenSSH binary key revocation list (KRL).
const krlMagic = "SSHKRL\n\x00"

// RevocationList is a set of revoked keys, for refusing a key, a
// certificate or every certificate of a CA. A nil *RevocationList revokes
// nothing. A RevocationList is not changed after it is loaded, so it may be
// used by many goroutines at once.
type RevocationList struct {
	// hashes holds the SHA-256 of the wire form of each revoked key, which
	// is what a SHA256: fingerprint encodes.
	hashes map[[sha256.Size]byte]struct{}
}

// LoadRevocationList reads and parses the revocation list at path, as
// ParseRevocationList does with path as the source.
func LoadRevocationList(path string) (*RevocationList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ParseRevocationList(data, path)
}

// ParseRevocationList parses a list of revoked keys, one a line: a public
// key in the authorized_keys form without options (ssh-ed25519 AAAA...
// comment), which may be a CA key or a certificate, or a fingerprint as
// OpenSSH prints it (SHA256:, then unpadded base64), optionally followed by
// a comment. Blank lines and lines starting with '#' are skipped. This is
// the plain form of sshd's RevokedKeys file, plus fingerprints.
//
// An invalid line gives a *ParseError naming source and the line. OpenSSH's
// binary key revocation lists (KRLs) are not supported, and give a
// *ParseError for line 1 saying so.
func ParseRevocationList(data []byte, source string) (*RevocationList, error) {
	const kind = "revoked key or fingerprint"
	if bytes.HasPrefix(data, []byte(krlMagic)) {
		return nil, &ParseError{Source: source, Line: 1, Kind: kind,
			Err: errors.New("this is an OpenSSH binary KRL, which is not supported: list the revoked keys or their SHA256 fingerprints instead, one a line")}
	}
	r := &RevocationList{hashes: make(map[[sha256.Size]byte]struct{})}
	for n, line := range lines(data) {
		h, err := parseRevokedLine(line)
		if err != nil {
			return nil, &ParseError{Source: source, Line: n, Kind: kind, Err: err}
		}
		r.hashes[h] = struct{}{}
	}
	return r, nil
}

// parseRevokedLine returns the SHA-256 of the key that line revokes.
func parseRevokedLine(line []byte) ([sha256.Size]byte, error) {
	first, _, _ := strings.Cut(string(line), " ")
	first, _, _ = strings.Cut(first, "\t")
	alg, b64, isFingerprint := strings.Cut(first, ":")
	isFingerprint = isFingerprint && alg != "" && strings.Trim(strings.ToUpper(alg), "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == ""
	if !isFingerprint {
		k, err := parsePlainKey(line)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		return sha256.Sum256(k.Marshal()), nil
	}
	if !strings.EqualFold(alg, "SHA256") {
		return [sha256.Size]byte{}, fmt.Errorf("%s fingerprints are not supported: give the SHA256 fingerprint (ssh-keygen -l -E sha256) or the key", alg)
	}
	// OpenSSH prints fingerprints unpadded; allow the padding too.
	sum, err := base64.RawStdEncoding.Strict().DecodeString(strings.TrimSuffix(b64, "="))
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("fingerprint %s: %w", first, err)
	}
	if len(sum) != sha256.Size {
		return [sha256.Size]byte{}, fmt.Errorf("fingerprint %s has %d bytes, not %d", first, len(sum), sha256.Size)
	}
	return [sha256.Size]byte(sum), nil
}

// IsRevoked reports whether k is revoked: whether k, by its wire form or
// its SHA256 fingerprint, is in r. If k is a certificate, it is also
// revoked if its key (cert.Key) or the CA key that signed it
// (cert.SignatureKey) is in r. IsRevoked of a nil *RevocationList or a nil
// key is false.
//
// To refuse revoked certificates in an ssh.CertChecker, set its IsRevoked
// to a function calling IsRevoked, and check keys that are not
// certificates with IsRevoked too.
func (r *RevocationList) IsRevoked(k ssh.PublicKey) bool {
	if r == nil || k == nil {
		return false
	}
	if r.has(k) {
		return true
	}
	if cert, ok := k.(*ssh.Certificate); ok {
		return r.has(cert.Key) || r.has(cert.SignatureKey)
	}
	return false
}

func (r *RevocationList) has(k ssh.PublicKey) bool {
	if k == nil {
		return false
	}
	_, ok := r.hashes[sha256.Sum256(k.Marshal())]
	return ok
}

// Len returns the number of distinct keys in r; a key listed both by
// itself and by its fingerprint counts once. Len of nil is 0.
func (r *RevocationList) Len() int {
	if r == nil {
		return 0
	}
	return len(r.hashes)
}
