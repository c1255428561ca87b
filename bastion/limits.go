package bastion

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what one source (an IPv4 address or an IPv6 /64), user or
// console session may use.
// A zero field takes the default its comment gives; a negative one turns
// that limit off.
type Limits struct {
	// HandshakeTimeout bounds the SSH handshake and authentication of a
	// connection. Zero: 20 s.
	HandshakeTimeout time.Duration
	// MaxUnauthenticated caps connections that have not authenticated
	// yet; more are closed at once. Zero: 64.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerSource caps them per source, so one source
	// cannot take every slot. Zero: 16.
	MaxUnauthenticatedPerSource int
	// MaxChannelsPerConnection caps the open channels (sessions and
	// forwards) of one connection. Zero: 256.
	MaxChannelsPerConnection int
	// AuthFailuresPerMinute is how many failed logins a source may
	// make in a minute (as a burst, refilled at that rate); past it the
	// source is blocked for AuthBlock. Zero: 10.
	AuthFailuresPerMinute int
	// AuthBlock is how long a source over the limit is refused. Zero: 5 min.
	AuthBlock time.Duration
	// MaxConnectionsPerUser caps a user's authenticated connections.
	// Zero: 10.
	MaxConnectionsPerUser int
	// MaxConsolesPerUser caps a user's open consoles. Zero: 20.
	MaxConsolesPerUser int
	// IdleTimeout ends a console session with no bytes either way for
	// that long. Zero: 1 h.
	IdleTimeout time.Duration
	// MaxSessionDuration ends a console session that has lasted that long.
	// Zero: 12 h.
	MaxSessionDuration time.Duration
}

// withDefaults returns l with zero fields defaulted and negative ones zero
// (off).
func (l Limits) withDefaults() Limits {
	dur := func(d *time.Duration, def time.Duration) {
		switch {
		case *d == 0:
			*d = def
		case *d < 0:
			*d = 0
		}
	}
	num := func(n *int, def int) {
		switch {
		case *n == 0:
			*n = def
		case *n < 0:
			*n = 0
		}
	}
	dur(&l.HandshakeTimeout, 20*time.Second)
	num(&l.MaxUnauthenticated, 64)
	num(&l.MaxUnauthenticatedPerSource, 16)
	num(&l.MaxChannelsPerConnection, 256)
	num(&l.AuthFailuresPerMinute, 10)
	dur(&l.AuthBlock, 5*time.Minute)
	num(&l.MaxConnectionsPerUser, 10)
	num(&l.MaxConsolesPerUser, 20)
	dur(&l.IdleTimeout, time.Hour)
	dur(&l.MaxSessionDuration, 12*time.Hour)
	return l
}

// counters holds the bastion's live counts, for the limits.
type counters struct {
	mu           sync.Mutex // guards everything below
	unauth       int
	unauthBy     map[netip.Addr]int // unauthenticated connections per source
	userConns    map[string]int
	userConsoles map[string]int
	sources      map[netip.Addr]*source
	swept        time.Time                    // when sources was last swept
	full         bool                         // sources is full of blocked ones (shed freed nothing)
	conns        map[*trackedConn]struct{}    // authenticated connections, for reloads
	handshaking  map[*trackedConn]struct{}    // the others, for shutdown
	consoles     map[*consoleSession]struct{} // open consoles, for reloads
}

// source is what is known of one source's failed logins.
type source struct {
	failures     *rate.Limiter
	blockedUntil time.Time
	lastSeen     time.Time
}

// sourceIP returns the IP of a remote address, unmapped from IPv6.
func sourceIP(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// sourceOf returns the source the per-source limits count a remote address
// as: its IPv4 address, or its IPv6 /64. A site, or even one host, is
// usually given a whole /64, so a client counted per IPv6 address could
// step through 2^64 of them to escape the failed-login block.
func sourceOf(a net.Addr) netip.Addr {
	ip := sourceIP(a)
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// blocked reports whether ip is blocked now.
func (c *counters) blocked(ip netip.Addr, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	src := c.sources[ip]
	return src != nil && now.Before(src.blockedUntil)
}

// authFailed records a failed login from ip and reports whether it blocks
// the source (only once per block).
func (c *counters) authFailed(ip netip.Addr, l Limits, now time.Time) (blocks bool) {
	if l.AuthFailuresPerMinute == 0 || l.AuthBlock == 0 {
		return false // off: nothing would be blocked
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sources == nil {
		c.sources = map[netip.Addr]*source{}
	}
	// A sweep walks the table under mu, which every login and console
	// open takes: once a minute at most, however many sources fail.
	if len(c.sources) > sweepAbove && now.Sub(c.swept) >= time.Minute {
		c.sweep(now)
	}
	if len(c.sources) >= maxSources && !c.full {
		c.shed(now, ip)
		c.full = len(c.sources) >= maxSources
	}
	if c.full && c.sources[ip] == nil {
		// Blocked sources fill the table: this one goes uncounted
		// until a sweep makes room.
		return false
	}
	src := c.sources[ip]
	if src == nil {
		n := l.AuthFailuresPerMinute
		src = &source{failures: rate.NewLimiter(rate.Every(time.Minute/time.Duration(n)), n)}
		c.sources[ip] = src
	}
	src.lastSeen = now
	if now.Before(src.blockedUntil) || src.failures.AllowN(now, 1) {
		return false
	}
	src.blockedUntil = now.Add(l.AuthBlock)
	return true
}

// The failed-login table is swept of sources neither blocked nor seen for
// 10 minutes once it has sweepAbove of them. Failures from more addresses
// than maxSources within that time (an IPv6 /64 has plenty) make it shed
// sources that are not blocked, losing their count of failures so far.
const (
	sweepAbove = 4096
	maxSources = 16 * sweepAbove
)

// sweep forgets sources that are neither blocked nor recently seen.
func (c *counters) sweep(now time.Time) {
	c.swept, c.full = now, false
	for ip, src := range c.sources {
		if now.After(src.blockedUntil) && now.Sub(src.lastSeen) > 10*time.Minute {
			delete(c.sources, ip)
		}
	}
}

// shed forgets sources that are not blocked, but keep, until the table is
// down to sweepAbove, or only blocked ones are left.
func (c *counters) shed(now time.Time, keep netip.Addr) {
	for ip, src := range c.sources {
		if len(c.sources) <= sweepAbove {
			return
		}
		if ip != keep && !now.Before(src.blockedUntil) {
			delete(c.sources, ip)
		}
	}
}
