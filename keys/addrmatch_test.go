package keys

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseAddrPatternsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		list     string
		wantText string // in the error
	}{
		{name: "empty list", list: "", wantText: "empty pattern"},
		{name: "empty pattern", list: "10.0.0.1,,10.0.0.2", wantText: `"": empty pattern`},
		{name: "trailing comma", list: "10.0.0.1,", wantText: "empty pattern"},
		{name: "bare negation", list: "!", wantText: "empty pattern"},
		{name: "host bits set", list: "10.0.0.1/8", wantText: "did you mean 10.0.0.0/8?"},
		{name: "IPv6 host bits set", list: "2001:db8::1/32", wantText: "did you mean 2001:db8::/32?"},
		{name: "IPv4 prefix too long", list: "10.0.0.0/33", wantText: "not a valid CIDR"},
		{name: "IPv6 prefix too long", list: "2001:db8::/129", wantText: "not a valid CIDR"},
		{name: "prefix not a number", list: "10.0.0.0/x", wantText: "not a valid CIDR"},
		{name: "empty prefix", list: "10.0.0.0/", wantText: "not a valid CIDR"},
		{name: "wildcard CIDR", list: "10.*/8", wantText: "not a valid CIDR"},
		{name: "negated bad CIDR", list: "10.0.0.0/8,!192.168.0.0/33", wantText: `"!192.168.0.0/33"`},
		{name: "zone", list: "fe80::1%eth0", wantText: "zones are not supported"},
		{name: "zone in CIDR", list: "fe80::%eth0/64", wantText: "not a valid CIDR"},
		{name: "space", list: "10.0.0.1, 10.0.0.2", wantText: "white space"},
		{name: "tab", list: "10.0.0.1\t", wantText: "white space"},
		{name: "short IPv4", list: "127.1", wantText: "four decimal numbers"},
		{name: "octal IPv4", list: "010.0.0.1", wantText: "four decimal numbers"},
		{name: "hex IPv4", list: "0x7f.0.0.1", wantText: "four decimal numbers"},
		{name: "IPv4 part too big", list: "10.0.0.256", wantText: "four decimal numbers"},
		{name: "one number", list: "!3232235777", wantText: "four decimal numbers"},
		{name: "bad IPv6", list: "2001:db8::zz", wantText: "not a valid IPv6 address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ParseAddrPatterns(tt.list)
			if err == nil {
				t.Fatalf("ParseAddrPatterns(%q) = %q, want an error", tt.list, p)
			}
			if p != nil {
				t.Errorf("ParseAddrPatterns returned %q with its error", p)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
		})
	}
}

func TestAddrPatternsMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		list string
		yes  []string // addresses that match
		no   []string // addresses that do not
	}{
		{
			name: "IPv4 address",
			list: "192.0.2.7",
			yes:  []string{"192.0.2.7", "::ffff:192.0.2.7"},
			no:   []string{"192.0.2.8", "192.0.2.70", "::192.0.2.7", "2001:db8::7"},
		},
		{
			name: "IPv4 CIDR",
			list: "10.0.0.0/8",
			yes:  []string{"10.0.0.0", "10.1.2.3", "10.255.255.255"},
			no:   []string{"11.0.0.0", "9.255.255.255", "::a00:1"},
		},
		{
			name: "IPv4-mapped client",
			list: "1.2.3.0/24",
			yes:  []string{"::ffff:1.2.3.4", "1.2.3.4"},
			no:   []string{"::ffff:1.2.4.4"},
		},
		{
			name: "IPv4-mapped pattern",
			list: "::ffff:1.2.3.0/120,::ffff:5.6.7.8",
			yes:  []string{"1.2.3.4", "::ffff:1.2.3.4", "5.6.7.8"},
			no:   []string{"1.2.4.4", "5.6.7.9"},
		},
		{
			name: "IPv6 address",
			list: "2001:DB8::7",
			yes:  []string{"2001:db8::7", "2001:db8:0:0:0:0:0:7", "2001:db8::7%eth0"},
			no:   []string{"2001:db8::8", "192.0.2.7"},
		},
		{
			name: "IPv6 CIDR",
			list: "2001:db8::/32",
			yes:  []string{"2001:db8::1", "2001:db8:ffff::1"},
			no:   []string{"2001:db9::1", "10.0.0.1"},
		},
		{
			name: "link-local with zone",
			list: "fe80::/10",
			yes:  []string{"fe80::1%eth0", "fe80::1"},
			no:   []string{"fec0::1"},
		},
		{
			name: "IPv6 networks do not match IPv4",
			list: "::/0",
			yes:  []string{"::1", "2001:db8::1"},
			no:   []string{"10.0.0.1", "::ffff:10.0.0.1"},
		},
		{
			name: "IPv4 networks do not match IPv6",
			list: "0.0.0.0/0",
			yes:  []string{"10.0.0.1", "::ffff:10.0.0.1"},
			no:   []string{"::1", "::"},
		},
		{
			name: "several",
			list: "10.0.0.0/8,192.168.1.1,2001:db8::/32",
			yes:  []string{"10.9.9.9", "192.168.1.1", "2001:db8::5"},
			no:   []string{"192.168.1.2", "172.16.0.1", "::1"},
		},
		{
			name: "negation wins",
			list: "10.0.0.0/8,!10.1.0.0/16",
			yes:  []string{"10.0.0.1", "10.2.0.1"},
			no:   []string{"10.1.0.1", "10.1.255.255", "11.0.0.1"},
		},
		{
			name: "negation first",
			list: "!10.1.0.0/16,10.0.0.0/8",
			yes:  []string{"10.0.0.1"},
			no:   []string{"10.1.0.1"},
		},
		{
			name: "only negations match nothing",
			list: "!10.0.0.0/8,!192.168.0.0/16",
			no:   []string{"10.0.0.1", "172.16.0.1", "192.168.0.1"},
		},
		{
			name: "negated address",
			list: "*,!192.0.2.7",
			yes:  []string{"192.0.2.8", "2001:db8::1"},
			no:   []string{"192.0.2.7", "::ffff:192.0.2.7"},
		},
		{
			name: "star",
			list: "*",
			yes:  []string{"10.0.0.1", "::1", "2001:db8::1"},
		},
		{
			name: "negated star",
			list: "10.0.0.0/8,!*",
			no:   []string{"10.0.0.1", "::1"},
		},
		{
			name: "IPv4 wildcard",
			list: "192.168.1.*",
			yes:  []string{"192.168.1.1", "192.168.1.254", "::ffff:192.168.1.9"},
			no:   []string{"192.168.10.1", "192.168.2.1"},
		},
		{
			name: "question marks",
			list: "10.0.0.?",
			yes:  []string{"10.0.0.1", "10.0.0.9"},
			no:   []string{"10.0.0.10", "10.0.1.1"},
		},
		{
			name: "star in the middle",
			list: "10.*.1",
			yes:  []string{"10.0.0.1", "10.200.100.1", "10.1.1.1"},
			no:   []string{"10.0.0.2", "11.0.0.1"},
		},
		{
			name: "IPv6 wildcard ignores case",
			list: "2001:DB8::*",
			yes:  []string{"2001:db8::1", "2001:db8::abcd"},
			no:   []string{"2001:db8:1::1"},
		},
		{
			name: "wildcard matches the RFC 5952 text",
			list: "2001:db8:0:*",
			no:   []string{"2001:db8:0:0:1::1"}, // written 2001:db8::1:0:0:1
		},
		{
			name: "negated wildcard",
			list: "10.0.0.0/8,!10.0.0.*",
			yes:  []string{"10.0.1.1"},
			no:   []string{"10.0.0.1"},
		},
		{
			name: "host names match only the address text",
			list: "bastion.example.com,*.example.com",
			no:   []string{"10.0.0.1", "::1"},
		},
		{
			name: "negated host name does not refuse",
			list: "10.0.0.0/8,!*.example.com",
			yes:  []string{"10.0.0.1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ParseAddrPatterns(tt.list)
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tt.list {
				t.Errorf("String = %q, want %q", p, tt.list)
			}
			for _, want := range []bool{true, false} {
				addrs := tt.yes
				if !want {
					addrs = tt.no
				}
				for _, a := range addrs {
					if got := p.Match(netip.MustParseAddr(a)); got != want {
						t.Errorf("Match(%s) = %v, want %v", a, got, want)
					}
				}
			}
			if p.Match(netip.Addr{}) {
				t.Error("Match(zero Addr) = true")
			}
		})
	}
}

func TestNilAddrPatterns(t *testing.T) {
	t.Parallel()
	var p *AddrPatterns
	if !p.Match(netip.MustParseAddr("192.0.2.7")) || p.String() != "" {
		t.Errorf("nil: Match = false or String = %q", p)
	}
}

func TestMatchGlob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		s       string
		want    bool
	}{
		{name: "empty", pattern: "", s: "", want: true},
		{name: "empty pattern", pattern: "", s: "a", want: false},
		{name: "star matches empty", pattern: "*", s: "", want: true},
		{name: "stars", pattern: "***", s: "abc", want: true},
		{name: "literal", pattern: "abc", s: "abc", want: true},
		{name: "prefix only", pattern: "ab", s: "abc", want: false},
		{name: "longer pattern", pattern: "abcd", s: "abc", want: false},
		{name: "question", pattern: "a?c", s: "abc", want: true},
		{name: "question needs a byte", pattern: "abc?", s: "abc", want: false},
		{name: "backtrack", pattern: "a*b*c", s: "aXbYbZc", want: true},
		{name: "backtrack fails", pattern: "a*b*c", s: "aXbYbZ", want: false},
		{name: "suffix", pattern: "*.1", s: "10.0.0.1", want: true},
		{name: "suffix repeated", pattern: "*.1", s: "1.1.1.2", want: false},
		{name: "many stars", pattern: "*a*a*a*a*a*b", s: strings.Repeat("a", 200), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := matchGlob(tt.pattern, tt.s); got != tt.want {
				t.Errorf("matchGlob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
			}
		})
	}
}

func FuzzParseAddrPatterns(f *testing.F) {
	for _, s := range []struct{ list, addr string }{
		{"10.0.0.0/8,!10.1.0.0/16", "10.1.2.3"},
		{"192.168.1.*,2001:db8::/32", "2001:db8::1"},
		{"::ffff:1.2.3.0/120", "::ffff:1.2.3.4"},
		{"!*.example.com,*", "fe80::1%eth0"},
		{"10.0.0.?,,", "10.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"10.0.0.1/8", "10.0.0.1"},
	} {
		f.Add(s.list, s.addr)
	}
	addrs := []netip.Addr{
		netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("::ffff:10.1.2.3"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("::1"),
		{},
	}
	f.Fuzz(func(t *testing.T, list, addr string) {
		p, err := ParseAddrPatterns(list)
		if err != nil {
			if p != nil {
				t.Fatalf("ParseAddrPatterns(%q) = %q and %v", list, p, err)
			}
			return
		}
		if p.String() != list {
			t.Fatalf("String = %q, want %q", p, list)
		}
		all := addrs
		if ip, err := netip.ParseAddr(addr); err == nil {
			all = append(all[:len(all):len(all)], ip)
		}
		refuseAll, err := ParseAddrPatterns(list + ",!*")
		if err != nil {
			t.Fatalf("%q parses but %q does not: %v", list, list+",!*", err)
		}
		allowAll, err := ParseAddrPatterns("*," + list)
		if err != nil {
			t.Fatalf("%q parses but %q does not: %v", list, "*,"+list, err)
		}
		for _, ip := range all {
			m := p.Match(ip)
			if m && !ip.IsValid() {
				t.Fatalf("%q matches the zero Addr", list)
			}
			if refuseAll.Match(ip) {
				t.Fatalf("%q matches %s", refuseAll, ip)
			}
			// Adding * to a list allows what it allowed.
			if m && !allowAll.Match(ip) {
				t.Fatalf("%q matches %s but %q does not", list, ip, allowAll)
			}
			// A mapped address is its IPv4 address.
			if ip.Is4() && m != p.Match(netip.AddrFrom16(ip.As16())) {
				t.Fatalf("%q matches %s but not its IPv4-mapped form, or the other way round", list, ip)
			}
		}
	})
}
