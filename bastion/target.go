package bastion

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/xenbastion/xenbastion/xapi"
)

// maxTargetLen bounds a console target. XAPI name labels have no fixed
// limit, but nobody types a 1 KiB VM name.
const maxTargetLen = 255

// Target is what a user asked to open: a VM name label or UUID, or a
// host's control domain, optionally in one pool.
type Target struct {
	Pool string // "" for every pool
	Name string // name label or UUID; "" for a host
	Host string // "host:NAME": the control domain of host NAME
}

func (t Target) String() string {
	s := t.Name
	if t.Host != "" {
		s = "host:" + t.Host
	}
	if t.Pool == "" {
		return s
	}
	return t.Pool + "/" + s
}

var errBadTarget = errors.New("not a VM name: use NAME, POOL/NAME, a UUID or host:HOST")

// ParseTarget parses a console target: "NAME", "POOL/NAME", a UUID (also
// written "uuid:UUID") or "host:HOST" (a host's control domain), as given to
// "console" or as the host of a forward. pools are the configured
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
	var t Target
	name := s
	if pool, rest, ok := strings.Cut(s, "/"); ok {
		for _, p := range pools {
			if p == pool {
				t.Pool, name = pool, rest
				break
			}
		}
	}
	if name == "" || strings.TrimSpace(name) != name {
		return Target{}, errBadTarget
	}
	switch {
	case strings.HasPrefix(name, "host:"):
		t.Host = name[len("host:"):]
		if t.Host == "" {
			return Target{}, errBadTarget
		}
	case strings.HasPrefix(name, "uuid:"):
		t.Name = name[len("uuid:"):]
		if !xapi.IsUUID(t.Name) {
			return Target{}, errBadTarget
		}
	default:
		t.Name = name
	}
	return t, nil
}
