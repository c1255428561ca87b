package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// openViaBastion opens vm's rfb console through the bastion and returns
// the time from the channel open to the first console byte. The channel is
// closed.
func openViaBastion(c *gossh.Client, vm string) (time.Duration, error) {
	start := time.Now()
	conn, err := openForward(c, vm)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return 0, fmt.Errorf("first console byte: %w", err)
	}
	return time.Since(start), nil
}

// openDirect does what a client that knows the console's location and
// has a session does: TCP, TLS and CONNECT to the host, then the first
// console byte.
func (h *harness) openDirect(ctx context.Context, location string, cfg *tls.Config) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	s, err := h.sp.dialDirect(ctx, location, cfg)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return 0, fmt.Errorf("first console byte: %w", err)
	}
	return time.Since(start), nil
}

// runLatency measures console open latency, cold and warm, through the
// bastion against direct TLS+CONNECT, and the XAPI calls each bastion open
// costs. Cold VMs are vm-0000.. in order, each opened once: the bastion
// has never opened them. A direct client has no per-VM state, so its cold
// open is a full TLS handshake and its warm one a resumed handshake.
func (h *harness) runLatency(ctx context.Context) {
	const section = "Console open latency, channel open to first console byte"
	progress("open latency: %d runs of %d cold and %d warm opens per path", h.runs, h.coldPerRun, h.warmPerRun)
	c, err := h.bastion.dial()
	if err != nil {
		h.rep.problem("open latency: %v", err)
		return
	}
	defer c.Close()
	warmVM := vmName(h.nVMs - 1) // never among the cold ones
	warmLoc, err := h.sp.location(warmVM, "rfb")
	if err != nil {
		h.rep.problem("open latency: %v", err)
		return
	}
	warmTLS := h.sp.clientTLS(tls.NewLRUClientSessionCache(16))
	// Prime both warm paths.
	if _, err := openViaBastion(c, warmVM); err != nil {
		h.rep.problem("open latency: warm-up: %v", err)
		return
	}
	if _, err := h.openDirect(ctx, warmLoc, warmTLS); err != nil {
		h.rep.problem("open latency: warm-up direct: %v", err)
		return
	}

	type stats struct{ b50, b99, d50, d99 []float64 }
	var cold, warm stats
	var coldCalls, warmCalls, coldLogins, warmLogins int
	coldMethods, warmMethods := map[string]int{}, map[string]int{}
	next := 0
	for run := range h.runs {
		var bc, dc, bw, dw []float64
		for range h.coldPerRun {
			vm := vmName(next)
			next++
			loc, err := h.sp.location(vm, "rfb")
			if err != nil {
				h.rep.problem("open latency: %v", err)
				return
			}
			before := h.sp.counters()
			d, err := openViaBastion(c, vm)
			after := h.sp.counters()
			if err != nil {
				h.rep.problem("cold open via bastion of %s: %v", vm, err)
				continue
			}
			coldCalls += after.calls - before.calls
			coldLogins += after.logins - before.logins
			addCounts(coldMethods, after.since(before))
			bc = append(bc, ms(d))
			if d, err = h.openDirect(ctx, loc, h.sp.clientTLS(nil)); err != nil {
				h.rep.problem("cold direct open of %s: %v", vm, err)
				continue
			}
			dc = append(dc, ms(d))
		}
		for range h.warmPerRun {
			before := h.sp.counters()
			d, err := openViaBastion(c, warmVM)
			after := h.sp.counters()
			if err != nil {
				h.rep.problem("warm open via bastion: %v", err)
				continue
			}
			warmCalls += after.calls - before.calls
			warmLogins += after.logins - before.logins
			addCounts(warmMethods, after.since(before))
			bw = append(bw, ms(d))
			if d, err = h.openDirect(ctx, warmLoc, warmTLS); err != nil {
				h.rep.problem("warm direct open: %v", err)
				continue
			}
			dw = append(dw, ms(d))
		}
		for _, x := range []struct {
			st     *stats
			b, d   []float64
			prefix string
		}{{&cold, bc, dc, "cold"}, {&warm, bw, dw, "warm"}} {
			x.st.b50 = append(x.st.b50, percentile(x.b, 50))
			x.st.b99 = append(x.st.b99, percentile(x.b, 99))
			x.st.d50 = append(x.st.d50, percentile(x.d, 50))
			x.st.d99 = append(x.st.d99, percentile(x.d, 99))
		}
		progress("  run %d: cold p50 %.2f/%.2f ms, warm p50 %.2f/%.2f ms (bastion/direct)", run+1,
			cold.b50[run], cold.d50[run], warm.b50[run], warm.d50[run])
	}
	ratio12 := func(x float64) bool { return x <= 1.2 }
	for _, x := range []struct {
		name string
		st   stats
	}{{"cold", cold}, {"warm", warm}} {
		p50 := figure(section, "p50, "+x.name, "ms", x.st.b50, x.st.d50)
		p99 := figure(section, "p99, "+x.name, "ms", x.st.b99, x.st.d99)
		p50.PeerName, p99.PeerName = "direct", "direct"
		if x.name == "warm" {
			p50 = p50.check("≤ 1.2x direct", p50.Ratio, ratio12)
		}
		h.rep.add(p50, p99)
	}

	const calls = "XAPI calls per console open (XML-RPC; CONNECT not counted)"
	nCold, nWarm := float64(h.runs*h.coldPerRun), float64(h.runs*h.warmPerRun)
	h.rep.add(
		figure(calls, "cold (first open of a VM)", "calls", []float64{float64(coldCalls) / nCold}, nil),
		figure(calls, "warm", "calls", []float64{float64(warmCalls) / nWarm}, nil).
			check("≤ 1", ptr(float64(warmCalls)/nWarm), func(x float64) bool { return x <= 1 }),
	)
	h.details["calls per open"] = map[string]any{
		"cold_opens": nCold, "cold_calls": coldCalls, "cold_logins": coldLogins, "cold_by_method": coldMethods,
		"warm_opens": nWarm, "warm_calls": warmCalls, "warm_logins": warmLogins, "warm_by_method": warmMethods,
	}
}

func addCounts(into, from map[string]int) {
	for k, v := range from {
		into[k] += v
	}
}

// runLogins counts logins when many consoles open at once: a fresh
// bastion process (its start-up login included), then h.burst
// simultaneous opens of different VMs; then, the pool's sessions expired,
// the same again with other VMs. A single-flight login makes both 1.
func (h *harness) runLogins(ctx context.Context) {
	const section = "XAPI logins per pool"
	progress("logins: %d simultaneous opens, fresh bastion, %d runs", h.burst, h.runs)
	var fresh, expired, failures []float64
	for run := range h.runs {
		l0 := h.sp.Logins()
		if err := h.restartBastion(); err != nil {
			h.rep.problem("logins: %v", err)
			return
		}
		f, fails1, err := h.burstOpen(0)
		if err != nil {
			h.rep.problem("logins: %v", err)
			return
		}
		l1 := h.sp.Logins()
		h.sp.ExpireSessions()
		e, fails2, err := h.burstOpen(h.burst)
		l2 := h.sp.Logins()
		if err := h.sp.login(); err != nil { // the harness's own session expired too
			h.rep.problem("logins: harness login: %v", err)
			return
		}
		if err != nil {
			h.rep.problem("logins: %v", err)
			return
		}
		fresh = append(fresh, float64(l1-l0))
		expired = append(expired, float64(l2-l1))
		failures = append(failures, float64(fails1+fails2))
		progress("  run %d: %d logins from start through %d opens (open p50 %.0f ms, all in %.0f ms); %d after expiry (p50 %.0f ms); %d failed",
			run+1, l1-l0, h.burst, f.P50ms, f.Wall, l2-l1, e.P50ms, fails1+fails2)
		h.details[fmt.Sprintf("burst run %d", run+1)] = map[string]any{"fresh": f, "after_expiry": e}
	}
	one := func(x float64) bool { return x == 1 }
	h.rep.add(
		figure(section, fmt.Sprintf("fresh bastion, start-up through %d simultaneous opens", h.burst), "logins", fresh, nil).
			check("exactly 1", medianPtr(fresh), one),
		figure(section, fmt.Sprintf("%d simultaneous opens after the session expired", h.burst), "logins", expired, nil).
			check("exactly 1", medianPtr(expired), one),
		figure(section, "opens that failed in those bursts", "opens", failures, nil).
			check("0", medianPtr(failures), func(x float64) bool { return x == 0 }),
	)
}

// burstResult describes one burst of simultaneous opens.
type burstResult struct {
	Opens  int            `json:"opens"`
	Failed int            `json:"failed"`
	Calls  int            `json:"calls"`
	Logins int            `json:"logins"`
	Method map[string]int `json:"by_method"`
	P50ms  float64        `json:"p50_ms"`
	P99ms  float64        `json:"p99_ms"`
	MaxMs  float64        `json:"max_ms"`
	Wall   float64        `json:"wall_ms"`
	Errors []string       `json:"errors,omitempty"`
}

// burstOpen opens h.burst different VMs, from vm first on, all at once
// over burstConns SSH connections, waits for every first console byte,
// then closes them.
func (h *harness) burstOpen(first int) (burstResult, int, error) {
	// 25 opens per connection: within the bastion's default cap of
	// channels per connection (32), which is not what this measures.
	const burstConns = 20
	clients := make([]*gossh.Client, burstConns)
	for i := range clients {
		c, err := h.bastion.dial()
		if err != nil {
			return burstResult{}, 0, err
		}
		defer c.Close()
		clients[i] = c
	}
	before := h.sp.counters()
	lat := make([]float64, h.burst)
	errs := make([]error, h.burst)
	conns := make([]net.Conn, h.burst)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range h.burst {
		wg.Go(func() {
			<-gate
			start := time.Now()
			conn, err := openForward(clients[i%burstConns], vmName(first+i))
			if err == nil {
				conns[i] = conn
				var b [1]byte
				_, err = io.ReadFull(conn, b[:])
			}
			lat[i], errs[i] = ms(time.Since(start)), err
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	wall := time.Since(start)
	after := h.sp.counters()
	r := burstResult{Opens: h.burst, Calls: after.calls - before.calls, Logins: after.logins - before.logins,
		Method: after.since(before), Wall: ms(wall)}
	var ok []float64
	for i, err := range errs {
		if err != nil {
			r.Failed++
			if len(r.Errors) < 5 {
				r.Errors = append(r.Errors, err.Error())
			}
		} else {
			ok = append(ok, lat[i])
		}
		if conns[i] != nil {
			conns[i].Close()
		}
	}
	r.P50ms, r.P99ms, r.MaxMs = percentile(ok, 50), percentile(ok, 99), percentile(ok, 100)
	return r, r.Failed, nil
}
