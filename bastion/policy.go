package bastion

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
)

// Rule is one allow or deny rule. Pattern is one of:
//
//	glob          a glob (path.Match) on the VM's name label, in any pool
//	POOL/glob     the same, in pools matching the POOL glob
//	uuid:UUID     the VM with this UUID
//	tag:NAME      VMs that carry a XAPI tag matching NAME (a glob)
//	host:NAME     the control domain (dom0) consoles of host NAME (its name
//	              label or its hostname), which must be named exactly:
//	              globs never reach a control domain
//
// Any pattern may be prefixed with "POOL/". Consoles limits the rule to
// those console protocols; empty means rfb and vt100.
type Rule struct {
	Pattern  string
	Consoles []xapi.Protocol
}

func (r Rule) String() string {
	if len(r.Consoles) == 0 {
		return r.Pattern
	}
	ps := make([]string, len(r.Consoles))
	for i, p := range r.Consoles {
		ps[i] = string(p)
	}
	return r.Pattern + " (" + strings.Join(ps, ",") + ")"
}

// User is a person who may log in, with the keys that prove it is them and
// the rules that say what they may open.
type User struct {
	Name string
	Keys keys.KeySet
	// Allow and Deny are the user's own rules; Deny overrides Allow, and
	// so do the deny rules of the user's groups. No allow rule: nothing.
	Allow []Rule
	Deny  []Rule
}

// Group gives its members its rules.
type Group struct {
	Name    string
	Members []string
	Allow   []Rule
	Deny    []Rule
}

// Policy is who may log in and what each may open. It is never changed
// after NewPolicy returns it; a reload makes a new one.
type Policy struct {
	cas     keys.CASet
	revoked *keys.RevocationList
	users   map[string]*User
	// rules holds each user's compiled rules, their own and their groups'.
	rules map[string]*userRules
}

type userRules struct {
	allow, deny []*rule
}

// rule is a compiled Rule with where it came from.
type rule struct {
	from     string // "user alice" or "group ops"
	text     string // the Rule as written
	pool     string // glob on the pool name
	kind     string // "name", "uuid", "tag" or "host"
	value    string
	consoles []xapi.Protocol
}

// NewPolicy checks users and groups (unique names, known members, valid
// patterns) and returns a Policy.
func NewPolicy(users []User, groups []Group, opts ...PolicyOption) (*Policy, error) {
	p := &Policy{users: make(map[string]*User, len(users)), rules: make(map[string]*userRules, len(users))}
	for _, o := range opts {
		o(p)
	}
	for i := range users {
		u := users[i]
		if u.Name == "" {
			return nil, fmt.Errorf("users[%d]: empty name", i)
		}
		if _, dup := p.users[u.Name]; dup {
			return nil, fmt.Errorf("users: %q listed twice", u.Name)
		}
		p.users[u.Name] = &u
		ur := &userRules{}
		if err := ur.add("user "+u.Name, u.Allow, u.Deny); err != nil {
			return nil, err
		}
		p.rules[u.Name] = ur
	}
	seen := map[string]bool{}
	for i, g := range groups {
		if g.Name == "" {
			return nil, fmt.Errorf("groups[%d]: empty name", i)
		}
		if seen[g.Name] {
			return nil, fmt.Errorf("groups: %q listed twice", g.Name)
		}
		seen[g.Name] = true
		for _, m := range g.Members {
			ur := p.rules[m]
			if ur == nil {
				return nil, fmt.Errorf("group %s: member %q is not a user", g.Name, m)
			}
			if err := ur.add("group "+g.Name, g.Allow, g.Deny); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

func (ur *userRules) add(from string, allow, deny []Rule) error {
	for _, rs := range []struct {
		kind  string
		rules []Rule
		into  *[]*rule
	}{{"allow", allow, &ur.allow}, {"deny", deny, &ur.deny}} {
		for _, r := range rs.rules {
			c, err := compileRule(from, r)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", from, rs.kind, err)
			}
			*rs.into = append(*rs.into, c)
		}
	}
	return nil
}

func compileRule(from string, r Rule) (*rule, error) {
	c := &rule{from: from, text: r.String(), pool: "*", kind: "name", value: r.Pattern, consoles: r.Consoles}
	if r.Pattern == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	if i := strings.Index(c.value, "/"); i >= 0 && !strings.Contains(c.value[:i], ":") {
		c.pool, c.value = c.value[:i], c.value[i+1:]
		if _, err := path.Match(c.pool, ""); err != nil || c.pool == "" {
			return nil, fmt.Errorf("pattern %q: bad pool glob", r.Pattern)
		}
	}
	for _, kind := range []string{"uuid", "tag", "host"} {
		if v, ok := strings.CutPrefix(c.value, kind+":"); ok {
			// One prefix: a tag may itself read "host:xs1".
			c.kind, c.value = kind, v
			break
		}
	}
	switch c.kind {
	case "uuid":
		if !xapi.IsUUID(c.value) {
			return nil, fmt.Errorf("pattern %q: not a UUID", r.Pattern)
		}
		c.value = strings.ToLower(c.value)
	case "host":
		if c.value == "" || strings.ContainsAny(c.value, "*?[\\") {
			return nil, fmt.Errorf("pattern %q: a host must be named exactly, without globs", r.Pattern)
		}
	default:
		if _, err := path.Match(c.value, ""); err != nil || c.value == "" {
			return nil, fmt.Errorf("pattern %q: bad glob", r.Pattern)
		}
	}
	for _, p := range r.Consoles {
		if p != xapi.RFB && p != xapi.VT100 {
			return nil, fmt.Errorf("pattern %q: console %q is not rfb or vt100", r.Pattern, p)
		}
	}
	return c, nil
}

// servedConsoles are the console protocols a rule covers by default: the
// ones the bastion serves.
var servedConsoles = []xapi.Protocol{xapi.RFB, xapi.VT100}

// matches reports whether the rule covers vm's console of protocol proto.
// Allow rules reach a control domain only through host:NAME; deny rules
// reach it through any pattern that matches, so a deny is never weaker
// than it reads.
func (r *rule) matches(vm xapi.VM, proto xapi.Protocol, deny bool) bool {
	consoles := r.consoles
	if len(consoles) == 0 {
		consoles = servedConsoles // not rdp, which nothing serves
	}
	if !slices.Contains(consoles, proto) {
		return false
	}
	if !globMatch(r.pool, vm.Pool) {
		return false
	}
	if vm.IsControlDomain && !deny && r.kind != "host" {
		return false
	}
	switch r.kind {
	case "uuid":
		return strings.EqualFold(vm.UUID, r.value)
	case "tag":
		for _, t := range vm.Tags {
			if globMatch(r.value, t) {
				return true
			}
		}
		return false
	case "host":
		// By name label or hostname, as a host: target finds it.
		return vm.IsControlDomain && (vm.Host == r.value || vm.HostName != "" && vm.HostName == r.value)
	}
	return globMatch(r.value, vm.Name)
}

// globMatch is path.Match with "/" an ordinary character: XAPI name labels
// and tags may contain "/", and "*" must match it, or a deny rule would be
// weaker than it reads.
func globMatch(pattern, s string) bool {
	ok, _ := path.Match(strings.ReplaceAll(pattern, "/", "\x00"), strings.ReplaceAll(s, "/", "\x00"))
	return ok
}

// Decision is the outcome of Decide.
type Decision struct {
	Allowed bool
	// Rule names the rule that decided, e.g. "group ops: deny tag:prod";
	// empty when no rule matched (nothing is allowed by default).
	Rule string
}

// Decide is the one place that decides whether user may open vm's console
// of protocol proto. list, console, forwards and check all ask it. A deny
// rule of the user or of any of their groups overrides every allow rule.
func (p *Policy) Decide(user string, vm xapi.VM, proto xapi.Protocol) Decision {
	if p == nil {
		return Decision{}
	}
	ur := p.rules[user]
	if ur == nil {
		return Decision{}
	}
	for _, r := range ur.deny {
		if r.matches(vm, proto, true) {
			return Decision{Allowed: false, Rule: r.from + ": deny " + r.text}
		}
	}
	for _, r := range ur.allow {
		if r.matches(vm, proto, false) {
			return Decision{Allowed: true, Rule: r.from + ": allow " + r.text}
		}
	}
	return Decision{}
}

// Visible reports whether user may open some console of vm: such VMs are
// listed, and are named in messages to the user.
func (p *Policy) Visible(user string, vm xapi.VM) bool {
	return p.Decide(user, vm, xapi.RFB).Allowed || p.Decide(user, vm, xapi.VT100).Allowed
}

// User returns the named user, or nil.
func (p *Policy) User(name string) *User {
	if p == nil {
		return nil
	}
	return p.users[name]
}
