package xapitest

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// classFields lists the fields of each class's record, in the order a
// record shows them; there is a get_<field> method for each.
var classFields = map[string][]string{
	"VM": {"uuid", "name_label", "name_description", "power_state", "is_a_template", "is_a_snapshot",
		"is_control_domain", "consoles", "resident_on", "domid", "tags", "other_config"},
	"console": {"uuid", "protocol", "location", "VM", "other_config"},
	"host":    {"uuid", "name_label", "hostname", "address", "enabled", "resident_VMs", "control_domain"},
	"pool":    {"uuid", "name_label", "master"},
}

// classesByName are the classes with get_by_name_label.
var classesByName = []string{"VM", "host"}

// XAPI error codes the simulator returns.
const (
	errSessionAuthenticationFailed = "SESSION_AUTHENTICATION_FAILED"
	errHostIsSlave                 = "HOST_IS_SLAVE"
	errSessionInvalid              = "SESSION_INVALID"
	errHandleInvalid               = "HANDLE_INVALID"
	errUUIDInvalid                 = "UUID_INVALID"
	errMethodUnknown               = "MESSAGE_METHOD_UNKNOWN"
	errParameterCountMismatch      = "MESSAGE_PARAMETER_COUNT_MISMATCH"
	errFieldTypeError              = "FIELD_TYPE_ERROR"
)

// dispatch answers one XML-RPC call made to host h and returns the reply
// document. A member host answers every call with HOST_IS_SLAVE.
func (p *Pool) dispatch(h *Host, method string, params []any) []byte {
	p.mu.Lock()
	p.calls++
	p.callCount[method]++
	master := p.hosts[p.master]
	p.mu.Unlock()
	if h != master {
		// A real member sends its master's bare IP address; here the
		// port is needed too, since every host is on the same IP.
		return failure([]string{errHostIsSlave, master.addr})
	}
	v, desc := p.call(method, params)
	if desc != nil {
		return failure(desc)
	}
	return success(v)
}

// call runs a method on the master. It returns the result, or the
// ErrorDescription of a failure.
func (p *Pool) call(method string, params []any) (any, []string) {
	switch method {
	case "session.login_with_password":
		if len(params) < 2 || len(params) > 4 {
			want := 2
			if len(params) > 4 {
				want = 4
			}
			return nil, countMismatch(method, want, len(params))
		}
		args, desc := stringArgs(params)
		if desc != nil {
			return nil, desc
		}
		s, err := p.login(args[0], args[1])
		if err != nil {
			return nil, []string{errSessionAuthenticationFailed, args[0], "Authentication failure"}
		}
		return s, nil
	case "session.logout":
		args, desc := p.sessionArgs(method, params, 1)
		if desc != nil {
			return nil, desc
		}
		p.logout(args[0])
		return nil, nil
	}

	class, op, _ := strings.Cut(method, ".")
	fields, ok := classFields[class]
	if !ok {
		return nil, []string{errMethodUnknown, method}
	}
	var n int
	switch {
	case op == "get_all_records" || op == "get_all":
		n = 1
	case op == "get_record" || op == "get_by_uuid":
		n = 2
	case op == "get_by_name_label" && slices.Contains(classesByName, class):
		n = 2
	case strings.HasPrefix(op, "get_") && slices.Contains(fields, op[len("get_"):]):
		n = 2
	default:
		return nil, []string{errMethodUnknown, method}
	}
	args, desc := p.sessionArgs(method, params, n)
	if desc != nil {
		return nil, desc
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	switch op {
	case "get_all":
		return p.refs(class), nil
	case "get_all_records":
		all := record{}
		for _, ref := range p.refs(class) {
			r, _ := p.record(class, ref)
			all = append(all, member{ref, r})
		}
		return all, nil
	case "get_record":
		r, ok := p.record(class, args[1])
		if !ok {
			return nil, []string{errHandleInvalid, class, args[1]}
		}
		return r, nil
	case "get_by_uuid":
		for _, ref := range p.refs(class) {
			if uuid, _ := p.identity(class, ref, "uuid"); uuid == args[1] {
				return ref, nil
			}
		}
		return nil, []string{errUUIDInvalid, class, args[1]}
	case "get_by_name_label":
		refs := []string{}
		for _, ref := range p.refs(class) {
			if name, _ := p.identity(class, ref, "name_label"); name == args[1] {
				refs = append(refs, ref)
			}
		}
		return refs, nil
	}
	v, ok := p.fieldOf(class, args[1], op[len("get_"):])
	if !ok {
		return nil, []string{errHandleInvalid, class, args[1]}
	}
	return v, nil
}

func countMismatch(method string, want, got int) []string {
	return []string{errParameterCountMismatch, method, strconv.Itoa(want), strconv.Itoa(got)}
}

// stringArgs returns params, which must all be strings.
func stringArgs(params []any) ([]string, []string) {
	args := make([]string, len(params))
	for i, v := range params {
		s, ok := v.(string)
		if !ok {
			return nil, []string{errFieldTypeError, "param " + strconv.Itoa(i+1)}
		}
		args[i] = s
	}
	return args, nil
}

// sessionArgs checks that a method taking n string parameters, the first
// a session, got them and that the session is valid.
func (p *Pool) sessionArgs(method string, params []any, n int) ([]string, []string) {
	if len(params) != n {
		return nil, countMismatch(method, n, len(params))
	}
	args, desc := stringArgs(params)
	if desc != nil {
		return nil, desc
	}
	p.mu.Lock()
	_, ok := p.sessions[args[0]]
	p.mu.Unlock()
	if !ok {
		return nil, []string{errSessionInvalid, args[0]}
	}
	return args, nil
}

// errAuth is returned by login for wrong credentials.
var errAuth = errors.New("authentication failure")

// login opens a session for user, or fails after the pool's
// AuthFailureDelay.
func (p *Pool) login(user, password string) (string, error) {
	if user != p.opts.Username || password != p.opts.Password {
		if d := p.opts.AuthFailureDelay; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
			}
		}
		p.log.Info("login failed", "user", user)
		return "", errAuth
	}
	s := newRef()
	p.mu.Lock()
	p.sessions[s] = user
	p.logins++
	p.mu.Unlock()
	return s, nil
}

// logout ends session s.
func (p *Pool) logout(s string) {
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}

// refs returns the refs of every object of class. p.mu must be held.
func (p *Pool) refs(class string) []string {
	refs := []string{}
	switch class {
	case "VM":
		for _, v := range p.vms {
			refs = append(refs, v.ref)
		}
	case "console":
		for _, v := range p.vms {
			for _, c := range v.consoles {
				refs = append(refs, c.ref)
			}
		}
	case "host":
		for _, h := range p.hosts {
			refs = append(refs, h.ref)
		}
	case "pool":
		refs = append(refs, p.ref)
	}
	return refs
}

// fieldOf returns one field of the record of class's object ref.
// p.mu must be held.
func (p *Pool) fieldOf(class, ref, field string) (any, bool) {
	r, ok := p.record(class, ref)
	if !ok {
		return nil, false
	}
	return r.get(field)
}

// identity returns the uuid or name_label field of class's object ref, as
// its record has it, without building the record for the VMs and consoles
// that get_by_uuid and get_by_name_label go through: building each one's
// record made one lookup in a pool of 2,000 VMs allocate 2,000 records,
// and the benchmark's cold opens spent most of the harness's CPU there.
// p.mu must be held.
func (p *Pool) identity(class, ref, field string) (string, bool) {
	switch class {
	case "VM":
		if v := p.vmByRef[ref]; v != nil {
			switch field {
			case "uuid":
				return v.uuid, true
			case "name_label":
				return v.name, true
			}
		}
	case "console":
		if c := p.consoleByRef[ref]; c != nil && field == "uuid" {
			return c.uuid, true
		}
	}
	x, ok := p.fieldOf(class, ref, field)
	s, _ := x.(string)
	return s, ok
}

// record returns the record of class's object ref, its fields in the order
// of classFields. p.mu must be held.
func (p *Pool) record(class, ref string) (record, bool) {
	switch class {
	case "VM":
		v := p.vmByRef[ref]
		if v == nil {
			return nil, false
		}
		consoles := []string{}
		for _, c := range v.consoles {
			consoles = append(consoles, c.ref)
		}
		resident := nullRef
		if v.residentOn != nil {
			resident = v.residentOn.ref
		}
		return record{
			{"uuid", v.uuid},
			{"name_label", v.name},
			{"name_description", v.description},
			{"power_state", v.powerState},
			{"is_a_template", v.template},
			{"is_a_snapshot", v.snapshot},
			{"is_control_domain", v.controlDomain},
			{"consoles", consoles},
			{"resident_on", resident},
			{"domid", v.domid},
			{"tags", slices.Clone(v.tags)},
			{"other_config", maps.Clone(v.otherConfig)},
		}, true
	case "console":
		c := p.consoleByRef[ref]
		if c == nil {
			return nil, false
		}
		return record{
			{"uuid", c.uuid},
			{"protocol", c.protocol},
			{"location", p.location(c)},
			{"VM", c.vm.ref},
			{"other_config", maps.Clone(c.otherConfig)},
		}, true
	case "host":
		for _, h := range p.hosts {
			if h.ref != ref {
				continue
			}
			resident := []string{}
			for _, v := range p.vms {
				if v.residentOn == h {
					resident = append(resident, v.ref)
				}
			}
			return record{
				{"uuid", h.uuid},
				{"name_label", h.nameLabel()},
				{"hostname", h.hostname},
				{"address", h.addr},
				{"enabled", true},
				{"resident_VMs", resident},
				{"control_domain", h.dom0.ref},
			}, true
		}
	case "pool":
		if ref == p.ref {
			return record{
				{"uuid", p.uuid},
				{"name_label", p.opts.PoolName},
				{"master", p.hosts[p.master].ref},
			}, true
		}
	}
	return nil, false
}
