package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"
)

// AuthorizedKey is one key line of an authorized_keys file.
type AuthorizedKey struct {
	Key ssh.PublicKey
	// Comment is the text after the key, often user@host; it may be empty.
	Comment string
	// Options are the line's options as written, such as `from="10.0.0.0/8"`
	// or "no-pty", in order; nil if there are none.
	//
	// Options are not enforced yet: a key is authorised whatever its
	// options say, so from=, expiry-time= and cert-authority do not narrow
	// or change what the key may do. Honouring from= and expiry-time= is
	// planned.
	Options []string
	// Source names where the line came from: a file name, or "inline".
	Source string
	// Line is the line's number in Source, counting from 1.
	Line int
}

// ParseError reports a line of authorized keys that is not a valid key.
type ParseError struct {
	Source string // as passed to ParseAuthorizedKeys
	Line   int    // counting from 1
	Err    error  // why the line is invalid
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("keys: %s:%d: not a valid authorized key: %v", e.Source, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// ParseAuthorizedKeys parses data in the OpenSSH authorized_keys format (see
// sshd(8), AUTHORIZED_KEYS FILE FORMAT): one key per line, optionally
// preceded by options and followed by a comment. Blank lines and lines
// starting with '#' are skipped, and lines may end in CRLF. source names
// data in errors and in each AuthorizedKey: a file name, or "inline" for keys
// written in a configuration file.
//
// Where sshd skips a line it cannot parse, ParseAuthorizedKeys returns a
// *ParseError naming source and the line, so that a typo fails at start-up
// instead of locking a user out. Data without any key gives no keys and no
// error. Options are kept but not enforced; see AuthorizedKey.Options.
func ParseAuthorizedKeys(data []byte, source string) ([]AuthorizedKey, error) {
	var keys []AuthorizedKey
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSpace(line) // also drops the CR of a CRLF
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, comment, options, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, &ParseError{Source: source, Line: n, Err: explain(line, err)}
		}
		keys = append(keys, AuthorizedKey{
			Key:     key,
			Comment: comment,
			Options: options,
			Source:  source,
			Line:    n,
		})
	}
	return keys, nil
}

// explain returns why line is not a valid key, given the error
// ssh.ParseAuthorizedKey returned for it. That error describes its last
// attempt, which took the first field for options even when it was a key
// type, and it says the line is ignored, which misleads here.
func explain(line []byte, err error) error {
	f := bytes.Fields(line)
	if len(f) >= 2 && looksLikeKeyType(f[0]) {
		blob, err := base64.StdEncoding.DecodeString(string(f[1]))
		if err != nil {
			return fmt.Errorf("%s key: %w", f[0], err)
		}
		k, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return fmt.Errorf("%s key: %w", f[0], err)
		}
		if k.Type() != string(f[0]) {
			return fmt.Errorf("key type %s does not match the key, which is %s", f[0], k.Type())
		}
	}
	if cause := errors.Unwrap(err); cause != nil {
		return cause
	}
	return err
}

// looksLikeKeyType reports whether s starts like the name of an SSH public
// key type, such as ssh-ed25519 or ecdsa-sha2-nistp256, and not like an
// option.
func looksLikeKeyType(s []byte) bool {
	for _, p := range []string{"ssh-", "ecdsa-", "sk-"} {
		if bytes.HasPrefix(s, []byte(p)) && !bytes.ContainsAny(s, `=",`) {
			return true
		}
	}
	return false
}

// LoadAuthorizedKeysFile reads and parses the authorized_keys file at path,
// as ParseAuthorizedKeys does with path as the source.
func LoadAuthorizedKeysFile(path string) ([]AuthorizedKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ParseAuthorizedKeys(data, path)
}
