package keys

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Errors that AuthorizedKey.Permit and KeySet.Permit wrap, for errors.Is.
var (
	// ErrFromRefused means the key's from= option does not allow the
	// client's address.
	ErrFromRefused = errors.New("key not allowed from this address")
	// ErrExpired means the key's expiry-time= has passed.
	ErrExpired = errors.New("key expired")
	// ErrUnknownKey means the key is not in the KeySet.
	ErrUnknownKey = errors.New("key not authorized")
)

// ErrUnsupportedOption is wrapped by the *ParseError of an authorized_keys
// line with an option other than from= and expiry-time=.
var ErrUnsupportedOption = errors.New("unsupported option")

// parseOptions checks the options of an authorized_keys line, as
// ssh.ParseAuthorizedKey split them, and returns what from= and
// expiry-time= say. Times without a zone are in loc.
func parseOptions(opts []string, loc *time.Location) (from *AddrPatterns, expires time.Time, err error) {
	for _, opt := range opts {
		name, value, hasValue := strings.Cut(opt, "=")
		// OpenSSH's option names are case-insensitive.
		isFrom, isExpiry := strings.EqualFold(name, "from"), strings.EqualFold(name, "expiry-time")
		switch {
		case (isFrom || isExpiry) && !hasValue:
			return nil, time.Time{}, fmt.Errorf("option %s needs a value, as in %s=\"...\"", name, name)
		case isFrom:
			if from != nil {
				return nil, time.Time{}, errors.New("more than one from= option")
			}
			v, err := dequote(value)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("option %s: %w", name, err)
			}
			if from, err = parseAddrPatterns(v); err != nil {
				return nil, time.Time{}, fmt.Errorf("option %s: %w", name, err)
			}
		case isExpiry:
			v, err := dequote(value)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("option %s: %w", name, err)
			}
			t, err := parseExpiryTime(v, loc)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("option %s: %w", name, err)
			}
			// As in OpenSSH, the earliest of several expiry-time= wins.
			if expires.IsZero() || t.Before(expires) {
				expires = t
			}
		default:
			return nil, time.Time{}, fmt.Errorf("%w %q: only from= and expiry-time= are supported", ErrUnsupportedOption, name)
		}
	}
	return from, expires, nil
}

// dequote returns the text of a double-quoted option value, in which \"
// stands for a quote, as OpenSSH's opt_dequote reads it.
func dequote(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		return "", errors.New("the value must be in double quotes")
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v) && v[i+1] == '"':
			b.WriteByte('"')
			i++
		case v[i] == '"':
			if i != len(v)-1 {
				return "", errors.New("text after the closing quote")
			}
			return b.String(), nil
		default:
			b.WriteByte(v[i])
		}
	}
	return "", errors.New("missing closing quote")
}

// ParseExpiryTime parses the value of an expiry-time= option as OpenSSH
// does: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, in the zone loc unless it
// ends in Z or UTC (in any case), which mean UTC. A nil loc means
// time.Local, the zone sshd uses.
//
// A date alone means the start of that day. Dates and times that do not
// exist, such as 20300230 or 203001012460, are errors, as are times before
// 1970. Where OpenSSH's mktime reads a local time in summer time as
// standard time, and so an hour late, ParseExpiryTime reads it as the wall
// clock shows it.
func ParseExpiryTime(s string, loc *time.Location) (time.Time, error) {
	t, err := parseExpiryTime(s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("keys: %w", err)
	}
	return t, nil
}

// parseExpiryTime is ParseExpiryTime without "keys: " before its errors,
// for use within a *ParseError.
func parseExpiryTime(s string, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.Local
	}
	digits := s
	if len(s) > 1 && strings.EqualFold(s[len(s)-1:], "Z") {
		digits, loc = s[:len(s)-1], time.UTC
	} else if len(s) > 3 && strings.EqualFold(s[len(s)-3:], "UTC") {
		digits, loc = s[:len(s)-3], time.UTC
	}
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("expiry time %q %s", s, why)
	}
	switch len(digits) {
	case 8, 12, 14:
	default:
		return bad("is not YYYYMMDD[HHMM[SS]][Z]")
	}
	if strings.Trim(digits, "0123456789") != "" {
		return bad("is not YYYYMMDD[HHMM[SS]][Z]")
	}
	// field returns the number in digits[i:i+2], or 0 past its end.
	field := func(i int) int {
		if i >= len(digits) {
			return 0
		}
		n, _ := strconv.Atoi(digits[i : i+2])
		return n
	}
	year, _ := strconv.Atoi(digits[:4])
	month, day, hour, minute, sec := field(4), field(6), field(8), field(10), field(12)
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, time.Month(month)) {
		return bad("is not a valid date")
	}
	if hour > 23 || minute > 59 || sec > 59 {
		return bad("is not a valid time of day")
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, loc)
	if t.Unix() <= 0 {
		return bad("is not after 1970")
	}
	return t, nil
}

// daysIn returns the number of days in month of year.
func daysIn(year int, month time.Month) int {
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// Permit returns nil if the options of k allow a login from remote at now,
// and otherwise an error wrapping ErrExpired or ErrFromRefused that says
// why, for the log (not for the client). As in sshd, the key expires at the
// end of the second its expiry-time names, and a from= option refuses a
// remote address that is nil or holds no IP address.
func (k AuthorizedKey) Permit(remote net.Addr, now time.Time) error {
	if !k.ExpiresAt.IsZero() && now.Unix() > k.ExpiresAt.Unix() {
		return fmt.Errorf("keys: %s:%d: %w at %s", k.Source, k.Line, ErrExpired, k.ExpiresAt.Format(time.RFC3339))
	}
	if k.From != nil {
		ip, ok := remoteIP(remote)
		if !ok {
			return fmt.Errorf("keys: %s:%d: %w: no IP address in %v", k.Source, k.Line, ErrFromRefused, remote)
		}
		if !k.From.Match(ip) {
			return fmt.Errorf("keys: %s:%d: %w: %s does not match from=%q", k.Source, k.Line, ErrFromRefused, ip.WithZone("").Unmap(), k.From)
		}
	}
	return nil
}

// remoteIP returns the IP address of a, if it has one.
func remoteIP(a net.Addr) (netip.Addr, bool) {
	var ip net.IP
	switch a := a.(type) {
	case nil:
		return netip.Addr{}, false
	case *net.TCPAddr:
		if a == nil {
			return netip.Addr{}, false
		}
		ip = a.IP
	case *net.UDPAddr:
		if a == nil {
			return netip.Addr{}, false
		}
		ip = a.IP
	case *net.IPAddr:
		if a == nil {
			return netip.Addr{}, false
		}
		ip = a.IP
	default:
		s := a.String()
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr(), true
		}
		if ip, err := netip.ParseAddr(s); err == nil {
			return ip, true
		}
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr, ok
}
