package bastion

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"unicode"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/xapi"
)

// denial is why a console was not opened: what the user is told, and what
// the audit log records.
type denial struct {
	msg    string // for the user: short, no internals
	reason string // for the audit record
	code   gossh.RejectionReason
	// vm is set when the user may know which VM it is about.
	vm *xapi.VM
	// err is the internal error, logged but never shown.
	err error
}

func (d *denial) Error() string { return d.msg }

// msgNoSuchVM is what a user is told both for a VM that does not exist and
// for one they may not open, so nobody learns which VMs exist.
const msgNoSuchVM = "no VM %q that you may open"

// find resolves raw to the one VM it names among those user may open.
// Permission is decided before anything else is said about a VM: VMs the
// user may not open are dropped before the ambiguity and power checks.
func (s *Server) find(ctx context.Context, user string, raw string, proto xapi.Protocol) (Pool, xapi.VM, *denial) {
	t, err := ParseTarget(raw, s.poolNames())
	if err != nil {
		return nil, xapi.VM{}, &denial{msg: err.Error(), reason: "malformed target", code: gossh.Prohibited}
	}
	type match struct {
		pool Pool
		vm   xapi.VM
	}
	policy := s.currentPolicy()
	// allowed: VMs the user may open this console of; visible: VMs the
	// user may open another console of (and so may hear about).
	var allowed []match
	var visible []xapi.VM
	hidden, failed := 0, 0
	var lastErr error
	for _, p := range s.Pools {
		if t.Pool != "" && p.Name() != t.Pool {
			continue
		}
		var vms []xapi.VM
		var err error
		if t.Host != "" {
			vms, err = p.ControlDomains(ctx, t.Host)
		} else {
			vms, err = p.FindVMs(ctx, t.Name)
		}
		if err != nil {
			if d := s.abandoned(ctx, nil); d != nil && !errors.As(err, new(*xapi.FingerprintError)) {
				// The pool did not fail: the bastion or the client
				// stopped waiting for it. (A certificate refused
				// meanwhile still gets its xapi.tls_mismatch record.)
				return nil, xapi.VM{}, d
			}
			failed++
			lastErr = err
			s.poolError(ctx, p.Name(), "xapi lookup failed", err)
			continue
		}
		for _, vm := range vms {
			switch {
			case policy.Decide(user, vm, proto).Allowed:
				allowed = append(allowed, match{p, vm})
			case policy.Visible(user, vm):
				visible = append(visible, vm)
			default:
				hidden++
			}
		}
	}
	if len(allowed) == 0 && failed > 0 {
		d := &denial{msg: "the pool is unavailable, try again later", reason: "pool unavailable", code: gossh.ConnectionFailed, err: lastErr}
		if fe := (*xapi.FingerprintError)(nil); errors.As(lastErr, &fe) {
			d.msg, d.reason = "the pool's TLS certificate is not trusted", "tls mismatch"
		}
		return nil, xapi.VM{}, d
	}
	vms := make([]xapi.VM, len(allowed))
	for i, m := range allowed {
		vms[i] = m.vm
	}
	vm, err := xapi.Choose(raw, vms)
	var amb *xapi.AmbiguousError
	switch {
	case errors.Is(err, xapi.ErrNotFound) && len(visible) == 1:
		vm := visible[0]
		return nil, xapi.VM{}, &denial{
			msg:    fmt.Sprintf("you may not open the %s console of %s", protocolName(proto), shown(vm.Name)),
			reason: "not permitted: " + string(proto), code: gossh.Prohibited, vm: &vm,
		}
	case errors.Is(err, xapi.ErrNotFound):
		reason := "no such VM"
		if hidden+len(visible) > 0 {
			reason = "not permitted"
		}
		return nil, xapi.VM{}, &denial{msg: fmt.Sprintf(msgNoSuchVM, raw), reason: reason, code: gossh.Prohibited}
	case errors.As(err, &amb):
		return nil, xapi.VM{}, &denial{
			msg:    fmt.Sprintf("%q names several VMs; use one of their UUIDs: %s", raw, shown(strings.Join(amb.UUIDs, ", "))),
			reason: "ambiguous name", code: gossh.ConnectionFailed,
		}
	case err != nil:
		return nil, xapi.VM{}, &denial{msg: "lookup failed", reason: "lookup failed", code: gossh.ConnectionFailed, err: err}
	}
	for _, m := range allowed {
		if m.vm.UUID == vm.UUID {
			return m.pool, vm, nil
		}
	}
	return nil, xapi.VM{}, &denial{msg: "lookup failed", reason: "lookup failed", code: gossh.ConnectionFailed}
}

// open finds the VM that raw names, checks the user may open its console of
// protocol p, and opens it: a consoleSession that has written console.start
// and a connection to the console. A refusal before the console is begun is
// audited as console.denied; a failure after (the pool refusing the
// CONNECT) ends the session, with console.end giving the reason. Either way
// the denial says what to tell the user.
//
// console.start is written before the CONNECT and synced while it runs
// (see dialWhileSyncing).
func (s *Server) open(ctx context.Context, st *connState, raw string, p xapi.Protocol, via string) (*consoleSession, net.Conn, *denial) {
	user := st.userName()
	octx, cancel := context.WithTimeout(ctx, s.consoleTimeout())
	defer cancel()
	// A shutdown does not wait for a slow pool.
	defer context.AfterFunc(s.base, cancel)()
	refused := func(d *denial) (*consoleSession, net.Conn, *denial) {
		s.refuse(st, raw, p, via, d)
		return nil, nil, d
	}

	pool, vm, d := s.find(octx, user, raw, p)
	if d != nil {
		return refused(d)
	}
	if !vm.Running() {
		return refused(&denial{msg: fmt.Sprintf("VM %s is %s", shown(vm.Name), shown(strings.ToLower(vm.PowerState))), reason: "not running", code: gossh.ConnectionFailed, vm: &vm})
	}
	if _, err := pool.Console(octx, vm, p); err != nil {
		return refused(s.dialDenial(octx, pool, vm, p, err))
	}
	if !s.takeConsoleSlot(user) {
		max := s.limits.MaxConsolesPerUser
		return refused(&denial{msg: fmt.Sprintf("you have %d consoles open, the most allowed", max), reason: "console limit", code: gossh.ResourceShortage, vm: &vm})
	}
	cs, err := s.begin(ctx, st, vm, p, via)
	if err != nil {
		d := beginDenial(err, &vm)
		if d.reason == EndAuditFailed {
			return nil, nil, d // no audit record can be written
		}
		return refused(d)
	}
	// A reload that takes the user's access away, a shutdown or the
	// client leaving ends the session, and so stops the dial.
	defer context.AfterFunc(cs.ctx, cancel)()
	r := s.dialWhileSyncing(octx, pool, vm, p)
	if cause := context.Cause(cs.ctx); cause != nil {
		// Checked after the dial too: had it been answered just before,
		// the console's first bytes would reach a client that may no
		// longer see them.
		if r.conn != nil {
			r.conn.Close()
		}
		cs.logStart()
		d := endedDenial(cause, &vm)
		cs.end(d.reason)
		return nil, nil, d
	}
	if r.err != nil {
		cs.logStart()
		d := s.dialDenial(octx, pool, vm, p, r.err)
		cs.end(d.reason)
		return nil, nil, d
	}
	if r.syncErr != nil {
		r.conn.Close()
		cs.logStart()
		cs.end(EndAuditFailed)
		return nil, nil, beginDenial(r.syncErr, &vm)
	}
	return cs, r.conn, nil
}

// dialed is a console dial's result, with the audit log's sync that ran
// alongside it.
type dialed struct {
	conn    net.Conn
	err     error
	syncErr error
}

// connectNower is a Pool that can send a console's CONNECT at once
// (*xapi.Client, see ConnectNow).
type connectNower interface {
	ConnectNow(ctx context.Context, vm xapi.VM, p xapi.Protocol) func() (net.Conn, error)
}

// dialWhileSyncing opens vm's console while the audit log syncs the
// console.start just written: the sync costs about as much as a warm dial,
// and no byte is relayed before both are done. When the pool can send the
// CONNECT at once, it does, and the reply is read after the sync (by then
// it has usually come); otherwise the dial runs in its own goroutine, so
// that it is under way while this one is blocked in the sync.
func (s *Server) dialWhileSyncing(ctx context.Context, pool Pool, vm xapi.VM, p xapi.Protocol) (r dialed) {
	if cn, ok := pool.(connectNower); ok {
		var reply func() (net.Conn, error)
		func() {
			defer s.recoverPanic("console dial")
			reply = cn.ConnectNow(ctx, vm, p)
		}()
		if reply != nil {
			r.syncErr = s.Audit.Sync()
			r.err = errors.New("console dial failed") // what a panic leaves
			func() {
				defer s.recoverPanic("console dial")
				r.conn, r.err = reply()
			}()
			return r
		}
	}
	dc := make(chan dialed, 1)
	go func() {
		d := dialed{err: errors.New("console dial failed")} // what a panic leaves
		defer func() { dc <- d }()
		defer s.recoverPanic("console dial")
		d.conn, d.err = pool.DialConsole(ctx, vm, p)
	}()
	syncErr := s.Audit.Sync()
	r = <-dc
	r.syncErr = syncErr
	return r
}

// dialDenial says why a console could not be opened.
func (s *Server) dialDenial(ctx context.Context, pool Pool, vm xapi.VM, p xapi.Protocol, err error) *denial {
	d := &denial{code: gossh.ConnectionFailed, vm: &vm, err: err}
	var ce *xapi.ConnectError
	var fe *xapi.FingerprintError
	a := s.abandoned(ctx, &vm)
	switch {
	case errors.Is(err, xapi.ErrNotRunning):
		d.msg, d.reason = fmt.Sprintf("VM %s is not running", shown(vm.Name)), "not running"
	case errors.Is(err, xapi.ErrNoConsole):
		d.msg, d.reason = fmt.Sprintf("VM %s has no %s console", shown(vm.Name), protocolName(p)), "no console"
	case errors.As(err, &ce) && ce.StatusCode == 503:
		d.msg, d.reason = fmt.Sprintf("the console of VM %s is in use (the pool allows one session per console)", shown(vm.Name)), "console busy"
	case errors.As(err, &fe):
		d.msg, d.reason = "the console host's TLS certificate is not trusted", "tls mismatch"
		s.poolError(ctx, pool.Name(), "console host certificate refused", err)
		return d
	case a != nil:
		// Not the pool's failure: the audit record is enough.
		return a
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		// The open's deadline, or the pool client's own (xapi's Timeout).
		d.msg, d.reason = "the pool did not answer in time", "timeout"
	default:
		d.msg, d.reason = "the console could not be opened", "console unavailable"
	}
	s.log.Error("console open failed", "pool", pool.Name(), "vm", vm.Name, "protocol", p, "err", err)
	return d
}

func protocolName(p xapi.Protocol) string {
	switch p {
	case xapi.RFB:
		return "VNC (rfb)"
	case xapi.VT100:
		return "text (vt100)"
	}
	return string(p)
}

// poolError logs a failed call to a pool. A TLS certificate that is not the
// one pinned or first seen is also an xapi.tls_mismatch audit event,
// naming the user whose request met it.
func (s *Server) poolError(ctx context.Context, pool, what string, err error) {
	s.log.Error(what, "pool", pool, "err", err)
	var fe *xapi.FingerprintError
	if !errors.As(err, &fe) {
		return
	}
	ev := Event{Event: EventTLSMismatch}
	if st, _ := ctx.Value(connStateKey).(*connState); st != nil {
		ev = st.event(EventTLSMismatch)
	}
	ev.Pool, ev.XAPIHost, ev.Fingerprint = pool, fe.Host, fe.Fingerprint
	ev.Reason = "certificate is not among the pinned fingerprints"
	if fe.FirstUse {
		ev.Reason = "certificate differs from the one recorded on first use"
	}
	s.audit(ev, false)
}

// shown returns s, a name from the pool, with its control characters
// escaped (\x1b, \n, ...) for a user's terminal: a VM's name label is
// whatever someone with rights on the pool typed, and printed raw it could
// send escape sequences to the terminal or forge rows of list.
func shown(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !unicode.IsControl(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// maxAuditTarget bounds what console.denied records of a target: an SSH
// packet could carry 256 KiB of one.
const maxAuditTarget = 256

// refuse records a refused console open: console.denied in the audit log,
// and the internal error, if any, in the operator's log only.
func (s *Server) refuse(st *connState, target string, p xapi.Protocol, via string, d *denial) {
	ev := st.event(EventConsoleDenied)
	ev.Target, ev.Reason, ev.Protocol, ev.Via = truncate(target, maxAuditTarget), d.reason, string(p), via
	if d.vm != nil {
		ev.Pool, ev.VM, ev.VMUUID = d.vm.Pool, d.vm.Name, d.vm.UUID
	}
	s.audit(ev, false)
	s.log.Info("console refused", "conn", st.id, "user", ev.User, "target", ev.Target, "via", via, "reason", d.reason, "err", d.err)
}

// msgShuttingDown is what a user is told of a console the shutdown refused.
const msgShuttingDown = "the bastion is shutting down"

// abandoned is the denial of an open that stopped waiting for the pool
// because the bastion is shutting down or the client's session or
// connection went (ctx ended, not by the open's deadline); nil if ctx has
// not ended so.
func (s *Server) abandoned(ctx context.Context, vm *xapi.VM) *denial {
	switch {
	case s.base.Err() != nil:
		return &denial{msg: msgShuttingDown, reason: EndShutdown, code: gossh.ConnectionFailed, vm: vm, err: errShutdown}
	case errors.Is(ctx.Err(), context.Canceled):
		return endedDenial(context.Cause(ctx), vm)
	}
	return nil
}

// endedDenial is the denial for an open whose session ended, for cause,
// before its console was relayed.
func endedDenial(cause error, vm *xapi.VM) *denial {
	switch r := endReason(cause); r {
	case EndDisconnected:
		return &denial{msg: "the connection closed", reason: r, code: gossh.ConnectionFailed, vm: vm, err: cause}
	case EndClientClosed:
		return &denial{msg: "the session closed", reason: r, code: gossh.ConnectionFailed, vm: vm, err: cause}
	}
	return beginDenial(cause, vm)
}

// beginDenial is the denial of a console that begin refused (err), or whose
// console.start could not be synced: the shutdown, a reload's revocation,
// or the audit log failing.
func beginDenial(err error, vm *xapi.VM) *denial {
	d := &denial{code: gossh.ConnectionFailed, vm: vm, err: err}
	switch {
	case errors.Is(err, errShutdown):
		d.msg, d.reason = msgShuttingDown, EndShutdown
	case errors.Is(err, errRevoked):
		d.msg, d.reason = EndRevoked, EndRevoked
	default:
		d.msg, d.reason = "the bastion cannot write its audit log; no console is opened", EndAuditFailed
	}
	return d
}
