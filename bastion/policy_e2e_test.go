package bastion_test

import (
	"strings"
	"testing"

	"github.com/xenbastion/xenbastion/bastion"
	"github.com/xenbastion/xenbastion/bastion/bastiontest"
	"github.com/xenbastion/xenbastion/xapi"
	"github.com/xenbastion/xenbastion/xapi/xapitest"
)

// TestPolicyEndToEnd checks groups, deny rules, console kinds, tags and
// control domains as users meet them over OpenSSH.
func TestPolicyEndToEnd(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{
		Users: []bastiontest.User{
			{Name: "alice", Allow: []string{"host:host-0"}},
			{Name: "bob", AllowRules: []bastion.Rule{{Pattern: "web-*", Consoles: []xapi.Protocol{xapi.RFB}}}},
			{Name: "carol", Allow: []string{"tag:db"}},
		},
		Groups: []bastion.Group{
			{Name: "ops", Members: []string{"alice", "carol"}, Allow: []bastion.Rule{{Pattern: "*"}}, Deny: []bastion.Rule{{Pattern: "tag:web"}}},
		},
	})
	tests := []struct {
		name    string
		user    string
		command []string
		stdin   string
		code    int
		stdout  string
		stderr  string
	}{
		{name: "host console", user: "alice", command: []string{"console", "host:host-0"}, stdin: "hostname\n", stdout: "hostname\r\nhost-0\r\n"},
		{name: "other host is not allowed", user: "alice", command: []string{"console", "host:host-1"}, code: 1, stderr: `no VM "host:host-1" that you may open`},
		{name: "group deny beats group allow", user: "alice", command: []string{"console", "web-1"}, code: 1, stderr: `no VM "web-1" that you may open`},
		{name: "rfb-only rule refuses the text console", user: "bob", command: []string{"console", "web-1"}, code: 1, stderr: "you may not open the text (vt100) console of web-1"},
		{name: "list shows dom0 as host:NAME", user: "alice", command: []string{"list"}, stdout: "host:host-0"},
		{name: "list shows only rfb for an rfb rule", user: "bob", command: []string{"list"}, stdout: "web-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runSSH(t, b, tt.user, tt.stdin, nil, tt.command...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, %q, %q", r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
	// bob's list shows web-1 with its rfb console only, and no vt100.
	r := runSSH(t, b, "bob", "", nil, "list")
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, "web-1") && strings.Contains(line, "vt100") {
			t.Errorf("bob's list offers vt100: %q", line)
		}
	}
	// alice sees no web VM, and no template or snapshot of one.
	r = runSSH(t, b, "alice", "", nil, "list")
	if strings.Contains(r.stdout, "web-") {
		t.Errorf("alice's list shows denied VMs:\n%s", r.stdout)
	}
	// A forward to a dom0 is allowed by host: and goes through.
	r = runSSH(t, b, "alice", "", []string{"-W", "[host:host-0]:5900"})
	if !strings.HasPrefix(r.stdout, "RFB 003.008\n") {
		t.Errorf("forward to host:host-0: %+v", r)
	}
}

// TestTLSMismatch: a console host whose certificate is not the pinned one
// is refused with a short message, and audited as xapi.tls_mismatch.
func TestTLSMismatch(t *testing.T) {
	t.Parallel()
	b := bastiontest.Start(t, bastiontest.Options{
		// Only the master is pinned: web-2 runs on the member.
		Trust: func(p *xapitest.Pool) xapi.Trust { return xapi.Trust{Fingerprints: []string{p.Master().Fingerprint()}} },
	})
	r := runSSH(t, b, "alice", "", nil, "console", "web-2")
	if r.code != 1 || !strings.Contains(r.stderr, "TLS certificate is not trusted") || strings.Contains(r.stderr, b.Sim.Host(1).Fingerprint()) {
		t.Errorf("console on the unpinned member: %+v", r)
	}
	ev := b.WaitEvent(t, func(ev bastion.Event) bool { return ev.Event == bastion.EventTLSMismatch })
	if ev.User != "alice" || ev.Fingerprint != b.Sim.Host(1).Fingerprint() || ev.XAPIHost != b.Sim.Host(1).Address() || ev.Pool != "lab" {
		t.Errorf("xapi.tls_mismatch = %+v", ev)
	}
	// The master's VMs still work.
	if r := runSSH(t, b, "alice", "echo ok\n", nil, "console", "web-1"); r.code != 0 {
		t.Errorf("console on the pinned master: %+v", r)
	}
}
