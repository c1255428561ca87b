package bastion

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSourceOf: the per-source limits count an IPv4 address (mapped into
// IPv6 or not) as itself and an IPv6 address as its /64, so stepping
// through a /64 does not escape them.
func TestSourceOf(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.7:50000", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:50000", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:50000", "2001:db8:1:2::"},
		{"[2001:db8:1:2::1]:22", "2001:db8:1:2::"},
		{"[2001:db8:1:3::1]:22", "2001:db8:1:3::"},
		{"[::1]:50000", "::"},
	}
	for _, tt := range tests {
		a, err := net.ResolveTCPAddr("tcp", tt.remote)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceOf(a); got != netip.MustParseAddr(tt.want) {
			t.Errorf("sourceOf(%s) = %s, want %s", tt.remote, got, tt.want)
		}
	}
}

// TestFailedLoginTable: failures from ever more sources (an IPv6 /48 holds
// 65,536 /64s) neither grow the table without bound nor make every failure
// walk it; a blocked source stays blocked through it all.
func TestFailedLoginTable(t *testing.T) {
	var c counters
	l := Limits{}.withDefaults()
	now := time.Unix(1_800_000_000, 0)
	addr := func(i int) netip.Addr {
		a := netip.MustParseAddr("2001:db8::").As16()
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		return netip.AddrFrom16(a)
	}
	blocked := addr(0)
	for i := 0; !c.authFailed(blocked, l, now); i++ {
		if i > l.AuthFailuresPerMinute {
			t.Fatalf("%d failures from one source did not block it", i)
		}
	}
	largest := 0
	for i := 1; i <= 100_000; i++ {
		c.authFailed(addr(i), l, now)
		largest = max(largest, len(c.sources))
	}
	if largest > maxSources {
		t.Errorf("the table reached %d sources, above %d", largest, maxSources)
	}
	if !c.blocked(blocked, now) {
		t.Error("the blocked source was forgotten")
	}
	if !c.swept.Equal(now) {
		t.Fatalf("swept at %v, want %v", c.swept, now)
	}
	// Within the minute no failure sweeps again; a minute on, one does.
	c.authFailed(addr(200_000), l, now.Add(59*time.Second))
	if !c.swept.Equal(now) {
		t.Errorf("swept again %v later", c.swept.Sub(now))
	}
	c.authFailed(addr(200_001), l, now.Add(time.Minute))
	if !c.swept.Equal(now.Add(time.Minute)) {
		t.Errorf("no sweep a minute on (last at %v)", c.swept)
	}
}

// TestFailedLoginsWithBlockingOff: with auth_block off, failures past the
// rate block nothing, and so are not reported as blocking (no auth.blocked
// record).
func TestFailedLoginsWithBlockingOff(t *testing.T) {
	var c counters
	l := Limits{AuthBlock: -1}.withDefaults()
	ip := netip.MustParseAddr("192.0.2.7")
	now := time.Unix(1_800_000_000, 0)
	for i := range 3 * l.AuthFailuresPerMinute {
		if c.authFailed(ip, l, now) {
			t.Fatalf("failure %d reported as blocking with auth_block off", i+1)
		}
	}
	if c.blocked(ip, now) {
		t.Error("source blocked with auth_block off")
	}
}

// TestFailedLoginTableFullOfBlocks: when blocked sources fill the table,
// a new source goes uncounted (nothing can be shed for it) and failures
// stop walking the table for room until the next sweep.
func TestFailedLoginTableFullOfBlocks(t *testing.T) {
	var c counters
	l := Limits{AuthFailuresPerMinute: 1}.withDefaults()
	now := time.Unix(1_800_000_000, 0)
	addr := func(i int) netip.Addr {
		a := netip.MustParseAddr("2001:db8::").As16()
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		return netip.AddrFrom16(a)
	}
	for i := range maxSources {
		c.authFailed(addr(i), l, now)
		if !c.authFailed(addr(i), l, now) {
			t.Fatalf("source %d not blocked after 2 failures at 1 a minute", i)
		}
	}
	if c.authFailed(addr(maxSources), l, now) || c.sources[addr(maxSources)] != nil {
		t.Error("a new source was counted in a table full of blocked ones")
	}
	if !c.full {
		t.Error("the table is not marked full: every failure would walk it again")
	}
	if len(c.sources) != maxSources {
		t.Errorf("%d sources, want %d (all blocked)", len(c.sources), maxSources)
	}
}

// TestBlockCoversTheSlash64: once one address of an IPv6 /64 is blocked
// for failed logins, a connection from another address of it is refused
// too, and one from another /64 is not.
func TestBlockCoversTheSlash64(t *testing.T) {
	s, _ := newTestServer(t, nil)
	addr := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	now := time.Now()
	for i := 0; !s.count.authFailed(sourceOf(addr("[2001:db8:1:2::1]:5000")), s.limits, now); i++ {
		if i > s.limits.AuthFailuresPerMinute {
			t.Fatalf("%d failures did not block the source", i)
		}
	}
	for remote, want := range map[string]bool{"[2001:db8:1:2::2]:5000": false, "[2001:db8:1:3::1]:5000": true} {
		tc := s.trackConn(&fakeGliderCtx{vals: map[any]any{}}, fakeNetConn{addr(remote)})
		if got := tc != nil; got != want {
			t.Errorf("a connection from %s let in: %v, want %v", remote, got, want)
		}
		if tc != nil {
			tc.Close()
		}
	}
}
