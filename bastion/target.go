package bastion

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxTargetLen bounds a console target. XAPI name labels have no fixed
// limit, but nobody types a 1 KiB VM name.
const maxTargetLen = 255

// Target is what a user asked to open: a VM name label or UUID, optionally
// in one pool.
type Target struct {
	Pool string // "" for every pool
	Name string // name label or UUID
}

func (t Target) String() string {
	if t.Pool == "" {
		return t.Name
	}
	return t.Pool + "/" + t.Name
}

var errBadTarget = errors.New("not a VM name: use NAME, POOL/NAME or a UUID")

// ParseTarget parses a console target: "NAME", "POOL/NAME" or a UUID, as
// given to "console" or as the host of a forward. pools are the configured
// pool names: "A/B" names pool A only when A is one of them, and is
// otherwise taken as a whole name label. Names with control characters,
// invalid UTF-8, or over 255 bytes are refused.
func ParseTarget(s string, pools []string) (Target, error) {
	if s == "" || len(s) > maxTargetLen || !utf8.ValidString(s) {
		return Target{}, errBadTarget
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return Target{}, errBadTarget
		}
	}
	if pool, name, ok := strings.Cut(s, "/"); ok {
		for _, p := range pools {
			if p == pool {
				if name == "" {
					return Target{}, errBadTarget
				}
				return Target{Pool: pool, Name: name}, nil
			}
		}
	}
	if strings.TrimSpace(s) != s {
		return Target{}, errBadTarget
	}
	return Target{Name: s}, nil
}
