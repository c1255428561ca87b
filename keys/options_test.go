package keys

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/internal/testtool"
)

// plus2 is a zone two hours east of UTC, without summer time, standing in
// for the local zone.
var plus2 = time.FixedZone("PLUS2", 2*60*60)

func TestParseExpiryTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		s        string
		loc      *time.Location
		want     time.Time // in UTC; zero if s is invalid
		wantText string    // in the error, if s is invalid
	}{
		{name: "date, local", s: "20300101", loc: plus2, want: time.Date(2029, 12, 31, 22, 0, 0, 0, time.UTC)},
		{name: "date, Z", s: "20300101Z", loc: plus2, want: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "date, z", s: "20300101z", loc: plus2, want: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "date, UTC", s: "20300101UTC", loc: plus2, want: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "date, utc", s: "20300101utc", loc: plus2, want: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "minutes, local", s: "203001021530", loc: plus2, want: time.Date(2030, 1, 2, 13, 30, 0, 0, time.UTC)},
		{name: "minutes, Z", s: "203001021530Z", loc: plus2, want: time.Date(2030, 1, 2, 15, 30, 0, 0, time.UTC)},
		{name: "seconds, local", s: "20300102153045", loc: plus2, want: time.Date(2030, 1, 2, 13, 30, 45, 0, time.UTC)},
		{name: "seconds, Z", s: "20300102153045Z", loc: plus2, want: time.Date(2030, 1, 2, 15, 30, 45, 0, time.UTC)},
		{name: "UTC location", s: "20300102153045", loc: time.UTC, want: time.Date(2030, 1, 2, 15, 30, 45, 0, time.UTC)},
		{name: "leap day", s: "20280229Z", loc: time.UTC, want: time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)},
		{name: "last second of a day", s: "20301231235959Z", loc: time.UTC, want: time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC)},
		{name: "1970", s: "19700101000001Z", loc: time.UTC, want: time.Unix(1, 0).UTC()},
		{name: "empty", s: "", wantText: "is not YYYYMMDD"},
		{name: "Z alone", s: "Z", wantText: "is not YYYYMMDD"},
		{name: "UTC alone", s: "UTC", wantText: "is not YYYYMMDD"},
		{name: "too short", s: "2030010", wantText: "is not YYYYMMDD"},
		{name: "hours only", s: "2030010112", wantText: "is not YYYYMMDD"},
		{name: "too long", s: "203001010000000", wantText: "is not YYYYMMDD"},
		{name: "dashes", s: "2030-01-01", wantText: "is not YYYYMMDD"},
		{name: "offset", s: "203001010000+0100", wantText: "is not YYYYMMDD"},
		{name: "sign", s: "+2030101", wantText: "is not YYYYMMDD"},
		{name: "two zones", s: "20300101ZZ", wantText: "is not YYYYMMDD"},
		{name: "month 13", s: "20301301", wantText: "not a valid date"},
		{name: "month 0", s: "20300001", wantText: "not a valid date"},
		{name: "day 0", s: "20300100", wantText: "not a valid date"},
		{name: "February 30", s: "20300230", wantText: "not a valid date"},
		{name: "not a leap year", s: "20290229", wantText: "not a valid date"},
		{name: "hour 24", s: "203001012400", wantText: "not a valid time of day"},
		{name: "minute 60", s: "203001011260", wantText: "not a valid time of day"},
		{name: "second 60", s: "20300101235960", wantText: "not a valid time of day"},
		{name: "before 1970", s: "19691231", loc: time.UTC, wantText: "after 1970"},
		{name: "epoch", s: "19700101Z", wantText: "after 1970"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseExpiryTime(tt.s, tt.loc)
			if tt.want.IsZero() {
				if err == nil {
					t.Fatalf("ParseExpiryTime(%q) = %v, want an error", tt.s, got)
				}
				if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), tt.s) {
					t.Errorf("error %q does not contain %q and %q", err, tt.wantText, tt.s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("ParseExpiryTime(%q) = %v, want %v", tt.s, got.UTC(), tt.want)
			}
		})
	}
}

// TestParseExpiryTimeLocal checks that a time without a zone is local time,
// both in ParseExpiryTime with a nil location and in ParseAuthorizedKeys.
func TestParseExpiryTimeLocal(t *testing.T) {
	t.Parallel()
	want := time.Date(2030, 1, 2, 15, 30, 0, 0, time.Local)
	got, err := ParseExpiryTime("203001021530", nil)
	if err != nil || !got.Equal(want) {
		t.Errorf("ParseExpiryTime(nil location) = %v, %v; want %v", got, err, want)
	}
	keys, err := ParseAuthorizedKeys([]byte(`expiry-time="203001021530" `+aliceLine), "inline")
	if err != nil {
		t.Fatal(err)
	}
	if !keys[0].ExpiresAt.Equal(want) {
		t.Errorf("ParseAuthorizedKeys: ExpiresAt = %v, want %v", keys[0].ExpiresAt, want)
	}
}

// TestParseExpiryTimeSSHKeygen checks ParseExpiryTime against OpenSSH's
// parse_absolute_time, which ssh-keygen -V uses too, in a zone without
// summer time (with it, OpenSSH reads summer times as standard time).
func TestParseExpiryTimeSSHKeygen(t *testing.T) {
	t.Parallel()
	keygen := testtool.NeedTool(t, "ssh-keygen")
	const zone = "Asia/Tokyo"
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	dir := t.TempDir()
	caKey := filepath.Join(dir, "ca")
	block, err := ssh.MarshalPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize)), "ca")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caKey, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	userKey := filepath.Join(dir, "user.pub")
	if err := os.WriteFile(userKey, []byte(aliceLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"20300101", "203001021530", "20300102153045", "20300101Z", "20300102153045Z"} {
		t.Run(s, func(t *testing.T) {
			sign := exec.Command(keygen, "-q", "-s", caKey, "-I", "test", "-V", "20000101Z:"+s, userKey)
			sign.Env = append(os.Environ(), "TZ="+zone)
			if out, err := sign.CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen -s: %v: %s", err, out)
			}
			show := exec.Command(keygen, "-L", "-f", filepath.Join(dir, "user-cert.pub"))
			show.Env = append(os.Environ(), "TZ=UTC")
			out, err := show.Output()
			if err != nil {
				t.Fatalf("ssh-keygen -L: %v", err)
			}
			// "        Valid: from 2000-01-01T00:00:00 to 2030-01-01T00:00:00"
			_, to, ok := strings.Cut(string(out), "Valid: from 2000-01-01T00:00:00 to ")
			if !ok || len(to) < len(time.DateTime) {
				t.Fatalf("ssh-keygen -L printed %s", out)
			}
			want, err := time.Parse("2006-01-02T15:04:05", to[:len(time.DateTime)])
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseExpiryTime(s, loc)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) {
				t.Errorf("ParseExpiryTime = %v, ssh-keygen says %v", got.UTC(), want)
			}
		})
	}
}

// TestOptions checks how ParseAuthorizedKeys reads options.
func TestOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		options     string // before aliceLine
		wantFrom    string
		wantExpires time.Time
		wantIs      error  // if not nil, want an error matching it
		wantText    string // if not "", want an error with this text
	}{
		{name: "from", options: `from="10.0.0.0/8,!10.1.0.0/16"`, wantFrom: "10.0.0.0/8,!10.1.0.0/16"},
		{name: "FROM", options: `FROM="10.0.0.1"`, wantFrom: "10.0.0.1"},
		{name: "quoted quote", options: `from="10.0.0.1,\"x"`, wantFrom: `10.0.0.1,"x`},
		{name: "expiry-time", options: `expiry-time="20300101"`, wantExpires: time.Date(2030, 1, 1, 0, 0, 0, 0, plus2)},
		{name: "Expiry-Time Z", options: `Expiry-Time="20300101Z"`, wantExpires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{
			name:        "earliest expiry-time wins",
			options:     `expiry-time="20310101Z",from="::1",expiry-time="20300101Z",expiry-time="20320101Z"`,
			wantFrom:    "::1",
			wantExpires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		},
		{name: "no-pty", options: `no-pty`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "no-pty"`},
		{name: "command", options: `from="10.0.0.1",command="echo hi"`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "command"`},
		{name: "cert-authority", options: `cert-authority`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "cert-authority"`},
		{name: "restrict", options: `restrict,from="10.0.0.1"`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "restrict"`},
		{name: "principals", options: `principals="alice"`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "principals"`},
		{name: "environment", options: `environment="A=b"`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "environment"`},
		{name: "permitopen", options: `permitopen="host:22"`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "permitopen"`},
		{name: "upper case", options: `No-Port-Forwarding`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "No-Port-Forwarding"`},
		{name: "prefix of from", options: `fromage="x"`, wantIs: ErrUnsupportedOption, wantText: `unsupported option "fromage"`},
		{name: "from without value", options: `from`, wantText: `option from needs a value`},
		{name: "unquoted from", options: `from=10.0.0.1`, wantText: "option from: the value must be in double quotes"},
		{name: "text after quote", options: `from="10.0.0.1"x`, wantText: "option from: text after the closing quote"},
		{name: "two froms", options: `from="10.0.0.1",from="10.0.0.2"`, wantText: "more than one from= option"},
		{name: "bad CIDR", options: `from="10.0.0.1/8"`, wantText: `option from: address pattern "10.0.0.1/8": bits are set after the /8 prefix`},
		{name: "empty from", options: `from=""`, wantText: `option from: address pattern "": empty pattern`},
		{name: "bad expiry", options: `expiry-time="2030"`, wantText: `option expiry-time: expiry time "2030" is not YYYYMMDD`},
		{name: "unquoted expiry", options: `expiry-time=20300101`, wantText: "option expiry-time: the value must be in double quotes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := "# line 1\n" + aliceLine + "\n" + tt.options + " " + bobLine + "\n"
			keys, err := parseAuthorizedKeys([]byte(data), "inline", plus2)
			if tt.wantIs != nil || tt.wantText != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Source != "inline" || pe.Line != 3 {
					t.Fatalf("error %v, want a *ParseError for inline:3", err)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %v is not %v", err, tt.wantIs)
				}
				if want := "keys: inline:3: not a valid authorized key: " + tt.wantText; !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
				if keys != nil {
					t.Errorf("got %d keys with the error", len(keys))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k := keys[1]
			if k.From.String() != tt.wantFrom || (k.From == nil) != (tt.wantFrom == "") {
				t.Errorf("From = %q, want %q", k.From, tt.wantFrom)
			}
			if !k.ExpiresAt.Equal(tt.wantExpires) {
				t.Errorf("ExpiresAt = %v, want %v", k.ExpiresAt, tt.wantExpires)
			}
		})
	}
}

// stringAddr is a net.Addr of another type than the net package's.
type stringAddr string

func (a stringAddr) Network() string { return "test" }
func (a stringAddr) String() string  { return string(a) }

func TestPermit(t *testing.T) {
	t.Parallel()
	// now is before every expiry time below.
	now := time.Date(2029, 12, 31, 21, 0, 0, 0, time.UTC)
	office := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 50022} // 16-byte form
	home := &net.TCPAddr{IP: net.ParseIP("198.51.100.7").To4(), Port: 50022}
	tests := []struct {
		name    string
		options string
		remote  net.Addr
		now     time.Time
		wantIs  error // nil to permit
	}{
		{name: "no options", remote: home, now: now},
		{name: "no options, no address", remote: nil, now: now},
		{name: "from, inside", options: `from="10.0.0.0/8"`, remote: office, now: now},
		{name: "from, outside", options: `from="10.0.0.0/8"`, remote: home, now: now, wantIs: ErrFromRefused},
		{name: "from, negated", options: `from="10.0.0.0/8,!10.1.2.3"`, remote: office, now: now, wantIs: ErrFromRefused},
		{name: "from, 4-byte IPv4", options: `from="198.51.100.0/24"`, remote: home, now: now},
		{name: "from, mapped", options: `from="10.1.2.0/24"`, remote: &net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3")}, now: now},
		{name: "from, IPv6", options: `from="2001:db8::/32"`, remote: &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 22}, now: now},
		{name: "from, IPv6 zone", options: `from="fe80::/10"`, remote: &net.TCPAddr{IP: net.ParseIP("fe80::7"), Zone: "eth0"}, now: now},
		{name: "from, wildcard", options: `from="10.1.2.*"`, remote: office, now: now},
		{name: "from, UDP", options: `from="10.0.0.0/8"`, remote: &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1)}, now: now},
		{name: "from, IP", options: `from="10.0.0.0/8"`, remote: &net.IPAddr{IP: net.IPv4(10, 0, 0, 1)}, now: now},
		{name: "from, other type", options: `from="10.0.0.0/8"`, remote: stringAddr("10.0.0.1:22"), now: now},
		{name: "from, other type IPv6", options: `from="2001:db8::/32"`, remote: stringAddr("[2001:db8::1]:22"), now: now},
		{name: "from, other type without port", options: `from="10.0.0.0/8"`, remote: stringAddr("10.0.0.1"), now: now},
		{name: "from, no IP", options: `from="*"`, remote: stringAddr("pipe"), now: now, wantIs: ErrFromRefused},
		{name: "from, unix socket", options: `from="*"`, remote: &net.UnixAddr{Name: "/run/sock", Net: "unix"}, now: now, wantIs: ErrFromRefused},
		{name: "from, nil", options: `from="*"`, remote: nil, now: now, wantIs: ErrFromRefused},
		{name: "from, nil TCPAddr", options: `from="*"`, remote: (*net.TCPAddr)(nil), now: now, wantIs: ErrFromRefused},
		{name: "from, empty IP", options: `from="*"`, remote: &net.TCPAddr{}, now: now, wantIs: ErrFromRefused},
		// 20300101 local is 2029-12-31T22:00:00Z.
		{name: "local expiry, before", options: `expiry-time="20300101"`, remote: home, now: now},
		{name: "local expiry, at", options: `expiry-time="20300101"`, remote: home, now: time.Date(2029, 12, 31, 22, 0, 0, 0, time.UTC)},
		{name: "local expiry, in the same second", options: `expiry-time="20300101"`, remote: home, now: time.Date(2029, 12, 31, 22, 0, 0, 999999999, time.UTC)},
		{name: "local expiry, a second after", options: `expiry-time="20300101"`, remote: home, now: time.Date(2029, 12, 31, 22, 0, 1, 0, time.UTC), wantIs: ErrExpired},
		{name: "local expiry, in another zone", options: `expiry-time="20300101"`, remote: home, now: time.Date(2029, 12, 31, 23, 0, 0, 0, plus2)},
		{name: "Z expiry, after the local one", options: `expiry-time="20300101Z"`, remote: home, now: time.Date(2029, 12, 31, 23, 0, 0, 0, time.UTC)},
		{name: "Z expiry, after", options: `expiry-time="20300101Z"`, remote: home, now: time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC), wantIs: ErrExpired},
		{name: "full expiry, after", options: `expiry-time="20300101123456Z"`, remote: home, now: time.Date(2030, 1, 1, 12, 34, 57, 0, time.UTC), wantIs: ErrExpired},
		{name: "full expiry, at", options: `expiry-time="20300101123456Z"`, remote: home, now: time.Date(2030, 1, 1, 12, 34, 56, 0, time.UTC)},
		{name: "both, both fine", options: `from="10.0.0.0/8",expiry-time="20300101"`, remote: office, now: now},
		{name: "both, expired", options: `from="10.0.0.0/8",expiry-time="20300101"`, remote: office, now: now.AddDate(1, 0, 0), wantIs: ErrExpired},
		{name: "both, wrong address", options: `from="10.0.0.0/8",expiry-time="20300101"`, remote: home, now: now, wantIs: ErrFromRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys, err := parseAuthorizedKeys([]byte(tt.options+" "+aliceLine), "inline", plus2)
			if err != nil {
				t.Fatal(err)
			}
			err = keys[0].Permit(tt.remote, tt.now)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("Permit = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Permit = %v, want %v", err, tt.wantIs)
			}
			if !strings.HasPrefix(err.Error(), "keys: inline:1: ") {
				t.Errorf("error %q does not name the line", err)
			}
		})
	}
}

func TestPermitMessages(t *testing.T) {
	t.Parallel()
	keys, err := parseAuthorizedKeys([]byte(`from="10.0.0.0/8",expiry-time="20300101" `+aliceLine), "alice.keys", plus2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote net.Addr
		now    time.Time
		want   string
	}{
		{
			name:   "from",
			remote: &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 22},
			want:   `keys: alice.keys:1: key not allowed from this address: 192.0.2.7 does not match from="10.0.0.0/8"`,
		},
		{
			name:   "no address",
			remote: stringAddr("pipe"),
			want:   `keys: alice.keys:1: key not allowed from this address: no IP address in pipe`,
		},
		{
			name:   "expired",
			remote: &net.TCPAddr{IP: net.ParseIP("10.0.0.1")},
			now:    time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC),
			want:   `keys: alice.keys:1: key expired at 2030-01-01T00:00:00+02:00`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := tt.now
			if now.IsZero() {
				now = time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
			}
			if err := keys[0].Permit(tt.remote, now); err == nil || err.Error() != tt.want {
				t.Errorf("Permit = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestKeySetPermit(t *testing.T) {
	t.Parallel()
	// alice may come from the office, or from home until 2030; bob only from
	// home.
	data := `from="10.0.0.0/8" ` + aliceLine + "\n" +
		`from="198.51.100.7",expiry-time="20300101Z" ` + aliceLine + " at home\n" +
		`from="198.51.100.7" ` + bobLine + "\n"
	list, err := parseAuthorizedKeys([]byte(data), "inline", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	s := NewKeySet(list)
	if s.Len() != 2 {
		t.Errorf("Len = %d, want 2", s.Len())
	}
	if ak, ok := s.Lookup(readPublicKey(t, "ed25519.pub")); !ok || ak.Line != 1 {
		t.Errorf("Lookup = line %d, %v; want line 1", ak.Line, ok)
	}
	alice, bob, carol := readPublicKey(t, "ed25519.pub"), readPublicKey(t, "rsa.pub"), readPublicKey(t, "ecdsa.pub")
	office := &net.TCPAddr{IP: net.ParseIP("10.1.2.3")}
	home := &net.TCPAddr{IP: net.ParseIP("198.51.100.7")}
	cafe := &net.TCPAddr{IP: net.ParseIP("203.0.113.9")}
	before := time.Date(2029, 6, 1, 0, 0, 0, 0, time.UTC)
	after := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		set      KeySet
		key      ssh.PublicKey
		remote   net.Addr
		now      time.Time
		wantLine int     // if not 0, the line that permits
		wantIs   []error // else, what the error must match
	}{
		{name: "first line", set: s, key: alice, remote: office, now: after, wantLine: 1},
		{name: "second line", set: s, key: alice, remote: home, now: before, wantLine: 2},
		{name: "second line expired", set: s, key: alice, remote: home, now: after, wantIs: []error{ErrFromRefused, ErrExpired}},
		{name: "no line", set: s, key: alice, remote: cafe, now: before, wantIs: []error{ErrFromRefused}},
		{name: "other user", set: s, key: bob, remote: home, now: after, wantLine: 3},
		{name: "other user refused", set: s, key: bob, remote: office, now: before, wantIs: []error{ErrFromRefused}},
		{name: "unknown key", set: s, key: carol, remote: home, now: before, wantIs: []error{ErrUnknownKey}},
		{name: "nil key", set: s, key: nil, remote: home, now: before, wantIs: []error{ErrUnknownKey}},
		{name: "zero set", set: KeySet{}, key: alice, remote: office, now: before, wantIs: []error{ErrUnknownKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ak, err := tt.set.Permit(tt.key, tt.remote, tt.now)
			if tt.wantLine != 0 {
				if err != nil || ak.Line != tt.wantLine {
					t.Fatalf("Permit = line %d, %v; want line %d", ak.Line, err, tt.wantLine)
				}
				return
			}
			if err == nil {
				t.Fatalf("Permit = line %d, want an error", ak.Line)
			}
			for _, want := range tt.wantIs {
				if !errors.Is(err, want) {
					t.Errorf("error %v is not %v", err, want)
				}
			}
			if ak.Key != nil {
				t.Errorf("Permit returned line %d with its error", ak.Line)
			}
		})
	}
}
