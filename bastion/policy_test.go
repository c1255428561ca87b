package bastion

import (
	"strings"
	"testing"

	"github.com/xenbastion/xenbastion/xapi"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	const webUUID = "5a0b9d3c-6a39-4c5e-9d57-2f0c1f0e4b11"
	web := xapi.VM{Pool: "lab", Name: "web-1", UUID: webUUID, Tags: []string{"web", "prod"}}
	db := xapi.VM{Pool: "lab", Name: "db-1", UUID: "11111111-2222-3333-4444-555555555555", Tags: []string{"db"}}
	prodWeb := xapi.VM{Pool: "prod", Name: "web-1", UUID: "22222222-2222-3333-4444-555555555555"}
	dom0 := xapi.VM{Pool: "lab", Name: "Control domain on host: xs1", UUID: "33333333-2222-3333-4444-555555555555", IsControlDomain: true, Host: "xs1", HostName: "xs1.lab.example"}
	r := func(p string, consoles ...xapi.Protocol) Rule { return Rule{Pattern: p, Consoles: consoles} }
	tests := []struct {
		name        string
		allow, deny []Rule
		groups      []Group
		vm          xapi.VM
		proto       xapi.Protocol
		want        bool
		rule        string // substring of the deciding rule
	}{
		{name: "nothing allowed by default", vm: web, proto: xapi.RFB},
		{name: "star", allow: []Rule{r("*")}, vm: web, proto: xapi.RFB, want: true, rule: "user u: allow *"},
		{name: "glob", allow: []Rule{r("web-*")}, vm: web, proto: xapi.VT100, want: true},
		{name: "glob misses", allow: []Rule{r("web-*")}, vm: db, proto: xapi.RFB},
		{name: "pool glob", allow: []Rule{r("lab/web-*")}, vm: web, proto: xapi.RFB, want: true},
		{name: "other pool", allow: []Rule{r("lab/web-*")}, vm: prodWeb, proto: xapi.RFB},
		{name: "uuid", allow: []Rule{r("uuid:" + strings.ToUpper(webUUID))}, vm: web, proto: xapi.RFB, want: true},
		{name: "uuid misses", allow: []Rule{r("uuid:" + webUUID)}, vm: db, proto: xapi.RFB},
		{name: "tag", allow: []Rule{r("tag:db")}, vm: db, proto: xapi.RFB, want: true},
		{name: "tag glob", allow: []Rule{r("tag:pr*")}, vm: web, proto: xapi.RFB, want: true},
		{name: "consoles limit the rule", allow: []Rule{r("*", xapi.RFB)}, vm: web, proto: xapi.VT100},
		{name: "consoles allow their kind", allow: []Rule{r("*", xapi.RFB)}, vm: web, proto: xapi.RFB, want: true},
		{name: "star matches a slash in a name", allow: []Rule{r("uuid:" + webUUID)}, deny: []Rule{r("*secret*")},
			vm: xapi.VM{Pool: "lab", Name: "eu/secret-db", UUID: webUUID}, proto: xapi.RFB, rule: "deny *secret*"},
		{name: "deny overrides allow", allow: []Rule{r("*")}, deny: []Rule{r("tag:prod")}, vm: web, proto: xapi.RFB, rule: "user u: deny tag:prod"},
		{name: "deny of one console kind", allow: []Rule{r("*")}, deny: []Rule{r("*", xapi.VT100)}, vm: web, proto: xapi.RFB, want: true},
		{name: "star never reaches a control domain", allow: []Rule{r("*")}, vm: dom0, proto: xapi.VT100},
		{name: "uuid never reaches a control domain", allow: []Rule{r("uuid:" + dom0.UUID)}, vm: dom0, proto: xapi.VT100},
		{name: "host named", allow: []Rule{r("host:xs1")}, vm: dom0, proto: xapi.VT100, want: true},
		{name: "host in pool", allow: []Rule{r("lab/host:xs1")}, vm: dom0, proto: xapi.VT100, want: true},
		{name: "other host", allow: []Rule{r("host:xs2")}, vm: dom0, proto: xapi.VT100},
		{name: "host by hostname", allow: []Rule{r("host:xs1.lab.example")}, vm: dom0, proto: xapi.VT100, want: true},
		{name: "deny host by hostname", allow: []Rule{r("host:xs1")}, deny: []Rule{r("host:xs1.lab.example")}, vm: dom0, proto: xapi.VT100, rule: "deny host:xs1.lab.example"},
		{name: "deny star reaches a control domain", allow: []Rule{r("host:xs1")}, deny: []Rule{r("*")}, vm: dom0, proto: xapi.VT100},
		{name: "host rule is not a guest rule", allow: []Rule{r("host:xs1")}, vm: web, proto: xapi.VT100},
		{name: "group allow", groups: []Group{{Name: "ops", Members: []string{"u"}, Allow: []Rule{r("db-*")}}}, vm: db, proto: xapi.RFB, want: true, rule: "group ops: allow db-*"},
		{name: "group deny overrides user allow", allow: []Rule{r("*")}, groups: []Group{{Name: "ops", Members: []string{"u"}, Deny: []Rule{r("db-*")}}}, vm: db, proto: xapi.RFB, rule: "group ops: deny db-*"},
		{name: "group of others", groups: []Group{{Name: "ops", Members: []string{"v"}, Allow: []Rule{r("*")}}}, vm: db, proto: xapi.RFB},
		{name: "rdp is not served", allow: []Rule{r("*")}, vm: web, proto: xapi.RDP},
		{name: "tag that reads like a host rule", allow: []Rule{r("tag:host:xs1")},
			vm: xapi.VM{Pool: "lab", Name: "h", UUID: webUUID, Tags: []string{"host:xs1"}}, proto: xapi.RFB, want: true},
		{name: "tag rule never reaches a control domain", allow: []Rule{r("tag:host:xs1")}, vm: dom0, proto: xapi.VT100},
		{name: "deny tag that reads like a host rule", allow: []Rule{r("*")}, deny: []Rule{r("tag:host:xs1")},
			vm: xapi.VM{Pool: "lab", Name: "h", UUID: webUUID, Tags: []string{"host:xs1"}}, proto: xapi.RFB, rule: "deny tag:host:xs1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPolicy([]User{{Name: "u", Allow: tt.allow, Deny: tt.deny}, {Name: "v"}}, tt.groups)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide("u", tt.vm, tt.proto)
			if d.Allowed != tt.want || !strings.Contains(d.Rule, tt.rule) {
				t.Errorf("Decide = %+v, want allowed %v by %q", d, tt.want, tt.rule)
			}
		})
	}
	var nilPolicy *Policy
	if nilPolicy.Decide("u", web, xapi.RFB).Allowed {
		t.Error("a nil policy allows")
	}
}

func TestNewPolicyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		users  []User
		groups []Group
		want   string
	}{
		{"bad glob", []User{{Name: "u", Allow: []Rule{{Pattern: "[web"}}}}, nil, "bad glob"},
		{"host glob", []User{{Name: "u", Allow: []Rule{{Pattern: "host:xs*"}}}}, nil, "named exactly"},
		{"bad uuid", []User{{Name: "u", Allow: []Rule{{Pattern: "uuid:123"}}}}, nil, "not a UUID"},
		{"uuid of a tag", []User{{Name: "u", Allow: []Rule{{Pattern: "uuid:tag:prod"}}}}, nil, "not a UUID"},
		{"bad console", []User{{Name: "u", Allow: []Rule{{Pattern: "*", Consoles: []xapi.Protocol{"rdp"}}}}}, nil, "not rfb or vt100"},
		{"empty pattern", []User{{Name: "u", Deny: []Rule{{}}}}, nil, "empty pattern"},
		{"duplicate user", []User{{Name: "u"}, {Name: "u"}}, nil, "listed twice"},
		{"unknown member", []User{{Name: "u"}}, []Group{{Name: "g", Members: []string{"x"}}}, `member "x" is not a user`},
		{"duplicate group", []User{{Name: "u"}}, []Group{{Name: "g"}, {Name: "g"}}, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewPolicy(tt.users, tt.groups); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
