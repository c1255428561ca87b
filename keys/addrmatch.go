package keys

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
)

// AddrPatterns is a parsed list of client address patterns, as in the
// from= option of authorized_keys. It is not changed after
// ParseAddrPatterns returns it, so it may be used by many goroutines at
// once. A nil *AddrPatterns matches every address.
type AddrPatterns struct {
	list string
	pats []addrPattern
}

// addrPattern is one pattern of an AddrPatterns.
type addrPattern struct {
	neg bool
	// net is the network of an address or CIDR pattern; it is not valid
	// for a wildcard or host-name pattern.
	net netip.Prefix
	// glob is a wildcard or host-name pattern in lower case, matched
	// against the address text; it is used when net is not valid.
	glob string
}

// ParseAddrPatterns parses a comma-separated list of address patterns, as
// OpenSSH takes in the from= option of authorized_keys (see sshd(8) and
// the PATTERNS section of ssh_config(5)). Each pattern may be negated with
// a leading '!' and is one of:
//
//   - an IP address, such as 192.0.2.7 or 2001:db8::7;
//   - a network in CIDR notation, such as 10.0.0.0/8 or 2001:db8::/32, with
//     no bits set after the prefix length (10.0.0.1/8 is an error, as it is
//     in OpenSSH);
//   - anything else, matched with the wildcards '*' (any run of characters)
//     and '?' (one character), ignoring case, against the client address
//     written as text: 192.0.2.7, or 2001:db8::7 in the RFC 5952 form.
//
// Host-name patterns such as *.example.com are accepted, but as sshd does
// with UseDNS off, which is its default, they are matched only against the
// address text, never against a name looked up in the DNS, so they never
// match. The bastion does no DNS lookups.
//
// An IPv4-mapped IPv6 address, such as ::ffff:192.0.2.7, stands for the
// IPv4 address it holds, both in a pattern and in the address matched, so
// ::ffff:192.0.2.0/120 is 192.0.2.0/24. Other IPv6 networks match only IPv6
// addresses: ::/0 does not match 192.0.2.7.
//
// The list is checked more strictly than OpenSSH does, so that a typo fails
// when the keys are loaded instead of at login: an empty list or pattern, a
// malformed CIDR, white space, an IPv6 zone, and an address OpenSSH would
// read differently from Go (127.1, 010.0.0.1) are errors.
func ParseAddrPatterns(list string) (*AddrPatterns, error) {
	ps, err := parseAddrPatterns(list)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ps, nil
}

// parseAddrPatterns is ParseAddrPatterns without "keys: " before its
// errors, for use within a *ParseError.
func parseAddrPatterns(list string) (*AddrPatterns, error) {
	ps := &AddrPatterns{list: list}
	for p := range strings.SplitSeq(list, ",") {
		ap, err := parseAddrPattern(p)
		if err != nil {
			return nil, fmt.Errorf("address pattern %q: %w", p, err)
		}
		ps.pats = append(ps.pats, ap)
	}
	return ps, nil
}

func parseAddrPattern(p string) (addrPattern, error) {
	var ap addrPattern
	if rest, ok := strings.CutPrefix(p, "!"); ok {
		ap.neg, p = true, rest
	}
	if p == "" {
		return ap, errors.New("empty pattern")
	}
	if strings.IndexFunc(p, unicode.IsSpace) >= 0 {
		return ap, errors.New("white space in pattern")
	}
	if strings.Contains(p, "/") {
		net, err := netip.ParsePrefix(p)
		if err != nil {
			return ap, fmt.Errorf("not a valid CIDR network: %w", err)
		}
		if m := net.Masked(); m != net {
			return ap, fmt.Errorf("bits are set after the /%d prefix: did you mean %s?", net.Bits(), m)
		}
		ap.net = unmapPrefix(net)
		return ap, nil
	}
	if strings.ContainsAny(p, "*?") {
		ap.glob = strings.ToLower(p)
		return ap, nil
	}
	ip, err := netip.ParseAddr(p)
	switch {
	case err == nil && ip.Zone() != "":
		return ap, errors.New("IPv6 zones are not supported")
	case err == nil:
		ip = ip.Unmap()
		ap.net = netip.PrefixFrom(ip, ip.BitLen())
		return ap, nil
	case strings.Contains(p, ":"):
		// Host names have no colons.
		return ap, fmt.Errorf("not a valid IPv6 address: %w", err)
	case looksLikeInetAton(p):
		return ap, errors.New("not a valid IP address: write IPv4 addresses as four decimal numbers, such as 192.0.2.7")
	}
	// A host name, matched against the address text.
	ap.glob = strings.ToLower(p)
	return ap, nil
}

// unmapPrefix returns a network within ::ffff:0:0/96 as the IPv4 network
// it stands for, and any other network unchanged.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// looksLikeInetAton reports whether s is an IPv4 address in one of the
// forms inet_aton(3), and so OpenSSH, accepts but Go does not: fewer than
// four parts (127.1), octal (010.0.0.1) or hexadecimal (0x7f.0.0.1)
// numbers, or numbers too large for their part.
func looksLikeInetAton(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return false
	}
	for _, part := range parts {
		digits := "0123456789"
		if x, ok := strings.CutPrefix(strings.ToLower(part), "0x"); ok {
			part, digits = x, "0123456789abcdef"
		}
		if part == "" || strings.Trim(strings.ToLower(part), digits) != "" {
			return false
		}
	}
	return true
}

// Match reports whether ip may connect according to the patterns: false
// if any negated pattern matches it, else true if any other pattern
// matches it, else false, as in OpenSSH. The order of the patterns does
// not matter. An IPv6 zone in ip is ignored. Match of a nil *AddrPatterns
// is true for every ip, and Match of the zero netip.Addr is false for
// every non-nil p.
func (p *AddrPatterns) Match(ip netip.Addr) bool {
	if p == nil {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("").Unmap()
	text := ip.String()
	allowed := false
	for _, ap := range p.pats {
		var m bool
		if ap.net.IsValid() {
			m = ap.net.Contains(ip)
		} else {
			m = matchGlob(ap.glob, text)
		}
		if m && ap.neg {
			return false
		}
		allowed = allowed || m
	}
	return allowed
}

// String returns the list p was parsed from; "" for nil.
func (p *AddrPatterns) String() string {
	if p == nil {
		return ""
	}
	return p.list
}

// matchGlob reports whether s matches pattern, in which '*' matches any
// run of bytes and '?' any one byte, as OpenSSH's match_pattern does. It
// backtracks only to the last '*', so it takes time linear in
// len(pattern)*len(s) at worst.
func matchGlob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0 // the last '*' in pattern, and where in s it began
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			// Let the last '*' take one more byte.
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
