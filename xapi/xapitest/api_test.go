package xapitest_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

type vmRecord struct {
	UUID            string            `xmlrpc:"uuid"`
	NameLabel       string            `xmlrpc:"name_label"`
	PowerState      string            `xmlrpc:"power_state"`
	IsATemplate     bool              `xmlrpc:"is_a_template"`
	IsASnapshot     bool              `xmlrpc:"is_a_snapshot"`
	IsControlDomain bool              `xmlrpc:"is_control_domain"`
	Consoles        []string          `xmlrpc:"consoles"`
	ResidentOn      string            `xmlrpc:"resident_on"`
	Domid           string            `xmlrpc:"domid"`
	Tags            []string          `xmlrpc:"tags"`
	OtherConfig     map[string]string `xmlrpc:"other_config"`
}

type consoleRecord struct {
	UUID     string `xmlrpc:"uuid"`
	Protocol string `xmlrpc:"protocol"`
	Location string `xmlrpc:"location"`
	VM       string `xmlrpc:"VM"`
}

type hostRecord struct {
	UUID          string   `xmlrpc:"uuid"`
	Hostname      string   `xmlrpc:"hostname"`
	Address       string   `xmlrpc:"address"`
	Enabled       bool     `xmlrpc:"enabled"`
	ResidentVMs   []string `xmlrpc:"resident_VMs"`
	ControlDomain string   `xmlrpc:"control_domain"`
}

func TestLogin(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	tests := []struct {
		name string
		args []any
		want []string // ErrorDescription; nil for success
	}{
		{name: "four params", args: []any{"root", "xenroot", "1.1", "test"}},
		{name: "two params", args: []any{"root", "xenroot"}},
		{name: "wrong password", args: []any{"root", "nope", "1.1", "test"},
			want: []string{"SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"}},
		{name: "wrong user", args: []any{"admin", "xenroot"},
			want: []string{"SESSION_AUTHENTICATION_FAILED", "admin", "Authentication failure"}},
		{name: "one param", args: []any{"root"},
			want: []string{"MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", "2", "1"}},
		{name: "five params", args: []any{"root", "xenroot", "1.1", "test", "x"},
			want: []string{"MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", "4", "5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, fail := call[string](t, p, p.URL(), "session.login_with_password", tt.args...)
			if !slices.Equal(fail, tt.want) {
				t.Fatalf("ErrorDescription %q, want %q", fail, tt.want)
			}
			if tt.want == nil && !strings.HasPrefix(s, "OpaqueRef:") {
				t.Errorf("session %q, want an OpaqueRef", s)
			}
		})
	}
}

func TestAuthFailureDelay(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	p := xapitest.NewTestPool(t, xapitest.Options{AuthFailureDelay: delay, Username: "admin", Password: "s3cret"})
	start := time.Now()
	_, fail := call[string](t, p, p.URL(), "session.login_with_password", "root", "xenroot")
	if took := time.Since(start); took < delay {
		t.Errorf("failed login took %v, want at least %v", took, delay)
	}
	if len(fail) == 0 || fail[0] != "SESSION_AUTHENTICATION_FAILED" {
		t.Errorf("ErrorDescription %q", fail)
	}
	if _, fail := call[string](t, p, p.URL(), "session.login_with_password", "admin", "s3cret"); fail != nil {
		t.Errorf("configured credentials: %q", fail)
	}
	if got := p.Logins(); got != 1 {
		t.Errorf("Logins() = %d, want 1", got)
	}
}

func TestHostIsSlave(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, xapitest.Options{Members: 2, AuthFailureDelay: time.Millisecond})
	s := login(t, p)
	want := []string{"HOST_IS_SLAVE", p.Master().Address()}
	for _, member := range p.MemberURLs() {
		for _, c := range []struct {
			method string
			args   []any
		}{
			{"session.login_with_password", []any{"root", "xenroot", "1.1", "test"}},
			{"session.login_with_password", []any{"root", "wrong"}},
			{"VM.get_all", []any{s}},
			{"no.such_method", nil},
		} {
			_, fail := call[string](t, p, member, c.method, c.args...)
			if !slices.Equal(fail, want) {
				t.Errorf("%s on %s: %q, want %q", c.method, member, fail, want)
			}
		}
	}
	if len(p.MemberURLs()) != 2 {
		t.Errorf("MemberURLs() = %q, want 2", p.MemberURLs())
	}
}

func TestSessionInvalid(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	s := login(t, p)
	mustCall[[]string](t, p, "VM.get_all", s)
	p.ExpireSessions()
	if _, fail := call[[]string](t, p, p.URL(), "VM.get_all", s); !slices.Equal(fail, []string{"SESSION_INVALID", s}) {
		t.Errorf("after ExpireSessions: %q", fail)
	}
	s = login(t, p)
	mustCall[string](t, p, "session.logout", s)
	if _, fail := call[string](t, p, p.URL(), "session.logout", s); !slices.Equal(fail, []string{"SESSION_INVALID", s}) {
		t.Errorf("after logout: %q", fail)
	}
	if p.Sessions() != 0 {
		t.Errorf("Sessions() = %d after logout", p.Sessions())
	}
}

func TestGetByNameLabel(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	p.AddDemoVMs()
	s := login(t, p)
	tests := []struct {
		name, label               string
		running, templ, snapshots int
	}{
		{name: "template and snapshot share the name", label: "web-1", running: 1, templ: 1, snapshots: 1},
		{name: "one VM", label: "db-1", running: 1},
		{name: "halted VM", label: "build-1"},
		{name: "control domain", label: "Control domain on host: host-1", running: 1},
		{name: "no VM", label: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			refs := mustCall[[]string](t, p, "VM.get_by_name_label", s, tt.label)
			var running, templ, snapshots int
			for _, ref := range refs {
				r := mustCall[vmRecord](t, p, "VM.get_record", s, ref)
				switch {
				case r.IsATemplate:
					templ++
				case r.IsASnapshot:
					snapshots++
				case r.PowerState == "Running":
					running++
				}
				if r.NameLabel != tt.label {
					t.Errorf("name_label %q", r.NameLabel)
				}
			}
			if running != tt.running || templ != tt.templ || snapshots != tt.snapshots {
				t.Errorf("%d refs: %d running, %d templates, %d snapshots; want %d, %d, %d",
					len(refs), running, templ, snapshots, tt.running, tt.templ, tt.snapshots)
			}
		})
	}
}

func TestRecords(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	s := login(t, p)
	all := mustCall[map[string]vmRecord](t, p, "VM.get_all_records", s)
	if len(all) != 2+len(vms) {
		t.Fatalf("get_all_records: %d VMs, want %d", len(all), 2+len(vms))
	}
	master, member := p.Host(0), p.Host(1)

	web1 := all[vms[0].Ref]
	if web1.UUID != vms[0].UUID || web1.PowerState != "Running" || web1.ResidentOn != master.Ref() ||
		web1.Domid == "-1" || len(web1.Consoles) != 2 || !slices.Equal(web1.Tags, []string{"web"}) {
		t.Errorf("web-1: %+v", web1)
	}
	for _, ref := range web1.Consoles {
		c := mustCall[consoleRecord](t, p, "console.get_record", s, ref)
		want := "https://" + master.Address() + "/console?uuid=" + c.UUID
		if c.Location != want || c.VM != vms[0].Ref {
			t.Errorf("console %+v, want location %s", c, want)
		}
	}
	db1 := all[vms[2].Ref]
	if len(db1.Consoles) != 1 || db1.ResidentOn != member.Ref() {
		t.Errorf("db-1: %+v", db1)
	}
	if c := mustCall[string](t, p, "console.get_protocol", s, db1.Consoles[0]); c != "rfb" {
		t.Errorf("db-1 console protocol %q", c)
	}
	build := all[vms[3].Ref]
	if build.PowerState != "Halted" || build.ResidentOn != "OpaqueRef:NULL" || build.Domid != "-1" {
		t.Errorf("build-1: %+v", build)
	}
	if loc := mustCall[string](t, p, "console.get_location", s, build.Consoles[0]); loc != "" {
		t.Errorf("halted VM's console location %q", loc)
	}
	if snap := all[vms[5].Ref]; !snap.IsASnapshot || snap.OtherConfig["snapshot_of"] != "web-1" {
		t.Errorf("snapshot: %+v", snap)
	}

	// Control domains: running, domid 0, consoles at ?ref=.
	h := mustCall[hostRecord](t, p, "host.get_record", s, member.Ref())
	if h.Address != member.Address() || !h.Enabled || h.Hostname != "host-1" {
		t.Errorf("host: %+v", h)
	}
	dom0 := mustCall[vmRecord](t, p, "VM.get_record", s, h.ControlDomain)
	if !dom0.IsControlDomain || dom0.Domid != "0" || dom0.NameLabel != "Control domain on host: host-1" ||
		dom0.ResidentOn != member.Ref() || !slices.Contains(h.ResidentVMs, h.ControlDomain) {
		t.Errorf("control domain: %+v", dom0)
	}
	for _, ref := range dom0.Consoles {
		loc := mustCall[string](t, p, "console.get_location", s, ref)
		if want := "https://" + member.Address() + "/console?ref=" + ref; loc != want {
			t.Errorf("control domain console location %q, want %q", loc, want)
		}
	}

	if got := mustCall[string](t, p, "host.get_address", s, master.Ref()); got != master.Address() {
		t.Errorf("host.get_address %q", got)
	}
	pools := mustCall[[]string](t, p, "pool.get_all", s)
	if len(pools) != 1 {
		t.Fatalf("pool.get_all %q", pools)
	}
	if got := mustCall[string](t, p, "pool.get_master", s, pools[0]); got != master.Ref() {
		t.Errorf("pool.get_master %q, want %q", got, master.Ref())
	}
	// Every VM, console and host is found by its record's UUID.
	for ref, r := range all {
		if got := mustCall[string](t, p, "VM.get_by_uuid", s, r.UUID); got != ref {
			t.Errorf("VM.get_by_uuid(%s) %q, want %q", r.UUID, got, ref)
		}
		for _, cref := range r.Consoles {
			uuid := mustCall[string](t, p, "console.get_uuid", s, cref)
			if got := mustCall[string](t, p, "console.get_by_uuid", s, uuid); got != cref {
				t.Errorf("console.get_by_uuid(%s) %q, want %q", uuid, got, cref)
			}
		}
	}
	if got := mustCall[string](t, p, "host.get_by_uuid", s, h.UUID); got != member.Ref() {
		t.Errorf("host.get_by_uuid %q, want %q", got, member.Ref())
	}
	if got := mustCall[[]string](t, p, "host.get_all", s); len(got) != 2 {
		t.Errorf("host.get_all %q", got)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	s := login(t, p)
	tests := []struct {
		name   string
		method string
		args   []any
		want   []string
	}{
		{"unknown ref", "VM.get_record", []any{s, "OpaqueRef:nope"}, []string{"HANDLE_INVALID", "VM", "OpaqueRef:nope"}},
		{"unknown ref in getter", "console.get_location", []any{s, "OpaqueRef:nope"}, []string{"HANDLE_INVALID", "console", "OpaqueRef:nope"}},
		{"unknown uuid", "host.get_by_uuid", []any{s, "nope"}, []string{"UUID_INVALID", "host", "nope"}},
		{"unknown method", "VM.start", []any{s, "x", false, false}, []string{"MESSAGE_METHOD_UNKNOWN", "VM.start"}},
		{"unknown field", "VM.get_nope", []any{s, "x"}, []string{"MESSAGE_METHOD_UNKNOWN", "VM.get_nope"}},
		{"unknown class", "SR.get_all", []any{s}, []string{"MESSAGE_METHOD_UNKNOWN", "SR.get_all"}},
		{"too many params", "VM.get_all", []any{s, "x"}, []string{"MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_all", "1", "2"}},
		{"too few params", "VM.get_record", []any{s}, []string{"MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "2", "1"}},
		{"bad session", "VM.get_all", []any{"OpaqueRef:bad"}, []string{"SESSION_INVALID", "OpaqueRef:bad"}},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, fail := call[string](t, p, p.URL(), tt.method, tt.args...)
				if !slices.Equal(fail, tt.want) {
					t.Errorf("%q, want %q", fail, tt.want)
				}
			})
		}
	})
	if got := p.CallCount("VM.get_all"); got != 2 {
		t.Errorf("CallCount(VM.get_all) = %d, want 2", got)
	}
}

// TestWire checks replies byte for byte against xapi's dialect.
func TestWire(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vm := p.AddVM(xapitest.VMSpec{Name: `a<b>&"c"`, PowerState: "Halted", Template: true})
	s := login(t, p)
	const (
		head = `<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name>`
		tail = `</member></struct></value></param></params></methodResponse>`
	)
	tests := []struct {
		name string
		body string // methodCall, with SESSION for the session
		want string
	}{
		{"bare string", `<methodCall><methodName>VM.get_power_state</methodName><params><param><value>SESSION</value></param><param><value>` + vm.Ref + `</value></param></params></methodCall>`,
			head + `<value>Halted</value>` + tail},
		{"escaped string", `<methodCall><methodName>VM.get_name_label</methodName><params><param><value><string>SESSION</string></value></param><param><value><string>` + vm.Ref + `</string></value></param></params></methodCall>`,
			head + `<value>a&lt;b&gt;&amp;&quot;c&quot;</value>` + tail},
		{"int64 bare", `<methodCall><methodName>VM.get_domid</methodName><params><param><value>SESSION</value></param><param><value>` + vm.Ref + `</value></param></params></methodCall>`,
			head + `<value>-1</value>` + tail},
		{"boolean", `<methodCall><methodName>VM.get_is_a_template</methodName><params><param><value>SESSION</value></param><param><value>` + vm.Ref + `</value></param></params></methodCall>`,
			head + `<value><boolean>1</boolean></value>` + tail},
		{"empty set and map", `<methodCall><methodName>VM.get_tags</methodName><params><param><value>SESSION</value></param><param><value>` + vm.Ref + `</value></param></params></methodCall>`,
			head + `<value><array><data></data></array></value>` + tail},
		{"empty string", `<methodCall><methodName>VM.get_name_description</methodName><params><param><value>SESSION</value></param><param><value>` + vm.Ref + `</value></param></params></methodCall>`,
			head + `<value></value>` + tail},
		{"failure", `<?xml version="1.0"?>` + "\n" + `<methodCall> <methodName>VM.get_record</methodName> <params> <param> <value>SESSION</value> </param> <param> <value>OpaqueRef:x</value> </param> </params> </methodCall>`,
			`<?xml version="1.0"?><methodResponse><params><param><value><struct><member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>HANDLE_INVALID</value><value>VM</value><value>OpaqueRef:x</value></data></array></value></member></struct></value></param></params></methodResponse>`},
		{"void", `<methodCall><methodName>session.logout</methodName><params><param><value>SESSION</value></param></params></methodCall>`,
			head + `<value></value>` + tail},
	}
	for _, tt := range tests { // in order: the last one logs out
		t.Run(tt.name, func(t *testing.T) {
			status, got := post(t, p, p.URL(), []byte(strings.ReplaceAll(tt.body, "SESSION", s)))
			if status != http.StatusOK || string(got) != tt.want {
				t.Errorf("HTTP %d\n got %s\nwant %s", status, got, tt.want)
			}
		})
	}
}

func TestMalformedCall(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	for _, body := range []string{"", "not xml", "<methodCall><params/></methodCall>", "<methodResponse/>", "<methodCall><methodName>x</methodName><params><param><value><int>x</int></value></param></params></methodCall>"} {
		status, data := post(t, p, p.URL(), []byte(body))
		if status != http.StatusInternalServerError || !strings.Contains(string(data), "HTTP 500 internal server error") {
			t.Errorf("%q: HTTP %d %s", body, status, data)
		}
	}
}

func TestMoveMaster(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	old := p.URL()
	s := login(t, p)
	if err := p.MoveMaster(1); err != nil {
		t.Fatal(err)
	}
	if p.URL() != p.Host(1).URL() || !p.Host(1).IsMaster() || p.Host(0).IsMaster() {
		t.Fatalf("URL() %s after MoveMaster(1)", p.URL())
	}
	if _, fail := call[[]string](t, p, old, "VM.get_all", s); !slices.Equal(fail, []string{"HOST_IS_SLAVE", p.Host(1).Address()}) {
		t.Errorf("old master: %q", fail)
	}
	// The session made on the old master is still valid on the new one.
	pools := mustCall[[]string](t, p, "pool.get_all", s)
	if got := mustCall[string](t, p, "pool.get_master", s, pools[0]); got != p.Host(1).Ref() {
		t.Errorf("pool.get_master %q", got)
	}
	c, _ := vms[0].Console("rfb")
	loc := mustCall[string](t, p, "console.get_location", s, c.Ref)
	if want := "https://" + p.Host(0).Address() + "/console?ref=" + c.Ref; loc != want {
		t.Errorf("location after a master change %q, want %q", loc, want)
	}
	if err := p.MoveMaster(5); err == nil {
		t.Error("MoveMaster(5) in a pool of 2: no error")
	}
}

func TestPowerOffOn(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vms := p.AddDemoVMs()
	s := login(t, p)
	web1 := vms[0]
	if err := p.PowerOff("web-1"); err != nil {
		t.Fatal(err)
	}
	r := mustCall[vmRecord](t, p, "VM.get_record", s, web1.Ref)
	if r.PowerState != "Halted" || r.ResidentOn != "OpaqueRef:NULL" || r.Domid != "-1" || len(r.Consoles) != 2 {
		t.Errorf("after PowerOff: %+v", r)
	}
	for _, ref := range r.Consoles {
		if loc := mustCall[string](t, p, "console.get_location", s, ref); loc != "" {
			t.Errorf("location %q after PowerOff", loc)
		}
	}

	on, err := p.PowerOn(web1.UUID, 1)
	if err != nil {
		t.Fatal(err)
	}
	r = mustCall[vmRecord](t, p, "VM.get_record", s, web1.Ref)
	if r.PowerState != "Running" || r.ResidentOn != p.Host(1).Ref() || r.Domid == "-1" {
		t.Errorf("after PowerOn: %+v", r)
	}
	oldRFB, _ := web1.Console("rfb")
	newRFB, _ := on.Console("rfb")
	if newRFB.UUID == oldRFB.UUID || !slices.Contains(r.Consoles, newRFB.Ref) {
		t.Errorf("consoles not made anew: old %+v new %+v", oldRFB, newRFB)
	}
	if want := "https://" + p.Host(1).Address() + "/console?uuid=" + newRFB.UUID; newRFB.Location != want {
		t.Errorf("location %q, want %q", newRFB.Location, want)
	}
	if _, fail := call[string](t, p, p.URL(), "console.get_location", s, oldRFB.Ref); len(fail) == 0 || fail[0] != "HANDLE_INVALID" {
		t.Errorf("old console ref: %q", fail)
	}
	if err := p.PowerOff("Control domain on host: host-0"); err == nil {
		t.Error("PowerOff of a control domain: no error")
	}
	if err := p.PowerOff("nope"); err == nil {
		t.Error("PowerOff of an unknown VM: no error")
	}
}

func TestEmptyLocationHost(t *testing.T) {
	t.Parallel()
	p := xapitest.NewTestPool(t, fastOpts)
	vm := p.AddVM(xapitest.VMSpec{Name: "quirk", Host: 1, EmptyLocationHost: true})
	c, _ := vm.Console("vt100")
	if want := "https:///console?ref=" + c.Ref; c.Location != want {
		t.Errorf("location %q, want %q", c.Location, want)
	}
	if err := p.SetEmptyLocationHost("quirk", false); err != nil {
		t.Fatal(err)
	}
	vm, _ = p.VM("quirk")
	c, _ = vm.Console("vt100")
	if want := "https://" + p.Host(1).Address() + "/console?uuid=" + c.UUID; c.Location != want {
		t.Errorf("location %q, want %q", c.Location, want)
	}
}

func TestIPv6(t *testing.T) {
	t.Parallel()
	p, err := xapitest.NewPool(xapitest.Options{IPv6: true, AuthFailureDelay: time.Millisecond})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(p.Close)
	if !strings.HasPrefix(p.URL(), "https://[::1]:") {
		t.Fatalf("URL() = %s", p.URL())
	}
	_, fail := call[string](t, p, p.MemberURLs()[0], "session.login_with_password", "root", "xenroot")
	if !slices.Equal(fail, []string{"HOST_IS_SLAVE", p.Master().Address()}) || !strings.HasPrefix(fail[1], "[::1]:") {
		t.Errorf("HOST_IS_SLAVE %q", fail)
	}
	login(t, p)
}
