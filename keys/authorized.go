package keys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// AuthorizedKey is one key line of an authorized_keys file.
type AuthorizedKey struct {
	Key ssh.PublicKey
	// Comment is the text after the key, often user@host; it may be empty.
	Comment string
	// Options are the line's options as written, such as
	// `from="10.0.0.0/8"`, in order; nil if there are none. Only from= and
	// expiry-time= are allowed, and they are parsed into From and
	// ExpiresAt, which Permit checks.
	Options []string
	// From holds the address patterns of the from= option; it is nil,
	// which matches every address, if there is none.
	From *AddrPatterns
	// ExpiresAt is the time of the expiry-time= option, after which the
	// key is refused; the zero Time, meaning never, if there is none.
	ExpiresAt time.Time
	// Source names where the line came from: a file name, or "inline".
	Source string
	// Line is the line's number in Source, counting from 1.
	Line int
}

// ParseError reports a line of an authorized_keys, revocation list or CA
// keys file that is not valid.
type ParseError struct {
	Source string // the file name, or the source passed to a Parse function
	Line   int    // counting from 1
	// Kind says what the line should hold, such as "revoked key or
	// fingerprint" or "CA key"; "" means "authorized key".
	Kind string
	Err  error // why the line is invalid
}

func (e *ParseError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "authorized key"
	}
	return fmt.Sprintf("keys: %s:%d: not a valid %s: %v", e.Source, e.Line, kind, e.Err)
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
// error.
//
// Of the options, from= and expiry-time= are supported, with OpenSSH's
// meaning (see ParseAddrPatterns and ParseExpiryTime; an expiry-time
// without Z is in the local time zone, time.Local) and checked by
// AuthorizedKey.Permit. Option names are case-insensitive. Any other
// option, such as no-pty, command=, restrict or cert-authority, is an
// error wrapping ErrUnsupportedOption: a key whose line asks for limits
// the bastion does not enforce is refused rather than given more access
// than its line says.
func ParseAuthorizedKeys(data []byte, source string) ([]AuthorizedKey, error) {
	return parseAuthorizedKeys(data, source, time.Local)
}

// parseAuthorizedKeys is ParseAuthorizedKeys with expiry times without a
// zone read in loc.
func parseAuthorizedKeys(data []byte, source string, loc *time.Location) ([]AuthorizedKey, error) {
	var keys []AuthorizedKey
	for n, line := range lines(data) {
		key, comment, options, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, &ParseError{Source: source, Line: n, Err: explain(line, err)}
		}
		from, expires, err := parseOptions(options, loc)
		if err != nil {
			return nil, &ParseError{Source: source, Line: n, Err: err}
		}
		keys = append(keys, AuthorizedKey{
			Key:       key,
			Comment:   comment,
			Options:   options,
			From:      from,
			ExpiresAt: expires,
			Source:    source,
			Line:      n,
		})
	}
	return keys, nil
}

// lines yields the number, counting from 1, and the text without leading
// and trailing white space of each line of data that is neither blank nor
// a comment starting with '#'. Lines may end in LF or CRLF.
func lines(data []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		for n := 1; len(data) > 0; n++ {
			var line []byte
			line, data, _ = bytes.Cut(data, []byte("\n"))
			line = bytes.TrimSpace(line) // also drops the CR of a CRLF
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			if !yield(n, line) {
				return
			}
		}
	}
}

// parsePlainKey parses a line holding one public key in the authorized_keys
// form, without options: type, base64 and an optional comment.
func parsePlainKey(line []byte) (ssh.PublicKey, error) {
	key, _, options, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, explain(line, err)
	}
	if options != nil {
		return nil, fmt.Errorf("options are not allowed here: %s", strings.Join(options, ","))
	}
	return key, nil
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
