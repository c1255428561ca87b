package xapitest

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
)

// VM power states, as xapi names them.
const (
	powerHalted    = "Halted"
	powerPaused    = "Paused"
	powerRunning   = "Running"
	powerSuspended = "Suspended"
)

// Console protocols, as xapi names them.
const (
	protoRFB   = "rfb"
	protoVT100 = "vt100"
	protoRDP   = "rdp"
)

// vm is a VM of the pool's database; every field is guarded by Pool.mu.
type vm struct {
	ref, uuid         string
	name, description string
	powerState        string
	template          bool
	snapshot          bool
	controlDomain     bool
	host              *Host // the control domain's host; nil for guests
	residentOn        *Host // nil unless Running or Paused
	domid             int64 // -1 unless resident
	consoles          []*console
	protocols         []string // of the consoles made at each start
	tags              []string
	otherConfig       map[string]string
	noBackend         bool
	emptyLocationHost bool
	backend           func(io.ReadWriter) error // rfb consoles; nil: the test pattern
}

// console is a console of the pool's database; every field is guarded by
// Pool.mu.
type console struct {
	ref, uuid   string
	protocol    string
	vm          *vm
	otherConfig map[string]string
	shell       *shell                // vt100: the guest's shell, made on first connection
	conns       map[net.Conn]struct{} // open console connections
}

// shellName is the name the vt100 shell of v uses in its prompt.
func (v *vm) shellName() string {
	if v.controlDomain {
		return v.host.hostname
	}
	return v.name
}

// defaultConsole returns v's rfb console, the one xapi picks when a CONNECT
// names a VM, or nil.
func (v *vm) defaultConsole() *console {
	for _, c := range v.consoles {
		if c.protocol == protoRFB {
			return c
		}
	}
	return nil
}

// VMSpec describes a guest VM for [Pool.AddVM].
type VMSpec struct {
	// Name is the VM's name_label. Names need not be unique.
	Name        string
	Description string
	// UUID is the VM's UUID; empty means a random one.
	UUID string
	// Host is the index of the host the VM runs on: 0 for the first
	// master, 1.. for members. Ignored unless the VM is Running or Paused.
	Host int
	// PowerState is Running, Halted, Paused or Suspended; empty means
	// Running (Halted for templates and snapshots).
	PowerState string
	// Consoles are the protocols of the VM's consoles: nil means rfb and
	// vt100 (a PV guest; an HVM guest has only rfb) for a guest, none for
	// a template or snapshot. "rdp" consoles are listed but have no back
	// end: CONNECT to them gets 404, as from xapi.
	Consoles    []string
	Tags        []string
	OtherConfig map[string]string
	Template    bool // is_a_template
	Snapshot    bool // is_a_snapshot
	// DisablePVVNC sets other_config:disable_pv_vnc=1 and gives the VM no
	// console at all.
	DisablePVVNC bool
	// NoBackend makes CONNECT to the VM's consoles get 404 Not Found, as
	// when xapi finds no back end for a console.
	NoBackend bool
	// EmptyLocationHost makes the VM's console locations name no host,
	// "https:///console?ref=...", a quirk seen in the field.
	EmptyLocationHost bool
	// Backend, if set, serves the VM's rfb consoles instead of the
	// test-pattern VNC server: after the 200 reply it gets the
	// connection's bytes, and the connection closes when it returns.
	// [BenchBackend] is one.
	Backend func(rw io.ReadWriter) error
}

// VMInfo describes a VM as it is now.
type VMInfo struct {
	Name       string
	UUID       string
	Ref        string
	PowerState string
	// Host is the index of the host the VM is resident on, -1 if none.
	Host     int
	Consoles []ConsoleInfo
}

// ConsoleInfo describes a console of a VM.
type ConsoleInfo struct {
	Protocol string // rfb, vt100 or rdp
	UUID     string
	Ref      string
	Location string // empty when the VM is not running
}

// Console returns the VM's first console of protocol.
func (v VMInfo) Console(protocol string) (ConsoleInfo, bool) {
	for _, c := range v.Consoles {
		if c.Protocol == protocol {
			return c, true
		}
	}
	return ConsoleInfo{}, false
}

// AddVM adds a guest VM and returns its description. It panics if spec
// names a host the pool lacks, an unknown power state or an unknown console
// protocol: those are mistakes in a test.
func (p *Pool) AddVM(spec VMSpec) VMInfo {
	v := &vm{
		ref:               newRef(),
		uuid:              spec.UUID,
		name:              spec.Name,
		description:       spec.Description,
		powerState:        spec.PowerState,
		template:          spec.Template,
		snapshot:          spec.Snapshot,
		domid:             -1,
		tags:              slices.Clone(spec.Tags),
		otherConfig:       maps.Clone(spec.OtherConfig),
		noBackend:         spec.NoBackend,
		emptyLocationHost: spec.EmptyLocationHost,
		backend:           spec.Backend,
	}
	if v.uuid == "" {
		v.uuid = newUUID()
	}
	if v.tags == nil {
		v.tags = []string{}
	}
	if v.otherConfig == nil {
		v.otherConfig = map[string]string{}
	}
	if v.powerState == "" {
		v.powerState = powerRunning
		if v.template || v.snapshot {
			v.powerState = powerHalted
		}
	}
	switch v.powerState {
	case powerHalted, powerPaused, powerRunning, powerSuspended:
	default:
		panic(fmt.Sprintf("xapitest: VM %q: unknown power state %q", spec.Name, spec.PowerState))
	}
	switch {
	case spec.DisablePVVNC:
		v.otherConfig["disable_pv_vnc"] = "1"
		v.protocols = nil
	case spec.Consoles != nil:
		v.protocols = slices.Clone(spec.Consoles)
	case !v.template && !v.snapshot:
		v.protocols = []string{protoRFB, protoVT100}
	}
	for _, proto := range v.protocols {
		switch proto {
		case protoRFB, protoVT100, protoRDP:
		default:
			panic(fmt.Sprintf("xapitest: VM %q: unknown console protocol %q", spec.Name, proto))
		}
	}
	h := p.Host(spec.Host)
	if h == nil && (v.powerState == powerRunning || v.powerState == powerPaused) {
		panic(fmt.Sprintf("xapitest: VM %q: no host %d in a pool of %d", spec.Name, spec.Host, len(p.hosts)))
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	p.vms = append(p.vms, v)
	p.vmByRef[v.ref] = v
	if state := v.powerState; state == powerRunning || state == powerPaused {
		p.start(v, h) // no connections yet, nothing to close
		v.powerState = state
	} else {
		p.newConsoles(v)
	}
	return p.info(v)
}

// addControlDomain adds host h's control domain: running on h as domain 0,
// with one rfb and one vt100 console.
func (p *Pool) addControlDomain(h *Host) {
	v := &vm{
		ref:           newRef(),
		uuid:          newUUID(),
		name:          "Control domain on host: " + h.hostname,
		description:   "The domain which manages physical devices and manages other domains",
		powerState:    powerRunning,
		controlDomain: true,
		host:          h,
		residentOn:    h,
		domid:         0,
		protocols:     []string{protoRFB, protoVT100},
		tags:          []string{},
		otherConfig:   map[string]string{},
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h.dom0 = v
	p.vms = append(p.vms, v)
	p.vmByRef[v.ref] = v
	p.newConsoles(v)
}

// start makes v resident on h and running with a new domid and new
// consoles, as a start, reboot or migration does. It returns the
// connections of v's old consoles, for the caller to close once it has
// released p.mu. p.mu must be held.
func (p *Pool) start(v *vm, h *Host) []net.Conn {
	v.powerState = powerRunning
	v.residentOn = h
	v.domid = p.nextDomid
	p.nextDomid++
	return p.newConsoles(v)
}

// newConsoles replaces v's consoles by new ones, with new refs and UUIDs.
// It returns the connections of the old ones. p.mu must be held.
func (p *Pool) newConsoles(v *vm) []net.Conn {
	conns := p.dropConsoles(v)
	for _, c := range v.consoles {
		delete(p.consoleByRef, c.ref)
	}
	v.consoles = nil
	for _, proto := range v.protocols {
		c := &console{
			ref:         newRef(),
			uuid:        newUUID(),
			protocol:    proto,
			vm:          v,
			otherConfig: map[string]string{},
			conns:       map[net.Conn]struct{}{},
		}
		v.consoles = append(v.consoles, c)
		p.consoleByRef[c.ref] = c
	}
	return conns
}

// dropConsoles forgets the shells of v's consoles and returns their open
// connections. p.mu must be held.
func (p *Pool) dropConsoles(v *vm) []net.Conn {
	var conns []net.Conn
	for _, c := range v.consoles {
		conns = slices.AppendSeq(conns, maps.Keys(c.conns))
		c.shell = nil
	}
	return conns
}

// location returns the location field of console c. p.mu must be held.
func (p *Pool) location(c *console) string {
	v := c.vm
	if v.residentOn == nil {
		return ""
	}
	switch {
	case v.emptyLocationHost:
		return "https:///console?ref=" + c.ref
	case v.controlDomain || p.refLocations:
		return "https://" + v.residentOn.addr + "/console?ref=" + c.ref
	}
	return "https://" + v.residentOn.addr + "/console?uuid=" + c.uuid
}

// info describes v. p.mu must be held.
func (p *Pool) info(v *vm) VMInfo {
	vi := VMInfo{Name: v.name, UUID: v.uuid, Ref: v.ref, PowerState: v.powerState, Host: -1}
	if v.residentOn != nil {
		vi.Host = v.residentOn.index
	}
	for _, c := range v.consoles {
		vi.Consoles = append(vi.Consoles, ConsoleInfo{Protocol: c.protocol, UUID: c.uuid, Ref: c.ref, Location: p.location(c)})
	}
	return vi
}

// findVM returns the VM whose UUID is nameOrUUID, else the first VM, not a
// template or snapshot, named nameOrUUID. p.mu must be held.
func (p *Pool) findVM(nameOrUUID string) (*vm, error) {
	if v := p.vmByUUID(nameOrUUID); v != nil {
		return v, nil
	}
	for _, v := range p.vms {
		if v.name == nameOrUUID && !v.template && !v.snapshot {
			return v, nil
		}
	}
	return nil, fmt.Errorf("xapitest: no VM %q", nameOrUUID)
}

func (p *Pool) vmByUUID(uuid string) *vm {
	for _, v := range p.vms {
		if v.uuid == uuid {
			return v
		}
	}
	return nil
}

func (p *Pool) consoleByUUID(uuid string) *console {
	for _, c := range p.consoleByRef {
		if c.uuid == uuid {
			return c
		}
	}
	return nil
}

// VM describes the VM named nameOrUUID (its UUID, or the name of a VM that
// is not a template or snapshot).
func (p *Pool) VM(nameOrUUID string) (VMInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, err := p.findVM(nameOrUUID)
	if err != nil {
		return VMInfo{}, false
	}
	return p.info(v), true
}

// errControlDomain is returned by switches that do not apply to control
// domains.
var errControlDomain = errors.New("xapitest: a control domain cannot be powered off or moved")

// PowerOff shuts the VM named nameOrUUID down: power_state Halted,
// resident_on OpaqueRef:NULL, domid -1, console locations empty (the
// console records stay), and its open console connections closed.
func (p *Pool) PowerOff(nameOrUUID string) error {
	p.mu.Lock()
	v, err := p.findVM(nameOrUUID)
	if err == nil && v.controlDomain {
		err = errControlDomain
	}
	if err != nil {
		p.mu.Unlock()
		return err
	}
	v.powerState = powerHalted
	v.residentOn = nil
	v.domid = -1
	conns := p.dropConsoles(v) // the records stay, without location
	p.mu.Unlock()
	closeAll(conns)
	p.log.Info("VM powered off", "vm", v.name)
	return nil
}

// PowerOn starts the VM named nameOrUUID on host index host, or restarts it
// there if it runs (a reboot or a migration). Like xapi, it makes the VM's
// consoles anew, with new refs and UUIDs, and closes the connections to the
// old ones. It returns the VM's new description.
func (p *Pool) PowerOn(nameOrUUID string, host int) (VMInfo, error) {
	h := p.Host(host)
	if h == nil {
		return VMInfo{}, fmt.Errorf("xapitest: no host %d in a pool of %d", host, len(p.hosts))
	}
	p.mu.Lock()
	v, err := p.findVM(nameOrUUID)
	switch {
	case err != nil:
	case v.controlDomain:
		err = errControlDomain
	case v.template || v.snapshot:
		err = fmt.Errorf("xapitest: VM %q is a template or snapshot and cannot be started", nameOrUUID)
	}
	if err != nil {
		p.mu.Unlock()
		return VMInfo{}, err
	}
	conns := p.start(v, h)
	vi := p.info(v)
	p.mu.Unlock()
	closeAll(conns)
	p.log.Info("VM powered on", "vm", v.name, "host", h.hostname)
	return vi, nil
}

// SetEmptyLocationHost turns on or off the field quirk of console
// locations with an empty host ("https:///console?ref=...") for the VM
// named nameOrUUID.
func (p *Pool) SetEmptyLocationHost(nameOrUUID string, on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, err := p.findVM(nameOrUUID)
	if err != nil {
		return err
	}
	v.emptyLocationHost = on
	return nil
}

// SetConsoleLimit sets pool.limit_console_sessions: when on, a CONNECT to
// a VM that already has an open console connection (to any of its
// consoles) gets 503 Connection Limit Exceeded. Connections open when it
// is turned on count.
func (p *Pool) SetConsoleLimit(on bool) {
	p.mu.Lock()
	p.limitConsoles = on
	p.mu.Unlock()
}

// SetHoldConnects makes the hosts hang on console CONNECTs, as a stuck
// xapi does: while on, a CONNECT is read and never answered, and its
// connection stays open until the client closes it (or the pool closes).
func (p *Pool) SetHoldConnects(on bool) {
	p.mu.Lock()
	p.holdConnects = on
	p.mu.Unlock()
}

// ExpireSessions makes every session invalid, as a session timeout or an
// xapi restart does: calls with them get SESSION_INVALID and CONNECTs 401.
// Open console connections go on.
func (p *Pool) ExpireSessions() {
	p.mu.Lock()
	clear(p.sessions)
	p.mu.Unlock()
}

// MoveMaster makes host index i the pool master, as a master failover
// does. The old master then answers every call with HOST_IS_SLAVE and the
// new master's address. Sessions stay valid (call ExpireSessions as well to
// simulate the restart losing them). Like xapi after a master change, guest
// console locations then use ?ref= instead of ?uuid=.
func (p *Pool) MoveMaster(i int) error {
	if p.Host(i) == nil {
		return fmt.Errorf("xapitest: no host %d in a pool of %d", i, len(p.hosts))
	}
	p.mu.Lock()
	changed := p.master != i
	p.master = i
	if changed {
		p.refLocations = true
	}
	p.mu.Unlock()
	p.log.Info("pool master moved", "master", p.hosts[i].hostname)
	return nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
