package xapi

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Protocol is a console protocol.
type Protocol string

// Console protocols XAPI knows. The bastion serves RFB and VT100.
const (
	RFB   Protocol = "rfb"
	VT100 Protocol = "vt100"
	RDP   Protocol = "rdp"
)

// Power states of a VM.
const (
	Running   = "Running"
	Halted    = "Halted"
	Paused    = "Paused"
	Suspended = "Suspended"
)

// nullRef is XAPI's null reference.
const nullRef = "OpaqueRef:NULL"

// VM is what the bastion needs to know of a VM.
type VM struct {
	Pool       string // the pool's configured name
	Ref        string
	UUID       string
	Name       string // name_label
	PowerState string // Running, Halted, Paused, Suspended
	ResidentOn string // host ref, "" when not running
	Tags       []string
	// IsControlDomain is true for a host's dom0.
	IsControlDomain bool
	// Host is, for a control domain, the name label of its host, and
	// HostName that host's hostname.
	Host, HostName string
	// Consoles are the VM's consoles (empty when other_config:disable_pv_vnc
	// is set). Locations are filled only by calls that read console records
	// ([Client.VMs], [Client.Console]); [Client.FindVMs] leaves them empty.
	Consoles []Console
	// consoleRefs are the refs from the VM record.
	consoleRefs []string
}

// Running reports whether the VM's power state is Running.
func (v VM) Running() bool { return v.PowerState == Running }

// Protocols returns the protocols of the VM's consoles, sorted.
func (v VM) Protocols() []Protocol {
	var ps []Protocol
	for _, c := range v.Consoles {
		if !slices.Contains(ps, c.Protocol) {
			ps = append(ps, c.Protocol)
		}
	}
	slices.Sort(ps)
	return ps
}

// Console is a VM console record.
type Console struct {
	Ref      string
	UUID     string
	Protocol Protocol
	// Location is where XAPI serves the console, e.g.
	// https://ADDRESS/console?uuid=...; empty when the VM is not running.
	Location string
}

// vmRecord is the part of XAPI's VM record that the bastion reads. Fields
// are typed: kolo/xmlrpc cannot decode xapi's bare values into interface{}.
type vmRecord struct {
	UUID            string            `xmlrpc:"uuid"`
	NameLabel       string            `xmlrpc:"name_label"`
	PowerState      string            `xmlrpc:"power_state"`
	IsATemplate     bool              `xmlrpc:"is_a_template"`
	IsASnapshot     bool              `xmlrpc:"is_a_snapshot"`
	IsControlDomain bool              `xmlrpc:"is_control_domain"`
	Consoles        []string          `xmlrpc:"consoles"`
	ResidentOn      string            `xmlrpc:"resident_on"`
	Tags            []string          `xmlrpc:"tags"`
	OtherConfig     map[string]string `xmlrpc:"other_config"`
}

type hostRecord struct {
	NameLabel     string `xmlrpc:"name_label"`
	Hostname      string `xmlrpc:"hostname"`
	Address       string `xmlrpc:"address"`
	ControlDomain string `xmlrpc:"control_domain"`
}

type consoleRecord struct {
	UUID     string `xmlrpc:"uuid"`
	Protocol string `xmlrpc:"protocol"`
	Location string `xmlrpc:"location"`
	VM       string `xmlrpc:"VM"`
}

// guest reports whether the record is a VM a user can mean: not a template,
// a snapshot or a control domain.
func (r *vmRecord) guest() bool {
	return !r.IsATemplate && !r.IsASnapshot && !r.IsControlDomain
}

func (c *Client) vmFromRecord(ref string, r *vmRecord) VM {
	v := VM{
		Pool:            c.cfg.Name,
		Ref:             ref,
		UUID:            r.UUID,
		Name:            r.NameLabel,
		PowerState:      r.PowerState,
		Tags:            r.Tags,
		IsControlDomain: r.IsControlDomain,
	}
	if r.ResidentOn != nullRef {
		v.ResidentOn = r.ResidentOn
	}
	if r.OtherConfig["disable_pv_vnc"] != "1" {
		v.consoleRefs = r.Consoles
	}
	return v
}

// VMs returns every guest VM of the pool (no templates or snapshots) and
// every host's control domain (with Host set), with their consoles, sorted
// by name. It costs three calls.
func (c *Client) VMs(ctx context.Context) ([]VM, error) {
	var vms map[string]vmRecord
	if err := call(ctx, c, "VM.get_all_records", &vms); err != nil {
		return nil, err
	}
	var cons map[string]consoleRecord
	if err := call(ctx, c, "console.get_all_records", &cons); err != nil {
		return nil, err
	}
	var hosts map[string]hostRecord
	if err := call(ctx, c, "host.get_all_records", &hosts); err != nil {
		return nil, err
	}
	out := make([]VM, 0, len(vms))
	for ref, r := range vms {
		if r.IsATemplate || r.IsASnapshot {
			continue
		}
		v := c.vmFromRecord(ref, &r)
		if r.IsControlDomain {
			h := hosts[r.ResidentOn]
			v.Host, v.HostName = h.NameLabel, h.Hostname
		}
		for _, cref := range v.consoleRefs {
			if cr, ok := cons[cref]; ok {
				v.Consoles = append(v.Consoles, consoleFromRecord(cref, &cr))
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b VM) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.UUID, b.UUID))
	})
	return out, nil
}

func consoleFromRecord(ref string, r *consoleRecord) Console {
	return Console{Ref: ref, UUID: r.UUID, Protocol: Protocol(r.Protocol), Location: r.Location}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsUUID reports whether s has the form of a UUID.
func IsUUID(s string) bool { return uuidRE.MatchString(s) }

// FindVMs returns the guest VMs whose UUID is target (when target is a
// UUID) or whose name label is target. Templates, snapshots and control
// domains are left out. No match is an empty slice, not an error. Console
// locations are not read: use [Client.Console] for that. Results are reused
// for Config.CacheTTL.
func (c *Client) FindVMs(ctx context.Context, target string) ([]VM, error) {
	now := time.Now()
	if vms, ok := c.cache.find(target, now); ok {
		return vms, nil
	}
	vms, err := c.findVMs(ctx, target)
	if err == nil {
		c.cache.putFind(target, vms, now)
	}
	return vms, err
}

func (c *Client) findVMs(ctx context.Context, target string) ([]VM, error) {
	var refs []string
	if IsUUID(target) {
		var ref string
		err := call(ctx, c, "VM.get_by_uuid", &ref, strings.ToLower(target))
		switch {
		case err == nil:
			refs = []string{ref}
		case !IsCode(err, CodeUUIDInvalid):
			return nil, err
		}
	}
	// A name label may have the form of a UUID that no VM has.
	if refs == nil {
		if err := call(ctx, c, "VM.get_by_name_label", &refs, target); err != nil {
			return nil, err
		}
	}
	var out []VM
	for _, ref := range refs {
		var r vmRecord
		err := call(ctx, c, "VM.get_record", &r, ref)
		if IsCode(err, CodeHandleInvalid) {
			continue // deleted between the two calls
		}
		if err != nil {
			return nil, err
		}
		if r.guest() {
			out = append(out, c.vmFromRecord(ref, &r))
		}
	}
	return out, nil
}

// ControlDomains returns the control domain of each host whose name label
// or hostname is host (normally one), with Host and HostName set.
func (c *Client) ControlDomains(ctx context.Context, host string) ([]VM, error) {
	var hosts map[string]hostRecord
	if err := call(ctx, c, "host.get_all_records", &hosts); err != nil {
		return nil, err
	}
	var out []VM
	for _, h := range hosts {
		if h.NameLabel != host && h.Hostname != host || h.ControlDomain == "" || h.ControlDomain == nullRef {
			continue
		}
		var r vmRecord
		if err := call(ctx, c, "VM.get_record", &r, h.ControlDomain); err != nil {
			return nil, err
		}
		v := c.vmFromRecord(h.ControlDomain, &r)
		v.Host, v.HostName = h.NameLabel, h.Hostname
		out = append(out, v)
	}
	return out, nil
}

// Choose picks the VM that target means among vms (the VMs that match it):
// the only one, or the only running one. No VM is ErrNotFound; several
// running VMs, or several and none running, is an *AmbiguousError listing
// their UUIDs.
func Choose(target string, vms []VM) (VM, error) {
	switch len(vms) {
	case 0:
		return VM{}, ErrNotFound
	case 1:
		return vms[0], nil
	}
	var running []VM
	for _, v := range vms {
		if v.Running() {
			running = append(running, v)
		}
	}
	if len(running) == 1 {
		return running[0], nil
	}
	if len(running) == 0 {
		running = vms
	}
	uuids := make([]string, len(running))
	for i, v := range running {
		uuids[i] = v.UUID
	}
	slices.Sort(uuids)
	return VM{}, &AmbiguousError{Name: target, UUIDs: uuids}
}

// Console returns the VM's console of protocol p, with its current location,
// read from XAPI. A VM that is not running gets ErrNotRunning, one without
// such a console ErrNoConsole. A VM value from before a reboot or migration
// (whose consoles XAPI has made anew) is looked up again.
func (c *Client) Console(ctx context.Context, vm VM, p Protocol) (Console, error) {
	_, con, err := c.console(ctx, vm, p)
	return con, err
}

// allConsoleRefs returns the refs of vm's consoles: those of its record,
// or of its Consoles if it was not made from one.
func (vm VM) allConsoleRefs() []string {
	if vm.consoleRefs != nil {
		return vm.consoleRefs
	}
	refs := make([]string, len(vm.Consoles))
	for i, con := range vm.Consoles {
		refs[i] = con.Ref
	}
	return refs
}

// cachedConsole returns vm's console of protocol p if its record is in the
// cache: no XAPI call.
func (c *Client) cachedConsole(vm VM, p Protocol) (Console, bool) {
	if !vm.Running() {
		return Console{}, false
	}
	for _, ref := range vm.allConsoleRefs() {
		if con, ok := c.cache.console(ref); ok && con.Protocol == p {
			return con, true
		}
	}
	return Console{}, false
}

// console is Console, also returning the VM as XAPI has it now.
func (c *Client) console(ctx context.Context, vm VM, p Protocol) (VM, Console, error) {
	for fresh := false; ; fresh = true {
		if !vm.Running() {
			return vm, Console{}, fmt.Errorf("%s is %s: %w", vm.Name, strings.ToLower(vm.PowerState), ErrNotRunning)
		}
		stale := false
		for _, ref := range vm.allConsoleRefs() {
			if con, ok := c.cache.console(ref); ok {
				if con.Protocol == p {
					return vm, con, nil
				}
				continue
			}
			var r consoleRecord
			err := call(ctx, c, "console.get_record", &r, ref)
			if IsCode(err, CodeHandleInvalid) {
				stale = true // the console was made anew: the VM rebooted or moved
				continue
			}
			if err != nil {
				return vm, Console{}, err
			}
			con := consoleFromRecord(ref, &r)
			if con.Location != "" {
				c.cache.putConsole(con)
			}
			if con.Protocol == p {
				return vm, con, nil
			}
		}
		if !stale || fresh {
			return vm, Console{}, fmt.Errorf("%s has no %s console: %w", vm.Name, p, ErrNoConsole)
		}
		var err error
		if vm, err = c.refresh(ctx, vm); err != nil {
			return vm, Console{}, err
		}
	}
}

// refresh forgets what is cached about vm and reads its record again.
func (c *Client) refresh(ctx context.Context, vm VM) (VM, error) {
	c.cache.forget(vm)
	var r vmRecord
	err := call(ctx, c, "VM.get_record", &r, vm.Ref)
	if IsCode(err, CodeHandleInvalid) {
		return vm, fmt.Errorf("%s: %w", vm.Name, ErrNotFound)
	}
	if err != nil {
		return vm, err
	}
	host, hostName := vm.Host, vm.HostName
	vm = c.vmFromRecord(vm.Ref, &r)
	vm.Host, vm.HostName = host, hostName
	return vm, nil
}
