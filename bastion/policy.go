package bastion

import (
	"fmt"
	"path"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/xenbastion/xenbastion/keys"
	"github.com/xenbastion/xenbastion/xapi"
)

// User is a person who may log in, with the keys that prove it is them and
// the VMs they may open.
type User struct {
	Name string
	Keys keys.KeySet
	// Allow lists globs (path.Match syntax) on VM name labels, or
	// "POOL/glob" to match only in one pool. Empty allows nothing.
	Allow []string
}

// Policy is the set of users and what each may open. A Policy is never
// changed after it is given to a Server.
type Policy struct {
	users map[string]*User
}

// NewPolicy checks users (unique names, valid globs) and returns a Policy.
func NewPolicy(users []User) (*Policy, error) {
	p := &Policy{users: make(map[string]*User, len(users))}
	for i := range users {
		u := users[i]
		if u.Name == "" {
			return nil, fmt.Errorf("users[%d]: empty name", i)
		}
		if _, dup := p.users[u.Name]; dup {
			return nil, fmt.Errorf("users: %q listed twice", u.Name)
		}
		for _, pat := range u.Allow {
			if err := checkPattern(pat); err != nil {
				return nil, fmt.Errorf("user %s: allow: %w", u.Name, err)
			}
		}
		p.users[u.Name] = &u
	}
	return p, nil
}

// User returns the named user, or nil.
func (p *Policy) User(name string) *User {
	if p == nil {
		return nil
	}
	return p.users[name]
}

// Authorized reports whether key is one of the user's keys.
func (u *User) Authorized(key gossh.PublicKey) bool {
	if u == nil || key == nil {
		return false
	}
	return u.Keys.Contains(key)
}

// MayOpen is the one place that decides whether a user may open a VM's
// consoles. list, console and forwards all ask it.
func (u *User) MayOpen(vm xapi.VM) bool {
	if u == nil || vm.IsControlDomain {
		return false
	}
	for _, pat := range u.Allow {
		if matchPattern(pat, vm.Pool, vm.Name) {
			return true
		}
	}
	return false
}

func checkPattern(pat string) error {
	if pat == "" {
		return fmt.Errorf("empty pattern")
	}
	pool, name := splitPattern(pat)
	for _, g := range []string{pool, name} {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", pat, err)
		}
	}
	return nil
}

// splitPattern splits "POOL/glob" into its parts; a pattern without "/"
// matches in every pool.
func splitPattern(pat string) (pool, name string) {
	if p, n, ok := strings.Cut(pat, "/"); ok {
		return p, n
	}
	return "*", pat
}

func matchPattern(pat, pool, name string) bool {
	pp, np := splitPattern(pat)
	okPool, _ := path.Match(pp, pool)
	okName, _ := path.Match(np, name)
	return okPool && okName
}
